/**
 * Server-Sent Events over fetch (the WHATWG event-stream format), for the log tail
 * (`GET /api/v1/functions/{id}/logs/stream`, docs/LOGS.md). EventSource cannot send an
 * Authorization header, hence a parser of our own; it keeps the last event id so a
 * reconnect resumes with `Last-Event-ID` and no line is shown twice or lost.
 */
import type { StratusClient } from "./client";
import { apiErrorFromBody } from "./errors";
import type { LogFilters, LogLine } from "./types";

export interface SseEvent {
  id: string | null;
  event: string;
  data: string;
}

/** Incremental parser: feed it text chunks as they arrive, it returns whole events. */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private eventType = "";
  private eventId: string | null = null;
  /** The last id the stream set (persists across events, as the spec says). */
  lastEventId: string | null = null;
  /** The `retry:` value in ms, if the server sent one. */
  retryMs: number | null = null;

  feed(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const events: SseEvent[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === "") {
      if (this.data.length === 0) {
        this.eventType = "";
        return null;
      }
      const event = { id: this.lastEventId, event: this.eventType || "message", data: this.data.join("\n") };
      this.data = [];
      this.eventType = "";
      return event;
    }
    if (line.startsWith(":")) return null; // a comment: heartbeat
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.eventType = value;
        break;
      case "id":
        if (!value.includes("\0")) {
          this.eventId = value;
          this.lastEventId = value;
        }
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
    }
    return null;
  }
}

export interface LogStreamHandlers {
  onLines(lines: LogLine[], kind: "backlog" | "lines"): void;
  onDropped?(count: number, reason: string): void;
  onClosing?(reason: string): void;
  /** A connection attempt failed or dropped; the stream retries after `retryInMs`. */
  onDisconnect?(error: unknown, retryInMs: number): void;
  /** A fatal error (4xx: bad filter, not found, bad token): no retry. */
  onFatal?(error: unknown): void;
  onConnected?(): void;
}

/**
 * A log tail that reconnects with Last-Event-ID. `stop()` ends it; `cursor` is the last
 * line id seen, so a paused tail resumed later (a new LogStream with `after: cursor`)
 * shows what was printed meanwhile.
 */
export class LogStream {
  cursor: string | null;
  private controller: AbortController | null = null;
  private stopped = false;
  private readonly minRetryMs: number;

  constructor(
    private readonly client: StratusClient,
    private readonly functionId: number,
    private readonly filters: LogFilters & { backlog?: number },
    private readonly handlers: LogStreamHandlers,
    options: { after?: string | null; retryMs?: number } = {},
  ) {
    this.cursor = options.after ?? null;
    this.minRetryMs = options.retryMs ?? 1000;
  }

  /** Runs until stop() or a fatal answer. */
  async run(): Promise<void> {
    let retry = this.minRetryMs;
    while (!this.stopped) {
      try {
        await this.connectOnce();
        retry = this.minRetryMs;
        if (this.stopped) return;
        this.handlers.onDisconnect?.(new Error("The log stream ended."), retry);
      } catch (error) {
        if (this.stopped) return;
        if (isFatal(error)) {
          this.handlers.onFatal?.(error);
          return;
        }
        this.handlers.onDisconnect?.(error, retry);
      }
      await sleep(retry);
      retry = Math.min(retry * 2, 30_000);
    }
  }

  stop(): void {
    this.stopped = true;
    this.controller?.abort();
  }

  private async connectOnce(): Promise<void> {
    this.controller = new AbortController();
    const query: Record<string, string | number | undefined> = { ...this.filters };
    const headers: Record<string, string> = { ...this.client.authHeaders(), Accept: "text/event-stream" };
    if (this.cursor !== null) {
      headers["Last-Event-ID"] = this.cursor;
      delete query.backlog;
    }
    const url = this.client.apiUrl(`functions/${this.functionId}/logs/stream`, query);
    const response = await this.client.rawFetch(url, { headers, signal: this.controller.signal });
    if (!response.ok || !response.body) {
      throw apiErrorFromBody(response.status, response.statusText, await response.text(), response.headers);
    }
    this.handlers.onConnected?.();
    const parser = new SseParser();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const event of parser.feed(value)) {
        this.dispatch(event);
        if (parser.lastEventId !== null) this.cursor = parser.lastEventId;
      }
    }
  }

  private dispatch(event: SseEvent): void {
    let payload: { lines?: LogLine[]; count?: number; reason?: string };
    try {
      payload = JSON.parse(event.data);
    } catch {
      return;
    }
    if (event.event === "backlog" || event.event === "lines") {
      this.handlers.onLines(payload.lines ?? [], event.event);
    } else if (event.event === "dropped") {
      this.handlers.onDropped?.(payload.count ?? 0, payload.reason ?? "");
    } else if (event.event === "closing") {
      this.handlers.onClosing?.(payload.reason ?? "");
      this.stopped = true;
    }
  }
}

function isFatal(error: unknown): boolean {
  const status = (error as { status?: number })?.status;
  return typeof status === "number" && status >= 400 && status < 500 && status !== 408 && status !== 429;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
