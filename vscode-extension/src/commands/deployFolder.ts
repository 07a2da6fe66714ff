import * as vscode from "vscode";
import type { Ctx, FunctionTarget } from "../context";
import { resolveFunction } from "./helpers";

const LINK_FILE = ".stratus.json";
const SKIP = new Set([".git", "node_modules", "__pycache__", ".venv", ".vscode", LINK_FILE]);
const MAX_FILES = 500;

/**
 * Stratus: Deploy Current Folder (one key): the workspace folder's files become the
 * draft (files gone locally are removed from it), a version is published and deployed to
 * the active environment. The folder remembers its function in .stratus.json.
 */
export function deployFolder(ctx: Ctx) {
  return async () => {
    const folder = await pickFolder();
    if (!folder) return;
    const target = await linkedFunction(ctx, folder);
    if (!target) return;
    const environment = ctx.activeEnvironment();
    const client = await ctx.store.client(target.serverId);
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Deploying ${folder.name} → ${target.fn.name} (${environment})` },
      async (progress) => {
        const files = await listFiles(folder.uri);
        const draft = await client.draft(target.fn.id);
        for (const [i, path] of files.entries()) {
          progress.report({ message: `${path} (${i + 1}/${files.length})` });
          const bytes = await vscode.workspace.fs.readFile(vscode.Uri.joinPath(folder.uri, path));
          await client.draftFileWrite(target.fn.id, path, bytes);
        }
        const local = new Set(files);
        for (const f of draft.files) if (!local.has(f.path)) await client.draftFileDelete(target.fn.id, f.path);
        progress.report({ message: "publishing" });
        const version = await client.draftPublish(target.fn.id, `deployed from ${folder.name}`);
        progress.report({ message: `deploying v${version.number}` });
        const binding = await client.deploy(target.fn.id, environment, version.number);
        void vscode.window.showInformationMessage(`${target.fn.name} v${version.number} is deploying to ${environment}: ${binding.url}`);
      },
    );
    ctx.tree.refresh();
  };
}

async function pickFolder(): Promise<vscode.WorkspaceFolder | undefined> {
  const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme !== "stratus");
  const active = vscode.window.activeTextEditor?.document.uri;
  const current = active && vscode.workspace.getWorkspaceFolder(active);
  if (current && current.uri.scheme !== "stratus") return current;
  if (folders.length <= 1) {
    if (!folders.length) void vscode.window.showErrorMessage("Open a folder to deploy.");
    return folders[0];
  }
  return vscode.window.showWorkspaceFolderPick({ placeHolder: "Folder to deploy" });
}

async function linkedFunction(ctx: Ctx, folder: vscode.WorkspaceFolder): Promise<FunctionTarget | undefined> {
  const linkUri = vscode.Uri.joinPath(folder.uri, LINK_FILE);
  try {
    const link = JSON.parse(new TextDecoder().decode(await vscode.workspace.fs.readFile(linkUri))) as { server: string; function: number };
    const serverId = ctx.store.idFor(link.server);
    if (ctx.store.get(serverId)) {
      const client = await ctx.store.client(serverId);
      return { serverId, fn: await client.function(link.function) };
    }
  } catch (error) {
    if (!(error instanceof vscode.FileSystemError) && !(error instanceof SyntaxError)) throw error;
  }
  const target = await resolveFunction(ctx);
  if (!target) return undefined;
  const server = ctx.store.get(target.serverId);
  const link = { server: server?.url, function: target.fn.id };
  await vscode.workspace.fs.writeFile(linkUri, new TextEncoder().encode(`${JSON.stringify(link, null, 2)}\n`));
  return target;
}

async function listFiles(root: vscode.Uri, prefix = "", out: string[] = []): Promise<string[]> {
  for (const [name, type] of await vscode.workspace.fs.readDirectory(prefix ? vscode.Uri.joinPath(root, prefix) : root)) {
    if (SKIP.has(name)) continue;
    const path = prefix ? `${prefix}/${name}` : name;
    if (type & vscode.FileType.Directory) await listFiles(root, path, out);
    else if (type & vscode.FileType.File) out.push(path);
    if (out.length > MAX_FILES) throw new Error(`More than ${MAX_FILES} files in the folder: is it the function's folder?`);
  }
  return out.sort();
}
