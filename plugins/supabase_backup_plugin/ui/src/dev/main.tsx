// The dev page: the Backups page inside Chakra's default theme (Airflow's UI brings its own), with
// fetch answered by the fake API. ?as=viewer shows what a viewer sees; "Back up now" simulates a
// run that lists, exports and finishes over a few polls.
import { ChakraProvider, defaultSystem } from "@chakra-ui/react";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import type { HistoryRow, RunStatus } from "../api";
import { BackupsPage } from "../BackupsPage";
import { admin, type FakeBackend, fakeFetch, historyRow, viewer } from "./fakeApi";

const OBJECTS = 40;

// The answers to successive polls of a run started now: listing, exporting, then success.
const simulatedRun = (runId: string, row: HistoryRow): RunStatus[] =>
  Array.from({ length: 12 }, (_, poll) => {
    const done = Math.min(OBJECTS, poll * 4);
    const finished = poll === 11;
    const counts = {
      objects_done: done,
      objects_known: poll < 2 ? done + 10 : OBJECTS,
      bytes_done: done * 350_000,
      missing: 0,
      listing_done: poll >= 2,
      shards: null,
    };
    const history = finished
      ? { ...row, status: "success" as const, finished_at: new Date().toISOString(),
        s3_bucket: "backups", s3_key: `supabase/${runId}.zip`, size_bytes: OBJECTS * 350_000,
        storage_objects: OBJECTS, auth_users: 25 }
      : row;
    return {
      run_id: runId,
      state: finished ? "success" : "running",
      airflow: null,
      history,
      progress: {
        step: poll < 2 ? "list_buckets" : "export_bucket",
        updated_at: new Date().toISOString(),
        buckets: { avatars: counts },
        total: counts,
      },
    };
  });

const backend: FakeBackend = {
  me: new URLSearchParams(window.location.search).get("as") === "viewer" ? viewer : admin,
  backupEnabled: true,
  history: [
    historyRow({
      id: 2, run_id: "scheduled__2026-12-07T03:00:00", status: "success",
      started_at: "2026-12-07T03:00:00Z", finished_at: "2026-12-07T03:03:05Z",
      s3_bucket: "backups", s3_key: "supabase/2026/12/07/backup.zip", size_bytes: 52_428_800,
      storage_objects: 120, auth_users: 25,
    }),
    historyRow({
      id: 1, run_id: "scheduled__2026-12-06T03:00:00", status: "failed",
      started_at: "2026-12-06T03:00:00Z", finished_at: "2026-12-06T03:00:42Z",
      error: "pg_dump 15 cannot dump a Postgres 17 server; install postgresql-client-17",
    }),
  ],
  runs: {},
  startRun: (state) => {
    const runId = `manual__${new Date().toISOString()}`;
    const row = historyRow({
      id: Math.max(0, ...state.history.map((old) => old.id)) + 1, run_id: runId,
      status: "running", trigger: "manual", triggered_by: state.me.name,
      started_at: new Date().toISOString(),
    });
    state.history = [row, ...state.history];
    state.runs[runId] = simulatedRun(runId, row);
    return runId;
  },
};

window.fetch = fakeFetch(backend);

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <ChakraProvider value={defaultSystem}>
      <BackupsPage />
    </ChakraProvider>
  </StrictMode>,
);
