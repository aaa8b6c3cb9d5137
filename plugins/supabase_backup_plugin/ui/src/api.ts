// The plugin's JSON API (/backup/api/v1), called with the Airflow UI's session cookie.

export interface Counts {
  objects_done: number;
  objects_known: number;
  bytes_done: number;
  missing: number;
  listing_done: boolean;
  // A bucket exported in shards: how many (its counts are all its shards' together).
  shards?: number | null;
}

export interface Progress {
  step: string | null;
  updated_at: string | null;
  buckets: Record<string, Counts>;
  total: Counts;
}

export interface HistoryRow {
  id: number;
  run_id: string;
  status: "running" | "success" | "incomplete" | "failed" | "skipped";
  trigger: string;
  triggered_by: string | null;
  run_attempt?: number | null;
  started_at: string | null;
  finished_at: string | null;
  s3_key: string | null;
  size_bytes: number | null;
  sha256?: string | null;
  storage_objects: number | null;
  auth_users: number | null;
  objects_unreadable?: number | null;
  encrypted?: boolean | null;
  encryption_recipients?: string[] | null;
  deleted_at?: string | null;
  error: string | null;
}

export interface HistoryPage {
  items: HistoryRow[];
  total: number;
  limit: number;
  offset: number;
}

export interface TaskState {
  task_id: string;
  map_index: number;
  label: string | null;
  state: string | null;
}

export interface RunStatus {
  run_id: string;
  state: string | null;
  airflow: { tasks: TaskState[] } | null;
  history: HistoryRow | null;
  progress: Progress;
}

export interface Me {
  name: string;
  can_read: boolean;
  can_trigger: boolean;
  can_edit_settings: boolean;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

// Relative to the document's base, so it works when Airflow is served under a path prefix.
const apiBase = () => new URL("backup/api/v1/", document.baseURI);

// The Airflow UI's page of one run of the DAG (same base rule as the API).
export const airflowRunUrl = (dagId: string, runId: string): string =>
  new URL(`dags/${encodeURIComponent(dagId)}/runs/${encodeURIComponent(runId)}`, document.baseURI)
    .toString();

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(new URL(path, apiBase()), {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = payload?.detail;
    const message =
      typeof detail === "string"
        ? detail
        : Array.isArray(detail)
          ? detail.map((item: { msg?: string }) => item.msg).join("; ")
          : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return payload as T;
}

export const api = {
  me: () => call<Me>("GET", "me"),
  settings: () => call<{ backup_enabled: boolean }>("GET", "settings"),
  setEnabled: (enabled: boolean) =>
    call<{ backup_enabled: boolean }>("PUT", "settings", { backup_enabled: enabled }),
  history: (limit: number, offset: number) =>
    call<HistoryPage>("GET", `history?limit=${limit}&offset=${offset}`),
  trigger: (force: boolean) => call<{ run_id: string }>("POST", "runs", { force }),
  run: (runId: string) => call<RunStatus>("GET", `runs/${encodeURIComponent(runId)}`),
  downloadUrl: (historyId: number) =>
    call<{ url: string }>("POST", `history/${historyId}/download-url`),
};
