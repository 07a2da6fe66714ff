/** Shared by the commands: finding the function a command is about, pickers, error display. */
import * as vscode from "vscode";
import type { StratusClient } from "../api/client";
import { ServerUnreachableError, errorMessage } from "../api/errors";
import type { Release, Version } from "../api/types";
import { ACTIVE_RELEASE_STATES } from "../api/types";
import type { Ctx, FunctionTarget } from "../context";
import { SCHEME, parseUri } from "../fs/uris";
import type { Node } from "../tree/nodes";

/**
 * Show a failure as the API's message. An unreachable server was already announced once
 * by the client's hook (extension.ts), so it is not repeated per command.
 */
export async function reportError(error: unknown): Promise<void> {
  if (error instanceof ServerUnreachableError) return;
  await vscode.window.showErrorMessage(errorMessage(error));
}

export async function pickServer(ctx: Ctx): Promise<string | undefined> {
  const servers = ctx.store.list();
  if (servers.length === 0) return (await ctx.signIn())?.id;
  if (servers.length === 1) return servers[0].id;
  const pick = await vscode.window.showQuickPick(
    servers.map((s) => ({ label: s.url, description: s.username, id: s.id })),
    { placeHolder: "Stratus server" },
  );
  return pick?.id;
}

export async function pickProject(ctx: Ctx, node?: Node): Promise<{ serverId: string; projectId: number } | undefined> {
  if (node?.kind === "project") return { serverId: node.serverId, projectId: node.project.id };
  const serverId = await pickServer(ctx);
  if (!serverId) return undefined;
  const client = await ctx.store.client(serverId);
  const projects = await client.projects();
  const pick = await vscode.window.showQuickPick(
    projects.map((p) => ({ label: p.name, description: `${p.org}/${p.slug}`, id: p.id })),
    { placeHolder: "Project" },
  );
  return pick ? { serverId, projectId: pick.id } : undefined;
}

/**
 * The function a command acts on: the tree node it was run on, else the function of the
 * stratus: file in the active editor, else one picked from a list.
 */
export async function resolveFunction(ctx: Ctx, arg?: unknown): Promise<FunctionTarget | undefined> {
  const node = arg as Node | undefined;
  if (node && typeof node === "object" && "fn" in node && "serverId" in node) {
    return { serverId: node.serverId, fn: node.fn };
  }
  const uri = arg instanceof vscode.Uri ? arg : vscode.window.activeTextEditor?.document.uri;
  if (uri?.scheme === SCHEME) {
    const loc = parseUri(uri);
    const client = await ctx.store.client(loc.serverId);
    return { serverId: loc.serverId, fn: await client.function(loc.functionId) };
  }
  const project = await pickProject(ctx);
  if (!project) return undefined;
  const client = await ctx.store.client(project.serverId);
  const functions = await client.functions(project.projectId);
  if (functions.length === 0) {
    void vscode.window.showInformationMessage("That project has no functions yet.");
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(
    functions.map((f) => ({ label: f.name, description: f.runtime, fn: f })),
    { placeHolder: "Function" },
  );
  return pick ? { serverId: project.serverId, fn: pick.fn } : undefined;
}

export async function pickEnvironment(
  client: StratusClient,
  projectId: number,
  placeHolder: string,
  preselect?: string,
): Promise<string | undefined> {
  const project = await client.project(projectId);
  const items = project.environments.map((e) => ({
    label: e.name,
    description: e.protected ? "protected" : undefined,
    picked: e.name === preselect,
  }));
  items.sort((a, b) => Number(b.picked) - Number(a.picked));
  return (await vscode.window.showQuickPick(items, { placeHolder }))?.label;
}

export async function pickVersion(client: StratusClient, functionId: number, placeHolder: string): Promise<number | undefined> {
  const versions: Version[] = (await client.versions(functionId)).sort((a, b) => b.number - a.number);
  if (versions.length === 0) {
    void vscode.window.showInformationMessage("No versions yet: publish the draft first.");
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(
    versions.map((v) => ({ label: `v${v.number}`, description: v.message, detail: `${v.author ?? ""} ${v.created_at}`, n: v.number })),
    { placeHolder },
  );
  return pick?.n;
}

/** The environment a node names (an Environments entry), else the active one, else a pick. */
export function environmentOf(arg: unknown): string | undefined {
  const node = arg as Node | undefined;
  return node && typeof node === "object" && node.kind === "environment" ? node.name : undefined;
}

/** The active release a command acts on: the environment node's, else picked among active ones. */
export async function resolveRelease(ctx: Ctx, arg: unknown): Promise<{ client: StratusClient; release: Release } | undefined> {
  const node = arg as Node | undefined;
  const target = await resolveFunction(ctx, arg);
  if (!target) return undefined;
  const client = await ctx.store.client(target.serverId);
  if (node?.kind === "environment" && node.release) return { client, release: node.release };
  const active = (await client.releases(target.fn.id)).filter((r) => ACTIVE_RELEASE_STATES.includes(r.state));
  if (active.length === 0) {
    void vscode.window.showInformationMessage(`${target.fn.name} has no release in progress.`);
    return undefined;
  }
  if (active.length === 1) return { client, release: active[0] };
  const pick = await vscode.window.showQuickPick(
    active.map((r) => ({ label: `${r.environment}: v${r.version}`, description: `${r.state} ${r.percent}%`, r })),
    { placeHolder: "Release" },
  );
  return pick ? { client, release: pick.r } : undefined;
}
