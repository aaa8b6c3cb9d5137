// `npm run dev`: the page on its own (src/dev/index.html) with React and Chakra from node_modules
// and a fake API in place of fetch, so it can be worked on without Airflow. The bundle Airflow
// loads is built by vite.config.ts, which this file leaves alone.
import { resolve } from "node:path";
import { defineConfig } from "vite";

export default defineConfig({
  root: resolve(__dirname, "src/dev"),
  esbuild: { jsx: "automatic" },
  server: { host: "127.0.0.1", port: 5173 },
});
