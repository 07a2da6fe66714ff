import * as vscode from "vscode";
import type { Ctx } from "../context";
import type { Node } from "../tree/nodes";

/** Stratus: Sign Out: forget one server and its token. */
export function signOut(ctx: Ctx) {
  return async (node?: Node) => {
    let id = node?.kind === "server" ? node.server.id : undefined;
    if (!id) {
      const pick = await vscode.window.showQuickPick(
        ctx.store.list().map((s) => ({ label: s.url, description: s.username, id: s.id })),
        { placeHolder: "Sign out of" },
      );
      id = pick?.id;
    }
    if (!id) return;
    await ctx.store.remove(id);
    ctx.tree.refresh();
  };
}
