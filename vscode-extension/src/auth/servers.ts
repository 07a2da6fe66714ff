/**
 * The servers the user signed in to: URL and username in globalState, the personal API
 * token in SecretStorage (never in settings or globalState). Each server has a short `id`
 * (its host[:port]) that names it in `stratus://<id>/...` URIs and tree node ids.
 */
import * as vscode from "vscode";
import { StratusClient, normalizeServerUrl } from "../api/client";
import type { ServerUnreachableError } from "../api/errors";

export interface ServerInfo {
  id: string;
  url: string;
  username: string;
}

const KEY = "stratus.servers";
const secretKey = (id: string) => `stratus.token.${id}`;

export interface ClientHooks {
  onUnreachable?(server: ServerInfo, error: ServerUnreachableError): void;
  onReachable?(server: ServerInfo): void;
}

export class ServerStore {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;
  private readonly clients = new Map<string, StratusClient>();

  constructor(
    private readonly state: vscode.Memento,
    private readonly secrets: vscode.SecretStorage,
    private readonly hooks: ClientHooks = {},
    private readonly fetchImpl?: typeof fetch,
  ) {}

  list(): ServerInfo[] {
    return this.state.get<ServerInfo[]>(KEY, []);
  }

  get(id: string): ServerInfo | undefined {
    return this.list().find((s) => s.id === id);
  }

  async token(id: string): Promise<string | undefined> {
    return this.secrets.get(secretKey(id));
  }

  /** The id a server URL gets: host[:port], made unique among the stored servers. */
  idFor(url: string): string {
    const normalized = normalizeServerUrl(url);
    const existing = this.list().find((s) => s.url === normalized);
    if (existing) return existing.id;
    const base = new URL(normalized).host.toLowerCase();
    let id = base;
    for (let n = 2; this.get(id); n++) id = `${base}~${n}`;
    return id;
  }

  /** Check the token against /me/ and keep it; throws the API's error if it is refused. */
  async add(url: string, token: string): Promise<ServerInfo> {
    const normalized = normalizeServerUrl(url);
    const probe = new StratusClient({ baseUrl: normalized, token, fetch: this.fetchImpl });
    const me = await probe.me();
    const server: ServerInfo = { id: this.idFor(normalized), url: normalized, username: me.username };
    await this.secrets.store(secretKey(server.id), token);
    await this.state.update(KEY, [...this.list().filter((s) => s.id !== server.id), server]);
    this.clients.delete(server.id);
    this.changed.fire();
    return server;
  }

  async remove(id: string): Promise<void> {
    await this.secrets.delete(secretKey(id));
    await this.state.update(
      KEY,
      this.list().filter((s) => s.id !== id),
    );
    this.clients.delete(id);
    this.changed.fire();
  }

  /** The client of a stored server (one per server, so its "unreachable once" state is shared). */
  async client(id: string): Promise<StratusClient> {
    const cached = this.clients.get(id);
    if (cached) return cached;
    const server = this.get(id);
    const token = await this.token(id);
    if (!server || !token) {
      throw new Error(`Not signed in to ${server?.url ?? id}: run "Stratus: Sign In".`);
    }
    const client = new StratusClient({
      baseUrl: server.url,
      token,
      fetch: this.fetchImpl,
      onUnreachable: (error) => this.hooks.onUnreachable?.(server, error),
      onReachable: () => this.hooks.onReachable?.(server),
    });
    this.clients.set(id, client);
    return client;
  }
}
