// The component test (`npm test`): the page rendered in jsdom against a fake API. A file of its
// own, so the library build in vite.config.ts (React and Chakra external) stays as it is.
import { defineConfig } from "vitest/config";

export default defineConfig({
  esbuild: { jsx: "automatic" },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.tsx"],
  },
});
