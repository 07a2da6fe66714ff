// Copies the vendored browser files the pages load into frontend/build/vendor, which
// Django serves as static files (STATICFILES_DIRS). No bundler is needed yet.
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
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
