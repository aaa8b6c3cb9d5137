// The page as a person sees it, against a fake API (src/dev/fakeApi.ts): the history's rows and
// their status labels, a failure's reason, a running backup's progress, and which controls each
// user gets.
import { ChakraProvider, defaultSystem } from "@chakra-ui/react";
import { cleanup, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import type { RunStatus } from "./api";
import { BackupsPage } from "./BackupsPage";
import { admin, type FakeBackend, fakeFetch, historyRow, viewer } from "./dev/fakeApi";

const FAILED_REASON =
  "pg_dump 15 cannot dump a Postgres 17 server; install postgresql-client-17";
const INCOMPLETE_REASON = "2 objects could not be read from Storage: avatars/a.png, avatars/b.png";

const runningRow = historyRow({
  id: 4,
  run_id: "manual__2026-12-07T10:00:00",
  status: "running",
  trigger: "manual",
  triggered_by: "admin",
  started_at: "2026-12-07T10:00:00Z",
});

const runningStatus: RunStatus = {
  run_id: runningRow.run_id,
  state: "running",
  airflow: {
    run_id: runningRow.run_id,
    state: "running",
    run_type: "manual",
    triggering_user_name: "admin",
    queued_at: null,
    start_date: "2026-12-07T10:00:00Z",
    end_date: null,
    tasks: [
      { task_id: "dump_database", map_index: -1, label: null, state: "success", try_number: 1 },
      { task_id: "export_bucket", map_index: 0, label: "avatars", state: "running", try_number: 1 },
      { task_id: "build_archive", map_index: -1, label: null, state: null, try_number: 0 },
    ],
  },
  history: runningRow,
  progress: {
    step: "export_bucket",
    updated_at: "2026-12-07T10:01:00Z",
    buckets: {
      avatars: {
        objects_done: 7, objects_known: 10, bytes_done: 1572864, missing: 0, listing_done: true,
        shards: null,
      },
    },
    total: {
      objects_done: 7, objects_known: 10, bytes_done: 1572864, missing: 0, listing_done: true,
      shards: null,
    },
  },
};

const backend = (me: FakeBackend["me"]): FakeBackend => ({
  me,
  backupEnabled: true,
  history: [
    runningRow,
    historyRow({
      id: 3,
      run_id: "scheduled__2026-12-07T03:00:00",
      status: "success",
      started_at: "2026-12-07T03:00:00Z",
      finished_at: "2026-12-07T03:03:05Z",
      s3_bucket: "backups",
      s3_key: "supabase/2026/12/07/backup.zip",
      size_bytes: 52428800,
      storage_objects: 120,
      auth_users: 25,
    }),
    historyRow({
      id: 2,
      run_id: "scheduled__2026-12-06T03:00:00",
      status: "failed",
      started_at: "2026-12-06T03:00:00Z",
      finished_at: "2026-12-06T03:00:42Z",
      error: FAILED_REASON,
    }),
    historyRow({
      id: 1,
      run_id: "scheduled__2026-12-05T03:00:00",
      status: "incomplete",
      started_at: "2026-12-05T03:00:00Z",
      finished_at: "2026-12-05T03:10:00Z",
      s3_key: "supabase/2026/12/05/backup.zip",
      size_bytes: 1024,
      storage_objects: 118,
      auth_users: 25,
      objects_unreadable: 2,
      error: INCOMPLETE_REASON,
    }),
  ],
  runs: { [runningRow.run_id]: [runningStatus] },
});

const showPage = async (me: FakeBackend["me"]) => {
  vi.stubGlobal("fetch", fakeFetch(backend(me)));
  render(
    <ChakraProvider value={defaultSystem}>
      <BackupsPage />
    </ChakraProvider>,
  );
  // The history has loaded, and the running backup is being followed.
  await screen.findAllByTestId("history-row");
  await screen.findByTestId("storage-progress");
};

const rowOf = (runId: string) =>
  screen.getAllByTestId("history-row").find((row) => row.dataset.runId === runId)!;

describe("the Backups page", () => {
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
  });

  it("shows each backup with its status, and a failure's reason", async () => {
    await showPage(viewer);

    const rows = screen.getAllByTestId("history-row");
    expect(rows.map((row) => within(row).getByTestId("status").textContent)).toEqual([
      "running", "success", "failed", "incomplete",
    ]);
    expect(within(rowOf("scheduled__2026-12-07T03:00:00")).getByTestId("counts").textContent)
      .toBe("120 objects25 users");
    expect(within(rowOf("scheduled__2026-12-07T03:00:00")).getByTestId("size").textContent)
      .toBe("50.0 MB");
    expect(within(rowOf("scheduled__2026-12-07T03:00:00")).getByTestId("duration").textContent)
      .toBe("3 min 05 s");
    expect(within(rowOf("scheduled__2026-12-06T03:00:00")).getByTestId("row-error").textContent)
      .toBe(FAILED_REASON);
    const incomplete = rowOf("scheduled__2026-12-05T03:00:00");
    expect(within(incomplete).getByTestId("unreadable").textContent).toBe("2 unreadable");
    expect(within(incomplete).getByTestId("row-error").textContent).toBe(INCOMPLETE_REASON);
    expect(screen.getByText("1–4 of 4")).toBeTruthy();
  });

  it("follows a running backup's progress", async () => {
    await showPage(viewer);

    const progress = screen.getByTestId("run-progress");
    expect(within(progress).getByTestId("run-id").textContent).toBe(runningRow.run_id);
    expect(within(progress).getByTestId("run-state").textContent).toBe("running");
    expect(within(progress).getByText("Step: export_bucket. Tasks done: 1 of 3.")).toBeTruthy();
    expect(screen.getByTestId("storage-progress").textContent)
      .toBe("Storage: 7 of 10 objects, 1.5 MB.");
    expect(screen.getByTestId("progress-bar").dataset.value).toBe("70");
  });

  it("offers a viewer no controls, only the state of the switch", async () => {
    await showPage(viewer);

    expect(screen.getByTestId("enabled-state").textContent).toBe("Scheduled backups enabled");
    expect(screen.queryByTestId("enabled-switch")).toBeNull();
    expect(screen.queryByTestId("back-up-now")).toBeNull();
    expect(screen.queryAllByTestId("download")).toHaveLength(0);
  });

  it("offers an admin the switch, Back up now and the download of a successful backup", async () => {
    await showPage(admin);

    expect(screen.getByTestId("enabled-switch")).toBeTruthy();
    expect(screen.queryByTestId("enabled-state")).toBeNull();
    // A run is being followed, so a second one cannot be started yet.
    expect((screen.getByTestId("back-up-now") as HTMLButtonElement).disabled).toBe(true);
    const downloads = screen.getAllByTestId("download");
    expect(downloads).toHaveLength(1);
    expect(rowOf("scheduled__2026-12-07T03:00:00").contains(downloads[0])).toBe(true);
  });
});
