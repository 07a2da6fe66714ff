import * as vscode from "vscode";
import type { InvokeResult } from "../api/types";
import type { Ctx } from "../context";
import type { Node } from "../tree/nodes";
import { environmentOf, resolveFunction } from "./helpers";

const lastPayloadKey = (serverId: string, functionId: number) => `stratus.lastPayload.${serverId}.${functionId}`;

let output: vscode.OutputChannel | undefined;

/**
 * Stratus: Invoke: with a stored test event (the same ones the WebIDE shows), the last
 * payload (remembered per function), or a new one (optionally saved as a test event).
 */
export function invoke(ctx: Ctx) {
  return async (arg?: unknown) => {
    const target = await resolveFunction(ctx, arg);
    if (!target) return;
    const client = await ctx.store.client(target.serverId);
    const node = arg as Node | undefined;
    const state = ctx.extension.workspaceState;
    const key = lastPayloadKey(target.serverId, target.fn.id);
    let event: unknown;
    if (node?.kind === "testEvent") {
      event = node.event.body;
    } else {
      const last = state.get<string>(key);
      const events = await client.testEvents(target.fn.id);
      const items: (vscode.QuickPickItem & { body?: unknown; fresh?: boolean })[] = [
        ...(last !== undefined ? [{ label: "$(history) Last payload", detail: last.slice(0, 200), body: JSON.parse(last) }] : []),
        ...events.map((e) => ({ label: `$(json) ${e.name}`, description: e.shared ? "shared" : "mine", detail: JSON.stringify(e.body).slice(0, 200), body: e.body })),
        { label: "$(edit) New payload…", fresh: true },
      ];
      const pick = await vscode.window.showQuickPick(items, { placeHolder: `Invoke ${target.fn.name} with` });
      if (!pick) return;
      if (pick.fresh) {
        const text = await vscode.window.showInputBox({
          prompt: "Event (JSON)",
          value: last ?? "{}",
          validateInput: (v) => {
            try {
              JSON.parse(v);
              return undefined;
            } catch (e) {
              return `Not JSON: ${(e as Error).message}`;
            }
          },
        });
        if (text === undefined) return;
        event = JSON.parse(text);
        const name = await vscode.window.showInputBox({ prompt: "Save as a test event (shared with the WebIDE)? A name, or leave empty" });
        if (name) await client.testEventCreate(target.fn.id, name, event);
      } else {
        event = pick.body;
      }
    }
    await state.update(key, JSON.stringify(event));
    const environment = environmentOf(arg) ?? ctx.activeEnvironment();
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Invoking ${target.fn.name} in ${environment}…` },
      () => client.invoke(target.fn.id, environment, event),
    );
    showResult(target.fn.name, environment, result);
    return result;
  };
}

function showResult(name: string, environment: string, result: InvokeResult): void {
  output ??= vscode.window.createOutputChannel("Stratus Invoke");
  output.appendLine(`── ${name} in ${environment} (v${result.version ?? "draft"}) ${result.status} in ${result.duration_ms} ms${result.cold_start ? ", cold start" : ""} · ${result.request_id}`);
  for (const line of result.logs) output.appendLine(`   ${line.stream}: ${line.text}`);
  output.appendLine(JSON.stringify(result.error ?? result.result, null, 2));
  output.show(true);
  if (result.status !== "ok") void vscode.window.showErrorMessage(`${name} failed: ${JSON.stringify(result.error)}`);
}
