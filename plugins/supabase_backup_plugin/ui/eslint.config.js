// eslint (flat config): the JavaScript and TypeScript recommended rules, and React's rules of
// hooks (eslint-plugin-react-hooks, including its React Compiler checks). `npm run lint`.
import js from "@eslint/js";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  // dist/ is built and openapi.gen.ts generated: they are checked by being rebuilt, not linted.
  { ignores: ["dist/", "node_modules/", "src/openapi.gen.ts"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  reactHooks.configs.flat.recommended,
  {
    files: ["**/*.{ts,tsx}"],
    languageOptions: { globals: globals.browser },
  },
  {
    files: ["*.config.{js,ts}"],
    languageOptions: { globals: globals.node },
  },
);
