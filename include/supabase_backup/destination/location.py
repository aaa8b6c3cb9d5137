"""TODO"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from typing import IO

from supabase_backup.archive.encryption import decrypted_copy, recipients_label
from supabase_backup.destination import s3 as destination
from supabase_backup.errors import ArchiveNotFound


@contextlib.contextmanager
def open_archive(location: str) -> Iterator[tuple[io.BufferedIOBase, str]]:
    """(seekable binary file, label) of a local zip or s3://bucket/key (read by ranged GETs)."""
    if location.startswith("s3://"):
        bucket, key = destination.parse_s3_url(location)
        archive_file, _ = destination.open_s3_archive(
            destination.s3_client_from_environment(), bucket, key
        )
    else:
        try:
            archive_file = open(location, "rb")
        except FileNotFoundError:
            raise ArchiveNotFound(location, "no such file") from None
    with archive_file:
        yield archive_file, location


@contextlib.contextmanager
def open_decrypted(location: str, identity_file: str) -> Iterator[tuple[IO[bytes], str]]:
    """(seekable plaintext zip, label) of an encrypted archive, local or ``s3://bucket/key``.

    The ciphertext streams through the decryptor into a private temporary file (``TMPDIR``; as
    large as the archive), which is removed on exit: zip reading needs to seek, and the plaintext
    must never be whole in memory.
    """

    folder = tempfile.gettempdir()
    if location.startswith("s3://"):
        bucket, key = destination.parse_s3_url(location)
        client = destination.s3_client_from_environment()
        head = destination.head_object(client, bucket, key)
        if head is None:
            raise ArchiveNotFound(location, "the key does not exist")
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with body:
            path = decrypted_copy(
                body,
                folder,
                identity_file,
                label=location,
                recipients=recipients_label(head.get("Metadata")),
            )
    else:
        try:
            source = open(location, "rb")
        except FileNotFoundError:
            raise ArchiveNotFound(location, "no such file") from None
        with source:
            path = decrypted_copy(source, folder, identity_file, label=location)
    try:
        with path.open("rb") as plaintext:
            yield plaintext, f"{location} (decrypted)"
    finally:
        path.unlink(missing_ok=True)
