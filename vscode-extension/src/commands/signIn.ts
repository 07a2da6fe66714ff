import * as vscode from "vscode";
import type { Ctx } from "../context";

/** Stratus: Sign In: a server URL and a personal API token (kept in SecretStorage). */
export function signIn(ctx: Ctx) {
  return async () => {
    const server = await ctx.signIn();
    if (server) {
      // Make VS Code list the account in the Accounts menu.
      await vscode.authentication.getSession("stratus", [], { createIfNone: false });
      ctx.tree.refresh();
    }
  };
}
