/** The explorer tree's nodes: plain data, one `kind` each; StratusTreeProvider renders them. */
import type { Binding, DraftFileMeta, FunctionInfo, Org, Project, Release, TestEvent, Trigger, Version } from "../api/types";
import type { ServerInfo } from "../auth/servers";

export type GroupKind = "draft" | "versions" | "environments" | "testEvents" | "triggers";

export type Node =
  | { kind: "server"; server: ServerInfo }
  | { kind: "org"; serverId: string; org: Org }
  | { kind: "project"; serverId: string; project: Project }
  | { kind: "function"; serverId: string; fn: FunctionInfo }
  | { kind: "group"; serverId: string; fn: FunctionInfo; group: GroupKind }
  | { kind: "draftFile"; serverId: string; fn: FunctionInfo; file: DraftFileMeta }
  | { kind: "version"; serverId: string; fn: FunctionInfo; version: Version; serving: string[] }
  | { kind: "versionFile"; serverId: string; fn: FunctionInfo; version: number; file: DraftFileMeta }
  | { kind: "environment"; serverId: string; fn: FunctionInfo; name: string; binding?: Binding; release?: Release }
  | { kind: "testEvent"; serverId: string; fn: FunctionInfo; event: TestEvent }
  | { kind: "trigger"; serverId: string; fn: FunctionInfo; trigger: Trigger }
  | { kind: "message"; text: string; error?: boolean };

export const GROUP_LABELS: Record<GroupKind, string> = {
  draft: "Draft",
  versions: "Versions",
  environments: "Environments",
  testEvents: "Test events",
  triggers: "Triggers",
};

/** "v3 90% · v4 10%" */
export function trafficLabel(binding: Binding | undefined): string {
  if (!binding || binding.traffic.length === 0) return "not deployed";
  return binding.traffic.map((t) => `v${t.version} ${t.weight}%`).join(" · ");
}

/** "release v4 running 10% (step 1/3)" */
export function releaseLabel(release: Release | undefined): string {
  if (!release) return "";
  const step = release.steps.length ? ` (step ${release.step_index + 1}/${release.steps.length})` : "";
  return `release v${release.version} ${release.state.replace(/_/g, " ")} ${release.percent}%${step}`;
}
