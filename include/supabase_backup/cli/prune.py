"""``supabase-backup prune``: apply retention rules to the archives in backup_history."""

from __future__ import annotations

import argparse
import json

from supabase_backup import retention_rules
from supabase_backup.cli.database_url import connection_failures_explained, settings_from_argument
from supabase_backup.destination import retention
from supabase_backup.destination import s3 as destination
from supabase_backup.errors import EXIT_OK, ConfigurationError
from supabase_backup.records import history
from supabase_backup.retention_rules import (
    ALLOW_DELETING_LAST_COPY_OF,
    RULE_NAMES,
    RetentionRules,
)

HELP = "delete old archives by retention rules (keep-last/daily/weekly/monthly/yearly)"
DESCRIPTION = """\
Apply retention rules to the archives recorded in backup_history, with restic's `forget`
semantics: --keep-last N keeps the N newest; --keep-daily/weekly/monthly/yearly N keep the newest
backup of each of the last N days/ISO weeks/months/years that have a backup; a backup kept by any
rule is kept. Periods are taken in --timezone (UTC by default).

Only verified successful backups count and can go. The newest successful backup is never deleted,
nor an archive a download URL minted in the last 15 minutes or a running restore drill uses.
Nor is the newest copy of any part (database, auth, storage/<bucket>): a run that left Storage out
never costs the last archive holding it. --allow-deleting-last-copy-of PART (repeatable) lets
that part's last copy go, e.g. storage/old-bucket for a bucket deleted from the project. An
archive made before its parts were recorded may hold any part and is kept while it may be the
newest copy. A backup a restore drill found damaged is no copy of anything.
A deleted archive's row stays, marked deleted_at / deleted_by.

--dry-run lists every candidate with the parts its archive holds, what would happen and which
rule keeps it, and deletes nothing. Without it, archives are deleted from S3 (the usual AWS environment) and their rows
marked. The database password comes from PGPASSWORD, never from the command line."""


def register(commands) -> None:
    parser = commands.add_parser(
        "prune",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql://user@host:port/dbname holding backup_history, without "
        "a password (set PGPASSWORD)",
    )
    parser.add_argument(
        "--rules",
        metavar="JSON",
        help="the rules as the Variable supabase_backup_retention holds them, e.g. "
        '\'{"keep_daily": 7, "keep_weekly": 4}\'',
    )
    for name in ("last", "daily", "weekly", "monthly", "yearly"):
        parser.add_argument(f"--keep-{name}", type=int, metavar="N", dest=f"keep_{name}")
    parser.add_argument("--timezone", metavar="TZ", help="IANA time zone of the periods (UTC)")
    parser.add_argument(
        "--allow-deleting-last-copy-of",
        action="append",
        metavar="PART",
        dest="allow_deleting_last_copy_of",
        help="let the newest copy of PART (database, auth, storage/<bucket>) go like any other "
        "archive; repeat for several",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be deleted and why; delete nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run)


def rules_from_arguments(arguments):

    try:
        rules = json.loads(arguments.rules) if arguments.rules else {}
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f'--rules is not valid JSON ({error}): pass an object, e.g. {{"keep_daily": 7}}'
        ) from None
    if not isinstance(rules, dict):
        raise ConfigurationError('--rules must be a JSON object, e.g. {"keep_daily": 7}')
    for name in RULE_NAMES:
        if getattr(arguments, name) is not None:
            rules[name] = getattr(arguments, name)
    if arguments.timezone:
        rules["timezone"] = arguments.timezone
    if arguments.allow_deleting_last_copy_of:
        rules[ALLOW_DELETING_LAST_COPY_OF] = arguments.allow_deleting_last_copy_of
    parsed = RetentionRules.parse(rules) if rules else None
    if parsed is None:
        raise ConfigurationError(
            "no rule given: pass --keep-daily N (or another --keep-* rule) or --rules JSON"
        )
    return parsed


def run(arguments) -> int:

    if not arguments.database_url:
        raise ConfigurationError("--database-url is required (the database holding backup_history)")
    settings = settings_from_argument(arguments.database_url)
    rules = rules_from_arguments(arguments)
    client = None if arguments.dry_run else destination.s3_client_from_environment()
    with connection_failures_explained(settings), settings.connect(autocommit=True) as connection:
        history.require_kind_column(connection)  # MigrationMissing (exit 4), not a traceback
        result = retention.apply_retention(connection, client, rules, dry_run=arguments.dry_run)
    decisions = result.pop("decisions")
    if arguments.json:
        result["plan"] = [
            {
                "history_id": d.backup.history_id,
                "s3_key": d.backup.s3_key,
                "started_at": d.backup.started_at.isoformat(),
                "parts": sorted(d.backup.parts),
                "parts_recorded": d.backup.parts_recorded,
                "damaged": d.backup.damaged,
                "keep": d.keep,
                "reasons": d.reasons,
            }
            for d in decisions
        ]
        print(json.dumps(result))
    else:
        print(retention_rules.format_plan(decisions, rules, dry_run=arguments.dry_run))
    return EXIT_OK
