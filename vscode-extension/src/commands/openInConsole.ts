import * as vscode from "vscode";
import type { Ctx } from "../context";
import type { Node } from "../tree/nodes";
import { resolveFunction } from "./helpers";

/** Stratus: Open in Console: the node's page in the web console. */
export function openInConsole(ctx: Ctx) {
  return async (arg?: unknown) => {
    const node = arg as Node | undefined;
    if (node?.kind === "project") {
      const client = await ctx.store.client(node.serverId);
      await vscode.env.openExternal(vscode.Uri.parse(client.consoleUrl(`projects/${node.project.id}/`)));
      return;
    }
    const target = await resolveFunction(ctx, arg);
    if (!target) return;
    const client = await ctx.store.client(target.serverId);
    await vscode.env.openExternal(vscode.Uri.parse(client.consoleUrl(`functions/${target.fn.id}/`)));
  };
}
