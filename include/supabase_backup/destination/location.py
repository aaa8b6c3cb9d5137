"""Open an archive by its location: a local file or ``s3://bucket/key``, plain or encrypted.

Every reader of an archive by location (``verify``, ``restore``, the restore drill) opens it here,
so each kind is opened one way: a plain zip on S3 is read in place by ranged GETs; an encrypted
one (``….zip.age``) streams through the decryptor into a private temporary file, because zip
reading needs to seek and the plaintext must never be whole in memory.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from supabase_backup.archive.encryption import (
    decrypted_copy,
    recipients_label,
    refuse_without_identity,
)
from supabase_backup.archive.hashing import copy_hashing
from supabase_backup.destination import s3 as destination
from supabase_backup.errors import ArchiveNotFound

# Reads of a local zip in 1 MiB blocks: verify walks every member in order, as verify_archive
# does when given a path.
LOCAL_READ_BYTES = 2**20


@contextlib.contextmanager
def open_archive(
    location: str, identity_file: str | None = None, *, s3_client=None
) -> Iterator[tuple[IO[bytes], str]]:
    """(seekable binary zip, label) of the archive at ``location``.

    With ``identity_file`` the archive is decrypted first (the label then says so); an encrypted
    name without one is refused. ``s3_client`` reads ``s3://`` locations (default: one from the
    environment's AWS settings). A location that does not exist is ArchiveNotFound.
    """
    refuse_without_identity(location, identity_file)
    if identity_file:
        plaintext_path = _decrypt(location, identity_file, s3_client)
        try:
            with plaintext_path.open("rb") as plaintext:
                yield plaintext, f"{location} (decrypted)"
        finally:
            plaintext_path.unlink(missing_ok=True)
        return
    if location.startswith("s3://"):
        bucket, key = destination.parse_s3_url(location)
        archive_file: Any
        archive_file, _ = destination.open_s3_archive(_client(s3_client), bucket, key)
    else:
        archive_file = _open_local(location)
    with archive_file:
        yield archive_file, location


def archive_digest(archive_file: IO[bytes]) -> dict:
    """``bytes`` and ``sha256`` of a whole archive ``open_archive`` opened. One read in place
    from S3 finishes the hash its range reader kept while the members were read in order, so only
    what was not yet read is fetched (``bytes_fetched`` says how much was in all)."""
    reader = getattr(archive_file, "raw", None)
    if isinstance(reader, destination.S3RangeReader):
        sha256 = reader.finish_sha256()
        return {"bytes": reader.size, "sha256": sha256, "bytes_fetched": reader.bytes_fetched}
    archive_file.seek(0)
    size, sha256 = copy_hashing(archive_file)
    return {"bytes": size, "sha256": sha256}


def _client(s3_client):
    return s3_client if s3_client is not None else destination.s3_client_from_environment()


def _open_local(location: str) -> BinaryIO:
    try:
        return open(location, "rb", buffering=LOCAL_READ_BYTES)
    except FileNotFoundError:
        raise ArchiveNotFound(location, "no such file") from None


def _decrypt(location: str, identity_file: str, s3_client) -> Path:
    """The plaintext of an encrypted archive in a private temporary file (``TMPDIR``; as large as
    the archive), which the caller removes. The ciphertext is read once, in order."""
    folder = tempfile.gettempdir()
    if not location.startswith("s3://"):
        with _open_local(location) as source:
            return decrypted_copy(source, folder, identity_file, label=location)
    bucket, key = destination.parse_s3_url(location)
    client = _client(s3_client)
    head = destination.head_object(client, bucket, key)
    if head is None:
        raise ArchiveNotFound(location, "the key does not exist")
    with client.get_object(Bucket=bucket, Key=key)["Body"] as body:
        return decrypted_copy(
            body,
            folder,
            identity_file,
            label=location,
            recipients=recipients_label(head.get("Metadata")),
        )
