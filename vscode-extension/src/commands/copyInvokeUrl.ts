import * as vscode from "vscode";
import type { Ctx } from "../context";
import { environmentOf, resolveFunction } from "./helpers";

/** Stratus: Copy Invoke URL: the function's URL in an environment (the node's, or the active one). */
export function copyInvokeUrl(ctx: Ctx) {
  return async (arg?: unknown) => {
    const target = await resolveFunction(ctx, arg);
    if (!target) return;
    const client = await ctx.store.client(target.serverId);
    const environment = environmentOf(arg) ?? ctx.activeEnvironment();
    const binding = (await client.bindings(target.fn.id)).find((b) => b.environment === environment);
    if (!binding) {
      void vscode.window.showWarningMessage(`${target.fn.name} is not deployed in ${environment}.`);
      return;
    }
    await vscode.env.clipboard.writeText(binding.url);
    void vscode.window.showInformationMessage(`Copied ${binding.url}`);
  };
}
