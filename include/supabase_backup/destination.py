"""S3, through the amazon provider's S3Hook: upload the archive, read it back, presign a download.

The archive key is ``<prefix>backup-YYYY-MM-DD-HH-mm-UTC.zip`` from the run's start time. An
existing key is never overwritten: if it holds this very archive (same sha256 in its metadata — a
retried upload) it is accepted; if it holds another run's archive the next free name
``…-UTC-2.zip``, ``…-UTC-3.zip`` is taken.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from datetime import datetime

from boto3.s3.transfer import TransferConfig

from supabase_backup.errors import ArchiveKeyTaken, BackupError
from supabase_backup.hashing import copy_hashing

log = logging.getLogger(__name__)

SHA256_METADATA_KEY = "sha256"  # x-amz-meta-sha256
PRESIGNED_URL_SECONDS = 15 * 60
MAX_NAME_ATTEMPTS = 50
# Streaming from an object-store staging file: at most 4 parts of 16 MiB in memory at once.
BOUNDED_MEMORY_TRANSFER = TransferConfig(multipart_chunksize=16 * 2**20, max_concurrency=4,
                                         max_io_queue=4)


def archive_file_name(started_at: datetime, attempt: int = 1) -> str:
    base = started_at.strftime("backup-%Y-%m-%d-%H-%M-UTC")
    return f"{base}.zip" if attempt == 1 else f"{base}-{attempt}.zip"


def archive_key(prefix: str, started_at: datetime, attempt: int = 1) -> str:
    return f"{prefix}{archive_file_name(started_at, attempt)}"


def choose_archive_key(s3_hook, bucket: str, prefix: str, started_at: datetime, sha256: str):
    """(key, already_uploaded): the first free key, or the key already holding this archive."""
    for attempt in range(1, MAX_NAME_ATTEMPTS + 1):
        key = archive_key(prefix, started_at, attempt)
        head = s3_hook.head_object(key=key, bucket_name=bucket)
        if head is None:
            return key, False
        if (head.get("Metadata") or {}).get(SHA256_METADATA_KEY) == sha256:
            return key, True
        log.info("s3://%s/%s holds another archive; trying the next name", bucket, key)
    raise ArchiveKeyTaken(bucket, archive_key(prefix, started_at, MAX_NAME_ATTEMPTS))


def upload_archive(
    s3_hook, source_path, bucket: str, key: str, *, sha256: str, size: int,
    server_side_encryption: str = "AES256", kms_key_id: str | None = None,
) -> dict:
    """Upload with boto3's managed transfer (multipart above the hook's threshold), SSE on."""
    extra_args = {"Metadata": {SHA256_METADATA_KEY: sha256}, "ContentType": "application/zip"}
    if server_side_encryption != "none":
        extra_args["ServerSideEncryption"] = server_side_encryption
        if server_side_encryption == "aws:kms" and kms_key_id:
            extra_args["SSEKMSKeyId"] = kms_key_id
    started = time.monotonic()
    client = s3_hook.get_conn()
    if getattr(source_path, "protocol", "file") in ("file", "local", ""):
        # From a file name boto3 reads each part lazily from disk; from a file object it buffers
        # every in-flight part in memory (about 130 MiB more for a 200 MiB archive, measured).
        client.upload_file(str(source_path.path), bucket, key, ExtraArgs=extra_args,
                           Config=s3_hook.transfer_config)
    else:
        with source_path.open("rb") as source:
            client.upload_fileobj(source, bucket, key, ExtraArgs=extra_args,
                                  Config=BOUNDED_MEMORY_TRANSFER)
    seconds = max(time.monotonic() - started, 1e-6)
    head = s3_hook.head_object(key=key, bucket_name=bucket)
    if head is None or head["ContentLength"] != size:
        raise BackupError(
            f"s3://{bucket}/{key} has {head and head['ContentLength']} bytes after upload, "
            f"expected {size}"
        )
    log.info("Uploaded s3://%s/%s: %.1f MiB in %.1f s (%.1f MiB/s)", bucket, key, size / 2**20,
             seconds, size / 2**20 / seconds)
    return {
        "s3_bucket": bucket,
        "s3_key": key,
        "etag": head.get("ETag"),
        "server_side_encryption": head.get("ServerSideEncryption"),
        "seconds": round(seconds, 3),
    }


def download_archive(s3_hook, bucket: str, key: str, target_path: str) -> tuple[int, str]:
    """Stream an object to a local file; returns (size, sha256) of what arrived."""
    body = s3_hook.get_conn().get_object(Bucket=bucket, Key=key)["Body"]
    with open(target_path, "wb") as output:
        return copy_hashing(body, output)


def read_back_and_verify(s3_hook, bucket: str, key: str, *, size: int, sha256: str,
                         scratch_folder: str | None = None) -> dict:
    """Download the uploaded archive, compare it whole, then check every member."""
    from supabase_backup.verify import verify_archive

    with tempfile.TemporaryDirectory(prefix="supabase-backup-verify-", dir=scratch_folder) as folder:
        local_copy = os.path.join(folder, "archive.zip")
        started = time.monotonic()
        downloaded_size, downloaded_sha256 = download_archive(s3_hook, bucket, key, local_copy)
        if (downloaded_size, downloaded_sha256) != (size, sha256):
            raise BackupError(
                f"s3://{bucket}/{key} read back as {downloaded_size} bytes / sha256 "
                f"{downloaded_sha256}, uploaded {size} / {sha256}"
            )
        result = verify_archive(local_copy, label=f"s3://{bucket}/{key}")
    result.update({"bytes": size, "sha256": sha256,
                   "seconds": round(time.monotonic() - started, 3)})
    return result


def presigned_download_url(s3_hook, bucket: str, key: str,
                           expires_in: int = PRESIGNED_URL_SECONDS) -> str:
    url = s3_hook.generate_presigned_url(
        client_method="get_object", params={"Bucket": bucket, "Key": key}, expires_in=expires_in
    )
    if not url:  # the hook returns None instead of raising
        raise BackupError(f"could not presign s3://{bucket}/{key}; see the worker log")
    return url
