/** Import first in each unit test: `require("vscode")` resolves to the stub. */
import Module from "node:module";
import path from "node:path";

const target = path.join(__dirname, "vscode.js");
const M = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
const original = M._resolveFilename;
M._resolveFilename = function (request: string, ...rest: unknown[]) {
  return request === "vscode" ? target : original.call(this, request, ...rest);
};
