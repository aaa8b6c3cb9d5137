"""``supabase-backup verify ARCHIVE``: check an archive against its manifest."""

from __future__ import annotations

import argparse
import contextlib
import json

from supabase_backup.archive.verify import verify_archive
from supabase_backup.destination.location import archive_digest, open_archive
from supabase_backup.errors import EXIT_OK
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


def verify_location(location: str, identity_file: str | None = None) -> dict:
    """Verify the archive at a local path or an s3:// URL (decrypted with ``identity_file``);
    returns what verify_archive found plus the size and sha256 of the whole archive, or of its
    plaintext (``plaintext_bytes``, ``plaintext_sha256``) when it was decrypted."""

    with contextlib.ExitStack() as opened:
        # A location that is not there, local or on S3, is exit 9 (ArchiveNotFound), not 1:
        # nothing was read, so nothing is known to be damaged.
        archive_file, label = opened.enter_context(open_archive(location, identity_file))
        result = verify_archive(archive_file, label=label)
        digest = archive_digest(archive_file)
    if identity_file:
        result.update(
            plaintext_bytes=digest["bytes"], plaintext_sha256=digest["sha256"], decrypted=True
        )
    else:
        result.update(digest)
    return result


def _dumps(result: dict) -> str:
    names = result.get("dumps_checked") or []
    if not names:
        return ""
    return f", {' and '.join(names)} complete (pg_dump's closing line, every COPY block ended)"


def run(arguments) -> int:
    result = verify_location(arguments.archive, arguments.identity)
    if arguments.identity:
        label, whole = f"{arguments.archive} (decrypted)", "plaintext"
        size, sha256 = result["plaintext_bytes"], result["plaintext_sha256"]
    else:
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
