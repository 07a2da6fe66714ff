import "../stub/register";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { StratusClient } from "../../src/api/client";
import { LogStream, SseParser } from "../../src/api/sse";
import type { LogLine } from "../../src/api/types";
import { TOKEN } from "../support/fakeStratus";

describe("SseParser", () => {
  it("parses events split anywhere, with CRLF, comments, multi-line data and a sticky id", () => {
    const p = new SseParser();
    const text = ": stream open\r\n\r\nid: 7\r\nevent: backlog\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: heartbeat\n\nevent: lines\ndata: x\n\nretry: 3000\nid: 8\ndata:y\n\n";
    const events = [];
    for (let i = 0; i < text.length; i += 3) events.push(...p.feed(text.slice(i, i + 3)));
    assert.deepEqual(events, [
      { id: "7", event: "backlog", data: '{"a":\n1}' },
      { id: "7", event: "lines", data: "x" },
      { id: "8", event: "message", data: "y" },
    ]);
    assert.equal(p.lastEventId, "8");
    assert.equal(p.retryMs, 3000);
  });

  it("waits for the end of an event before emitting it", () => {
    const p = new SseParser();
    assert.deepEqual(p.feed("id: 1\ndata: a"), []);
    assert.deepEqual(p.feed("\n"), []);
    assert.deepEqual(p.feed("\n"), [{ id: "1", event: "message", data: "a" }]);
  });
});

const line = (id: number): LogLine => ({ id, ts: "2026-01-01T00:00:00Z", stream: "stdout", level: "info", request_id: null, version: 1, environment: "dev", text: `line ${id}` });
const event = (type: string, lines: LogLine[]) => `id: ${lines.at(-1)?.id}\nevent: ${type}\ndata: ${JSON.stringify({ type, lines, cursor: lines.at(-1)?.id })}\n\n`;

describe("LogStream", () => {
  const connections: { lastEventId?: string; query: string }[] = [];
  let server: http.Server;
  let url: string;
  before(async () => {
    // First connection: the backlog (1, 2), then the connection drops. Second: must resume
    // with Last-Event-ID 2 and gets 3, then a closing event.
    server = http.createServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401, { "Content-Type": "application/json" }).end('{"error":{"code":"x","message":"bad token","fields":{}}}');
        return;
      }
      const q = new URL(req.url ?? "/", "http://x").searchParams;
      if (q.get("q") === "(?=bad)") {
        res.writeHead(400, { "Content-Type": "application/json" }).end('{"error":{"code":"invalid_filter","message":"q: lookaround is not supported.","fields":{}}}');
        return;
      }
      connections.push({ lastEventId: req.headers["last-event-id"] as string | undefined, query: q.toString() });
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      if (connections.length === 1) {
        res.write(": stream open\n\n");
        res.write(event("backlog", [line(1), line(2)]));
        setTimeout(() => res.destroy(), 20);
      } else {
        res.write(event("lines", [line(3)]));
        res.end(`event: closing\ndata: {"type":"closing","reason":"function_deleted"}\n\n`);
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it("resumes with Last-Event-ID after a drop: every line once", async () => {
    const seen: number[] = [];
    const disconnects: unknown[] = [];
    let closing = "";
    const client = new StratusClient({ baseUrl: url, token: TOKEN });
    const stream = new LogStream(
      client,
      42,
      { environment: "dev", backlog: 50 },
      {
        onLines: (lines) => seen.push(...lines.map((l) => l.id)),
        onDisconnect: (e) => disconnects.push(e),
        onClosing: (reason) => (closing = reason),
      },
      { retryMs: 10 },
    );
    await stream.run();
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal(connections[0].lastEventId, undefined);
    assert.equal(connections[0].query, "environment=dev&backlog=50");
    assert.equal(connections[1].lastEventId, "2");
    assert.equal(connections[1].query, "environment=dev", "no backlog on a resume");
    assert.equal(disconnects.length, 1);
    assert.equal(closing, "function_deleted");
    assert.equal(stream.cursor, "3");
  });

  it("a bad filter is fatal, with the envelope's message, and not retried", async () => {
    const before = connections.length;
    let fatal: Error | undefined;
    const client = new StratusClient({ baseUrl: url, token: TOKEN });
    await new LogStream(client, 42, { q: "(?=bad)" }, { onLines: () => undefined, onFatal: (e) => (fatal = e as Error) }, { retryMs: 10 }).run();
    assert.equal(fatal?.message, "q: lookaround is not supported.");
    assert.equal(connections.length, before);
  });
});
