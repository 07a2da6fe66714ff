/**
 * A stub of the `vscode` module for unit tests: just enough of the API for the code under
 * test, with recorders (shown messages, executed commands) the tests read. Not a test file.
 */
/* eslint-disable @typescript-eslint/no-explicit-any */

export const recorded = {
  errors: [] as string[],
  warnings: [] as string[],
  infos: [] as string[],
  commands: [] as { id: string; args: unknown[] }[],
  reset() {
    this.errors.length = 0;
    this.warnings.length = 0;
    this.infos.length = 0;
    this.commands.length = 0;
  },
};

export class Disposable {
  constructor(private readonly fn: () => void = () => undefined) {}
  dispose(): void {
    this.fn();
  }
}

export class EventEmitter<T> {
  private listeners: ((e: T) => void)[] = [];
  event = (listener: (e: T) => void): Disposable => {
    this.listeners.push(listener);
    return new Disposable(() => (this.listeners = this.listeners.filter((l) => l !== listener)));
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) l(e);
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly authority: string,
    readonly path: string,
    readonly query: string,
    readonly fragment: string,
  ) {}
  static from(c: { scheme: string; authority?: string; path?: string; query?: string; fragment?: string }): Uri {
    return new Uri(c.scheme, c.authority ?? "", c.path ?? "", c.query ?? "", c.fragment ?? "");
  }
  static parse(text: string): Uri {
    const m = /^([^:]+):(?:\/\/([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$/.exec(text);
    if (!m) throw new Error(`bad uri ${text}`);
    return new Uri(m[1], m[2] ?? "", m[3] ?? "", m[4] ?? "", m[5] ?? "");
  }
  static joinPath(base: Uri, ...parts: string[]): Uri {
    return base.with({ path: [base.path.replace(/\/$/, ""), ...parts].join("/") });
  }
  with(change: { scheme?: string; authority?: string; path?: string; query?: string; fragment?: string }): Uri {
    return new Uri(
      change.scheme ?? this.scheme,
      change.authority ?? this.authority,
      change.path ?? this.path,
      change.query ?? this.query,
      change.fragment ?? this.fragment,
    );
  }
  toString(): string {
    return `${this.scheme}://${this.authority}${this.path}${this.query ? `?${this.query}` : ""}${this.fragment ? `#${this.fragment}` : ""}`;
  }
}

export enum FileType {
  Unknown = 0,
  File = 1,
  Directory = 2,
  SymbolicLink = 64,
}
export enum FilePermission {
  Readonly = 1,
}
export enum FileChangeType {
  Changed = 1,
  Created = 2,
  Deleted = 3,
}

export class FileSystemError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
  static FileNotFound(what?: unknown) {
    return new FileSystemError(`FileNotFound: ${String(what)}`, "FileNotFound");
  }
  static FileExists(what?: unknown) {
    return new FileSystemError(`FileExists: ${String(what)}`, "FileExists");
  }
  static FileIsADirectory(what?: unknown) {
    return new FileSystemError(`FileIsADirectory: ${String(what)}`, "FileIsADirectory");
  }
  static NoPermissions(what?: unknown) {
    return new FileSystemError(String(what), "NoPermissions");
  }
  static Unavailable(what?: unknown) {
    return new FileSystemError(String(what), "Unavailable");
  }
}

export enum TreeItemCollapsibleState {
  None = 0,
  Collapsed = 1,
  Expanded = 2,
}

export class ThemeIcon {
  constructor(readonly id: string) {}
}

export class TreeItem {
  description?: string;
  tooltip?: string;
  contextValue?: string;
  iconPath?: ThemeIcon;
  id?: string;
  resourceUri?: Uri;
  command?: { command: string; title: string; arguments?: unknown[] };
  constructor(
    readonly label: string,
    readonly collapsibleState: TreeItemCollapsibleState = TreeItemCollapsibleState.None,
  ) {}
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}
export enum ProgressLocation {
  Notification = 15,
}

export class FakeOutputChannel {
  lines: string[] = [];
  constructor(readonly name: string) {}
  appendLine(line: string): void {
    this.lines.push(line);
  }
  append(text: string): void {
    this.lines.push(text);
  }
  clear(): void {
    this.lines = [];
  }
  show(): void {}
  hide(): void {}
  dispose(): void {}
}

export const window = {
  showErrorMessage: async (m: string) => void recorded.errors.push(m),
  showWarningMessage: async (m: string) => void recorded.warnings.push(m),
  showInformationMessage: async (m: string) => void recorded.infos.push(m),
  createOutputChannel: (name: string) => new FakeOutputChannel(name),
  setStatusBarMessage: () => new Disposable(),
  activeTextEditor: undefined as any,
};

export const commands = {
  executeCommand: async (id: string, ...args: unknown[]) => void recorded.commands.push({ id, args }),
  registerCommand: () => new Disposable(),
};

export const workspace = {
  getConfiguration: () => ({ get: (_k: string, d?: unknown) => d }),
};

/** An in-memory Memento and SecretStorage, for ServerStore. */
export class MemoryMemento {
  private data = new Map<string, unknown>();
  get<T>(key: string, fallback?: T): T | undefined {
    return this.data.has(key) ? (this.data.get(key) as T) : fallback;
  }
  async update(key: string, value: unknown): Promise<void> {
    this.data.set(key, value);
  }
  keys(): string[] {
    return [...this.data.keys()];
  }
}
export class MemorySecrets {
  data = new Map<string, string>();
  onDidChange = new EventEmitter<unknown>().event;
  async get(key: string) {
    return this.data.get(key);
  }
  async store(key: string, value: string) {
    this.data.set(key, value);
  }
  async delete(key: string) {
    this.data.delete(key);
  }
}
