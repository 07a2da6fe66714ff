/**
 * `stratus:` URIs. stratus://<server id>/<function id>/draft/<path> is a draft file
 * (writable); stratus://<server id>/<function id>/v<N>/<path> is a file of version N
 * (read-only). The server id is ServerStore's (host[:port]).
 */
import * as vscode from "vscode";

export const SCHEME = "stratus";
export const SERVER_COPY_SCHEME = "stratus-server";

export type Location =
  | { serverId: string; functionId: number; area: "root" }
  | { serverId: string; functionId: number; area: "draft"; path: string }
  | { serverId: string; functionId: number; area: "version"; version: number; path: string };

export function draftUri(serverId: string, functionId: number, path = ""): vscode.Uri {
  return vscode.Uri.from({ scheme: SCHEME, authority: serverId, path: `/${functionId}/draft/${path}`.replace(/\/$/, "") });
}

export function versionUri(serverId: string, functionId: number, version: number, path = ""): vscode.Uri {
  return vscode.Uri.from({ scheme: SCHEME, authority: serverId, path: `/${functionId}/v${version}/${path}`.replace(/\/$/, "") });
}

/** Parse a stratus: URI; throws FileNotFound for a path outside the layout above. */
export function parseUri(uri: vscode.Uri): Location {
  const parts = uri.path.split("/").filter(Boolean);
  const functionId = Number(parts[0]);
  if (!Number.isInteger(functionId) || functionId <= 0) throw vscode.FileSystemError.FileNotFound(uri);
  if (parts.length === 1) return { serverId: uri.authority, functionId, area: "root" };
  const path = parts.slice(2).join("/");
  if (parts[1] === "draft") return { serverId: uri.authority, functionId, area: "draft", path };
  const m = /^v(\d+)$/.exec(parts[1]);
  if (m) return { serverId: uri.authority, functionId, area: "version", version: Number(m[1]), path };
  throw vscode.FileSystemError.FileNotFound(uri);
}
