"""Check an archive against its own manifest: every member present, no stranger, sizes and sha256.

Used by the DAG's ``verify_upload`` on the uploaded archive (read in place by ranged reads, see
``destination.read_back_and_verify``) and by ``supabase-backup verify``.

Memory does not grow with the member count: the central directory is read entry by entry
(zip_stream.ZipReader) into a scratch SQLite database on disk, the manifest's members go into the
same database as they stream, and every check — listed but missing, listed twice, stored twice,
strangers, a member that is also another's folder — is one query there. Members are then read in
the order they are stored, so an archive on S3 is fetched front to back once.

verify and restore agree on what a safe archive is: a member name, stored or listed, that could
land outside a target (``members.member_path_problem``: ``..``, absolute, empty segments, …) is
refused with restore's own UnsafeMemberPath (exit 10), before anything else is read. The dumps
(``db/backup.sql``, ``db/roles.sql``) are scanned on the same read that hashes them
(``dump_scanner``): a dump that does not end with pg_dump's trailer, leaves a COPY block open or
holds other rows than the manifest recorded is refused, so a cut dump is found without a restore.
"""

from __future__ import annotations

import io
import logging
import sqlite3
import tempfile
from pathlib import Path

from supabase_backup.archive.dump_scanner import (
    CLUSTER_TRAILER,
    DATABASE_TRAILER,
    DumpContents,
    DumpScanner,
)
from supabase_backup.archive.hashing import HashingWriter
from supabase_backup.archive.manifest import read_manifest
from supabase_backup.archive.members import (
    DATABASE_MEMBER,
    MANIFEST_MEMBER,
    ROLES_MEMBER,
    member_path_problem,
)
from supabase_backup.archive.zip_stream import ZipDamaged, ZipEntry, ZipReader
from supabase_backup.errors import ManifestInvalid, UnsafeMemberPath, VerificationFailed
from supabase_backup.units import format_bytes

log = logging.getLogger(__name__)

_BATCH = 10_000
_READ_BUFFER = 1024 * 1024


def verify_archive(path, label: str | None = None, *, scratch_folder=None) -> dict:
    """Verify a zip, given as a local path or a seekable binary file; raises VerificationFailed
    with the first problem found. ``scratch_folder`` holds the scratch database (the system's
    temporary folder by default)."""
    label = label or str(path)
    if isinstance(path, (str, Path)):
        try:
            file = open(path, "rb", buffering=_READ_BUFFER)
        except OSError as error:
            raise VerificationFailed(label, f"not a readable zip file ({error})") from None
        with file:
            return _verify(file, label, scratch_folder)
    return _verify(path, label, scratch_folder)


def open_central_directory_index(
    path: Path, *, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A scratch SQLite database on disk with an empty ``stored`` table, one row per central
    directory entry (verify here, RestoreArchive in restore.py): throw-away data, so no journal and
    no syncs, and a 16 MB page cache, which bounds what it holds in memory."""
    database = sqlite3.connect(str(path), check_same_thread=check_same_thread)
    database.executescript("""
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        PRAGMA cache_size = -16000;
        PRAGMA temp_store = FILE;
        CREATE TABLE stored (name TEXT NOT NULL, method INTEGER, flags INTEGER, crc INTEGER,
                             compressed_size INTEGER, size INTEGER, header_offset INTEGER);
    """)
    return database


def _open_scratch(folder: str) -> sqlite3.Connection:
    database = open_central_directory_index(Path(folder) / "verify.sqlite")
    database.execute(
        "CREATE TABLE listed (name TEXT PRIMARY KEY, size INTEGER, sha256 TEXT) WITHOUT ROWID"
    )
    return database


def _verify(file, label: str, scratch_folder) -> dict:
    try:
        reader = ZipReader(file)
    except ZipDamaged as error:
        raise VerificationFailed(label, f"not a readable zip file ({error})") from None
    with tempfile.TemporaryDirectory(
        prefix="supabase-backup-verify-", dir=scratch_folder
    ) as scratch:
        database = _open_scratch(scratch)
        try:
            return _verify_with(database, reader, label)
        finally:
            database.close()


def _verify_with(database: sqlite3.Connection, reader: ZipReader, label: str) -> dict:
    try:
        first_unsafe = _load_central_directory(database, reader)
    except ZipDamaged as error:
        raise VerificationFailed(label, f"not a readable zip file ({error})") from None
    if first_unsafe:  # first, as restore does: such a name is refused whatever else holds
        raise UnsafeMemberPath(*first_unsafe)
    database.execute("CREATE INDEX stored_by_name ON stored (name)")
    twice = database.execute(
        "SELECT name FROM stored GROUP BY name HAVING count(*) > 1 LIMIT 1"
    ).fetchone()
    if twice:
        raise VerificationFailed(label, f"the zip holds member {twice[0]!r} twice")
    manifest_row = database.execute(
        "SELECT name, method, flags, crc, compressed_size, size, header_offset FROM stored "
        "WHERE name = ?",
        (MANIFEST_MEMBER,),
    ).fetchone()
    if manifest_row is None:
        raise VerificationFailed(label, "manifest.json is missing")
    try:
        header = _load_manifest(database, reader, ZipEntry(*manifest_row), label)
    except ZipDamaged as error:
        raise VerificationFailed(label, f"damaged member: {error}") from None
    except (ManifestInvalid, ValueError, KeyError, TypeError) as error:
        raise VerificationFailed(label, f"manifest.json is not valid: {error}") from None

    missing = database.execute(
        "SELECT name FROM listed WHERE name = ? OR name NOT IN (SELECT name FROM stored) LIMIT 1",
        (MANIFEST_MEMBER,),
    ).fetchone()
    if missing:
        raise VerificationFailed(label, f"member {missing[0]!r} is listed but missing")
    strangers = database.execute(
        "SELECT count(*), min(name) FROM stored WHERE name != ? AND name NOT IN "
        "(SELECT name FROM listed)",
        (MANIFEST_MEMBER,),
    ).fetchone()
    if strangers[0]:
        raise VerificationFailed(
            label, f"{strangers[0]} member(s) not in the manifest, e.g. {strangers[1]!r}"
        )
    if header["format_version"] >= 2:
        clash = _first_file_folder_clash(database, "stored")
        if clash:
            raise VerificationFailed(
                label,
                f"member {clash[0]!r} is also the folder of member {clash[1]!r}: "
                "unzip could not extract both",
            )

    dumps = _dumps_to_prove(header)
    proven = []
    checked = total = 0
    rows = database.execute(
        "SELECT s.name, s.method, s.flags, s.crc, s.compressed_size, s.size, s.header_offset, "
        "l.size, l.sha256 FROM stored s JOIN listed l ON l.name = s.name ORDER BY s.header_offset"
    )
    for row in rows:
        entry = ZipEntry(*row[:7])
        listed_size, listed_sha256 = row[7], row[8]
        digest = HashingWriter(None)
        scanner = DumpScanner(dumps[entry.name][0]) if entry.name in dumps else None
        try:
            for chunk in reader.open(entry).chunks():
                digest.write(chunk)
                if scanner is not None:
                    scanner.feed(chunk)
        except ZipDamaged as error:  # a CRC mismatch, a cut or undecodable member
            raise VerificationFailed(label, f"damaged member: {error}") from None
        if digest.size != listed_size or digest.sha256 != listed_sha256:
            raise VerificationFailed(
                label,
                f"member {entry.name!r} has {digest.size} bytes / sha256 {digest.sha256}, "
                f"manifest says {listed_size} / {listed_sha256}",
            )
        if scanner is not None:
            _check_dump(label, entry.name, scanner.finish(), dumps[entry.name][1])
            proven.append(entry.name)
        checked += 1
        total += digest.size
    log.info(
        "Verified %s: all %s members manifest.json lists (%s of member content) match their "
        "size and sha256",
        label,
        f"{checked:,}",
        format_bytes(total),
    )
    return {
        "members_checked": checked,
        "content_bytes": total,
        "format_version": header["format_version"],
        "run_id": (header.get("run") or {}).get("run_id"),
        "dumps_checked": proven,
    }


def _dumps_to_prove(header: dict) -> dict[str, tuple[str, dict]]:
    """The dump members the manifest says the archive holds: name -> (trailer, its section)."""
    database = header.get("database")
    if not isinstance(database, dict) or not database.get("included", True):
        return {}
    dumps = {database.get("member") or DATABASE_MEMBER: (DATABASE_TRAILER, database)}
    roles = database.get("roles")
    if isinstance(roles, dict) and roles.get("included"):
        dumps[roles.get("member") or ROLES_MEMBER] = (CLUSTER_TRAILER, roles)
    return dumps


def _check_dump(label: str, name: str, contents: DumpContents, section: dict) -> None:
    """The dump proves itself whole, and (archives since the dump_check record) holds the rows and
    COPY blocks the backup counted in it; older archives are held to the trailer and closed
    blocks, which every pg_dump has always written."""
    problem = contents.problem()
    if problem:
        raise VerificationFailed(label, f"member {name!r} is not a whole dump: {problem}")
    recorded = section.get("dump_check")
    if not isinstance(recorded, dict):
        return
    for entry in section.get("tables") or []:
        if "dump_rows" not in entry:
            continue
        found = contents.copy_rows.get((entry["schema"], entry["table"]))
        if found != entry["dump_rows"]:
            held = "no COPY block" if found is None else f"{found:,} rows"
            raise VerificationFailed(
                label,
                f"member {name!r} holds {held} of table {entry['schema']}.{entry['table']}, "
                f"the manifest recorded {entry['dump_rows']} rows at backup time",
            )
    found_totals = (len(contents.copy_rows), contents.rows)
    recorded_totals = (recorded.get("copy_blocks"), recorded.get("copy_rows"))
    if found_totals != recorded_totals:
        raise VerificationFailed(
            label,
            f"member {name!r} holds {found_totals[0]:,} COPY blocks with {found_totals[1]:,} "
            f"rows, the manifest recorded {recorded_totals[0]} blocks with {recorded_totals[1]} "
            "rows at backup time",
        )


def _load_central_directory(
    database: sqlite3.Connection, reader: ZipReader
) -> tuple[str, str] | None:
    """Index every central directory entry; returns the first unsafe name and why, or None."""
    return load_central_directory(database, reader)[1]


def load_central_directory(
    database: sqlite3.Connection, reader: ZipReader
) -> tuple[int, tuple[str, str] | None]:
    """Index every central directory entry into ``stored`` (open_central_directory_index), in
    batches, checking each name as restore does: (entries, the first unsafe name and why or None).
    Verify and restore both read an archive's directory through this."""
    batch: list = []
    count = 0
    first_unsafe = None
    for entry in reader.entries():
        count += 1
        if first_unsafe is None:
            problem = member_path_problem(entry.name)
            if problem:
                first_unsafe = (entry.name, problem)
        batch.append(
            (
                entry.name,
                entry.method,
                entry.flags,
                entry.crc,
                entry.compressed_size,
                entry.size,
                entry.header_offset,
            )
        )
        if len(batch) >= _BATCH:
            database.executemany("INSERT INTO stored VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
            batch.clear()
    database.executemany("INSERT INTO stored VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
    return count, first_unsafe


def _load_manifest(
    database: sqlite3.Connection, reader: ZipReader, entry: ZipEntry, label: str
) -> dict:
    """Stream manifest.json's members into ``listed``; returns its header."""
    text = io.TextIOWrapper(io.BufferedReader(reader.open(entry), _READ_BUFFER), encoding="utf-8")
    header, members = read_manifest(text)
    batch: list = []

    def flush() -> None:
        try:
            database.executemany("INSERT INTO listed VALUES (?, ?, ?)", batch)
            database.commit()
        except sqlite3.IntegrityError:
            database.rollback()  # this batch only: the earlier ones are committed
            for row in batch:  # again one by one, to name the member
                try:
                    database.execute("INSERT INTO listed VALUES (?, ?, ?)", row)
                except sqlite3.IntegrityError:
                    raise VerificationFailed(label, f"member {row[0]!r} is listed twice") from None
            raise
        batch.clear()

    for member in members:
        problem = member_path_problem(member["path"])
        if problem:  # a listed name restore would write to, even if no member is stored under it
            raise UnsafeMemberPath(member["path"], problem)
        batch.append((member["path"], member["size"], member["sha256"]))
        if len(batch) >= _BATCH:
            flush()
    flush()
    # The manifest itself must read to its end: its CRC is checked there.
    while text.read(_READ_BUFFER):
        pass
    return header


def _first_file_folder_clash(database: sqlite3.Connection, table: str) -> tuple[str, str] | None:
    """(name, other) where ``name`` is also a folder of ``other``: the first name at or after
    ``name + '/'`` in binary order starts with it ('0' is the character after '/'). One index
    probe per name, inside SQLite."""
    row = database.execute(f"""
        SELECT outer_row.name, (SELECT inner_row.name FROM {table} inner_row
                                WHERE inner_row.name >= outer_row.name || '/'
                                  AND inner_row.name < outer_row.name || '0'
                                ORDER BY inner_row.name LIMIT 1) AS other
        FROM {table} outer_row WHERE other IS NOT NULL LIMIT 1""").fetchone()
    return (row[0], row[1]) if row else None


def first_file_folder_clash(names) -> tuple[str, str] | None:
    """(name, other) where ``name`` is also a folder of ``other``, or None, for any iterable of
    names; memory stays bounded (a scratch SQLite database on disk)."""
    with tempfile.TemporaryDirectory(prefix="supabase-backup-names-") as scratch:
        database = sqlite3.connect(str(Path(scratch) / "names.sqlite"))
        try:
            database.execute("CREATE TABLE names (name TEXT NOT NULL)")
            iterator = iter(names)
            while batch := [(name,) for _, name in zip(range(_BATCH), iterator)]:
                database.executemany("INSERT INTO names VALUES (?)", batch)
            database.execute("CREATE INDEX names_by_name ON names (name)")
            return _first_file_folder_clash(database, "names")
        finally:
            database.close()
