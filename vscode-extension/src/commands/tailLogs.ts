import * as vscode from "vscode";
import type { Ctx } from "../context";
import { environmentOf, resolveFunction } from "./helpers";

/** Stratus: Tail Logs: the function's live log in the one "Stratus Logs" output channel. */
export function tailLogs(ctx: Ctx) {
  return async (arg?: unknown) => {
    const target = await resolveFunction(ctx, arg);
    if (!target) return;
    const client = await ctx.store.client(target.serverId);
    const environment = environmentOf(arg);
    ctx.tail.start({ client, functionId: target.fn.id, label: target.fn.name }, environment ? { environment } : {});
  };
}

/** Stratus: Pause / Resume Log Tail (resume reconnects with Last-Event-ID: nothing lost). */
export function toggleTailPause(ctx: Ctx) {
  return async () => {
    if (ctx.tail.paused) ctx.tail.resume();
    else if (ctx.tail.running) ctx.tail.pause();
    else void vscode.window.showInformationMessage("No log tail is running: run Stratus: Tail Logs.");
  };
}

/** Stratus: Stop Log Tail. */
export function stopTail(ctx: Ctx) {
  return async () => ctx.tail.stop();
}

/** Stratus: Log Tail Filters: environment, level, text (or /regex/); restarts the tail with them. */
export function tailFilters(ctx: Ctx) {
  return async (arg?: unknown) => {
    const target = await resolveFunction(ctx, arg);
    if (!target) return;
    const client = await ctx.store.client(target.serverId);
    const current = ctx.tail.filters;
    const project = await client.project(target.fn.project);
    const env = await vscode.window.showQuickPick(
      [{ label: "(all environments)" }, ...project.environments.map((e) => ({ label: e.name, picked: e.name === current.environment }))],
      { placeHolder: "Environment" },
    );
    if (!env) return;
    const level = await vscode.window.showQuickPick(
      ["(all levels)", "debug", "info", "warning", "error", "critical", "warning,error,critical"].map((label) => ({ label })),
      { placeHolder: "Level" },
    );
    if (!level) return;
    const q = await vscode.window.showInputBox({ prompt: "Text the line contains, or /regex/ (empty: any)", value: current.q ?? "" });
    if (q === undefined) return;
    ctx.tail.start(
      { client, functionId: target.fn.id, label: target.fn.name },
      {
        environment: env.label.startsWith("(") ? undefined : env.label,
        level: level.label.startsWith("(") ? undefined : level.label,
        q: q || undefined,
      },
    );
  };
}
