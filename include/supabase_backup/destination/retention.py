"""Retention on S3: deleting the archives the rules (``supabase_backup.retention_rules``) do not
keep.

Only verified successful backups (status ``success``, kind ``backup``, not already deleted) are
candidates and count toward the rules; failed, incomplete and drill rows are never touched. On
top of the rules, the newest successful backup is never deleted, nor the newest verified copy of
each part (database, Auth, each bucket: the row's ``details.parts``, see ``parts_of``), nor an
archive that a download URL minted in the last 15 minutes or a running restore drill is using.

``apply_retention`` deletes from S3 and
then marks the row (``deleted_at``, ``deleted_by`` = the rule set): the row is never erased, and a
crash between the two leaves a row whose archive the next run deletes again (idempotent) and marks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from supabase_backup.destination.s3 import verified_record_key
from supabase_backup.errors import RetentionFailed
from supabase_backup.records import history
from supabase_backup.retention_rules import (
    AUTH_PART,
    DATABASE_PART,
    Backup,
    RetentionRules,
    format_plan,
    plan_retention,
)

log = logging.getLogger(__name__)

DOWNLOAD_IN_USE_MINUTES = 15


# --- reading history and applying ----------------------------------------------------------------


def parts_of(row: dict) -> tuple[frozenset[str], bool]:
    """(the parts the row's archive holds, whether that list is complete). A row written since
    parts are recorded names them in ``details.parts``. An older row is read conservatively: the
    columns a success row always set show the database (``database_bytes``) and Auth
    (``auth_users``) it certainly holds, and it may hold anything else, every bucket included (it
    never named its buckets)."""
    recorded = (row.get("details") or {}).get(history.PARTS_DETAIL)
    if isinstance(recorded, list):
        return frozenset(recorded), True
    known = set()
    if row.get("database_bytes") is not None:
        known.add(DATABASE_PART)
    if row.get("auth_users") is not None:
        known.add(AUTH_PART)
    return frozenset(known), False


def candidates(connection) -> list[Backup]:
    """Verified successful backups whose archive is still there."""

    backups = []
    for row in history.retention_candidates(connection):
        parts, recorded = parts_of(row)
        backups.append(
            Backup(
                history_id=row["id"],
                run_id=row["run_id"],
                started_at=row["started_at"],
                s3_bucket=row["s3_bucket"],
                s3_key=row["s3_key"],
                size_bytes=row["size_bytes"],
                parts=parts,
                parts_recorded=recorded,
                damaged=row.get("damaged_at") is not None,
            )
        )
    return backups


def apply_retention(
    connection,
    s3_client,
    rules: RetentionRules,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    delete_object: Callable[[str, str], None] | None = None,
) -> dict:
    """Plan and (unless ``dry_run``) delete. Each deletion re-checks, just before it, that no
    download or drill has started using the archive since the plan was made."""

    now = now or datetime.now(UTC)
    protected = history.archives_in_use(connection, now=now, minutes=DOWNLOAD_IN_USE_MINUTES)
    decisions = plan_retention(candidates(connection), rules, protected=protected)
    deleted, kept_late = [], []
    if delete_object is None:

        def delete_object(bucket: str, key: str) -> None:
            s3_client.delete_object(Bucket=bucket, Key=key)

    for decision in decisions:
        if decision.keep or dry_run:
            continue
        backup = decision.backup
        late = history.archives_in_use(
            connection, now=datetime.now(UTC), minutes=DOWNLOAD_IN_USE_MINUTES
        )
        if backup.history_id in late:
            decision.keep, decision.reasons = True, [late[backup.history_id]]
            kept_late.append(backup.history_id)
            continue
        delete_object(backup.s3_bucket, backup.s3_key)
        # Then its verified record (none for archives from before records): a record whose
        # archive is gone is never trusted, so a crash between the two deletions is harmless.
        delete_object(backup.s3_bucket, verified_record_key(backup.s3_key))
        history.mark_deleted(connection, backup.history_id, rules.describe())
        deleted.append(backup.history_id)
        log.info(
            "Retention deleted s3://%s/%s (run %s, %s)",
            backup.s3_bucket,
            backup.s3_key,
            backup.run_id,
            backup.started_at.isoformat(),
        )
    log.info(
        "Retention (%s): %d backup(s) considered, %d kept, %d %s",
        rules.describe(),
        len(decisions),
        sum(d.keep for d in decisions),
        sum(not d.keep for d in decisions),
        "would be deleted" if dry_run else "deleted",
    )
    return {
        "rules": rules.describe(),
        "dry_run": dry_run,
        "considered": len(decisions),
        "kept": [d.backup.history_id for d in decisions if d.keep],
        "deleted": deleted,
        "kept_because_in_use": kept_late,
        "decisions": decisions,
    }


def apply_after_run(plan, resources, verified: dict | None) -> dict:
    """The DAG's ``apply_retention`` task: after a verified successful run, apply the plan's rules.

    It never touches this run's own row or outcome (record_history decided it already); the newest
    successful backup — this run's — is kept by construction. A failure here fails only this task.
    """

    if not plan.settings.retention:
        return {"skipped": "supabase_backup_retention is not set: every archive is kept"}
    if not verified:
        return {"skipped": "the run has no verified archive: retention waits for one"}
    rules = RetentionRules.parse(plan.settings.retention)
    if rules is None:  # (plan.settings.retention is set, so parse gives rules or refuses)
        return {"skipped": "supabase_backup_retention holds no rule: every archive is kept"}

    def delete_object(bucket: str, key: str) -> None:
        from botocore.exceptions import ClientError

        try:
            resources.s3.delete_object(Bucket=bucket, Key=key)
        except ClientError as error:
            raise RetentionFailed(
                bucket, key, error.response.get("Error", {}).get("Code") or str(error)
            ) from None

    with resources.database.connect(autocommit=True) as connection:
        result = apply_retention(connection, resources.s3, rules, delete_object=delete_object)
    log.info("%s", format_plan(result.pop("decisions"), rules, dry_run=False))
    return result
