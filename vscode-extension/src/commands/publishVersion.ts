import * as vscode from "vscode";
import type { Ctx } from "../context";
import { resolveFunction } from "./helpers";

/** Stratus: Publish Version: the draft becomes the next immutable version. */
export function publishVersion(ctx: Ctx) {
  return async (arg?: unknown) => {
    const target = await resolveFunction(ctx, arg);
    if (!target) return;
    // Unsaved stratus: editors would not be in the version: save them first.
    await vscode.workspace.saveAll(false);
    const message = await vscode.window.showInputBox({ prompt: `Publish ${target.fn.name}: a message for this version`, value: "" });
    if (message === undefined) return;
    const client = await ctx.store.client(target.serverId);
    const version = await client.draftPublish(target.fn.id, message);
    ctx.tree.refresh();
    void vscode.window.showInformationMessage(`Published ${target.fn.name} v${version.number}.`);
    return version;
  };
}
