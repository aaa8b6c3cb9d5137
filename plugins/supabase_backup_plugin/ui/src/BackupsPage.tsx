// The Backups page: the enabled switch, "Back up now" with live progress, and the history with
// download buttons. Controls the user may not use are not shown (the API checks again anyway).
import {
  Alert,
  Badge,
  Box,
  Button,
  Code,
  Heading,
  HStack,
  Link,
  Progress,
  Spinner,
  Switch,
  Table,
  Text,
  VStack,
} from "@chakra-ui/react";
import { Fragment, useCallback, useEffect, useRef, useState } from "react";

import {
  airflowRunUrl,
  api,
  type HistoryPage,
  type HistoryRow,
  type Me,
  type RunStatus,
  type TaskState,
} from "./api";
import {
  damageLabel,
  formatBytes,
  formatClock,
  formatCount,
  formatDuration,
  formatTime,
  statusColour,
} from "./format";
import { useAirflowTimeZone } from "./timezone";

const DAG_ID = "supabase_backup";
const PAGE_SIZE = 20;
const POLL_MS = 2000;

export const BackupsPage = ({ dagId }: { dagId?: string }) => {
  const [me, setMe] = useState<Me | null>(null);
  const [enabled, setEnabled] = useState<boolean | null>(null);
  const [page, setPage] = useState<HistoryPage | null>(null);
  const [offset, setOffset] = useState(0);
  const [activeRunId, setActiveRunId] = useState<string | null>(null);
  const [run, setRun] = useState<RunStatus | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const timeZone = useAirflowTimeZone();

  // Runs this page followed until Airflow said they ended (or no longer knew them). Reading the
  // history never writes, so a row whose run ended without recording its outcome stays "running"
  // until the next run settles it: it must not be followed again.
  const endedRunIds = useRef(new Set<string>());

  const report = (reason: unknown) => setError(reason instanceof Error ? reason.message : String(reason));

  const loadHistory = useCallback(async () => {
    const loaded = await api.history(PAGE_SIZE, offset);
    setPage(loaded);
    const running = loaded.items.find(
      (row) => row.status === "running" && !endedRunIds.current.has(row.run_id),
    );
    if (running) setActiveRunId((current) => current ?? running.run_id);
  }, [offset]);

  useEffect(() => {
    Promise.all([api.me(), api.settings()])
      .then(([who, settings]) => {
        setMe(who);
        setEnabled(settings.backup_enabled);
      })
      .catch(report);
  }, []);

  useEffect(() => {
    // loadHistory sets state only once its request has answered, not within the effect's body.
    // eslint-disable-next-line react-hooks/set-state-in-effect
    loadHistory().catch(report);
  }, [loadHistory]);

  // Follow the active run until Airflow says it ended, then refresh the history.
  useEffect(() => {
    if (!activeRunId) return undefined;
    let stopped = false;
    const poll = async () => {
      try {
        const status = await api.run(activeRunId);
        if (stopped) return;
        setRun(status);
        if (status.state === "success" || status.state === "failed" || status.airflow === null) {
          endedRunIds.current.add(activeRunId);
          setActiveRunId(null);
          await loadHistory();
          return;
        }
      } catch (reason) {
        report(reason);
      }
      if (!stopped) timer = window.setTimeout(poll, POLL_MS);
    };
    let timer = window.setTimeout(poll, 0);
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [activeRunId, loadHistory]);

  if (dagId && dagId !== DAG_ID) {
    return (
      <Box p={4}>
        <Text>Backups belong to the {DAG_ID} DAG.</Text>
      </Box>
    );
  }

  const toggle = async (value: boolean) => {
    setBusy(true);
    setError(null);
    try {
      setEnabled((await api.setEnabled(value)).backup_enabled);
    } catch (reason) {
      report(reason);
    } finally {
      setBusy(false);
    }
  };

  const backUpNow = async () => {
    setBusy(true);
    setError(null);
    try {
      // With backups switched off a plain run would only record "skipped": the button forces.
      const { run_id } = await api.trigger(enabled === false);
      setRun(null);
      setActiveRunId(run_id);
    } catch (reason) {
      report(reason);
    } finally {
      setBusy(false);
    }
  };

  const download = async (historyId: number) => {
    setError(null);
    try {
      window.location.assign((await api.downloadUrl(historyId)).url);
    } catch (reason) {
      report(reason);
    }
  };

  return (
    <VStack align="stretch" gap={6} p={4} data-testid="backups-page">
      <HStack justify="space-between" wrap="wrap" gap={4}>
        <Heading size="lg">Supabase backups</Heading>
        <HStack gap={6}>
          {enabled !== null && !me?.can_edit_settings && (
            <Badge colorPalette={enabled ? "green" : "gray"} size="lg" data-testid="enabled-state">
              {enabled ? "Scheduled backups enabled" : "Scheduled backups disabled"}
            </Badge>
          )}
          {enabled !== null && me?.can_edit_settings && (
            <Switch.Root
              checked={enabled}
              disabled={busy}
              onCheckedChange={(event) => void toggle(event.checked)}
              data-testid="enabled-switch"
            >
              <Switch.HiddenInput />
              <Switch.Control>
                <Switch.Thumb />
              </Switch.Control>
              <Switch.Label>{enabled ? "Backups enabled" : "Backups disabled"}</Switch.Label>
            </Switch.Root>
          )}
          {me?.can_trigger && (
            <Button
              colorPalette="blue"
              onClick={() => void backUpNow()}
              loading={busy}
              disabled={activeRunId !== null}
              data-testid="back-up-now"
            >
              {enabled === false ? "Back up now (forced)" : "Back up now"}
            </Button>
          )}
        </HStack>
      </HStack>

      {error && (
        <Alert.Root status="error" data-testid="error">
          <Alert.Indicator />
          <Alert.Title>{error}</Alert.Title>
        </Alert.Root>
      )}

      {(activeRunId || run) && (
        <RunProgress run={run} active={activeRunId !== null} timeZone={timeZone} />
      )}

      <Box>
        <Heading size="md" mb={2}>
          History
        </Heading>
        {page === null ? (
          <Spinner />
        ) : (
          <>
            <Box overflowX="auto">
            <Table.Root size="sm" interactive data-testid="history">
              <Table.Header>
                <Table.Row>
                  <Table.ColumnHeader>Time</Table.ColumnHeader>
                  <Table.ColumnHeader>Trigger</Table.ColumnHeader>
                  <Table.ColumnHeader>Who</Table.ColumnHeader>
                  <Table.ColumnHeader>Status</Table.ColumnHeader>
                  <Table.ColumnHeader>Duration</Table.ColumnHeader>
                  <Table.ColumnHeader textAlign="end">Size</Table.ColumnHeader>
                  <Table.ColumnHeader>Contents</Table.ColumnHeader>
                  <Table.ColumnHeader>Details</Table.ColumnHeader>
                  <Table.ColumnHeader />
                </Table.Row>
              </Table.Header>
              <Table.Body>
                {page.items.map((row) => (
                  <HistoryTableRow key={row.id} row={row} canDownload={me?.can_trigger === true}
                    timeZone={timeZone} onDownload={(id) => void download(id)} />
                ))}
              </Table.Body>
            </Table.Root>
            </Box>
            <HStack justify="space-between" mt={2}>
              <Text fontSize="sm" color="fg.muted">
                {page.total === 0
                  ? "No backups yet."
                  : `${page.offset + 1}–${page.offset + page.items.length} of ${page.total}`}
              </Text>
              <HStack>
                <Button size="xs" variant="ghost" disabled={offset === 0}
                  onClick={() => setOffset(Math.max(0, offset - PAGE_SIZE))}>
                  Newer
                </Button>
                <Button size="xs" variant="ghost" disabled={offset + PAGE_SIZE >= page.total}
                  onClick={() => setOffset(offset + PAGE_SIZE)}>
                  Older
                </Button>
              </HStack>
            </HStack>
          </>
        )}
      </Box>
    </VStack>
  );
};

// An archive key broken only after "/" or "-", never inside a word: a <wbr> after each, and the
// cell's CSS allows no other break.
const BreakableKey = ({ value }: { value: string }) => (
  <>
    {value.split(/(?<=[/-])/).map((part, index) => (
      <Fragment key={index}>
        {part}
        <wbr />
      </Fragment>
    ))}
  </>
);

// Writes the text to the clipboard: the Clipboard API where the page may use it (a secure
// context), else the older copy command on a hidden text field.
const copyText = async (text: string): Promise<void> => {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const field = document.createElement("textarea");
  field.value = text;
  field.setAttribute("readonly", "");
  field.style.position = "fixed";
  field.style.opacity = "0";
  document.body.appendChild(field);
  field.select();
  try {
    if (!document.execCommand("copy")) throw new Error("the browser refused to copy");
  } finally {
    field.remove();
  }
};

const Sha256 = ({ value }: { value: string }) => {
  const [copied, setCopied] = useState<"yes" | "failed" | null>(null);
  const copy = async () => {
    try {
      await copyText(value);
      setCopied("yes");
    } catch {
      setCopied("failed");
    }
    window.setTimeout(() => setCopied(null), 2000);
  };
  return (
    <HStack gap={1} fontSize="xs" color="fg.muted" whiteSpace="nowrap">
      <Text as="span">sha256</Text>
      <Code size="sm" title={value} data-testid="sha256" data-sha256={value}>
        {value.slice(0, 12)}…{value.slice(-4)}
      </Code>
      <Button size="2xs" variant="ghost" onClick={() => void copy()} data-testid="copy-sha256"
        title="Copy the archive's full sha256, to check a downloaded file with sha256sum">
        {copied === "yes" ? "Copied" : copied === "failed" ? "Copy failed" : "Copy"}
      </Button>
    </HStack>
  );
};

const HistoryTableRow = ({ row, canDownload, timeZone, onDownload }: {
  row: HistoryRow;
  canDownload: boolean;
  timeZone: string;
  onDownload: (historyId: number) => void;
}) => {
  const hasArchive = row.status === "success" || row.status === "incomplete";
  const damaged = Boolean(row.damaged_at);
  // The Airflow run's own duration while Airflow has the run; the row's tasks' otherwise.
  const duration = row.run_started_at
    ? formatDuration(row.run_started_at, row.run_ended_at)
    : formatDuration(row.started_at, row.finished_at);
  const objects = row.storage_objects ?? 0;
  const users = row.auth_users ?? 0;
  const unreadable = row.objects_unreadable ?? 0;
  return (
    <Table.Row data-testid="history-row" data-run-id={row.run_id} data-status={row.status}
      verticalAlign="top">
      <Table.Cell whiteSpace="nowrap">
        <Link href={airflowRunUrl(DAG_ID, row.run_id)} title={`Airflow run ${row.run_id}`}
          colorPalette="blue" variant="underline" data-testid="run-link">
          {formatTime(row.started_at, timeZone)}
        </Link>
      </Table.Cell>
      <Table.Cell whiteSpace="nowrap" data-testid="trigger">{row.started_by}</Table.Cell>
      <Table.Cell data-testid="who">{row.triggered_by ?? "–"}</Table.Cell>
      <Table.Cell>
        <Badge colorPalette={statusColour[row.status] ?? "gray"} data-testid="status">
          {row.status}
        </Badge>
        {damaged && (
          <Badge colorPalette="red" variant="solid" data-testid="damaged"
            title={`${row.damage ?? ""} (${row.damaged_by ?? "a restore drill"})`}>
            {damageLabel(row.damaged_at ?? null)}
          </Badge>
        )}
        {(row.run_attempt ?? 0) > 1 && (
          <Text fontSize="xs" color="fg.muted">attempt {row.run_attempt}</Text>
        )}
      </Table.Cell>
      <Table.Cell whiteSpace="nowrap" data-testid="duration">{duration}</Table.Cell>
      <Table.Cell whiteSpace="nowrap" textAlign="end" data-testid="size">
        {formatBytes(row.size_bytes)}
      </Table.Cell>
      <Table.Cell whiteSpace="nowrap" fontSize="sm" data-testid="counts"
        title={hasArchive ? `${objects} objects, ${users} users` +
          (unreadable > 0 ? `, ${unreadable} unreadable` : "") : undefined}>
        {hasArchive ? (
          <>
            {formatCount(objects)} objects · {formatCount(users)} users
            {(row.status === "incomplete" || unreadable > 0) && (
              <>
                {" · "}
                <Text as="span" color="fg.warning" fontWeight="semibold" data-testid="unreadable">
                  {formatCount(unreadable)} unreadable
                </Text>
              </>
            )}
          </>
        ) : (
          "–"
        )}
      </Table.Cell>
      <Table.Cell minW="14rem" maxW="36rem">
        {row.error ? (
          <Text fontSize="sm" whiteSpace="pre-wrap" wordBreak="break-word"
            color={row.status === "failed" ? "fg.error" : "fg.warning"} data-testid="row-error">
            {row.error}
          </Text>
        ) : damaged ? (
          <Text fontSize="sm" whiteSpace="pre-wrap" wordBreak="break-word" color="fg.error"
            data-testid="damage">
            {row.damage}
          </Text>
        ) : null}
        {hasArchive && row.s3_key && (
          <Text fontSize="sm" color="fg.muted" wordBreak="keep-all" overflowWrap="normal"
            title={`s3://${row.s3_bucket ?? ""}/${row.s3_key}`} data-testid="s3-key">
            <BreakableKey value={row.s3_key} />
          </Text>
        )}
        {hasArchive && row.sha256 && <Sha256 value={row.sha256} />}
      </Table.Cell>
      <Table.Cell>
        {canDownload && row.status === "success" && !row.deleted_at && (
          <Button size="xs" variant="outline" onClick={() => onDownload(row.id)}
            data-testid="download" colorPalette={damaged ? "red" : undefined}
            title={damaged
              ? `A restore drill found this archive damaged: ${row.damage ?? ""}. Its other members may still be intact.`
              : row.encrypted
                ? `age-encrypted to ${(row.encryption_recipients ?? []).join(", ")}: decrypt with your identity`
                : undefined}>
            {damaged ? "Download (damaged)" : row.encrypted ? "Download (encrypted)" : "Download"}
          </Button>
        )}
        {row.deleted_at && (
          <Text fontSize="xs" color="fg.muted" data-testid="deleted">deleted by retention</Text>
        )}
      </Table.Cell>
    </Table.Row>
  );
};

// Tasks that met a failure Airflow retries: one waiting for its next try (up_for_retry), or the
// next try running while the last failure is still the news.
const retryingTasks = (tasks: TaskState[]): TaskState[] =>
  tasks.filter((task) => task.state === "up_for_retry"
    || (task.try_number > 1 && task.error !== null
      && ["queued", "scheduled", "running"].includes(task.state ?? "")));

const taskName = (task: TaskState) =>
  task.label ? `${task.task_id} (${task.label})` : task.task_id;

const RetryNotice = ({ task, timeZone }: { task: TaskState; timeZone: string }) => {
  const waiting = task.state === "up_for_retry";
  const failedTry = waiting ? task.try_number : task.try_number - 1;
  return (
    <Alert.Root status="warning" size="sm" mt={2} data-testid="retrying" data-task={task.task_id}
      data-state={task.state ?? ""}>
      <Alert.Indicator />
      <Alert.Content>
        <Alert.Title data-testid="retry-attempt">
          {`Retrying ${taskName(task)}: `}
          {waiting ? "" : `attempt ${task.try_number} of ${task.last_try_number} running; `}
          {`attempt ${failedTry} of ${task.last_try_number} failed`}
          {task.failed_at ? ` at ${formatClock(task.failed_at, timeZone)}` : ""}
        </Alert.Title>
        {task.error && (
          <Alert.Description whiteSpace="pre-wrap" wordBreak="break-word" data-testid="retry-error">
            {task.error}
          </Alert.Description>
        )}
        {waiting && (
          <Alert.Description data-testid="next-try">
            {task.next_try_at
              ? `Next try at ${formatClock(task.next_try_at, timeZone)}.`
              : "Airflow tries it again after its retry delay."}
          </Alert.Description>
        )}
      </Alert.Content>
    </Alert.Root>
  );
};

const RunProgress = ({ run, active, timeZone }: {
  run: RunStatus | null;
  active: boolean;
  timeZone: string;
}) => {
  if (!run) {
    return (
      <HStack>
        <Spinner size="sm" />
        <Text>Starting the backup…</Text>
      </HStack>
    );
  }
  const { total, step, buckets } = run.progress;
  const tasks = run.airflow?.tasks ?? [];
  const finished = tasks.filter((task) => ["success", "skipped"].includes(task.state ?? "")).length;
  const retrying = active ? retryingTasks(tasks) : [];
  // While Airflow runs the DAG run its state is the news (a failed task's row can say "failed"
  // while the run's last tasks still go); once it has ended, the row's outcome.
  const state = active
    ? (tasks.some((task) => task.state === "up_for_retry") ? "retrying" : run.state ?? "queued")
    : run.history?.status ?? run.state ?? "queued";
  // Until every bucket is listed the total is only a floor ("22 of 75+"), so a percentage would
  // read 100 after a small first bucket and then fall back: the bar stays indeterminate instead,
  // but only while the run goes on: an ended run's bar stands still where it stopped.
  const fraction = total.objects_known > 0 ? (100 * total.objects_done) / total.objects_known : 100;
  const percent = total.listing_done ? fraction : active ? null : total.objects_done > 0 ? fraction : 0;
  return (
    <Box borderWidth="1px" borderRadius="md" p={4} data-testid="run-progress"
      data-active={active ? "true" : "false"}>
      <HStack justify="space-between" mb={2}>
        <Text fontWeight="bold">
          Run{" "}
          <Link href={airflowRunUrl(DAG_ID, run.run_id)} colorPalette="blue">
            <Code data-testid="run-id">{run.run_id}</Code>
          </Link>
          :{" "}
          <Badge colorPalette={statusColour[state] ?? "blue"} data-testid="run-state">
            {state}
          </Badge>
        </Text>
        {active && <Spinner size="sm" />}
      </HStack>
      <Text fontSize="sm">
        {active && step ? `Step: ${step}. ` : ""}Tasks done: {finished} of {tasks.length}.
      </Text>
      {Object.keys(buckets).length > 0 && (
        <Text fontSize="sm" data-testid="storage-progress" data-objects-done={total.objects_done}>
          Storage: {total.objects_done} of {total.objects_known}
          {total.listing_done ? "" : "+"} objects, {formatBytes(total.bytes_done)}.
        </Text>
      )}
      {Object.keys(buckets).length > 0 && (
        <Progress.Root value={percent} max={100} mt={2} size="sm" colorPalette="blue"
          data-testid="progress-bar" data-value={percent === null ? "" : Math.round(percent)}>
          <Progress.Track>
            <Progress.Range />
          </Progress.Track>
        </Progress.Root>
      )}
      {retrying.map((task) => (
        <RetryNotice key={`${task.task_id}-${task.map_index}`} task={task} timeZone={timeZone} />
      ))}
      {run.history?.error && (
        <Text fontSize="sm" mt={2} whiteSpace="pre-wrap" wordBreak="break-word"
          color={run.history.status === "incomplete" ? "fg.warning" : "fg.error"}
          data-testid="run-error">
          {run.history.error}
        </Text>
      )}
    </Box>
  );
};
