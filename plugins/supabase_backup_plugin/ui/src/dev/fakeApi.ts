// A stand-in for the plugin's API (/backup/api/v1) as a fetch function, for the dev page
// (`npm run dev`) and the component test: the page runs without Airflow, a database or S3. Its
// bodies have the generated types, so a change of the API's schema shows here as a type error.
import type {
  DownloadUrl,
  HistoryPage,
  HistoryRow,
  Me,
  RunStatus,
  Settings,
  TaskState,
} from "../api";

export interface FakeBackend {
  me: Me;
  backupEnabled: boolean;
  // Newest first, as the API sorts them.
  history: HistoryRow[];
  // The answers to successive polls of GET runs/{id}; the last one repeats. An answer's history
  // row replaces the row of that run, so the table follows the run as the real API's does.
  runs: Record<string, RunStatus[]>;
  // What POST runs starts (the dev page simulates a run); without it the trigger is refused.
  startRun?: (backend: FakeBackend) => string;
}

export const viewer: Me = { name: "viewer", can_read: true, can_trigger: false, can_edit_settings: false };
export const admin: Me = { name: "admin", can_read: true, can_trigger: true, can_edit_settings: true };

// A backup_history row: the columns a test does not care about are empty.
export const historyRow = (
  row: Pick<HistoryRow, "id" | "run_id" | "status"> & Partial<HistoryRow>,
): HistoryRow => ({
  dag_id: "supabase_backup",
  kind: "backup",
  trigger: "scheduled",
  triggered_by: null,
  run_attempt: 0,
  started_at: null,
  finished_at: null,
  s3_bucket: null,
  s3_key: null,
  size_bytes: null,
  sha256: null,
  database_bytes: null,
  auth_users: null,
  storage_buckets: null,
  storage_objects: null,
  storage_bytes: null,
  objects_created_after_snapshot: null,
  objects_changed_after_snapshot: null,
  objects_deleted_after_snapshot: null,
  objects_unreadable: null,
  error: null,
  details: null,
  progress: null,
  updated_at: null,
  deleted_at: null,
  deleted_by: null,
  encrypted: false,
  encryption_recipients: null,
  damaged_at: null,
  damaged_by: null,
  damage: null,
  deployment: null,
  settled_by: null,
  started_by: "Schedule",
  run_started_at: null,
  run_ended_at: null,
  ...row,
});

// A task instance of a run: its first try, no failure met.
export const taskState = (
  task: Pick<TaskState, "task_id"> & Partial<TaskState>,
): TaskState => ({
  map_index: -1,
  label: null,
  state: null,
  try_number: 1,
  last_try_number: 3,
  next_try_at: null,
  error: null,
  failed_at: null,
  ...task,
});

const reply = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

export const fakeFetch = (backend: FakeBackend): typeof fetch => {
  const polls: Record<string, number> = {};
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = (init?.method ?? "GET").toUpperCase();
    const [, route = ""] = url.pathname.split("/backup/api/v1/");
    const body = init?.body ? JSON.parse(String(init.body)) : {};

    if (method === "GET" && route === "me") return reply(200, backend.me);
    if (route === "settings") {
      if (method === "PUT") {
        if (!backend.me.can_edit_settings) return reply(403, { detail: "Forbidden" });
        backend.backupEnabled = body.backup_enabled;
      }
      return reply(200, { backup_enabled: backend.backupEnabled } satisfies Settings);
    }
    if (method === "GET" && route === "history") {
      const limit = Number(url.searchParams.get("limit") ?? 50);
      const offset = Number(url.searchParams.get("offset") ?? 0);
      const page: HistoryPage = {
        items: backend.history.slice(offset, offset + limit),
        total: backend.history.length,
        limit,
        offset,
      };
      return reply(200, page);
    }
    if (method === "POST" && route === "runs") {
      if (!backend.me.can_trigger) return reply(403, { detail: "Forbidden" });
      if (!backend.startRun) return reply(409, { detail: "a run of supabase_backup is already active" });
      return reply(200, { run_id: backend.startRun(backend) });
    }
    const run = route.match(/^runs\/(.+)$/);
    if (method === "GET" && run) {
      const runId = decodeURIComponent(run[1]);
      const answers = backend.runs[runId];
      if (!answers) return reply(404, { detail: `no run ${runId} of the supabase_backup DAG` });
      const poll = polls[runId] ?? 0;
      polls[runId] = poll + 1;
      const status = answers[Math.min(poll, answers.length - 1)];
      if (status.history) {
        const row = status.history;
        backend.history = backend.history.map((old) => (old.run_id === runId ? row : old));
      }
      return reply(200, status);
    }
    const download = route.match(/^history\/(\d+)\/download-url$/);
    if (method === "POST" && download) {
      const row = backend.history.find((candidate) => candidate.id === Number(download[1]));
      if (!row || row.status !== "success") return reply(409, { detail: "not a successful backup" });
      const signed: DownloadUrl = {
        url: `https://s3.example.invalid/${row.s3_key}`,
        expires_in: 900,
        expires_at: new Date(Date.now() + 900_000).toISOString(),
        history_id: row.id,
        s3_bucket: row.s3_bucket ?? "",
        s3_key: row.s3_key ?? "",
        size_bytes: row.size_bytes,
        sha256: row.sha256,
      };
      return reply(200, signed);
    }
    return reply(404, { detail: `the fake API has no ${method} ${route}` });
  };
};
