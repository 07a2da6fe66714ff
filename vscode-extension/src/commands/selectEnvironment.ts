import * as vscode from "vscode";
import type { Ctx } from "../context";
import { pickEnvironment, resolveFunction } from "./helpers";

/** Stratus: Select Active Environment (the status bar item): where invoke and deploy-folder go. */
export function selectEnvironment(ctx: Ctx) {
  return async (arg?: unknown) => {
    const target = await resolveFunction(ctx, arg);
    let name: string | undefined;
    if (target) {
      const client = await ctx.store.client(target.serverId);
      name = await pickEnvironment(client, target.fn.project, "Active environment", ctx.activeEnvironment());
    } else {
      name = await vscode.window.showInputBox({ prompt: "Active environment", value: ctx.activeEnvironment() });
    }
    if (name) await ctx.setActiveEnvironment(name);
  };
}
