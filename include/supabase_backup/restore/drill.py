"""The restore drill: prove a backup by restoring it (the task bodies of the
``supabase_backup_restore_drill`` DAG).

A drill takes the newest successful backup from ``backup_history`` (or the one its trigger form
names), reads the archive back from S3 and verifies every member against the manifest, restores
its database into a new scratch database (``CREATE DATABASE drill_…``) on the drill server with
the same code as ``supabase-backup restore`` (``restore_database``), then computes every table's
exact row count and content checksum there (``table_figures``) and compares them with the figures
the backup recorded inside the dump's own snapshot. The scratch database is dropped whatever
happens. The outcome is a ``kind = 'drill'`` row in ``backup_history``; its ``details`` say what
was compared and, for a failed drill, which tables differ.

A drill that finds the archive itself at fault (it fails verification, is gone, or restores to
figures other than those recorded at dump time) marks the backup's row damaged (``damaged_at``,
``damaged_by``, ``damage``): the next drill takes the newest backup not found damaged, and the
staleness check no longer counts it. A later drill of the same archive that passes clears the mark.

Extensions the drill server does not offer are skipped, as ``--skip-extension`` would: their
tables are listed as not compared (with the reason) rather than failing the drill.

Like ``backup.tasks``, nothing here knows Airflow: ``supabase_backup.airflow`` builds the resources and the DAG
file only wires the tasks.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Protocol

from psycopg import sql

from supabase_backup.archive.members import DATABASE_MEMBER
from supabase_backup.config import (
    AWS_CONN_ID,
    DATABASE_CONN_ID,
    DRILL_CONN_ID,
    DRILL_DAG_ID,
)
from supabase_backup.destination import s3 as destination
from supabase_backup.destination.location import open_archive
from supabase_backup.errors import (
    ArchiveNotFound,
    DecryptionFailed,
    DrillFailed,
    FiguresDiffer,
    ManifestInvalid,
    MigrationMissing,
    NothingToDrill,
    UnsafeMemberPath,
    VerificationFailed,
)
from supabase_backup.records import history
from supabase_backup.restore.archive import (
    RestoreArchive,
    check_member_names,
    read_header_and_members,
)
from supabase_backup.restore.compare import compare_with_recorded, has_exact_figures, restore_dump
from supabase_backup.sources import table_figures
from supabase_backup.sources.database import DatabaseSettings

log = logging.getLogger(__name__)

# How many differing tables the error message names (the history row's details hold them all).
DIFFERENCES_IN_MESSAGE = 10

# Failures that are findings about the archive, not about the drill's own resources (its server,
# its S3 access): they mark the backup damaged. A failed psql restore is not among them: a drill
# server without a role or an extension fails it too.
ARCHIVE_DAMAGE = (
    VerificationFailed,
    ManifestInvalid,
    DecryptionFailed,
    ArchiveNotFound,
    UnsafeMemberPath,
    FiguresDiffer,
)
DAMAGE_DETAIL = history.ARCHIVE_DAMAGE_DETAIL


class DrillResources(Protocol):
    """What a drill task may use; ``airflow.drill_run.DrillTaskResources`` builds it. Read-only:
    the implementation resolves each on first use."""

    # the Supabase database: backup_history lives there
    @property
    def database(self) -> DatabaseSettings: ...

    # where scratch databases are created (its maintenance db)
    @property
    def drill_server(self) -> DatabaseSettings: ...

    @property
    def s3(self) -> Any: ...  # a boto3 S3 client


@dataclass(frozen=True)
class DrillPlan:
    """One drill's choices, made by its first task and passed to the others (no secret)."""

    run_id: str  # the history row's key: "<drill dag id>:<dag run id>"
    dag_run_id: str
    trigger: str
    started_at: str
    scratch_database: str
    backup_run_id: str
    s3_bucket: str
    s3_key: str
    size_bytes: int
    sha256: str
    triggered_by: str | None = None
    database_conn_id: str = DATABASE_CONN_ID
    drill_conn_id: str = DRILL_CONN_ID
    aws_conn_id: str = AWS_CONN_ID

    @property
    def archive_url(self) -> str:
        return f"s3://{self.s3_bucket}/{self.s3_key}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict | DrillPlan) -> DrillPlan:
        if isinstance(value, DrillPlan):
            return value
        known = {item.name for item in fields(cls)}
        return cls(**{name: item for name, item in value.items() if name in known})


def history_run_id(dag_run_id: str) -> str:
    return f"{DRILL_DAG_ID}:{dag_run_id}"


def scratch_database_name(dag_run_id: str, started_at: str) -> str:
    """``drill_<UTC start>_<8 hex of the run id>``: a plain identifier under Postgres' 63 bytes,
    one per run, so a retry finds (and replaces) its own scratch database and no other."""
    stamp = re.sub(r"[^0-9]", "", started_at)[:14]
    return f"drill_{stamp}_{hashlib.sha1(dag_run_id.encode()).hexdigest()[:8]}"


# --- the tasks ------------------------------------------------------------------------------------


def plan_drill(
    resources: DrillResources,
    *,
    dag_run_id: str,
    trigger: str,
    started_at: str,
    triggered_by: str | None = None,
    backup_run_id: str | None = None,
    conn_ids: dict | None = None,
) -> DrillPlan:
    """Record the drill as running and choose the backup: the newest successful one no drill found
    damaged, or ``backup_run_id``'s (which must have succeeded; a damaged one may be drilled again
    on purpose)."""
    run_id = history_run_id(dag_run_id)
    with resources.database.connect(autocommit=True) as connection:
        history.record_running(
            connection, run_id, trigger, triggered_by, dag_id=DRILL_DAG_ID, kind=history.DRILL
        )
        if backup_run_id:
            row = history.get_by_run_id(connection, backup_run_id)
            if (
                row is None
                or row.get("kind", history.BACKUP) != history.BACKUP
                or row["status"] != "success"
            ):
                raise NothingToDrill(
                    f"backup_history has no successful backup with run id {backup_run_id!r}"
                )
        else:
            row = history.latest_success(connection, history.BACKUP, skip_damaged=True)
            if row is None:
                raise NothingToDrill(
                    "backup_history has no successful backup that no drill found damaged"
                )
    plan = DrillPlan(
        run_id=run_id,
        dag_run_id=dag_run_id,
        trigger=trigger,
        triggered_by=triggered_by,
        started_at=started_at,
        scratch_database=scratch_database_name(dag_run_id, started_at),
        backup_run_id=row["run_id"],
        s3_bucket=row["s3_bucket"],
        s3_key=row["s3_key"],
        size_bytes=int(row["size_bytes"]),
        sha256=row["sha256"],
        **(conn_ids or {}),
    )
    log.info(
        "Drilling backup %s (%s, finished %s) into scratch database %s",
        plan.backup_run_id,
        plan.archive_url,
        row.get("finished_at"),
        plan.scratch_database,
    )
    return plan


def verify_backup(plan: DrillPlan, resources: DrillResources) -> dict:
    """Read the archive back from S3: every member against the manifest, the whole object against
    the size and sha256 in the backup's history row."""
    result = destination.read_back_and_verify(
        resources.s3, plan.s3_bucket, plan.s3_key, size=plan.size_bytes, sha256=plan.sha256
    )
    return {
        name: result[name]
        for name in ("members_checked", "content_bytes", "format_version", "seconds")
        if name in result
    }


def _scratch(plan: DrillPlan, resources: DrillResources) -> DatabaseSettings:
    return replace(resources.drill_server, dbname=plan.scratch_database)


def create_scratch_database(plan: DrillPlan, resources: DrillResources) -> None:
    """A new, empty database for this drill (a leftover of this run's earlier attempt is replaced)."""
    name = sql.Identifier(plan.scratch_database)
    with resources.drill_server.connect(autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(name))
    log.info(
        "Created scratch database %s on %s",
        plan.scratch_database,
        resources.drill_server.describe(),
    )


def read_recorded_tables(plan: DrillPlan, resources: DrillResources) -> tuple[dict, list[dict]]:
    """The manifest's ``database`` section and its tables' recorded figures."""
    with (
        open_archive(plan.archive_url, s3_client=resources.s3) as (archive_file, label),
        RestoreArchive(archive_file, label) as archive,
    ):
        header, _ = read_header_and_members(archive)
    section = header.get("database") or {}
    if not section.get("included", True) or not section:
        raise DrillFailed(f"{plan.archive_url} holds no database dump (the run left it out)")
    return section, list(section.get("tables") or [])


def restore_backup(plan: DrillPlan, resources: DrillResources) -> dict:
    """Restore the archive's dump into the scratch database (streamed from S3 by ranged reads,
    one transaction), skipping extensions the drill server lacks."""
    started = time.monotonic()
    with (
        open_archive(plan.archive_url, s3_client=resources.s3) as (archive_file, label),
        RestoreArchive(archive_file, label) as archive,
    ):
        check_member_names(archive)
        header, _ = read_header_and_members(archive)
        section = header.get("database") or {}
        if not section or not section.get("included", True):
            raise DrillFailed(f"{plan.archive_url} holds no database dump (the run left it out)")
        member = section.get("member", DATABASE_MEMBER)
        result = restore_dump(
            archive, _scratch(plan, resources), member=member, skip_unavailable_extensions=True
        )
    summary = {
        "statements": result.statements,
        "roles_created": result.roles_created,
        "extensions_skipped": result.extensions_skipped,
        "entries_skipped": len(result.skipped_entries),
        "psql_messages": result.psql_messages[:20],
        "seconds": round(time.monotonic() - started, 3),
    }
    log.info(
        "Restored %s into %s: %s statements in %.1f s; extensions skipped: %s",
        plan.archive_url,
        plan.scratch_database,
        f"{result.statements:,}",
        summary["seconds"],
        ", ".join(result.extensions_skipped) or "none",
    )
    return summary


def compare_with_manifest(plan: DrillPlan, resources: DrillResources, restored: dict) -> dict:
    """Every table's exact count and checksum in the scratch database against the manifest's.
    The comparison goes into the drill's history row first, so a failed drill's row names the
    tables that differ; then a difference raises FiguresDiffer."""
    started = time.monotonic()
    section, recorded = read_recorded_tables(plan, resources)
    if not has_exact_figures(recorded):
        raise DrillFailed(
            f"the manifest of {plan.archive_url} records no exact figures (a backup "
            "made before they existed): nothing to compare a restore with"
        )
    comparison = compare_with_recorded(
        _scratch(plan, resources),
        recorded,
        table_figures.recorded_method(section),
        extensions_skipped=restored.get("extensions_skipped") or [],
        extension_skipped_reason="extension {name} is not available on the drill server "
        "(skipped by the restore)",
    )
    result = {
        **comparison.to_dict(),
        "snapshot_time": section.get("snapshot_time"),
        "seconds": round(time.monotonic() - started, 3),
    }
    with resources.database.connect(autocommit=True) as connection:
        history.record_details(
            connection,
            plan.run_id,
            {
                "backup_run_id": plan.backup_run_id,
                "archive": plan.archive_url,
                "scratch_database": plan.scratch_database,
                "restore": restored,
                "comparison": result,
            },
        )
    if not comparison.ok:
        shown = comparison.differences[:DIFFERENCES_IN_MESSAGE]
        more = len(comparison.differences) - len(shown)
        raise FiguresDiffer(
            plan.archive_url,
            len(comparison.differences),
            "; ".join(shown) + (f"; and {more} more" if more else ""),
        )
    log.info(
        "Drill comparison: %d tables (%s rows, %d checksums) equal to the figures recorded at "
        "%s; not compared: %s",
        comparison.compared,
        f"{comparison.rows:,}",
        comparison.checksums_compared,
        section.get("snapshot_time"),
        "; ".join(comparison.not_compared) or "none",
    )
    return result


def drop_scratch_database(plan: DrillPlan, resources: DrillResources) -> None:
    name = sql.Identifier(plan.scratch_database)
    with resources.drill_server.connect(autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    log.info("Dropped scratch database %s", plan.scratch_database)


# --- the outcome ----------------------------------------------------------------------------------


def record_failure(
    database_settings: DatabaseSettings,
    *,
    run_id: str,
    trigger: str,
    triggered_by: str | None,
    message: str,
    step: str | None = None,
    error: BaseException | None = None,
) -> None:
    """Put a failed step's reason on the drill's row (the first reason stays). When ``error`` is a
    finding about the archive (``ARCHIVE_DAMAGE``), the row's details keep it with its ``step``,
    for ``finish_drill`` to mark the backup."""
    with database_settings.connect(autocommit=True) as connection:
        history.record_failed(
            connection,
            run_id,
            message,
            trigger=trigger,
            triggered_by=triggered_by,
            dag_id=DRILL_DAG_ID,
            kind=history.DRILL,
        )
        if step and _is_archive_damage(error):
            history.record_details(
                connection, run_id, {DAMAGE_DETAIL: {"step": step, "finding": message}}
            )


def _is_archive_damage(error: BaseException | None) -> bool:
    """Whether ``error``, or what it was raised from, is a finding about the archive: a task fails
    a permanent error as Airflow's AirflowFailException raised from it (``failing_fast``)."""
    while error is not None:
        if isinstance(error, ARCHIVE_DAMAGE):
            return True
        error = error.__cause__
    return False


# The output each step that can find damage leads to: a finding stands only while that output is
# missing (a retry that verified the archive after a failed read withdraws it).
_FINDING_WITHDRAWN_BY = {
    "verify_backup": "verified",
    "restore_backup": "compared",
    "compare_with_manifest": "compared",
}


def _damage_found(row: dict, outputs: dict) -> str | None:
    finding = ((row or {}).get("details") or {}).get(DAMAGE_DETAIL)
    if not finding:
        return None
    output = _FINDING_WITHDRAWN_BY.get(finding.get("step"))
    if output and outputs.get(output) is not None:
        return None
    return finding.get("finding")


def finish_drill(
    database_settings: DatabaseSettings,
    *,
    run_id: str,
    trigger: str,
    triggered_by: str | None,
    plan: dict | None,
    verified: dict | None,
    compared: dict | None,
    failed_tasks: list[str],
) -> dict:
    """The drill's final row: success exactly when the archive verified and every compared
    table matched; otherwise failed with the first reason, and DrillFailed says it."""
    with database_settings.connect(autocommit=True) as connection:
        if (
            plan
            and verified
            and compared is not None
            and not compared.get("differences")
            and not failed_tasks
        ):
            drill_plan = DrillPlan.from_dict(plan)
            history.record_drill_success(
                connection,
                run_id,
                {
                    "s3_bucket": drill_plan.s3_bucket,
                    "s3_key": drill_plan.s3_key,
                    "size_bytes": drill_plan.size_bytes,
                    "sha256": drill_plan.sha256,
                },
                {"verified": verified},
            )
            if history.clear_damaged(connection, drill_plan.backup_run_id):
                log.warning(
                    "Backup %s was marked damaged by an earlier drill; this drill restored it "
                    "and every figure matched, so the mark is cleared",
                    drill_plan.backup_run_id,
                )
            log.info(
                "Drill succeeded: %s restored, %d tables and %s rows equal to the backup's figures",
                drill_plan.archive_url,
                compared["tables_compared"],
                f"{compared['rows_compared']:,}",
            )
            return {"status": "success", **compared}
        reason = (
            f"task(s) {', '.join(failed_tasks)} failed (see their logs)"
            if failed_tasks
            else "a required task was skipped or cleared; run the drill again"
        )
        history.record_failed(
            connection,
            run_id,
            reason,
            trigger=trigger,
            triggered_by=triggered_by,
            dag_id=DRILL_DAG_ID,
            kind=history.DRILL,
        )
        row = history.get_by_run_id(connection, run_id) or {}
        damage = _damage_found(row, {"verified": verified, "compared": compared})
        if plan and damage:
            backup_run_id = DrillPlan.from_dict(plan).backup_run_id
            try:
                marked = history.mark_damaged(connection, backup_run_id, run_id, damage)
            except MigrationMissing as error:  # the drill's own outcome is the one to raise
                log.error("Could not mark backup %s damaged: %s", backup_run_id, error)
                marked = False
            if marked:
                finding = {**row["details"][DAMAGE_DETAIL], "backup_run_id": backup_run_id}
                history.record_details(connection, run_id, {DAMAGE_DETAIL: finding})
                log.error(
                    "Marked backup %s damaged: %s. The next drill takes the newest backup not "
                    "found damaged, and the staleness check no longer counts this one.",
                    backup_run_id,
                    damage,
                )
    raise DrillFailed(row.get("error") or reason)
