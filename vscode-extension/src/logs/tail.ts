/**
 * The log tail: one reusable output channel ("Stratus Logs"), whichever function is tailed.
 * Pause stops the stream but keeps its cursor; resume reconnects with Last-Event-ID, so the
 * lines printed meanwhile appear, none twice, none lost.
 */
import * as vscode from "vscode";
import type { StratusClient } from "../api/client";
import { errorMessage } from "../api/errors";
import { LogStream } from "../api/sse";
import type { LogFilters, LogLine } from "../api/types";

export interface TailTarget {
  client: StratusClient;
  functionId: number;
  label: string;
}

export function formatLine(line: LogLine): string {
  const ts = line.ts.replace("T", " ").replace(/\.\d+Z$/, "Z");
  const where = [line.environment ?? "draft", line.version ? `v${line.version}` : null].filter(Boolean).join(" ");
  const level = line.level.toUpperCase().padEnd(5);
  return `${ts} ${level} [${where}] ${line.text}`;
}

export class LogTail implements vscode.Disposable {
  readonly channel: vscode.OutputChannel;
  private stream: LogStream | null = null;
  private target: TailTarget | null = null;
  filters: LogFilters = {};
  paused = false;
  private cursor: string | null = null;

  constructor(channel?: vscode.OutputChannel) {
    this.channel = channel ?? vscode.window.createOutputChannel("Stratus Logs");
  }

  get running(): boolean {
    return this.stream !== null;
  }

  /** Tail another function (or the same with new filters): same channel, cleared. */
  start(target: TailTarget, filters: LogFilters = this.filters): void {
    this.stopStream();
    this.target = target;
    this.filters = filters;
    this.cursor = null;
    this.paused = false;
    this.channel.clear();
    const described = Object.entries(filters)
      .filter(([, v]) => v !== undefined && v !== "")
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    this.channel.appendLine(`── tailing ${target.label}${described ? ` (${described})` : ""} ──`);
    this.channel.show(true);
    this.connect(200);
  }

  pause(): void {
    if (!this.stream) return;
    this.cursor = this.stream.cursor;
    this.stopStream();
    this.paused = true;
    this.channel.appendLine("── paused (resume shows what was printed meanwhile) ──");
  }

  resume(): void {
    if (!this.target || !this.paused) return;
    this.paused = false;
    this.channel.appendLine("── resumed ──");
    this.connect(0);
  }

  stop(): void {
    this.stopStream();
    this.paused = false;
    if (this.target) this.channel.appendLine("── stopped ──");
    this.target = null;
  }

  private connect(backlog: number): void {
    const target = this.target;
    if (!target) return;
    const stream = new LogStream(
      target.client,
      target.functionId,
      { ...this.filters, backlog },
      {
        onLines: (lines) => {
          for (const line of lines) this.channel.appendLine(formatLine(line));
        },
        onDropped: (count, reason) => this.channel.appendLine(`── ${count} lines not shown (${reason}); search them in the console ──`),
        onClosing: (reason) => {
          this.channel.appendLine(`── the server closed the tail: ${reason} ──`);
          this.stream = null;
        },
        onDisconnect: (error, retryIn) =>
          this.channel.appendLine(`── disconnected (${errorMessage(error)}); retrying in ${Math.round(retryIn / 1000)} s ──`),
        onFatal: (error) => {
          this.channel.appendLine(`── ${errorMessage(error)} ──`);
          void vscode.window.showErrorMessage(`Log tail: ${errorMessage(error)}`);
          this.stream = null;
        },
      },
      { after: this.cursor },
    );
    this.stream = stream;
    void stream.run();
  }

  private stopStream(): void {
    this.stream?.stop();
    this.stream = null;
  }

  dispose(): void {
    this.stopStream();
    this.channel.dispose();
  }
}
