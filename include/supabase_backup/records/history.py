"""``backup_history``: one row per DAG run, keyed by run id so retries update rather than duplicate.

Every row has a ``kind``: ``backup`` (a run of the backup DAG) or ``drill`` (a restore drill of a
backup, ``drill.py``). A drill row's ``run_id`` is its DAG run id prefixed with the drill DAG's id
and a colon, so a drill and a backup scheduled at the same instant never share a key; its
``s3_bucket``/``s3_key``/``sha256`` name the archive it restored, its ``details`` the comparison.

Status moves ``running → success | incomplete | failed | skipped``. A ``success`` row is written only by the
run's finish step, after ``verify_upload`` read the archive back; a failed run always ends with a
``failed`` row holding the first reason a person can act on: a later, vaguer reason never replaces
an earlier one.

Every row names the Airflow deployment that owns it (``deployment``, see
``supabase_backup.airflow.dag_run.deployment_id``): a deployment settles only its own rows (and
rows written before the column existed), so two Airflows backing up one project never settle each
other's live runs. A reason written by a settle is marked (``settled_by``, the deployment that
wrote it) so the run's own reason, when it comes, replaces it.

A backup a restore drill found damaged (its archive failed verification, or its restore differs
from the figures recorded at dump time) carries ``damaged_at``, ``damaged_by`` (the drill row's run
id) and ``damage`` (what the drill found). Its status stays ``success`` (the run did verify its
upload), but it no longer counts as a verified backup: not for the staleness check, not for the
next drill's choice, not as a copy of any part for retention.
"""

from __future__ import annotations

import json
from typing import Literal

import psycopg
from psycopg.rows import dict_row

from supabase_backup.config import DAG_ID
from supabase_backup.errors import HistoryRowMissing, MigrationMissing
from supabase_backup.records.migrations import require_table
from supabase_backup.records.sql import scalar
from supabase_backup.retention_rules import AUTH_PART, DATABASE_PART, storage_part

HISTORY_TABLE = "public.backup_history"
BACKUP = "backup"
DRILL = "drill"
KINDS = (BACKUP, DRILL)
MAX_ERROR_LENGTH = 4000
# details.parts of a success row: the parts its archive holds (retention keeps the last copy of each).
PARTS_DETAIL = "parts"

SUCCESS_COLUMNS = (
    "s3_bucket",
    "s3_key",
    "size_bytes",
    "sha256",
    "database_bytes",
    "auth_users",
    "storage_buckets",
    "storage_objects",
    "storage_bytes",
    "objects_created_after_snapshot",
    "objects_changed_after_snapshot",
    "objects_deleted_after_snapshot",
    "objects_unreadable",
)


def record_running(
    connection: psycopg.Connection,
    run_id: str,
    trigger: str,
    triggered_by: str | None = None,
    dag_id: str = DAG_ID,
    *,
    attempt: int = 0,
    kind: str = BACKUP,
    deployment: str | None = None,
) -> None:
    """Start (or restart, on a cleared run) the row for ``run_id``, owned by ``deployment``.
    ``attempt`` is the DAG run's clear count: 0 for the first attempt, one more each time the run
    was cleared. A backup row does not need the ``kind`` column (its default is backup), nor the
    ownership columns, so backups keep working on a table migrated before they existed; a drill row
    needs ``kind``."""
    columns, kind_value = _kind_columns(connection, kind)
    ownership = ""
    if kind == BACKUP and has_ownership_columns(connection):
        columns, kind_value = f"{columns}, deployment", f"{kind_value}, %(deployment)s"
        ownership = ", deployment = EXCLUDED.deployment, settled_by = NULL"
    connection.execute(
        f"""
        INSERT INTO public.backup_history
            (run_id, dag_id, status, trigger, triggered_by, run_attempt, started_at,
             updated_at{columns})
        VALUES (%(run_id)s, %(dag_id)s, 'running', %(trigger)s, %(triggered_by)s, %(attempt)s,
                now(), now(){kind_value})
        ON CONFLICT (run_id) DO UPDATE
        SET status = 'running', trigger = EXCLUDED.trigger, triggered_by = EXCLUDED.triggered_by,
            run_attempt = EXCLUDED.run_attempt, started_at = now(), finished_at = NULL,
            error = NULL, updated_at = now(){ownership}
        """,
        {
            "run_id": run_id,
            "dag_id": dag_id,
            "trigger": trigger,
            "triggered_by": triggered_by,
            "attempt": attempt,
            "kind": kind,
            "deployment": deployment,
        },
    )


OWNERSHIP_COLUMNS = ("deployment", "settled_by")


def has_ownership_columns(connection: psycopg.Connection) -> bool:
    """Whether the history table has the ``deployment`` and ``settled_by`` columns (issue 19).
    Without them (the migration not re-run yet) rows are written and settled as before: every
    running row is a candidate, whoever wrote it."""
    require_table(connection, HISTORY_TABLE)
    found = scalar(
        connection,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.backup_history'::regclass "
        "AND attname = ANY(%s) AND NOT attisdropped",
        (list(OWNERSHIP_COLUMNS),),
    )
    return found == len(OWNERSHIP_COLUMNS)


def require_kind_column(connection: psycopg.Connection) -> None:
    """The history table, with the ``kind`` column a later version of the migration added."""
    require_table(connection, HISTORY_TABLE)
    row = connection.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = 'public.backup_history'::regclass "
        "AND attname = 'kind' AND NOT attisdropped"
    ).fetchone()
    if not row:
        raise MigrationMissing("public.backup_history (with its column kind)")


def _kind_columns(connection: psycopg.Connection, kind: str) -> tuple[str, str]:
    if kind not in KINDS:
        raise ValueError(f"unknown history kind {kind!r}")
    if kind == BACKUP:
        require_table(connection, HISTORY_TABLE)
        return "", ""
    require_kind_column(connection)
    return ", kind", ", %(kind)s"


def record_skipped(
    connection: psycopg.Connection,
    run_id: str,
    trigger: str,
    reason: str,
    triggered_by: str | None = None,
    dag_id: str = DAG_ID,
    *,
    deployment: str | None = None,
) -> None:
    owned = has_ownership_columns(connection)
    connection.execute(
        f"""
        INSERT INTO public.backup_history
            (run_id, dag_id, status, trigger, triggered_by, started_at, finished_at, error,
             updated_at{", deployment" if owned else ""})
        VALUES (%s, %s, 'skipped', %s, %s, now(), now(), %s, now(){", %s" if owned else ""})
        ON CONFLICT (run_id) DO UPDATE
        SET status = 'skipped', finished_at = now(), error = EXCLUDED.error, updated_at = now()
            {", settled_by = NULL" if owned else ""}
        """,
        (run_id, dag_id, trigger, triggered_by, reason, *([deployment] if owned else [])),
    )


def record_failed(
    connection: psycopg.Connection,
    run_id: str,
    reason: str,
    *,
    trigger: str,
    triggered_by: str | None = None,
    dag_id: str = DAG_ID,
    attempt: int = 0,
    kind: str = BACKUP,
    deployment: str | None = None,
) -> None:
    """Mark the run failed. Within one attempt the first reason stays: the first failure is the one
    to act on, and the finish step's summary ("task(s) … failed") would otherwise bury it. A later
    attempt (the run was cleared: a higher ``attempt``) replaces an earlier attempt's reason, and
    the run's own reason replaces one a settle wrote (``settled_by``): the settle only guessed.
    ``trigger``, ``kind`` and ``deployment`` are used only when the run has no row yet (it failed
    before recording itself)."""
    columns, kind_value = _kind_columns(connection, kind)
    ownership_column, ownership_value, settled = "", "", ""
    if kind == BACKUP and has_ownership_columns(connection):
        ownership_column, ownership_value = ", deployment", ", %(deployment)s"
        settled = "WHEN backup_history.settled_by IS NOT NULL THEN EXCLUDED.error"
    connection.execute(
        f"""
        INSERT INTO public.backup_history
            (run_id, dag_id, status, trigger, triggered_by, run_attempt, started_at, finished_at,
             error, updated_at{columns}{ownership_column})
        VALUES (%(run_id)s, %(dag_id)s, 'failed', %(trigger)s, %(triggered_by)s, %(attempt)s,
                now(), now(), %(error)s, now(){kind_value}{ownership_value})
        ON CONFLICT (run_id) DO UPDATE
        SET status = 'failed', finished_at = now(), updated_at = now(),
            error = CASE WHEN backup_history.run_attempt < EXCLUDED.run_attempt THEN EXCLUDED.error
                         {settled}
                         ELSE COALESCE(backup_history.error, EXCLUDED.error) END,
            run_attempt = GREATEST(backup_history.run_attempt, EXCLUDED.run_attempt)
            {", settled_by = NULL" if settled else ""}
        """,
        {
            "run_id": run_id,
            "dag_id": dag_id,
            "trigger": trigger,
            "triggered_by": triggered_by,
            "attempt": attempt,
            "error": reason[:MAX_ERROR_LENGTH],
            "kind": kind,
            "deployment": deployment,
        },
    )


def record_details(connection: psycopg.Connection, run_id: str, details: dict) -> None:
    """Merge ``details`` into a row's details (a drill's comparison, before its outcome)."""
    connection.execute(
        "UPDATE public.backup_history SET details = COALESCE(details, '{}'::jsonb) || %s::jsonb, "
        "updated_at = now() WHERE run_id = %s",
        (json.dumps(details), run_id),
    )


def record_drill_success(
    connection: psycopg.Connection, run_id: str, archive: dict, details: dict
) -> None:
    """A drill restored ``archive`` (s3_bucket, s3_key, size_bytes, sha256) and every figure
    matched."""
    require_kind_column(connection)
    updated = connection.execute(
        """
        UPDATE public.backup_history
        SET status = 'success', finished_at = now(), updated_at = now(), error = NULL,
            s3_bucket = %(s3_bucket)s, s3_key = %(s3_key)s, size_bytes = %(size_bytes)s,
            sha256 = %(sha256)s, details = COALESCE(details, '{}'::jsonb) || %(details)s::jsonb
        WHERE run_id = %(run_id)s AND kind = 'drill'
        """,
        {
            **{name: archive.get(name) for name in ("s3_bucket", "s3_key", "size_bytes", "sha256")},
            "details": json.dumps(details),
            "run_id": run_id,
        },
    ).rowcount
    if updated != 1:
        raise HistoryRowMissing(run_id)


def record_success(
    connection: psycopg.Connection,
    run_id: str,
    summary: dict,
    details: dict | None = None,
    *,
    status: Literal["success", "incomplete"] = "success",
    error: str | None = None,
    attempt: int = 0,
    settled_by: str | None = None,
) -> bool:
    """Mark the run's verified archive with its location and counts: ``success``, or
    ``incomplete`` (a verified archive lacking objects the API could not serve; ``error`` says
    which).

    The run's own finish step passes no ``settled_by``: the row must exist (HistoryRowMissing).
    A settle (``settled_by``, the deployment settling: the run ended while the database was down,
    and its verified record in S3 says how) changes only a row still ``running`` and returns
    whether it did."""
    owned = has_ownership_columns(connection)
    assignments = ", ".join(f"{column} = %({column})s" for column in SUCCESS_COLUMNS)
    values = {column: summary.get(column) for column in SUCCESS_COLUMNS}
    values.update(
        run_id=run_id,
        status=status,
        error=error and error[:MAX_ERROR_LENGTH],
        details=json.dumps(details or {}),
        attempt=attempt,
        settled_by=settled_by,
    )
    only_running = "AND status = 'running'" if settled_by else ""
    updated = connection.execute(
        f"""
        UPDATE public.backup_history
        SET status = %(status)s, finished_at = now(), updated_at = now(), error = %(error)s,
            run_attempt = GREATEST(run_attempt, %(attempt)s), details = %(details)s::jsonb,
            {"settled_by = %(settled_by)s," if owned else ""} {assignments}
        WHERE run_id = %(run_id)s {only_running}
        """,
        values,
    ).rowcount
    if settled_by:
        return updated == 1
    if updated != 1:
        raise HistoryRowMissing(run_id)
    return True


def record_progress(
    connection: psycopg.Connection,
    run_id: str,
    *,
    step: str | None = None,
    bucket: str | None = None,
    counts: dict | None = None,
    shard: int | None = None,
) -> None:
    """Merge a running run's progress into its row: ``progress.step`` (the step now running) and
    ``progress.buckets.<bucket>`` (objects and bytes done of those known), or for one shard of a
    bucket exported in shards ``progress.buckets.<bucket>.shards.<shard>``, so shards reporting at
    the same time never overwrite each other (each UPDATE reads the row as the last one left it).
    Only a running row is touched, so a late report can never change a finished one."""
    connection.execute(
        """
        UPDATE public.backup_history
        SET progress = COALESCE(progress, '{}'::jsonb)
                || CASE WHEN %(bucket)s::text IS NULL THEN '{}'::jsonb
                        WHEN %(shard)s::text IS NULL THEN jsonb_build_object('buckets',
                             COALESCE(progress->'buckets', '{}'::jsonb)
                             || jsonb_build_object(%(bucket)s::text, %(counts)s::jsonb))
                        ELSE jsonb_build_object('buckets',
                             COALESCE(progress->'buckets', '{}'::jsonb)
                             || jsonb_build_object(%(bucket)s::text,
                                COALESCE(progress->'buckets'->%(bucket)s::text, '{}'::jsonb)
                                || jsonb_build_object('shards',
                                   COALESCE(progress->'buckets'->%(bucket)s::text->'shards',
                                            '{}'::jsonb)
                                   || jsonb_build_object(%(shard)s::text, %(counts)s::jsonb))))
                   END
                || CASE WHEN %(step)s::text IS NULL THEN '{}'::jsonb
                        ELSE jsonb_build_object('step', %(step)s::text) END
                || jsonb_build_object('updated_at', now()),
            updated_at = now()
        WHERE run_id = %(run_id)s AND status = 'running'
        """,
        {
            "run_id": run_id,
            "step": step,
            "bucket": bucket,
            "shard": str(shard) if shard is not None else None,
            "counts": json.dumps(counts) if counts is not None else None,
        },
    )


def task_key(task_id: str, map_index: int | None) -> str:
    """How a task instance is named in ``progress.retries``: its id, and a mapped one's index."""
    return task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"


def record_retry(
    connection: psycopg.Connection,
    run_id: str,
    task_key: str,
    *,
    try_number: int,
    reason: str,
) -> None:
    """Put the reason a try of a task failed, which Airflow will retry, on the running row:
    ``progress.retries.<task_key>`` (``task_id``, or ``task_id[map_index]`` for a mapped one) holds
    the last failed try's number, reason and time. Airflow keeps no failure text itself, so this is
    how the page can say what a retrying task met. Only a running row is touched: the status stays
    ``running``, since the retry may still succeed."""
    connection.execute(
        """
        UPDATE public.backup_history
        SET progress = COALESCE(progress, '{}'::jsonb)
                || jsonb_build_object('retries', COALESCE(progress->'retries', '{}'::jsonb)
                   || jsonb_build_object(%(task_key)s::text, jsonb_build_object(
                        'try_number', %(try_number)s::int, 'error', %(error)s::text,
                        'failed_at', now())))
                || jsonb_build_object('updated_at', now()),
            updated_at = now()
        WHERE run_id = %(run_id)s AND status = 'running'
        """,
        {
            "run_id": run_id,
            "task_key": task_key,
            "try_number": try_number,
            "error": reason[:MAX_ERROR_LENGTH],
        },
    )


def _pending_counts(bucket: str) -> dict:
    return {
        "bucket": bucket,
        "objects_done": 0,
        "objects_known": 0,
        "listing_done": False,
        "bytes_done": 0,
        "missing": 0,
        "unreadable": 0,
    }


def record_buckets_pending(
    connection: psycopg.Connection,
    run_id: str,
    bucket_ids: list[str],
    shards: dict[str, int] | None = None,
) -> None:
    """Enter every bucket the run will export into its progress, with nothing done and its listing
    not finished, so the run's total stays open ("3 of 3+") until the last bucket is listed rather
    than reading as complete while buckets that have not started are left out. ``shards`` names
    the buckets exported in shards and how many: each of their shards is entered the same way. A
    bucket or shard that has already reported keeps its counts."""
    shards = shards or {}
    pending = {bucket: _pending_counts(bucket) for bucket in bucket_ids}
    for bucket, count in shards.items():
        if count > 1:
            pending[bucket]["shards"] = {
                str(number): _pending_counts(bucket) for number in range(1, count + 1)
            }
    connection.execute(
        """
        UPDATE public.backup_history
        SET progress = COALESCE(progress, '{}'::jsonb)
                || jsonb_build_object('buckets', COALESCE(progress->'buckets', '{}'::jsonb)
                   || (SELECT COALESCE(jsonb_object_agg(entry.key,
                              entry.value || COALESCE(progress->'buckets'->entry.key, '{}'::jsonb)
                              || CASE WHEN entry.value ? 'shards' THEN jsonb_build_object(
                                      'shards', (entry.value->'shards')
                                      || COALESCE(progress->'buckets'->entry.key->'shards',
                                                  '{}'::jsonb))
                                      ELSE '{}'::jsonb END), '{}'::jsonb)
                       FROM jsonb_each(%(pending)s::jsonb) AS entry)),
            updated_at = now()
        WHERE run_id = %(run_id)s AND status = 'running'
        """,
        {"run_id": run_id, "pending": json.dumps(pending)},
    )


def _select(connection: psycopg.Connection, condition: str, parameters: tuple) -> list[dict]:
    require_table(connection, HISTORY_TABLE)
    with connection.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            f"SELECT * FROM public.backup_history {condition}", parameters
        ).fetchall()


def get_by_run_id(connection: psycopg.Connection, run_id: str) -> dict | None:
    rows = _select(connection, "WHERE run_id = %s", (run_id,))
    return rows[0] if rows else None


def get_by_id(connection: psycopg.Connection, history_id: int) -> dict | None:
    rows = _select(connection, "WHERE id = %s", (history_id,))
    return rows[0] if rows else None


def list_history(
    connection: psycopg.Connection,
    *,
    limit: int = 50,
    offset: int = 0,
    status: str | None = None,
    kind: str | None = None,
) -> list[dict]:
    """Newest first; only rows with ``status`` and of ``kind`` when they are given."""
    conditions, parameters = [], []
    if status is not None:
        conditions.append("status = %s")
        parameters.append(status)
    if kind is not None:
        require_kind_column(connection)
        conditions.append("kind = %s")
        parameters.append(kind)
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return _select(
        connection,
        f"{where}ORDER BY started_at DESC, id DESC LIMIT %s OFFSET %s",
        (*parameters, limit, offset),
    )


def latest_success(
    connection: psycopg.Connection, kind: str = BACKUP, *, skip_damaged: bool = False
) -> dict | None:
    """The newest successful row of ``kind`` (by when it finished), or None. ``incomplete``
    backups are not successes: they lack objects. ``skip_damaged`` leaves out backups a restore
    drill found damaged."""
    require_kind_column(connection)
    rows = _select(
        connection,
        "WHERE kind = %s AND status = 'success' "
        f"{_not_damaged(connection) if skip_damaged else ''}"
        "ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1",
        (kind,),
    )
    return rows[0] if rows else None


def count_history(connection: psycopg.Connection, status: str | None = None) -> int:
    require_table(connection, HISTORY_TABLE)
    if status is None:
        return scalar(connection, "SELECT count(*) FROM public.backup_history")
    return scalar(
        connection, "SELECT count(*) FROM public.backup_history WHERE status = %s", (status,)
    )


def running_run_ids(connection: psycopg.Connection, dag_id: str = DAG_ID) -> list[str]:
    """Run ids of the rows still marked ``running`` (candidates for ``settle_ended_runs``)."""
    require_table(connection, HISTORY_TABLE)
    return [
        row[0]
        for row in connection.execute(
            "SELECT run_id FROM public.backup_history WHERE status = 'running' AND dag_id = %s",
            (dag_id,),
        )
    ]


def running_rows(
    connection: psycopg.Connection, deployment: str, dag_id: str = DAG_ID
) -> list[dict]:
    """The rows still ``running`` that ``deployment`` may settle: its own, and those written before
    rows named their deployment (no other way to tell whose they are). Another deployment's rows
    are never candidates: this Airflow cannot know whether their runs are live. On a table without
    the ownership columns every running row is a candidate, as before them."""
    owned = has_ownership_columns(connection)
    with connection.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            "SELECT run_id, started_at, run_attempt FROM public.backup_history "
            "WHERE status = 'running' AND dag_id = %s "
            + ("AND (deployment = %s OR deployment IS NULL) " if owned else "")
            + "ORDER BY started_at, id",
            (dag_id, deployment) if owned else (dag_id,),
        ).fetchall()


SETTLED_REASON = "the run ended without recording its outcome; see Airflow run "


def settle_ended_runs(
    connection: psycopg.Connection, ended_run_ids: list[str], *, settled_by: str
) -> list[str]:
    """Mark ``failed`` the rows still ``running`` whose DAG run has ended (a worker killed before
    the finish step, a run marked failed by hand) and that left no verified archive. The caller
    reads ``running_rows`` first and asks Airflow which of those ended, so a row recorded
    meanwhile is never settled by mistake. A reason the settle writes is marked with
    ``settled_by`` (the deployment settling), so the run's own reason can replace it; a reason the
    run had already written stays its own. Returns the run ids settled."""
    if not ended_run_ids:
        return []
    owned = has_ownership_columns(connection)
    mark = "settled_by = CASE WHEN error IS NULL THEN %s ELSE settled_by END," if owned else ""
    return [
        row[0]
        for row in connection.execute(
            f"""
        UPDATE public.backup_history
        SET status = 'failed', finished_at = COALESCE(finished_at, now()), updated_at = now(),
            {mark} error = COALESCE(error, %s || run_id)
        WHERE status = 'running' AND run_id = ANY(%s)
        RETURNING run_id
        """,
            (*([settled_by] if owned else []), SETTLED_REASON, list(ended_run_ids)),
        )
    ]


DOWNLOADS_TABLE = "public.backup_downloads"


def record_download(
    connection: psycopg.Connection, row: dict, *, requested_by: str, expires_in_seconds: int
) -> int:
    """Record one download URL minted for a history row (who, when, which archive): an archive
    holds the whole database, so every URL handed out is accounted for. Returns the record's id."""
    require_table(connection, DOWNLOADS_TABLE)
    return scalar(
        connection,
        """
        INSERT INTO public.backup_downloads
            (history_id, run_id, s3_bucket, s3_key, requested_by, requested_at, expires_at)
        VALUES (%s, %s, %s, %s, %s, now(), now() + make_interval(secs => %s))
        RETURNING id
        """,
        (
            row["id"],
            row["run_id"],
            row["s3_bucket"],
            row["s3_key"],
            requested_by,
            expires_in_seconds,
        ),
    )


def summarise_success(
    verified: dict,
    archive_summary: dict,
    database_summary: dict | None,
    auth_summary: dict | None,
    storage_summary: dict | None,
) -> dict:
    """The columns of a success row, from the verified location and the tasks' summaries."""
    storage_summary = storage_summary or {}
    return {
        "s3_bucket": verified["s3_bucket"],
        "s3_key": verified["s3_key"],
        "size_bytes": verified["bytes"],
        "sha256": verified["sha256"],
        "database_bytes": (database_summary or {}).get("bytes"),
        "auth_users": (auth_summary or {}).get("users"),
        "storage_buckets": archive_summary.get("storage_buckets"),
        "storage_objects": storage_summary.get("objects"),
        "storage_bytes": storage_summary.get("bytes"),
        "objects_created_after_snapshot": storage_summary.get("created_after_snapshot"),
        "objects_changed_after_snapshot": storage_summary.get("changed_after_snapshot"),
        "objects_deleted_after_snapshot": storage_summary.get("deleted_after_snapshot"),
        "objects_unreadable": storage_summary.get("unreadable"),
    }


def parts_of_run(
    database_summary: dict | None, auth_summary: dict | None, storage_summary: dict | None
) -> list[str] | None:
    """The parts a verified archive holds, from the summaries of the tasks that staged them:
    ``database``, ``auth`` and ``storage/<bucket>`` for every bucket exported (an empty bucket is
    still a copy of that bucket). None when the storage summary does not name its buckets, so
    the row reads as "parts not recorded" rather than as holding no storage."""
    parts = []
    if (database_summary or {}).get("included"):
        parts.append(DATABASE_PART)
    if (auth_summary or {}).get("included"):
        parts.append(AUTH_PART)
    if storage_summary:
        buckets = storage_summary.get("buckets")
        if not isinstance(buckets, list):
            return None
        parts.extend(storage_part(bucket["bucket"]) for bucket in buckets)
    return parts


# --- retention and encryption (issue 11) ------------------------------------------------------------


def retention_candidates(connection: psycopg.Connection) -> list[dict]:
    """Verified successful backups whose archive retention has not deleted, newest first. Only
    these count toward the retention rules; incomplete, failed and drill rows are never touched."""
    return _select(
        connection,
        "WHERE status = 'success' AND COALESCE(kind, 'backup') = 'backup' AND deleted_at IS NULL "
        "AND s3_key IS NOT NULL ORDER BY started_at DESC, id DESC",
        (),
    )


def archives_in_use(connection: psycopg.Connection, *, now, minutes: int = 15) -> dict[int, str]:
    """{history id: why} of archives a download URL minted in the last ``minutes`` or a running
    restore drill may be reading. A running drill that does not name its archive protects the
    newest successful backup (the one a drill restores)."""
    in_use: dict[int, str] = {}
    with connection.cursor() as cursor:
        if _table_exists(connection, "public.backup_downloads"):
            for history_id, minted_at in cursor.execute(
                """
                    SELECT h.id, max(d.requested_at)
                    FROM public.backup_downloads d
                    JOIN public.backup_history h ON h.id = d.history_id OR h.s3_key = d.s3_key
                    WHERE d.requested_at > %s::timestamptz - make_interval(mins => %s)
                    GROUP BY h.id
                    """,
                (now, minutes),
            ).fetchall():
                in_use[history_id] = f"download URL minted {minted_at:%H:%M:%S} UTC"
        drills = cursor.execute(
            "SELECT s3_bucket, s3_key FROM public.backup_history "
            "WHERE kind = 'drill' AND status = 'running'"
        ).fetchall()
        for _drill_bucket, drill_key in drills:
            if drill_key:
                condition = "s3_key = %s AND kind = 'backup'"
                parameters: tuple = (drill_key,)
            else:
                condition = "status = 'success' AND kind = 'backup' ORDER BY started_at DESC, id DESC LIMIT 1"
                parameters = ()
            for (history_id,) in cursor.execute(
                f"SELECT id FROM public.backup_history WHERE {condition}", parameters
            ).fetchall():
                in_use[history_id] = "a restore drill is using it"
    return in_use


def _table_exists(connection: psycopg.Connection, table: str) -> bool:
    return scalar(connection, "SELECT to_regclass(%s) IS NOT NULL", (table,))


def mark_deleted(connection: psycopg.Connection, history_id: int, deleted_by: str) -> None:
    """Retention deleted this row's archive: say when and by which rules; the row stays."""
    connection.execute(
        "UPDATE public.backup_history SET deleted_at = now(), deleted_by = %s, updated_at = now() "
        "WHERE id = %s AND deleted_at IS NULL",
        (deleted_by, history_id),
    )


def record_encryption(
    connection: psycopg.Connection, run_id: str, recipients: list[str] | None
) -> None:
    """The run's archive is age ciphertext to ``recipients`` (public keys only), or plaintext."""
    connection.execute(
        "UPDATE public.backup_history SET encrypted = %s, encryption_recipients = %s, "
        "updated_at = now() WHERE run_id = %s",
        (bool(recipients), list(recipients) if recipients else None, run_id),
    )


def latest_verified_backup(connection: psycopg.Connection) -> dict | None:
    """The newest verified successful backup no restore drill found damaged (for the staleness
    alert)."""
    rows = _select(
        connection,
        "WHERE status = 'success' AND COALESCE(kind, 'backup') = 'backup' "
        f"{_not_damaged(connection)}ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1",
        (),
    )
    return rows[0] if rows else None


# --- damage a restore drill found (issue 19) --------------------------------------------------------

DAMAGE_COLUMN = "damaged_at"
# A drill row's details key for what it found wrong with the archive: {"step", "finding", and
# "backup_run_id" once the backup's row is marked}.
ARCHIVE_DAMAGE_DETAIL = "archive_damage"


def _has_column(connection: psycopg.Connection, column: str) -> bool:
    return (
        connection.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = 'public.backup_history'::regclass "
            "AND attname = %s AND NOT attisdropped",
            (column,),
        ).fetchone()
        is not None
    )


def _not_damaged(connection: psycopg.Connection) -> str:
    """The condition leaving out backups a drill found damaged; nothing on a table migrated before
    the mark existed (no backup can be marked there), so reading never needs the new migration."""
    if _has_column(connection, DAMAGE_COLUMN):
        return "AND damaged_at IS NULL "
    return ""


def mark_damaged(
    connection: psycopg.Connection, backup_run_id: str, drill_run_id: str, damage: str
) -> bool:
    """A restore drill (``drill_run_id``) found the archive of backup ``backup_run_id`` damaged;
    ``damage`` says how. The first finding stays (a later drill of a damaged archive finds the
    same). Returns whether the row was marked now."""
    require_table(connection, HISTORY_TABLE)
    if not _has_column(connection, DAMAGE_COLUMN):
        raise MigrationMissing(f"{HISTORY_TABLE} (with its column {DAMAGE_COLUMN})")
    return (
        connection.execute(
            "UPDATE public.backup_history SET damaged_at = now(), damaged_by = %s, damage = %s, "
            "updated_at = now() WHERE run_id = %s AND kind = 'backup' AND damaged_at IS NULL",
            (drill_run_id, damage[:MAX_ERROR_LENGTH], backup_run_id),
        ).rowcount
        == 1
    )


def clear_damaged(connection: psycopg.Connection, backup_run_id: str) -> bool:
    """A later drill restored the same archive and every figure matched: what the earlier drill
    found was not the archive (a read that failed on the way, say). Returns whether a mark went."""
    if not _has_column(connection, DAMAGE_COLUMN):
        return False
    return (
        connection.execute(
            "UPDATE public.backup_history SET damaged_at = NULL, damaged_by = NULL, damage = NULL, "
            "updated_at = now() WHERE run_id = %s AND kind = 'backup' AND damaged_at IS NOT NULL",
            (backup_run_id,),
        ).rowcount
        == 1
    )
