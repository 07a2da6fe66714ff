import * as vscode from "vscode";
import type { Ctx } from "../context";
import { draftUri, parseUri, SCHEME, versionUri } from "../fs/uris";
import type { Node } from "../tree/nodes";
import { pickVersion } from "./helpers";

/**
 * Stratus: Compare with Version…: a draft file against the same file in version N, or
 * against what an environment serves ("compare with what prod runs").
 */
export function compareWithVersion(ctx: Ctx) {
  return async (arg?: unknown) => {
    const node = arg as Node | undefined;
    let uri: vscode.Uri | undefined;
    if (node?.kind === "draftFile") uri = draftUri(node.serverId, node.fn.id, node.file.path);
    else if (node?.kind === "versionFile") uri = draftUri(node.serverId, node.fn.id, node.file.path);
    else uri = arg instanceof vscode.Uri ? arg : vscode.window.activeTextEditor?.document.uri;
    if (!uri || uri.scheme !== SCHEME) {
      void vscode.window.showInformationMessage("Open a Stratus draft file first.");
      return;
    }
    const loc = parseUri(uri);
    if (loc.area === "root") return;
    const client = await ctx.store.client(loc.serverId);
    const bindings = await client.bindings(loc.functionId);
    const serving = bindings
      .map((b) => ({ b, top: [...b.traffic].sort((x, y) => y.weight - x.weight)[0] }))
      .filter((x) => x.top)
      .map((x) => ({ label: `What ${x.b.environment} runs`, description: `v${x.top.version}`, n: x.top.version }));
    const choice = await vscode.window.showQuickPick([...serving, { label: "A version…", n: 0 }], { placeHolder: "Compare the draft with" });
    if (!choice) return;
    const n = choice.n || (await pickVersion(client, loc.functionId, "Version"));
    if (!n) return;
    const left = versionUri(loc.serverId, loc.functionId, n, loc.path);
    const right = draftUri(loc.serverId, loc.functionId, loc.path);
    await vscode.commands.executeCommand("vscode.diff", left, right, `${loc.path} (v${n}) ↔ draft`);
  };
}
