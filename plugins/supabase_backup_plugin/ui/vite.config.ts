// The page is built as a library that brings no React or Chakra of its own: the Airflow UI puts
// its React, ReactDOM, JSX runtime, Chakra UI and Emotion on globalThis (React, ReactDOM,
// ReactJSXRuntime, ChakraUI, EmotionReact) and renders the component inside its own providers,
// so the page shares the host's React tree, theme and colour mode. Same approach as apache/airflow
// dev/react-plugin-tools/react_plugin_template, which externalises React the same way.
import { resolve } from "node:path";
import { defineConfig } from "vite";

export default defineConfig({
  esbuild: { jsx: "automatic" },
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    lib: {
      entry: resolve(__dirname, "src/main.tsx"),
      name: "AirflowPlugin",
      formats: ["umd"],
      // .js, not .umd.cjs: the host loads it with import(), which needs a JavaScript MIME type.
      fileName: () => "backups.js",
    },
    rollupOptions: {
      external: ["react", "react-dom", "react/jsx-runtime", "@chakra-ui/react", "@emotion/react"],
      output: {
        globals: {
          react: "React",
          "react-dom": "ReactDOM",
          "react/jsx-runtime": "ReactJSXRuntime",
          "@chakra-ui/react": "ChakraUI",
          "@emotion/react": "EmotionReact",
        },
      },
    },
  },
});
