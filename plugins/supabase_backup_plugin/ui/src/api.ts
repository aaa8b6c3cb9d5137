// The plugin's JSON API (/backup/api/v1), called with the Airflow UI's session cookie.
import type { components } from "./openapi.gen";

// The bodies are the plugin's pydantic schemas, generated from its OpenAPI schema (`make ui-types`
// writes openapi.json and openapi.gen.ts; a test fails when they are stale).
type Schemas = components["schemas"];
export type Counts = Schemas["Counts"];
export type Progress = Schemas["Progress"];
export type HistoryRow = Schemas["HistoryRow"];
export type HistoryPage = Schemas["HistoryPage"];
export type TaskState = Schemas["TaskState"];
export type RunStatus = Schemas["RunStatus"];
export type Me = Schemas["Me"];
export type Settings = Schemas["Settings"];
export type TriggerRequest = Schemas["TriggerRequest"];
export type TriggerResponse = Schemas["TriggerResponse"];
export type DownloadUrl = Schemas["DownloadUrl"];

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
  settings: () => call<Settings>("GET", "settings"),
  setEnabled: (enabled: boolean) =>
    call<Settings>("PUT", "settings", { backup_enabled: enabled } satisfies Schemas["SettingsUpdate"]),
  history: (limit: number, offset: number) =>
    call<HistoryPage>("GET", `history?limit=${limit}&offset=${offset}`),
  trigger: (force: boolean) =>
    call<TriggerResponse>("POST", "runs", { force } satisfies TriggerRequest),
  run: (runId: string) => call<RunStatus>("GET", `runs/${encodeURIComponent(runId)}`),
  downloadUrl: (historyId: number) =>
    call<DownloadUrl>("POST", `history/${historyId}/download-url`),
};
