/**
 * The draft as a file system: `stratus://<server>/<function>/draft/...` reads and writes the
 * draft's files through the API; `.../v<N>/...` are a version's files, read-only, so
 * "compare with version N" is a plain diff.
 *
 * Saves are guarded: a write sends If-Match with the ETag the file was read with (or
 * If-None-Match: * for a new file). When someone else saved in between, the API answers
 * 409 `stale_write`; the save fails with that message and `onConflict` opens a diff with
 * the server's copy. The remembered ETag then becomes the server's, so saving again is a
 * deliberate overwrite.
 */
import * as vscode from "vscode";
import type { StratusClient } from "../api/client";
import { decodeContent } from "../api/base64";
import { ApiError, errorMessage } from "../api/errors";
import type { DraftFileMeta } from "../api/types";
import { parseUri } from "./uris";

export interface Conflict {
  uri: vscode.Uri;
  serverCopy: Uint8Array;
  message: string;
}

export interface ClientSource {
  client(serverId: string): Promise<StratusClient>;
}

const TREE_TTL_MS = 1500;

export class StratusFileSystemProvider implements vscode.FileSystemProvider {
  private readonly emitter = new vscode.EventEmitter<vscode.FileChangeEvent[]>();
  readonly onDidChangeFile = this.emitter.event;
  /** uri → the ETag (sha256) of the content this window last read or wrote. */
  readonly etags = new Map<string, string>();
  private readonly trees = new Map<string, { at: number; files: Promise<DraftFileMeta[]> }>();

  constructor(
    private readonly clients: ClientSource,
    private readonly onConflict: (conflict: Conflict) => void | Promise<void>,
  ) {}

  watch(): vscode.Disposable {
    return new vscode.Disposable(() => undefined);
  }

  /** The files of a draft or a version (cached briefly: VS Code stats a lot). */
  private files(serverId: string, functionId: number, version: number | null): Promise<DraftFileMeta[]> {
    const key = `${serverId}/${functionId}/${version ?? "draft"}`;
    const cached = this.trees.get(key);
    if (cached && Date.now() - cached.at < TREE_TTL_MS) return cached.files;
    const files = (async () => {
      const client = await this.clients.client(serverId);
      return version === null ? (await client.draft(functionId)).files : await client.versionFiles(functionId, version);
    })();
    files.catch(() => this.trees.delete(key));
    this.trees.set(key, { at: Date.now(), files });
    return files;
  }

  private forget(serverId: string, functionId: number): void {
    this.trees.delete(`${serverId}/${functionId}/draft`);
  }

  async stat(uri: vscode.Uri): Promise<vscode.FileStat> {
    const loc = parseUri(uri);
    const readonly = loc.area === "version" ? { permissions: vscode.FilePermission.Readonly } : {};
    if (loc.area === "root" || loc.path === "") {
      return { type: vscode.FileType.Directory, ctime: 0, mtime: 0, size: 0, ...readonly };
    }
    const files = await this.wrap(uri, () => this.files(loc.serverId, loc.functionId, loc.area === "version" ? loc.version : null));
    const file = files.find((f) => f.path === loc.path);
    if (file) {
      const mtime = file.updated_at ? Date.parse(file.updated_at) : 0;
      return { type: vscode.FileType.File, ctime: mtime, mtime, size: file.size, ...readonly };
    }
    if (files.some((f) => f.path.startsWith(`${loc.path}/`))) {
      return { type: vscode.FileType.Directory, ctime: 0, mtime: 0, size: 0, ...readonly };
    }
    throw vscode.FileSystemError.FileNotFound(uri);
  }

  async readDirectory(uri: vscode.Uri): Promise<[string, vscode.FileType][]> {
    const loc = parseUri(uri);
    if (loc.area === "root") return [["draft", vscode.FileType.Directory]];
    const files = await this.wrap(uri, () => this.files(loc.serverId, loc.functionId, loc.area === "version" ? loc.version : null));
    const prefix = loc.path ? `${loc.path}/` : "";
    const entries = new Map<string, vscode.FileType>();
    for (const f of files) {
      if (!f.path.startsWith(prefix)) continue;
      const rest = f.path.slice(prefix.length);
      const slash = rest.indexOf("/");
      if (slash === -1) entries.set(rest, vscode.FileType.File);
      else entries.set(rest.slice(0, slash), vscode.FileType.Directory);
    }
    return [...entries];
  }

  async readFile(uri: vscode.Uri): Promise<Uint8Array> {
    const loc = parseUri(uri);
    if (loc.area === "root" || !loc.path) throw vscode.FileSystemError.FileIsADirectory(uri);
    const client = await this.wrap(uri, () => this.clients.client(loc.serverId));
    if (loc.area === "version") {
      const file = await this.wrap(uri, () => client.versionFile(loc.functionId, loc.version, loc.path));
      return decodeContent(file.content, file.encoding);
    }
    const { file, etag } = await this.wrap(uri, () => client.draftFile(loc.functionId, loc.path));
    this.etags.set(uri.toString(), etag);
    return decodeContent(file.content, file.encoding);
  }

  async writeFile(uri: vscode.Uri, content: Uint8Array, options: { create: boolean; overwrite: boolean }): Promise<void> {
    const loc = parseUri(uri);
    if (loc.area !== "draft") throw vscode.FileSystemError.NoPermissions("Versions are read-only: edit the draft.");
    if (!loc.path) throw vscode.FileSystemError.FileIsADirectory(uri);
    const client = await this.wrap(uri, () => this.clients.client(loc.serverId));
    let etag = this.etags.get(uri.toString());
    if (!etag) {
      const existing = (await this.wrap(uri, () => this.files(loc.serverId, loc.functionId, null))).find((f) => f.path === loc.path);
      if (existing && !options.overwrite) throw vscode.FileSystemError.FileExists(uri);
      if (!existing && !options.create) throw vscode.FileSystemError.FileNotFound(uri);
      etag = existing?.sha256;
    }
    try {
      const result = await client.draftFileWrite(loc.functionId, loc.path, content, etag ? { ifMatch: etag } : { ifNoneMatch: "*" });
      this.etags.set(uri.toString(), result.etag);
      this.forget(loc.serverId, loc.functionId);
      this.emitter.fire([{ type: result.created ? vscode.FileChangeType.Created : vscode.FileChangeType.Changed, uri }]);
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) {
        await this.conflict(client, uri, loc.functionId, loc.path, error);
      }
      throw this.fsError(uri, error);
    }
  }

  private async conflict(client: StratusClient, uri: vscode.Uri, functionId: number, path: string, error: ApiError): Promise<void> {
    let serverCopy = new Uint8Array();
    try {
      const { file, etag } = await client.draftFile(functionId, path);
      serverCopy = decodeContent(file.content, file.encoding);
      this.etags.set(uri.toString(), etag);
    } catch (readError) {
      // Deleted on the server meanwhile: an empty server copy, and the next save creates it.
      if (readError instanceof ApiError && readError.status === 404) this.etags.delete(uri.toString());
      else throw readError;
    }
    await this.onConflict({ uri, serverCopy, message: error.message });
  }

  async delete(uri: vscode.Uri): Promise<void> {
    const loc = parseUri(uri);
    if (loc.area !== "draft") throw vscode.FileSystemError.NoPermissions("Versions are read-only.");
    const client = await this.wrap(uri, () => this.clients.client(loc.serverId));
    const files = await this.wrap(uri, () => this.files(loc.serverId, loc.functionId, null));
    const targets = files.filter((f) => f.path === loc.path || f.path.startsWith(`${loc.path}/`));
    if (targets.length === 0) throw vscode.FileSystemError.FileNotFound(uri);
    for (const f of targets) {
      await this.wrap(uri, () => client.draftFileDelete(loc.functionId, f.path, f.sha256));
    }
    this.etags.delete(uri.toString());
    this.forget(loc.serverId, loc.functionId);
    this.emitter.fire([{ type: vscode.FileChangeType.Deleted, uri }]);
  }

  async rename(oldUri: vscode.Uri, newUri: vscode.Uri): Promise<void> {
    const from = parseUri(oldUri);
    const to = parseUri(newUri);
    if (from.area !== "draft" || to.area !== "draft" || from.functionId !== to.functionId || from.serverId !== to.serverId) {
      throw vscode.FileSystemError.NoPermissions("Only draft files move, within one draft.");
    }
    const client = await this.wrap(oldUri, () => this.clients.client(from.serverId));
    await this.wrap(oldUri, () => client.draftRename(from.functionId, from.path, to.path));
    this.etags.delete(oldUri.toString());
    this.forget(from.serverId, from.functionId);
    this.emitter.fire([
      { type: vscode.FileChangeType.Deleted, uri: oldUri },
      { type: vscode.FileChangeType.Created, uri: newUri },
    ]);
  }

  createDirectory(): void {
    // Draft folders exist through their files: nothing to create on the server.
  }

  /** Run an API call, turning its failure into a FileSystemError with the API's message. */
  private async wrap<T>(uri: vscode.Uri, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw this.fsError(uri, error);
    }
  }

  private fsError(uri: vscode.Uri, error: unknown): Error {
    if (error instanceof vscode.FileSystemError) return error;
    if (error instanceof ApiError) {
      if (error.status === 404) return vscode.FileSystemError.FileNotFound(uri);
      if (error.status === 403) return vscode.FileSystemError.NoPermissions(error.message);
    }
    return vscode.FileSystemError.Unavailable(errorMessage(error));
  }
}
