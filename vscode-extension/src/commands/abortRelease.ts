import * as vscode from "vscode";
import type { Ctx } from "../context";
import { resolveRelease } from "./helpers";

/** Stratus: Abort Release: the release in progress of the node's environment (or picked). */
export function abortRelease(ctx: Ctx) {
  return async (arg?: unknown) => {
    const found = await resolveRelease(ctx, arg);
    if (!found) return;
    const ok = await vscode.window.showWarningMessage(
      `Abort the release of v${found.release.version} in ${found.release.environment}? Traffic returns to the stable version.`,
      { modal: true },
      "Abort",
    );
    if (ok !== "Abort") return;
    const release = await found.client.releaseAction(found.release.id, "abort");
    ctx.tree.refresh();
    void vscode.window.showInformationMessage(`Release of v${release.version} in ${release.environment}: ${release.state.replace(/_/g, " ")} at ${release.percent}%.`);
  };
}
