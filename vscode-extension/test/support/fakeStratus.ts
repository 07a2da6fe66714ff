/**
 * A small HTTP server speaking the parts of /api/v1 the unit tests need, from memory, on a
 * real socket (127.0.0.1, a free port). It checks the Bearer token and answers errors with
 * the API's envelope; `requests` records what the client sent. It is a stand-in for the
 * Django console in the unit tests only: the integration tests (test/web/) use a real one.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

export const TOKEN = "stt_test_token";

export interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

type Route = (req: Recorded, m: RegExpMatchArray) => { status: number; body?: unknown; headers?: Record<string, string>; raw?: string } | undefined;

export const sha = (text: string) => createHash("sha256").update(text).digest("hex");

export class FakeStratus {
  server = http.createServer((req, res) => this.handle(req, res));
  requests: Recorded[] = [];
  port = 0;
  draft = new Map<string, { content: string; updated: string }>([["main.py", { content: "print('v1')\n", updated: "2026-01-01T00:00:00Z" }]]);
  revision = 1;
  versions = new Map<number, Map<string, string>>([[1, new Map([["main.py", "print('v0')\n"]])]]);
  /** Routes tried before the built-in ones (a test's special answers). */
  extra: [string, RegExp, Route][] = [];

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(port, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Someone else saves the file (another editor, the WebIDE). */
  otherWriter(path: string, content: string): void {
    this.draft.set(path, { content, updated: new Date().toISOString() });
    this.revision++;
  }

  private routes(): [string, RegExp, Route][] {
    const env = (name: string, isProtected = false) => ({ name, protected: isProtected });
    return [
      ...this.extra,
      ["GET", /^\/api\/v1\/me\/$/, () => ({ status: 200, body: { id: 1, username: "alice", email: "a@x", orgs: [], token_scopes: [] } })],
      ["GET", /^\/api\/v1\/orgs\/$/, () => ({ status: 200, body: page([{ slug: "demo", name: "Demo Inc.", role: "owner" }]) })],
      [
        "GET",
        /^\/api\/v1\/projects\/(?:\?.*)?$/,
        () => ({ status: 200, body: page([{ id: 7, org: "demo", slug: "shop", name: "Shop", role: "owner", environments: [env("dev"), env("prod", true)] }]) }),
      ],
      ["GET", /^\/api\/v1\/projects\/7\/$/, () => ({ status: 200, body: { id: 7, org: "demo", slug: "shop", name: "Shop", role: "owner", environments: [env("dev"), env("prod", true)] } })],
      ["GET", /^\/api\/v1\/projects\/7\/functions\/$/, () => ({ status: 200, body: page([FN]) })],
      ["GET", /^\/api\/v1\/functions\/42\/$/, () => ({ status: 200, body: FN })],
      [
        "GET",
        /^\/api\/v1\/functions\/42\/draft\/$/,
        () => ({
          status: 200,
          headers: { ETag: `"rev-${this.revision}"` },
          body: {
            revision: this.revision,
            etag: `rev-${this.revision}`,
            files: [...this.draft].map(([path, f]) => ({ path, size: f.content.length, sha256: sha(f.content), updated_at: f.updated, binary: false })),
          },
        }),
      ],
      [
        "GET",
        /^\/api\/v1\/functions\/42\/draft\/files\/(.+)$/,
        (_r, m) => {
          const f = this.draft.get(decodeURIComponent(m[1]));
          if (!f) return err(404, "not_found", `File '${m[1]}' is not in the draft.`);
          return { status: 200, headers: { ETag: `"${sha(f.content)}"` }, body: { path: m[1], content: f.content, encoding: "utf-8", sha256: sha(f.content), size: f.content.length } };
        },
      ],
      [
        "PUT",
        /^\/api\/v1\/functions\/42\/draft\/files\/(.+)$/,
        (r, m) => {
          const path = decodeURIComponent(m[1]);
          const existing = this.draft.get(path);
          const ifMatch = (r.headers["if-match"] as string | undefined)?.replace(/"/g, "");
          const ifNoneMatch = r.headers["if-none-match"];
          if (ifMatch && (!existing || sha(existing.content) !== ifMatch)) {
            return err(409, "stale_write", `File '${path}' changed since you read it: If-Match was '${ifMatch}'. Re-read the file and retry.`);
          }
          if (ifNoneMatch === "*" && existing) return err(409, "exists", `File '${path}' already exists.`);
          const { content, encoding } = JSON.parse(r.body) as { content: string; encoding: string };
          const text = encoding === "base64" ? Buffer.from(content, "base64").toString("utf-8") : content;
          this.otherWriter(path, text);
          return { status: existing ? 200 : 201, headers: { ETag: `"${sha(text)}"` }, body: { path, size: text.length, sha256: sha(text), revision: this.revision } };
        },
      ],
      [
        "GET",
        /^\/api\/v1\/functions\/42\/versions\/$/,
        () => ({ status: 200, body: page([...this.versions.keys()].map((number) => ({ number, sha256: "x", file_count: 1, message: `v${number}`, author: "alice", source: "draft", created_at: "2026-01-01T00:00:00Z" }))) }),
      ],
      [
        "GET",
        /^\/api\/v1\/functions\/42\/versions\/(\d+)\/files\/$/,
        (_r, m) => ({ status: 200, body: [...(this.versions.get(Number(m[1])) ?? new Map())].map(([path, c]) => ({ path, size: c.length, sha256: sha(c) })) }),
      ],
      [
        "GET",
        /^\/api\/v1\/functions\/42\/versions\/(\d+)\/files\/(.+)$/,
        (_r, m) => {
          const c = this.versions.get(Number(m[1]))?.get(m[2]);
          return c === undefined ? err(404, "not_found", "no such file") : { status: 200, body: { path: m[2], content: c, encoding: "utf-8", sha256: sha(c), size: c.length } };
        },
      ],
      [
        "GET",
        /^\/api\/v1\/functions\/42\/bindings\/$/,
        () => ({
          status: 200,
          body: page([{ environment: "dev", traffic: [{ version: 1, weight: 90 }, { version: 2, weight: 10 }], auth_mode: "token", url: "http://fn.local/fn/demo/shop/dev/hello/", status: "ready", status_message: "" }]),
        }),
      ],
      [
        "GET",
        /^\/api\/v1\/functions\/42\/releases\/(?:\?.*)?$/,
        () => ({
          status: 200,
          body: page([
            { id: 5, function: 42, environment: "dev", version: 2, stable_version: 1, state: "running", percent: 10, steps: [10, 50, 100], step_index: 0, next_step_at: null, failure: null },
            { id: 4, function: 42, environment: "prod", version: 1, stable_version: null, state: "completed", percent: 100, steps: [100], step_index: 0, next_step_at: null, failure: null },
          ]),
        }),
      ],
      ["GET", /^\/api\/v1\/functions\/42\/test-events\/$/, () => ({ status: 200, body: page([{ id: 1, function: 42, name: "simple", body: { a: 1 }, shared: true, created_by: "alice" }]) })],
      ["GET", /^\/api\/v1\/functions\/42\/triggers\/$/, () => ({ status: 200, body: page([]) })],
      ["POST", /^\/api\/v1\/functions\/42\/deploy$/, () => err(400, "invalid", "environment: No environment 'qa' in project 'shop'.", { environment: ["No environment 'qa'."] })],
    ];
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const r: Recorded = { method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers, body };
      this.requests.push(r);
      const send = (status: number, payload: unknown, headers: Record<string, string> = {}, raw?: string) => {
        res.writeHead(status, { "Content-Type": raw === undefined ? "application/json" : "text/html", ...headers });
        res.end(raw ?? JSON.stringify(payload));
      };
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        send(401, { error: { code: "not_authenticated", message: "Invalid or revoked token.", fields: {} } });
        return;
      }
      for (const [method, re, route] of this.routes()) {
        const m = r.url.match(re);
        if (method === r.method && m) {
          const out = route(r, m);
          if (out) {
            send(out.status, out.body, out.headers, out.raw);
            return;
          }
        }
      }
      send(404, { error: { code: "not_found", message: `No API route matches ${r.url}.`, fields: {} } });
    });
  }
}

export const FN = { id: 42, org: "demo", project: 7, name: "hello", runtime: "python3.11", handler: "main.handler", kind: "event" };

function page<T>(results: T[]) {
  return { count: results.length, next: null, previous: null, results };
}

export function err(status: number, code: string, message: string, fields: Record<string, unknown> = {}) {
  return { status, body: { error: { code, message, fields } } };
}
