/** Shapes of /api/v1 answers the extension reads (see the OpenAPI schema at /api/v1/schema/). */

export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export interface Me {
  id: number;
  username: string;
  email: string;
  orgs: Org[];
  token_scopes: string[];
}

export interface Org {
  slug: string;
  name: string;
  role: string;
}

export interface Environment {
  name: string;
  protected: boolean;
}

export interface Project {
  id: number;
  org: string;
  slug: string;
  name: string;
  role: string;
  environments: Environment[];
}

export interface FunctionInfo {
  id: number;
  org: string;
  project: number;
  name: string;
  runtime: string;
  handler: string;
  kind: string;
  description?: string;
}

export interface DraftFileMeta {
  path: string;
  size: number;
  sha256: string;
  updated_at?: string;
  binary?: boolean;
}

export interface DraftTree {
  revision: number;
  etag: string;
  files: DraftFileMeta[];
}

export interface FileContent {
  path: string;
  content: string;
  encoding: "utf-8" | "base64";
  sha256: string;
  size: number;
}

export interface Version {
  number: number;
  sha256: string;
  file_count: number;
  message: string;
  author: string | null;
  source: string;
  created_at: string;
}

export interface TrafficSplit {
  version: number;
  weight: number;
}

export interface Binding {
  environment: string;
  traffic: TrafficSplit[];
  auth_mode: string;
  url: string;
  status: string;
  status_message: string;
}

export type ReleasePlan = "direct" | { steps: number[]; advance: "manual" | "auto"; dwell_s?: number };

export interface Release {
  id: number;
  function: number;
  environment: string;
  version: number;
  stable_version: number | null;
  state: string;
  percent: number;
  steps: number[];
  step_index: number;
  next_step_at: string | null;
  failure: Record<string, unknown> | null;
}

export const ACTIVE_RELEASE_STATES = ["awaiting_approval", "running", "paused"];

export interface TestEvent {
  id: number;
  function: number;
  name: string;
  body: unknown;
  shared: boolean;
  created_by: string | null;
}

export interface Trigger {
  id: number;
  function: number;
  environment: string;
  name: string;
  expression: string;
  kind: string;
  enabled: boolean;
  status: string;
}

export interface InvokeResult {
  request_id: string;
  version: number | null;
  draft: boolean;
  status: string;
  result: unknown;
  error: unknown;
  logs: { ts: string; stream: string; text: string }[];
  duration_ms: number;
  cold_start: boolean;
}

export interface LogLine {
  id: number;
  ts: string;
  stream: string;
  level: string;
  request_id: string | null;
  version: number | null;
  environment: string | null;
  text: string;
}

export interface LogFilters {
  environment?: string;
  level?: string;
  stream?: string;
  q?: string;
  version?: number;
}
