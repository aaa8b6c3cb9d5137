"""Restore an archive's database, then compare it with the figures recorded at dump time.

``supabase-backup restore`` and the restore drill prove a restore the same way: the dump goes into
the target (an empty Postgres through ``database``, or a fresh Supabase project through
``supabase``), then every table's exact row count and content checksum is computed there
(``table_figures``) and compared with those the backup recorded in the dump's own snapshot. What
each does with the comparison stays with it: the command prints it, the drill records it in its
history row.
"""

from __future__ import annotations

from collections.abc import Iterable

from supabase_backup.archive.dump_text import open_text
from supabase_backup.archive.members import DATABASE_MEMBER, ROLES_MEMBER
from supabase_backup.restore import database as database_restore
from supabase_backup.restore import supabase as supabase_restore
from supabase_backup.restore.archive import RestoreArchive
from supabase_backup.restore.database import EXTENSION_SCHEMAS
from supabase_backup.sources import table_figures
from supabase_backup.sources.database import DatabaseSettings

# Why the tables of a skipped extension's schema are not compared; ``{name}`` is the extension.
EXTENSION_SKIPPED = "extension {name} skipped"


def restore_dump(
    archive: RestoreArchive,
    target: DatabaseSettings,
    *,
    member: str = DATABASE_MEMBER,
    into_supabase: bool = False,
    skip_extensions: Iterable[str] = (),
    skip_unavailable_extensions: bool = False,
    psql: str | None = None,
):
    """Restore the archive's dump ``member`` into ``target``, streamed from the archive (opened
    twice: scan, then run). ``into_supabase``: a fresh project's own database, with the backup's
    ``db/roles.sql`` when it has one; else an empty Postgres database. Returns the restore's
    result (``describe()``, ``extensions_skipped``)."""

    def open_dump():
        return open_text(archive.open(member))

    if into_supabase:
        open_roles = (
            (lambda: open_text(archive.open(ROLES_MEMBER))) if ROLES_MEMBER in archive else None
        )
        return supabase_restore.restore_into_supabase(
            open_dump,
            target,
            skip_extensions=skip_extensions,
            psql=psql,
            open_roles=open_roles,
        )
    return database_restore.restore_database(
        open_dump,
        target,
        skip_extensions=skip_extensions,
        psql=psql,
        skip_unavailable_extensions=skip_unavailable_extensions,
    )


def has_exact_figures(recorded: list[dict]) -> bool:
    """Whether the manifest's tables carry exact figures (archives made before them do not)."""
    return any(entry.get("rows") is not None for entry in recorded)


def compare_with_recorded(
    target: DatabaseSettings,
    recorded: list[dict],
    method: str,
    *,
    extensions_skipped: Iterable[str] = (),
    extension_skipped_reason: str = EXTENSION_SKIPPED,
    into_supabase: bool = False,
) -> table_figures.Comparison:
    """Every recorded table's exact count and checksum on the restored ``target`` against the
    manifest's (``method``: how the backup computed its checksums). The tables of an extension the
    restore skipped are listed as not compared, with ``extension_skipped_reason``. A Supabase
    target is compared as such a restore can reproduce it (``supabase.comparable_figures``), and
    the project's own tables beyond the backup's are not differences."""
    not_compared_tables: dict[str, str] = {}
    if into_supabase:
        recorded, not_compared_tables = supabase_restore.comparable_figures(recorded)
    skipped_schemas = {
        EXTENSION_SCHEMAS[name]: extension_skipped_reason.format(name=name)
        for name in extensions_skipped
        if name in EXTENSION_SCHEMAS
    }
    checksum_tables, method, unknown_method = table_figures.checksum_tables_and_method(
        recorded, method
    )
    restored = table_figures.compute_figures_of(
        target, checksum_tables=checksum_tables, method=method
    )
    if into_supabase:
        recorded_names = {f"{entry['schema']}.{entry['table']}" for entry in recorded}
        restored = [item for item in restored if item.name in recorded_names]
    comparison = table_figures.compare_figures(
        recorded, restored, not_compared_schemas=skipped_schemas
    )
    comparison.not_compared.extend(f"{name}: {why}" for name, why in not_compared_tables.items())
    if unknown_method:
        comparison.not_compared.append(unknown_method)
    return comparison
