// The page as a person sees it, against a fake API (src/dev/fakeApi.ts): the history's rows and
// their status labels, a failure's reason, a running backup's progress, and which controls each
// user gets.
import { ChakraProvider, defaultSystem } from "@chakra-ui/react";
import { act, cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import type { RunStatus } from "./api";
import { BackupsPage } from "./BackupsPage";
import { admin, type FakeBackend, fakeFetch, historyRow, taskState, viewer } from "./dev/fakeApi";

const FAILED_REASON =
  "pg_dump 15 cannot dump a Postgres 17 server; install postgresql-client-17";
const INCOMPLETE_REASON = "2 objects could not be read from Storage: avatars/a.png, avatars/b.png";

const runningRow = historyRow({
  id: 4,
  run_id: "manual__2026-12-07T10:00:00",
  status: "running",
  trigger: "api",
  triggered_by: "admin",
  started_by: "Backups page",
  started_at: "2026-12-07T10:00:00Z",
  run_started_at: "2026-12-07T09:59:58Z",
});
const SHA256 = "5d41402abc4b2a76b9719d911017c592e3b0c44298fc1c149afbf4c8996fb924";

const runningStatus: RunStatus = {
  run_id: runningRow.run_id,
  state: "running",
  airflow: {
    run_id: runningRow.run_id,
    state: "running",
    run_type: "manual",
    triggered_by: "rest_api",
    started_by: "Backups page",
    triggering_user_name: "admin",
    queued_at: null,
    start_date: "2026-12-07T10:00:00Z",
    end_date: null,
    tasks: [
      taskState({ task_id: "dump_database", state: "success" }),
      taskState({ task_id: "export_bucket", map_index: 0, label: "avatars", state: "running" }),
      taskState({ task_id: "build_archive", try_number: 0 }),
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
      sha256: SHA256,
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
      // Airflow still has the run: its Duration is the run's, not the row's first to last task.
      run_started_at: "2026-12-06T02:59:59Z",
      run_ended_at: "2026-12-06T03:01:29Z",
      trigger: "manual",
      started_by: "Airflow UI",
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

const showPage = async (me: FakeBackend["me"], runs?: FakeBackend["runs"]) => {
  vi.stubGlobal("fetch", fakeFetch({ ...backend(me), ...(runs ? { runs } : {}) }));
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

// Storage answers 503: list_buckets failed its first try and waits for its second; then the run
// ends failed.
const retryingStatus: RunStatus = {
  ...runningStatus,
  airflow: {
    ...runningStatus.airflow!,
    tasks: [
      taskState({ task_id: "dump_database", state: "success" }),
      taskState({
        task_id: "list_buckets", state: "up_for_retry", try_number: 1, last_try_number: 3,
        error: "Storage answered 503 ServiceUnavailable listing buckets",
        failed_at: "2026-12-07T10:00:30Z", next_try_at: "2026-12-07T10:01:30Z",
      }),
    ],
  },
  progress: {
    ...runningStatus.progress,
    total: { ...runningStatus.progress.total, objects_done: 0, objects_known: 34,
      listing_done: false },
  },
};
const endedStatus: RunStatus = {
  ...retryingStatus,
  state: "failed",
  airflow: { ...retryingStatus.airflow!, state: "failed", end_date: "2026-12-07T10:05:00Z",
    tasks: [taskState({ task_id: "list_buckets", state: "failed", try_number: 3 })] },
  history: { ...runningRow, status: "failed", error: "list_buckets: Storage answered 503" },
};

describe("the Backups page", () => {
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
    window.localStorage.clear();
  });

  it("names who started each run, and gives the Airflow run's duration", async () => {
    await showPage(viewer);

    expect(screen.getAllByTestId("trigger").map((cell) => cell.textContent)).toEqual([
      "Backups page", "Schedule", "Airflow UI", "Schedule",
    ]);
    expect(within(rowOf("scheduled__2026-12-06T03:00:00")).getByTestId("duration").textContent)
      .toBe("1 min 30 s");
  });

  it("shows times in the zone chosen in Airflow's UI, and follows a change", async () => {
    window.localStorage.setItem("timezone", JSON.stringify("UTC"));
    await showPage(viewer);

    const time = () =>
      within(rowOf("scheduled__2026-12-07T03:00:00")).getByTestId("run-link").textContent;
    expect(time()).toBe("2026-12-07 03:00:00 UTC");
    // Airflow's selector writes the key and announces it with a "local-storage" event.
    window.localStorage.setItem("timezone", JSON.stringify("Asia/Kolkata"));
    act(() => {
      window.dispatchEvent(new StorageEvent("local-storage", { key: "timezone" }));
    });
    expect(time()).toBe("2026-12-07 08:30:00 GMT+5:30");
  });

  it("shows the archive's sha256 shortened and copies all of it", async () => {
    const writeText = vi.fn(async () => undefined);
    vi.stubGlobal("navigator", { ...navigator, clipboard: { writeText } });
    vi.stubGlobal("isSecureContext", true);
    await showPage(viewer);

    const row = rowOf("scheduled__2026-12-07T03:00:00");
    const shown = within(row).getByTestId("sha256");
    expect(shown.textContent).toBe(`${SHA256.slice(0, 12)}…${SHA256.slice(-4)}`);
    expect(shown.getAttribute("title")).toBe(SHA256);
    fireEvent.click(within(row).getByTestId("copy-sha256"));
    await within(row).findByText("Copied");
    expect(writeText).toHaveBeenCalledWith(SHA256);
  });

  it("breaks an archive key only after / or -", async () => {
    await showPage(viewer);

    const key = within(rowOf("scheduled__2026-12-07T03:00:00")).getByTestId("s3-key");
    expect(key.textContent).toBe("supabase/2026/12/07/backup.zip");
    expect(key.innerHTML).toBe(
      "supabase/<wbr>2026/<wbr>12/<wbr>07/<wbr>backup.zip<wbr>");
  });

  it("shows a retrying task's attempt, error and next try, and stops the bar at the end",
    async () => {
      window.localStorage.setItem("timezone", JSON.stringify("UTC"));
      await showPage(viewer, { [runningRow.run_id]: [retryingStatus, endedStatus] });

      const progress = screen.getByTestId("run-progress");
      expect(within(progress).getByTestId("run-state").textContent).toBe("retrying");
      const notice = within(progress).getByTestId("retrying");
      expect(within(notice).getByTestId("retry-attempt").textContent).toBe(
        "Retrying list_buckets: attempt 1 of 3 failed at 10:00:30 UTC");
      expect(within(notice).getByTestId("retry-error").textContent)
        .toBe("Storage answered 503 ServiceUnavailable listing buckets");
      expect(within(notice).getByTestId("next-try").textContent).toBe("Next try at 10:01:30 UTC.");
      // While the run goes on and the listing is unfinished the bar has no value (it animates).
      expect(screen.getByTestId("progress-bar").dataset.value).toBe("");

      await within(progress).findByText("failed", {}, { timeout: 5000 });
      expect(progress.dataset.active).toBe("false");
      expect(within(progress).queryByTestId("retrying")).toBeNull();
      // Ended: the bar stands still where the run left it.
      expect(screen.getByTestId("progress-bar").dataset.value).toBe("0");
    });

  it("shows each backup with its status, and a failure's reason", async () => {
    await showPage(viewer);

    const rows = screen.getAllByTestId("history-row");
    expect(rows.map((row) => within(row).getByTestId("status").textContent)).toEqual([
      "running", "success", "failed", "incomplete",
    ]);
    expect(within(rowOf("scheduled__2026-12-07T03:00:00")).getByTestId("counts").textContent)
      .toBe("120 objects · 25 users");
    expect(within(rowOf("scheduled__2026-12-07T03:00:00")).getByTestId("size").textContent)
      .toBe("50.0 MiB");
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
      .toBe("Storage: 7 of 10 objects, 1.5 MiB.");
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
