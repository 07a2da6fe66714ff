import * as vscode from "vscode";
import type { Ctx } from "../context";
import { draftUri } from "../fs/uris";
import { resolveFunction } from "./helpers";

/** Stratus: Open Draft as Folder: the draft in the Explorer, editable (search, multi-file edits). */
export function openDraftFolder(ctx: Ctx) {
  return async (arg?: unknown) => {
    const target = await resolveFunction(ctx, arg);
    if (!target) return;
    const uri = draftUri(target.serverId, target.fn.id);
    const count = vscode.workspace.workspaceFolders?.length ?? 0;
    vscode.workspace.updateWorkspaceFolders(count, 0, { uri, name: `${target.fn.name} (draft)` });
  };
}
