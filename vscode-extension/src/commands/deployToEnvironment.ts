import * as vscode from "vscode";
import type { Ctx } from "../context";
import type { Node } from "../tree/nodes";
import { environmentOf, pickEnvironment, pickVersion, resolveFunction } from "./helpers";

/** Stratus: Deploy to Environment: a version (the node's, or picked) to an environment (quick pick). */
export function deployToEnvironment(ctx: Ctx) {
  return async (arg?: unknown) => {
    const target = await resolveFunction(ctx, arg);
    if (!target) return;
    const client = await ctx.store.client(target.serverId);
    const node = arg as Node | undefined;
    const version = node?.kind === "version" ? node.version.number : await pickVersion(client, target.fn.id, "Version to deploy");
    if (!version) return;
    const environment =
      environmentOf(arg) ?? (await pickEnvironment(client, target.fn.project, `Deploy v${version} to`, ctx.activeEnvironment()));
    if (!environment) return;
    const binding = await client.deploy(target.fn.id, environment, version);
    ctx.tree.refresh();
    void vscode.window.showInformationMessage(`Deployed ${target.fn.name} v${version} to ${environment}: ${binding.url}`);
  };
}
