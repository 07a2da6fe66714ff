// Copies the vendored browser files the pages load into frontend/build/vendor, which
// Django serves as static files (STATICFILES_DIRS). No bundler is needed yet.
import { cpSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "build", "vendor");
mkdirSync(out, { recursive: true });
cpSync(join(here, "node_modules", "htmx.org", "dist", "htmx.min.js"), join(out, "htmx.min.js"));
console.log(`frontend: assets copied to ${out}`);
