"""``supabase-backup verify ARCHIVE``: check an archive against its manifest."""

from __future__ import annotations

import argparse
import json

from supabase_backup.archive.encryption import refuse_without_identity
from supabase_backup.archive.hashing import copy_hashing
from supabase_backup.archive.verify import verify_archive
from supabase_backup.destination import s3 as destination
from supabase_backup.destination.location import open_decrypted
from supabase_backup.errors import EXIT_OK, ArchiveNotFound
from supabase_backup.units import format_bytes

LOCAL_READ_BUFFER = 1024 * 1024  # verify reads members in order: large reads, few system calls
HELP = "check an archive against its manifest (a local file or s3://bucket/key)"
DESCRIPTION = """\
Check a backup archive: the zip is readable, manifest.json has a format version this tool reads,
every member listed is present with the size and sha256 the manifest records, and nothing else is
in the zip. The database dump (db/backup.sql, and db/roles.sql) must also prove itself whole: it
ends with pg_dump's closing line, every COPY block ends, and each table's rows in it are the ones
the manifest recorded. Exits 0 only when all of that holds; exits 1 naming the first member that
is missing, extra, truncated, altered or a dump that was cut; exits 9 when there is no archive
at that place; exits 10, as restore does, when a
member name (stored or listed) could land outside the folder it is extracted into ('..', an
absolute path, an empty segment, a backslash).

An s3://bucket/key archive is read in place with ranged GETs (the central directory, then the
members in order): no local copy, memory flat whatever the archive's size."""


def register(commands) -> None:
    parser = commands.add_parser(
        "verify",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("archive", help="a backup-….zip file, or s3://bucket/key")
    parser.add_argument(
        "--identity",
        metavar="FILE",
        help="age identity file (AGE-SECRET-KEY-…) to decrypt an encrypted "
        "….zip.age archive; the manifest is then checked on the plaintext",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON object instead of a sentence",
    )
    parser.set_defaults(run=run)


def verify_location(location: str) -> dict:
    """Verify a local path or an s3:// URL; returns what verify_archive found plus the archive's
    own size and sha256."""

    if location.startswith("s3://"):
        bucket, key = destination.parse_s3_url(location)
        archive_file, reader = destination.open_s3_archive(
            destination.s3_client_from_environment(), bucket, key
        )
        with archive_file:
            result = verify_archive(archive_file, label=location)
            result.update(
                bytes=reader.size, sha256=reader.finish_sha256(), bytes_fetched=reader.bytes_fetched
            )
        return result
    try:
        archive_file = open(location, "rb", buffering=LOCAL_READ_BUFFER)
    except FileNotFoundError:
        # Exit 9, not 1: nothing was read, so nothing is known to be damaged.
        raise ArchiveNotFound(location, "no such file") from None
    with archive_file:
        result = verify_archive(archive_file, label=location)
        archive_file.seek(0)
        size, sha256 = copy_hashing(archive_file)
    result.update(bytes=size, sha256=sha256)
    return result


def verify_encrypted(location: str, identity_file: str) -> dict:
    """Decrypt (streamed, to a temporary file) and verify the plaintext against its manifest;
    the size and sha256 reported are the ciphertext's, as recorded in backup_history."""

    with open_decrypted(location, identity_file) as (plaintext, label):
        result = verify_archive(plaintext, label=label)
        plaintext.seek(0)
        result["plaintext_bytes"], result["plaintext_sha256"] = copy_hashing(plaintext)
    result["decrypted"] = True
    return result


def _dumps(result: dict) -> str:
    names = result.get("dumps_checked") or []
    if not names:
        return ""
    return f", {' and '.join(names)} complete (pg_dump's closing line, every COPY block ended)"


def run(arguments) -> int:

    refuse_without_identity(arguments.archive, arguments.identity)
    if arguments.identity:
        result = verify_encrypted(arguments.archive, arguments.identity)
        label, whole = f"{arguments.archive} (decrypted)", "plaintext"
        size, sha256 = result["plaintext_bytes"], result["plaintext_sha256"]
    else:
        result = verify_location(arguments.archive)
        label, whole = arguments.archive, "archive"
        size, sha256 = result["bytes"], result["sha256"]
    if arguments.json:
        print(json.dumps({"ok": True, "archive": arguments.archive, **result}))
    else:
        print(
            f"OK {label}: {result['members_checked']:,} members "
            f"({format_bytes(result['content_bytes'])}) match the manifest "
            f"(format {result['format_version']}, run {result['run_id']}){_dumps(result)}; {whole} "
            f"{format_bytes(size)}, sha256 {sha256}"
        )
    return EXIT_OK
