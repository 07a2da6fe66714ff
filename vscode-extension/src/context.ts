/** What the commands share: the servers, the tree, the file system, the log tail, the status bar. */
import * as vscode from "vscode";
import type { FunctionInfo } from "./api/types";
import type { ServerStore } from "./auth/servers";
import type { StratusFileSystemProvider } from "./fs/provider";
import type { LogTail } from "./logs/tail";
import type { StratusTreeProvider } from "./tree/provider";

export interface FunctionTarget {
  serverId: string;
  fn: FunctionInfo;
}

export interface Ctx {
  extension: vscode.ExtensionContext;
  store: ServerStore;
  tree: StratusTreeProvider;
  fs: StratusFileSystemProvider;
  tail: LogTail;
  statusBar: vscode.StatusBarItem;
  /** Signs in to one server (asks URL and token); undefined when cancelled. */
  signIn(): Promise<import("./auth/servers").ServerInfo | undefined>;
  activeEnvironment(): string;
  setActiveEnvironment(name: string): Promise<void>;
}
