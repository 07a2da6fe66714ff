// Two bundles of the same source: dist/extension.js for desktop VS Code (Node host) and
// dist/web/extension.js for VS Code for the Web (a web worker). The source uses fetch and
// web streams only, so the browser bundle needs no Node polyfills; `vscode` is provided by
// the host in both.
import * as esbuild from "esbuild";

const common = {
  entryPoints: ["src/extension.ts"],
  bundle: true,
  external: ["vscode"],
  format: "cjs",
  target: "es2022",
  sourcemap: false,
  minify: process.argv.includes("--minify"),
  logLevel: "warning",
};

await Promise.all([
  esbuild.build({ ...common, platform: "node", outfile: "dist/extension.js" }),
  // platform "browser" makes esbuild fail on any Node built-in import: the guard that
  // keeps the shared code fetch-only.
  esbuild.build({ ...common, platform: "browser", outfile: "dist/web/extension.js" }),
]);
