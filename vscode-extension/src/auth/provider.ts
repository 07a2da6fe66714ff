/**
 * An AuthenticationProvider over the ServerStore, so each signed-in Stratus server shows
 * in the Accounts menu (and "Sign Out" there removes its token).
 */
import * as vscode from "vscode";
import type { ServerInfo, ServerStore } from "./servers";

export const AUTH_PROVIDER_ID = "stratus";

export class StratusAuthenticationProvider implements vscode.AuthenticationProvider, vscode.Disposable {
  private readonly sessionsChanged = new vscode.EventEmitter<vscode.AuthenticationProviderAuthenticationSessionsChangeEvent>();
  readonly onDidChangeSessions = this.sessionsChanged.event;
  private known: Map<string, vscode.AuthenticationSession> = new Map();
  private readonly subscription: vscode.Disposable;

  constructor(
    private readonly store: ServerStore,
    private readonly askForServer: () => Promise<ServerInfo | undefined>,
  ) {
    this.subscription = store.onDidChange(() => void this.announceChanges());
  }

  dispose(): void {
    this.subscription.dispose();
    this.sessionsChanged.dispose();
  }

  private async session(server: ServerInfo): Promise<vscode.AuthenticationSession | undefined> {
    const token = await this.store.token(server.id);
    if (!token) return undefined;
    return {
      id: server.id,
      accessToken: token,
      account: { id: `${server.username}@${server.id}`, label: `${server.username} @ ${server.url}` },
      scopes: [],
    };
  }

  async getSessions(): Promise<vscode.AuthenticationSession[]> {
    const out: vscode.AuthenticationSession[] = [];
    for (const server of this.store.list()) {
      const s = await this.session(server);
      if (s) out.push(s);
    }
    return out;
  }

  async createSession(): Promise<vscode.AuthenticationSession> {
    const server = await this.askForServer();
    if (!server) throw new Error("Sign-in cancelled.");
    const s = await this.session(server);
    if (!s) throw new Error(`No token stored for ${server.url}.`);
    return s;
  }

  async removeSession(sessionId: string): Promise<void> {
    await this.store.remove(sessionId);
  }

  /** Compare the stored servers with what was announced last and fire the difference. */
  private async announceChanges(): Promise<void> {
    const now = new Map((await this.getSessions()).map((s) => [s.id, s]));
    const added = [...now.values()].filter((s) => !this.known.has(s.id));
    const removed = [...this.known.values()].filter((s) => !now.has(s.id));
    const changed = [...now.values()].filter((s) => this.known.has(s.id) && this.known.get(s.id)?.accessToken !== s.accessToken);
    this.known = now;
    if (added.length || removed.length || changed.length) this.sessionsChanged.fire({ added, removed, changed });
  }

  async init(): Promise<void> {
    this.known = new Map((await this.getSessions()).map((s) => [s.id, s]));
  }
}
