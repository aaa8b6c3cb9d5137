"""``supabase-backup verify ARCHIVE``: check an archive against its manifest."""

from __future__ import annotations

import argparse
import contextlib
import json

from supabase_backup.archive.verify import verify_archive
from supabase_backup.destination.location import archive_digest, open_archive
from supabase_backup.errors import EXIT_OK, ArchiveNotFound, VerificationFailed
from supabase_backup.units import format_bytes

HELP = "check an archive against its manifest (a local file or s3://bucket/key)"
DESCRIPTION = """\
Check a backup archive: the zip is readable, manifest.json has a format version this tool reads,
every member listed is present with the size and sha256 the manifest records, and nothing else is
in the zip. Exits 0 only when all of that holds; exits 1 naming the first member that is missing,
extra, truncated or altered.

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
        try:
            archive_file, label = opened.enter_context(open_archive(location, identity_file))
        except ArchiveNotFound as missing:
            if identity_file or location.startswith("s3://"):
                raise
            # A local path that is not there is, to verify, a file that is no readable zip (exit
            # 1), as it always was: scripts tell "check failed" from "no such key on S3" (exit 9).
            raise VerificationFailed(
                location, f"not a readable zip file ({missing.reason})"
            ) from None
        result = verify_archive(archive_file, label=label)
        digest = archive_digest(archive_file)
    if identity_file:
        result.update(
            plaintext_bytes=digest["bytes"], plaintext_sha256=digest["sha256"], decrypted=True
        )
    else:
        result.update(digest)
    return result


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
            f"(format {result['format_version']}, run {result['run_id']}); {whole} "
            f"{format_bytes(size)}, sha256 {sha256}"
        )
    return EXIT_OK
