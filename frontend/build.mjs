// Copies the vendored browser files the pages load into frontend/build/vendor, which
// Django serves as static files (STATICFILES_DIRS). No bundler is needed yet.
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "build", "vendor");
mkdirSync(out, { recursive: true });
cpSync(join(here, "node_modules", "htmx.org", "dist", "htmx.min.js"), join(out, "htmx.min.js"));

// Swagger UI for /api/v1/docs/ (frontend/templates/drf_spectacular/swagger_ui.html), served
// from here instead of drf-spectacular's CDN default: the console's CSP allows 'self' only.
// The sourceMappingURL lines go: the maps are not copied, and WhiteNoise's manifest storage
// fails collectstatic on a reference to a missing file.
const swagger = join(out, "swagger-ui");
mkdirSync(swagger, { recursive: true });
for (const name of ["swagger-ui-bundle.js", "swagger-ui.css"]) {
  const text = readFileSync(join(here, "node_modules", "swagger-ui-dist", name), "utf8");
  writeFileSync(join(swagger, name), text.replace(/\n?\/[/*]# sourceMappingURL=\S+(?: \*\/)?\s*$/, "\n"));
}
cpSync(join(here, "node_modules", "swagger-ui-dist", "favicon-32x32.png"), join(swagger, "favicon-32x32.png"));
console.log(`frontend: assets copied to ${out}`);

// Monaco (the WebIDE, apps/functions/pages/code.py): the AMD build (min/vs) under a folder
// named for its version, which WhiteNoise serves as immutable (apps/core/static_files.py):
// the AMD loader asks for unhashed names, so the version in the path is the cache key.
// The files end with sourceMappingURL lines to a min-maps/ folder the package does not
// ship (not always on the last line); those lines go, as for Swagger UI.
const monacoHome = join(here, "node_modules", "monaco-editor");
const monacoVersion = JSON.parse(readFileSync(join(monacoHome, "package.json"), "utf8")).version;
const monacoOut = join(out, "monaco", monacoVersion, "vs");
rmSync(join(out, "monaco"), { recursive: true, force: true });
cpSync(join(monacoHome, "min", "vs"), monacoOut, { recursive: true });
for (const entry of readdirSync(monacoOut, { recursive: true })) {
  const file = join(monacoOut, String(entry));
  if (!file.endsWith(".js") && !file.endsWith(".css")) continue;
  const text = readFileSync(file, "utf8");
  const stripped = text.replace(/^\/[/*]# sourceMappingURL=\S+(?: \*\/)?[ \t]*$/gm, "");
  if (stripped !== text) writeFileSync(file, stripped);
}
console.log(`frontend: monaco ${monacoVersion} copied to ${monacoOut}`);

// uPlot (the Metrics tab's charts, frontend/static/metrics.js): ~50 KB minified, draws on a
// canvas, columnar data as the metrics API answers it. Versioned folder like Monaco's, so
// the file can be cached as immutable.
const uplotHome = join(here, "node_modules", "uplot");
const uplotVersion = JSON.parse(readFileSync(join(uplotHome, "package.json"), "utf8")).version;
const uplotOut = join(out, "uplot", uplotVersion);
rmSync(join(out, "uplot"), { recursive: true, force: true });
mkdirSync(uplotOut, { recursive: true });
for (const name of ["uPlot.iife.min.js", "uPlot.min.css"]) {
  cpSync(join(uplotHome, "dist", name), join(uplotOut, name));
}
console.log(`frontend: uplot ${uplotVersion} copied to ${uplotOut}`);
