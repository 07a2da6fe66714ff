import * as vscode from "vscode";
import type { Ctx } from "../context";
import { resolveRelease } from "./helpers";

/** Stratus: Pause Release: the release in progress of the node's environment (or picked). */
export function pauseRelease(ctx: Ctx) {
  return async (arg?: unknown) => {
    const found = await resolveRelease(ctx, arg);
    if (!found) return;
    const release = await found.client.releaseAction(found.release.id, "pause");
    ctx.tree.refresh();
    void vscode.window.showInformationMessage(`Release of v${release.version} in ${release.environment}: ${release.state.replace(/_/g, " ")} at ${release.percent}%.`);
  };
}
