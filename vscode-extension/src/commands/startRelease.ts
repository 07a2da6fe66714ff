import * as vscode from "vscode";
import type { ReleasePlan } from "../api/types";
import type { Ctx } from "../context";
import type { Node } from "../tree/nodes";
import { environmentOf, pickEnvironment, pickVersion, resolveFunction } from "./helpers";

/** Stratus: Start Release: a gray release of a version, with steps, advanced by hand or automatically. */
export function startRelease(ctx: Ctx) {
  return async (arg?: unknown) => {
    const target = await resolveFunction(ctx, arg);
    if (!target) return;
    const client = await ctx.store.client(target.serverId);
    const node = arg as Node | undefined;
    const version = node?.kind === "version" ? node.version.number : await pickVersion(client, target.fn.id, "Version to release");
    if (!version) return;
    const environment =
      environmentOf(arg) ?? (await pickEnvironment(client, target.fn.project, `Release v${version} in`, ctx.activeEnvironment()));
    if (!environment) return;
    const stepsText = await vscode.window.showInputBox({
      prompt: "Traffic steps in percent (comma separated), or 'direct'",
      value: "10, 50, 100",
      validateInput: (v) =>
        v.trim() === "direct" || /^\s*\d{1,3}(\s*,\s*\d{1,3})*\s*$/.test(v) ? undefined : "Numbers like 10, 50, 100 or 'direct'.",
    });
    if (!stepsText) return;
    let plan: ReleasePlan = "direct";
    if (stepsText.trim() !== "direct") {
      const advance = await vscode.window.showQuickPick(
        [
          { label: "manual", description: "promote each step yourself" },
          { label: "auto", description: "advance after a dwell time while the gate holds" },
        ],
        { placeHolder: "Advance" },
      );
      if (!advance) return;
      const steps = stepsText.split(",").map((s) => Number(s.trim()));
      plan = { steps, advance: advance.label as "manual" | "auto" };
      if (advance.label === "auto") {
        const dwell = await vscode.window.showInputBox({ prompt: "Seconds per step", value: "60", validateInput: (v) => (/^\d+$/.test(v) ? undefined : "A number of seconds.") });
        if (!dwell) return;
        plan.dwell_s = Number(dwell);
      }
    }
    const release = await client.releaseStart(target.fn.id, environment, version, plan);
    ctx.tree.refresh();
    void vscode.window.showInformationMessage(`Release of v${release.version} in ${environment}: ${release.state} at ${release.percent}%.`);
  };
}
