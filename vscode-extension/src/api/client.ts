/**
 * The client of Stratus's /api/v1 (Bearer token). fetch only, so one module serves the
 * desktop and the web extension host.
 *
 * Failures: an answer with the error envelope becomes an ApiError carrying its message; a
 * server that cannot be reached becomes a ServerUnreachableError, and `onUnreachable` is
 * called once per outage (the first failure after a success), so a tree refresh that makes
 * ten calls does not raise ten notifications.
 */
import { encodeContent } from "./base64";
import { ApiError, ServerUnreachableError, apiErrorFromBody } from "./errors";
import type {
  Binding,
  DraftFileMeta,
  DraftTree,
  FileContent,
  FunctionInfo,
  InvokeResult,
  Me,
  Org,
  Page,
  Project,
  Release,
  ReleasePlan,
  TestEvent,
  Trigger,
  Version,
} from "./types";

export type FetchLike = typeof fetch;

export interface ClientOptions {
  baseUrl: string;
  token: string;
  fetch?: FetchLike;
  /** Called on the first unreachable failure after a success (or since creation). */
  onUnreachable?: (error: ServerUnreachableError) => void;
  /** Called when the server answers again after an outage. */
  onReachable?: () => void;
  timeoutMs?: number;
}

export interface Answer<T> {
  status: number;
  data: T;
  headers: Headers;
}

export type ReleaseAction = "promote" | "promote-all" | "pause" | "resume" | "abort" | "approve" | "reject";

/** `"abc"` or `W/"abc"` → `abc` (the API sends quoted ETags and accepts both). */
export function unquoteEtag(value: string | null): string | null {
  if (value === null) return null;
  let v = value.trim();
  if (v.startsWith("W/")) v = v.slice(2);
  return v.replace(/^"|"$/g, "");
}

function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

export class StratusClient {
  readonly baseUrl: string;
  private readonly token: string;
  private readonly fetchImpl: FetchLike;
  private readonly timeoutMs: number;
  private unreachable = false;

  constructor(private readonly options: ClientOptions) {
    this.baseUrl = normalizeServerUrl(options.baseUrl);
    this.token = options.token;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  /** The absolute URL of an API path ("functions/1/" → https://host/api/v1/functions/1/). */
  apiUrl(path: string, query?: Record<string, string | number | undefined | null>): string {
    const url = new URL(`${this.baseUrl}/api/v1/${path.replace(/^\//, "")}`);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  /** A console page's URL (for "open in the console"). */
  consoleUrl(path: string): string {
    return `${this.baseUrl}/${path.replace(/^\//, "")}`;
  }

  authHeaders(): Record<string, string> {
    return { Authorization: `Bearer ${this.token}` };
  }

  /**
   * One request. Resolves on 2xx/304; rejects with ApiError (any other status) or
   * ServerUnreachableError (no answer).
   */
  async request<T>(
    method: string,
    path: string,
    init: {
      body?: unknown;
      headers?: Record<string, string>;
      query?: Record<string, string | number | undefined | null>;
      signal?: AbortSignal;
    } = {},
  ): Promise<Answer<T>> {
    const headers: Record<string, string> = { Accept: "application/json", ...this.authHeaders(), ...init.headers };
    let body: string | undefined;
    if (init.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(init.body);
    }
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const signal = init.signal ? anySignal([init.signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await this.fetchImpl(this.apiUrl(path, init.query), { method, headers, body, signal });
    } catch (cause) {
      if (init.signal?.aborted) throw cause;
      throw this.markUnreachable(cause);
    }
    this.markReachable();
    const text = await response.text();
    if (!response.ok && response.status !== 304) {
      throw apiErrorFromBody(response.status, response.statusText, text, response.headers);
    }
    let data: unknown = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    return { status: response.status, data: data as T, headers: response.headers };
  }

  /** Run a raw fetch (e.g. the SSE stream) with the same reachability bookkeeping. */
  async rawFetch(url: string, init: RequestInit): Promise<Response> {
    try {
      const response = await this.fetchImpl(url, init);
      this.markReachable();
      return response;
    } catch (cause) {
      if (init.signal?.aborted) throw cause;
      throw this.markUnreachable(cause);
    }
  }

  private markUnreachable(cause: unknown): ServerUnreachableError {
    const error = new ServerUnreachableError(this.baseUrl, cause);
    if (!this.unreachable) {
      this.unreachable = true;
      this.options.onUnreachable?.(error);
    }
    return error;
  }

  private markReachable(): void {
    if (this.unreachable) {
      this.unreachable = false;
      this.options.onReachable?.();
    }
  }

  private async get<T>(path: string, query?: Record<string, string | number | undefined>): Promise<T> {
    return (await this.request<T>("GET", path, { query })).data;
  }

  private async post<T>(path: string, body: unknown = {}): Promise<T> {
    return (await this.request<T>("POST", path, { body })).data;
  }

  /** Every page of a list (follows `next`, at most `maxPages`). */
  private async list<T>(path: string, query?: Record<string, string | number | undefined>, maxPages = 20): Promise<T[]> {
    const out: T[] = [];
    let page = await this.get<Page<T> | T[]>(path, query);
    for (let i = 0; ; i++) {
      if (Array.isArray(page)) return [...out, ...page];
      out.push(...page.results);
      if (!page.next || i + 1 >= maxPages) return out;
      const next = new URL(page.next);
      const rel = next.pathname.replace(/^.*?\/api\/v1\//, "") + next.search;
      page = (await this.request<Page<T>>("GET", rel)).data;
    }
  }

  // --- who, orgs, projects, functions ---------------------------------------------------
  me(): Promise<Me> {
    return this.get("me/");
  }
  orgs(): Promise<Org[]> {
    return this.list("orgs/");
  }
  projects(org?: string): Promise<Project[]> {
    return this.list("projects/", { org });
  }
  project(projectId: number): Promise<Project> {
    return this.get(`projects/${projectId}/`);
  }
  functions(projectId: number): Promise<FunctionInfo[]> {
    return this.list(`projects/${projectId}/functions/`);
  }
  function(functionId: number): Promise<FunctionInfo> {
    return this.get(`functions/${functionId}/`);
  }
  functionCreate(projectId: number, body: { name: string; runtime: string; handler: string; kind?: string }): Promise<FunctionInfo> {
    return this.post(`projects/${projectId}/functions/`, body);
  }

  // --- draft ------------------------------------------------------------------------------
  async draft(functionId: number): Promise<DraftTree> {
    return this.get(`functions/${functionId}/draft/`);
  }
  /** A draft file with its ETag (the sha256, unquoted). */
  async draftFile(functionId: number, path: string): Promise<{ file: FileContent; etag: string }> {
    const answer = await this.request<FileContent>("GET", `functions/${functionId}/draft/files/${encodePath(path)}`);
    return { file: answer.data, etag: unquoteEtag(answer.headers.get("ETag")) ?? answer.data.sha256 };
  }
  /**
   * Write a draft file. `ifMatch`: the ETag it was read with (409 `stale_write` if it
   * changed since); `"*"` for create-only use ifNoneMatch.
   */
  async draftFileWrite(
    functionId: number,
    path: string,
    bytes: Uint8Array,
    guard: { ifMatch?: string; ifNoneMatch?: string } = {},
  ): Promise<{ meta: DraftFileMeta; etag: string; created: boolean }> {
    const headers: Record<string, string> = {};
    if (guard.ifMatch) headers["If-Match"] = `"${guard.ifMatch}"`;
    if (guard.ifNoneMatch) headers["If-None-Match"] = guard.ifNoneMatch;
    const answer = await this.request<DraftFileMeta>("PUT", `functions/${functionId}/draft/files/${encodePath(path)}`, {
      body: encodeContent(bytes),
      headers,
    });
    return {
      meta: answer.data,
      etag: unquoteEtag(answer.headers.get("ETag")) ?? answer.data.sha256,
      created: answer.status === 201,
    };
  }
  async draftFileDelete(functionId: number, path: string, ifMatch?: string): Promise<void> {
    await this.request("DELETE", `functions/${functionId}/draft/files/${encodePath(path)}`, {
      headers: ifMatch ? { "If-Match": `"${ifMatch}"` } : {},
    });
  }
  async draftRename(functionId: number, from: string, to: string): Promise<DraftTree> {
    return this.post(`functions/${functionId}/draft/rename`, { from, to });
  }
  draftPublish(functionId: number, message: string): Promise<Version> {
    return this.post(`functions/${functionId}/draft/publish`, { message });
  }

  // --- versions ---------------------------------------------------------------------------
  versions(functionId: number): Promise<Version[]> {
    return this.list(`functions/${functionId}/versions/`);
  }
  versionFiles(functionId: number, number: number): Promise<DraftFileMeta[]> {
    return this.list(`functions/${functionId}/versions/${number}/files/`);
  }
  versionFile(functionId: number, number: number, path: string): Promise<FileContent> {
    return this.get(`functions/${functionId}/versions/${number}/files/${encodePath(path)}`);
  }

  // --- environments, bindings, deploys ------------------------------------------------------
  bindings(functionId: number): Promise<Binding[]> {
    return this.list(`functions/${functionId}/bindings/`);
  }
  deploy(functionId: number, environment: string, version: number): Promise<Binding> {
    return this.post(`functions/${functionId}/deploy`, { environment, version });
  }
  rollback(functionId: number, environment: string, version?: number): Promise<Binding> {
    return this.post(`functions/${functionId}/rollback`, version ? { environment, version } : { environment });
  }

  // --- releases ----------------------------------------------------------------------------
  releases(functionId: number, environment?: string): Promise<Release[]> {
    return this.list(`functions/${functionId}/releases/`, { environment }, 1);
  }
  releaseStart(functionId: number, environment: string, version: number, plan: ReleasePlan): Promise<Release> {
    return this.post(`functions/${functionId}/releases/`, { environment, version, plan });
  }
  releaseAction(releaseId: number, action: ReleaseAction): Promise<Release> {
    return this.post(`releases/${releaseId}/${action}`);
  }

  // --- invoke, test events, triggers -------------------------------------------------------
  invoke(functionId: number, environment: string, event: unknown, version?: number): Promise<InvokeResult> {
    return this.post(`functions/${functionId}/invoke`, version ? { environment, event, version } : { environment, event });
  }
  testEvents(functionId: number): Promise<TestEvent[]> {
    return this.list(`functions/${functionId}/test-events/`);
  }
  testEventCreate(functionId: number, name: string, body: unknown, shared = false): Promise<TestEvent> {
    return this.post(`functions/${functionId}/test-events/`, { name, body, shared });
  }
  triggers(functionId: number): Promise<Trigger[]> {
    return this.list(`functions/${functionId}/triggers/`);
  }
}

/** "https://host:8000/" or "host:8000" → "https://host:8000" (no trailing slash, no /api/v1). */
export function normalizeServerUrl(input: string): string {
  let text = input.trim();
  if (!/^https?:\/\//i.test(text)) text = `https://${text}`;
  const url = new URL(text);
  let path = url.pathname.replace(/\/+$/, "");
  path = path.replace(/\/api\/v1$/, "");
  return `${url.protocol}//${url.host}${path}`;
}

function anySignal(signals: AbortSignal[]): AbortSignal {
  const controller = new AbortController();
  for (const s of signals) {
    if (s.aborted) {
      controller.abort(s.reason);
      break;
    }
    s.addEventListener("abort", () => controller.abort(s.reason), { once: true });
  }
  return controller.signal;
}

export { ApiError, ServerUnreachableError };
