import * as vscode from "vscode";
import type { Ctx } from "../context";
import { draftUri } from "../fs/uris";
import type { Node } from "../tree/nodes";
import { pickProject } from "./helpers";

const RUNTIMES = [
  { label: "python3.11", handler: "main.handler", file: "main.py", code: 'def handler(event, context):\n    return {"statusCode": 200, "body": "hello"}\n' },
  { label: "node20", handler: "index.handler", file: "index.js", code: 'exports.handler = async (event, context) => ({ statusCode: 200, body: "hello" });\n' },
];

/** Stratus: Create Function: name, runtime; a starter file in the draft, opened. */
export function createFunction(ctx: Ctx) {
  return async (node?: Node) => {
    const project = await pickProject(ctx, node);
    if (!project) return;
    const name = await vscode.window.showInputBox({
      prompt: "Function name",
      placeHolder: "lowercase letters, digits and dashes",
      validateInput: (v) => (/^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$/.test(v) ? undefined : "Use 1-50 lowercase letters, digits and dashes."),
    });
    if (!name) return;
    const runtime = await vscode.window.showQuickPick(RUNTIMES, { placeHolder: "Runtime" });
    if (!runtime) return;
    const client = await ctx.store.client(project.serverId);
    const fn = await client.functionCreate(project.projectId, { name, runtime: runtime.label, handler: runtime.handler });
    await client.draftFileWrite(fn.id, runtime.file, new TextEncoder().encode(runtime.code), { ifNoneMatch: "*" });
    ctx.tree.refresh();
    await vscode.window.showTextDocument(draftUri(project.serverId, fn.id, runtime.file));
  };
}
