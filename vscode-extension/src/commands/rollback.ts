import * as vscode from "vscode";
import type { Ctx } from "../context";
import { environmentOf, pickEnvironment, resolveFunction } from "./helpers";

/** Stratus: Roll Back: one click on an environment; the previous stable version takes 100%. */
export function rollback(ctx: Ctx) {
  return async (arg?: unknown) => {
    const target = await resolveFunction(ctx, arg);
    if (!target) return;
    const client = await ctx.store.client(target.serverId);
    const environment = environmentOf(arg) ?? (await pickEnvironment(client, target.fn.project, "Roll back in", ctx.activeEnvironment()));
    if (!environment) return;
    const binding = await client.rollback(target.fn.id, environment);
    ctx.tree.refresh();
    const serving = binding.traffic.map((t) => `v${t.version} ${t.weight}%`).join(", ");
    void vscode.window.showInformationMessage(`Rolled back ${target.fn.name} in ${environment}: now ${serving}.`);
  };
}
