"""S3: upload the archive, read it back by ranged reads, presign a download.

Every function takes a boto3 S3 client. In the DAG it comes from the amazon provider's S3Hook (the
``aws_default`` connection: credentials, region, endpoint), handed over by ``supabase_backup.airflow``; on
the command line it is a plain ``boto3.client("s3")`` with the usual AWS environment.

The archive key is ``<prefix>backup-YYYY-MM-DD-HH-mm-UTC.zip`` from the run's start time. An
existing key is never overwritten: if it holds this very archive (same sha256 in its metadata — a
retried upload) it is accepted; if it holds another run's archive the next free name
``…-UTC-2.zip``, ``…-UTC-3.zip`` is taken. The archive's metadata names its run
(``x-amz-meta-run-id``).

Once the archive has been read back and verified, ``<archive key>.verified.json`` (the verified
record) is written beside it: the run's outcome, kept where a later run can find it when the
database was down as the run ended (``find_verified_record``). An object of its own rather than
tags on the archive: it needs no permission beyond the PutObject the archive needs (tagging needs
s3:PutObjectTagging, and not every S3-compatible store has it), a listing finds it, and the
archive itself is never rewritten.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from urllib.parse import quote, unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from supabase_backup.archive.hashing import HashingWriter
from supabase_backup.archive.verify import verify_archive
from supabase_backup.errors import (
    ArchiveKeyTaken,
    ArchiveNotFound,
    ConfigurationError,
    UploadFailed,
    VerificationFailed,
)
from supabase_backup.units import format_bytes, format_rate

log = logging.getLogger(__name__)

SHA256_METADATA_KEY = "sha256"  # x-amz-meta-sha256
MANIFEST_SHA256_METADATA_KEY = "manifest-sha256"  # x-amz-meta-manifest-sha256 (streamed archives)
# x-amz-meta-run-id: the run that wrote the archive, percent-encoded (S3 metadata is ASCII text).
RUN_ID_METADATA_KEY = "run-id"
VERIFIED_RECORD_SUFFIX = ".verified.json"
VERIFIED_RECORD_FORMAT = "supabase-backup-verified"
VERIFIED_RECORD_VERSION = 1
PRESIGNED_URL_SECONDS = 15 * 60
MAX_NAME_ATTEMPTS = 50
# Multipart uploads: 16 MiB parts, 4 in flight, so at most 64 MiB of the archive is in memory.
MULTIPART_PART_BYTES = 16 * 2**20
UPLOAD_THREADS = 4
# A streamed archive: 8 MiB parts (S3's minimum is 5 MiB), at most UPLOAD_THREADS parts in flight
# plus the one being filled, so about 40 MiB of the archive is in memory; larger parts only
# when the expected size needs them to stay under 10,000 parts. Each part is retried on its own.
STREAM_PART_BYTES = 8 * 2**20
PART_ATTEMPTS = 4
PART_RETRY_SECONDS = 0.5
# Ranged reads: one GET per this many bytes, and the read buffer of a verify.
RANGE_READ_BYTES = 8 * 2**20


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.lstrip("/"):
        raise ConfigurationError(f"{url!r} is not an s3://bucket/key URL")
    return parts.netloc, parts.path.lstrip("/")


def s3_client_from_environment():
    """A boto3 S3 client from the standard AWS environment (keys, profile, region and
    AWS_ENDPOINT_URL), for the command line."""
    import boto3

    return boto3.client("s3")


def head_object(client, bucket: str, key: str) -> dict | None:
    """``HeadObject``; None when the key does not exist, any other error raised."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def run_metadata(run_id: str | None) -> dict:
    """The object metadata naming the run that wrote it."""
    return {RUN_ID_METADATA_KEY: quote(run_id, safe="")} if run_id else {}


def encryption_arguments(server_side_encryption: str, kms_key_id: str | None) -> dict:
    if server_side_encryption == "none":
        return {}
    extra = {"ServerSideEncryption": server_side_encryption}
    if server_side_encryption == "aws:kms" and kms_key_id:
        extra["SSEKMSKeyId"] = kms_key_id
    return extra


def check_writable(
    client,
    bucket: str,
    prefix: str,
    *,
    server_side_encryption: str = "AES256",
    kms_key_id: str | None = None,
) -> None:
    """Fail before any data moves if the archive could not be written: start a multipart upload
    under the prefix (with the run's encryption, so a KMS key is checked too) and abort it. No
    object is created."""
    key = f"{prefix}.supabase-backup-write-check"
    try:
        upload_id = client.create_multipart_upload(
            Bucket=bucket, Key=key, **encryption_arguments(server_side_encryption, kms_key_id)
        )["UploadId"]
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code == "NoSuchBucket":
            raise ConfigurationError(
                f"the S3 bucket {bucket!r} does not exist: create it, or set the Airflow Variable "
                "supabase_backup_s3_bucket to the bucket that receives the archives"
            ) from None
        if code in (
            "AccessDenied",
            "AllAccessDisabled",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "KMS.AccessDeniedException",
            "KMS.NotFoundException",
        ):
            raise ConfigurationError(
                f"the aws_default connection may not write to s3://{bucket}/{prefix} ({code}): "
                "allow s3:PutObject and s3:AbortMultipartUpload on the prefix (and the KMS key "
                "with aws:kms); docs/DEPLOY.md has the policy"
            ) from None
        raise


def archive_file_name(started_at: datetime, attempt: int = 1, suffix: str = "") -> str:
    """``suffix`` is ``.age`` for a client-side encrypted archive (``….zip.age``)."""
    base = started_at.strftime("backup-%Y-%m-%d-%H-%M-UTC")
    return (f"{base}.zip" if attempt == 1 else f"{base}-{attempt}.zip") + suffix


def archive_key(prefix: str, started_at: datetime, attempt: int = 1, suffix: str = "") -> str:
    return f"{prefix}{archive_file_name(started_at, attempt, suffix)}"


def choose_archive_key(
    client,
    bucket: str,
    prefix: str,
    started_at: datetime,
    sha256: str | None,
    first_attempt: int = 1,
    suffix: str = "",
    *,
    manifest_sha256: str | None = None,
) -> tuple[str, bool, int]:
    """(key, already_uploaded, attempt): the first free key from ``first_attempt`` on, or the key
    already holding this archive: the same sha256 in its metadata, or, for a streamed archive (whose
    hash is known only once written), the same manifest's sha256 — the manifest names every
    member's size and hash, so the same manifest is the same archive."""
    for attempt in range(first_attempt, MAX_NAME_ATTEMPTS + 1):
        key = archive_key(prefix, started_at, attempt, suffix)
        head = head_object(client, bucket, key)
        if head is None:
            return key, False, attempt
        metadata = head.get("Metadata") or {}
        if (sha256 is not None and metadata.get(SHA256_METADATA_KEY) == sha256) or (
            manifest_sha256 is not None
            and metadata.get(MANIFEST_SHA256_METADATA_KEY) == manifest_sha256
        ):
            return key, True, attempt
        log.info("s3://%s/%s holds another archive; trying the next name", bucket, key)
    raise ArchiveKeyTaken(bucket, archive_key(prefix, started_at, MAX_NAME_ATTEMPTS, suffix))


class _KeyTakenMeanwhile(Exception):
    """The conditional write found the key taken after our HEAD said it was free (a race)."""


def _is_precondition_failed(error: ClientError) -> bool:
    return (
        error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")
        or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412
    )


def part_size_for(size: int) -> int:
    """16 MiB parts, larger when needed to stay under S3's 10,000 parts."""
    return max(MULTIPART_PART_BYTES, -(-size // 9_000))


def _put_if_absent(client, source_path, bucket: str, key: str, size: int, extra: dict) -> None:
    """Write the object only if the key does not exist (``If-None-Match: *`` on PutObject or on
    CompleteMultipartUpload, which S3 enforces atomically). Memory stays at a few parts."""
    try:
        if size <= MULTIPART_PART_BYTES:
            with source_path.open("rb") as source:
                client.put_object(
                    Bucket=bucket, Key=key, Body=source.read(), IfNoneMatch="*", **extra
                )
            return
        _multipart_if_absent(client, source_path, bucket, key, size, extra)
    except ClientError as error:
        if _is_precondition_failed(error):
            raise _KeyTakenMeanwhile(key) from None
        raise


def _multipart_if_absent(
    client, source_path, bucket: str, key: str, size: int, extra: dict
) -> None:
    part_size = part_size_for(size)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]

    def upload_part(number: int) -> dict:
        with source_path.open("rb") as source:  # one handle per part: parts go in parallel
            source.seek((number - 1) * part_size)
            body = source.read(part_size)
        reply = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": reply["ETag"]}

    try:
        with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
            parts = list(pool.map(upload_part, range(1, -(-size // part_size) + 1)))
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError:
            log.warning("Could not abort multipart upload %s of s3://%s/%s", upload_id, bucket, key)
        raise


def _is_transient(error: Exception) -> bool:
    if isinstance(error, BotoCoreError):  # connection refused or reset, timeouts
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = error.response.get("Error", {}).get("Code")
        return status >= 500 or code in (
            "SlowDown",
            "RequestTimeout",
            "InternalError",
            "ServiceUnavailable",
            "Throttling",
        )
    return False


class MultipartUploadSink:
    """A write-only file whose bytes become one S3 object through a multipart upload, written
    while they are produced: full parts go up from a small thread pool, each retried on its own,
    and ``complete`` finishes the upload with ``If-None-Match: *`` (S3 refuses it atomically when
    the key exists meanwhile: _KeyTakenMeanwhile). Memory: (threads + 1) parts at most."""

    def __init__(
        self,
        client,
        bucket: str,
        key: str,
        extra: dict,
        *,
        part_bytes: int = STREAM_PART_BYTES,
        threads: int = UPLOAD_THREADS,
    ) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._part_bytes = part_bytes
        self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="archive-part")
        self._slots = threading.BoundedSemaphore(threads)
        self._buffer = bytearray()
        self._futures: list = []
        self.size = 0

    def write(self, data) -> int:
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= self._part_bytes:
            self._submit(bytes(memoryview(self._buffer)[: self._part_bytes]))
            del self._buffer[: self._part_bytes]
        return len(data)

    def flush(self) -> None:
        pass

    def _submit(self, body: bytes) -> None:
        for future in self._futures:  # fail fast: a part that gave up stops the archive early
            if future.done() and future.exception() is not None:
                raise future.exception()
        self._slots.acquire()
        number = len(self._futures) + 1
        try:
            future = self._pool.submit(self._upload_part, number, body)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def _upload_part(self, number: int, body: bytes) -> dict:
        for attempt in range(1, PART_ATTEMPTS + 1):
            try:
                reply = self._client.upload_part(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=body,
                )
                return {"PartNumber": number, "ETag": reply["ETag"]}
            except (BotoCoreError, ClientError) as error:
                if attempt == PART_ATTEMPTS or not _is_transient(error):
                    raise
                log.warning(
                    "Part %d of s3://%s/%s failed (%s); retrying it",
                    number,
                    self._bucket,
                    self._key,
                    error,
                )
                time.sleep(PART_RETRY_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def complete(self) -> None:
        if self._buffer or not self._futures:
            self._submit(bytes(self._buffer))
            self._buffer = bytearray()
        parts = [future.result() for future in self._futures]
        self._pool.shutdown()
        try:
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except ClientError as error:
            if _is_precondition_failed(error):
                self.abort()
                raise _KeyTakenMeanwhile(self._key) from None
            raise

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self.upload_id
            )
        except (BotoCoreError, ClientError):
            log.warning(
                "Could not abort multipart upload %s of s3://%s/%s",
                self.upload_id,
                self._bucket,
                self._key,
            )


def stream_archive(
    client,
    write_archive,
    bucket: str,
    prefix: str,
    started_at: datetime,
    *,
    manifest_sha256: str,
    expected_bytes: int = 0,
    server_side_encryption: str = "AES256",
    kms_key_id: str | None = None,
    run_id: str | None = None,
) -> dict:
    """Write the archive straight into S3 under the first free name: ``write_archive(output)``
    writes the zip to ``output`` (a file-like with ``write``) and returns its summary. No local
    copy: the bytes go up as multipart parts while the zip is written.

    The conditional CompleteMultipartUpload keeps "never overwrite": a race lost at the end writes
    the archive again under the next name. No sha256 can be set before the bytes exist, so the
    object carries its manifest's sha256 instead: a retried task recognises its own archive by it
    and adopts it (``already_uploaded``, sha256 None: the read-back computes it).
    """
    extra = {
        "ContentType": "application/zip",
        "Metadata": {**run_metadata(run_id), MANIFEST_SHA256_METADATA_KEY: manifest_sha256},
        **encryption_arguments(server_side_encryption, kms_key_id),
    }
    part_bytes = max(STREAM_PART_BYTES, -(-expected_bytes // 9_000))
    started = time.monotonic()
    attempt = 1
    while True:
        key, already_there, attempt = choose_archive_key(
            client, bucket, prefix, started_at, None, attempt, manifest_sha256=manifest_sha256
        )
        if already_there:
            head = head_object(client, bucket, key)
            assert head is not None  # the name check found the object there a moment ago
            log.info(
                "s3://%s/%s already holds this archive (a retried upload); verifying it",
                bucket,
                key,
            )
            return {
                "s3_bucket": bucket,
                "s3_key": key,
                "bytes": head["ContentLength"],
                "sha256": None,
                "streamed": True,
                "already_uploaded": True,
            }
        sink = MultipartUploadSink(client, bucket, key, extra, part_bytes=part_bytes)
        output = HashingWriter(sink)
        try:
            written = write_archive(output)
            sink.complete()
            break
        except _KeyTakenMeanwhile:
            log.warning(
                "s3://%s/%s was taken by another upload while this one ran; writing the "
                "archive again under the next name",
                bucket,
                key,
            )
            attempt += 1
        except BaseException:
            sink.abort()
            raise
    seconds = max(time.monotonic() - started, 1e-6)
    head = head_object(client, bucket, key)
    if head is None or head["ContentLength"] != output.size:
        raise UploadFailed(
            bucket,
            key,
            f"it holds {head and head['ContentLength']} bytes after the "
            f"upload, expected {output.size}",
        )
    log.info(
        "Streamed the archive to s3://%s/%s: %s in %.1f s (%s), %d parts",
        bucket,
        key,
        format_bytes(output.size),
        seconds,
        format_rate(output.size, seconds),
        -(-output.size // part_bytes),
    )
    return {
        **written,
        "s3_bucket": bucket,
        "s3_key": key,
        "bytes": output.size,
        "sha256": output.sha256,
        "etag": head.get("ETag"),
        "server_side_encryption": head.get("ServerSideEncryption"),
        "seconds": round(seconds, 3),
        "streamed": True,
    }


def upload_archive(
    client,
    source_path,
    bucket: str,
    prefix: str,
    started_at: datetime,
    *,
    sha256: str,
    size: int,
    server_side_encryption: str = "AES256",
    kms_key_id: str | None = None,
    suffix: str = "",
    metadata: dict | None = None,
    content_type: str = "application/zip",
    run_id: str | None = None,
) -> dict:
    """Upload the archive under the first free name, never over another object.

    A HEAD picks the name (and recognises this very archive after a retried task); the write
    itself is conditional, so a second deployment or a re-run racing for the same minute gets 412
    and moves on to the next name instead of replacing an archive.
    """
    extra = {
        "Metadata": {**(metadata or {}), **run_metadata(run_id), SHA256_METADATA_KEY: sha256},
        "ContentType": content_type,
        **encryption_arguments(server_side_encryption, kms_key_id),
    }
    started = time.monotonic()
    attempt = 1
    while True:
        key, already_there, attempt = choose_archive_key(
            client, bucket, prefix, started_at, sha256, attempt, suffix
        )
        if already_there:
            log.info("s3://%s/%s already holds this archive (a retried upload)", bucket, key)
            return {"s3_bucket": bucket, "s3_key": key, "already_uploaded": True}
        try:
            _put_if_absent(client, source_path, bucket, key, size, extra)
            break
        except _KeyTakenMeanwhile:
            log.warning(
                "s3://%s/%s was taken by another upload while this one ran; trying the next name",
                bucket,
                key,
            )
            attempt += 1
    seconds = max(time.monotonic() - started, 1e-6)
    head = head_object(client, bucket, key)
    if head is None or head["ContentLength"] != size:
        raise UploadFailed(
            bucket,
            key,
            f"it holds {head and head['ContentLength']} bytes after the upload, expected {size}",
        )
    log.info(
        "Uploaded s3://%s/%s: the zip, %s, in %.1f s (%s)",
        bucket,
        key,
        format_bytes(size),
        seconds,
        format_rate(size, seconds),
    )
    return {
        "s3_bucket": bucket,
        "s3_key": key,
        "etag": head.get("ETag"),
        "server_side_encryption": head.get("ServerSideEncryption"),
        "seconds": round(seconds, 3),
    }


class S3RangeReader(io.RawIOBase):
    """A seekable, read-only file over one S3 object, each read a ranged GET: zipfile can read the
    central directory and then each member with no local copy of the archive.

    It also hashes the object in order as a side effect: a read that starts at (or a little past)
    the first byte not yet hashed extends the hash, fetching the small gap too (zipfile skips each
    member's data descriptor). ``finish_sha256`` hashes whatever was never read in order — the
    central directory, mostly — so verifying the members and the whole object costs one pass.
    """

    SMALL_GAP = 64 * 1024

    def __init__(self, client, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self._client, self._bucket, self._key, self._size = client, bucket, key, size
        self._position = 0
        self._hash = HashingWriter(None)
        self.bytes_fetched = 0

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def _fetch(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object."""
        body = self._client.get_object(
            Bucket=self._bucket, Key=self._key, Range=f"bytes={start}-{end - 1}"
        )["Body"]
        with body:
            data = body.read()
        self.bytes_fetched += len(data)
        return data

    def readinto(self, buffer) -> int:
        if self._position >= self._size:
            return 0
        end = min(self._size, self._position + len(buffer))
        hashed = self._hash.size
        start = hashed if hashed <= self._position <= hashed + self.SMALL_GAP else self._position
        data = self._fetch(start, end)
        if start == hashed:
            self._hash.write(data)
        wanted = data[self._position - start :]
        buffer[: len(wanted)] = wanted
        self._position += len(wanted)
        return len(wanted)

    def finish_sha256(self) -> str:
        """The whole object's sha256, reading only what was not yet hashed in order."""
        while self._hash.size < self._size:
            start = self._hash.size
            self._hash.write(self._fetch(start, min(self._size, start + RANGE_READ_BYTES)))
        return self._hash.sha256


def open_s3_archive(client, bucket: str, key: str) -> tuple[io.BufferedReader, S3RangeReader]:
    """(buffered file, its range reader) over s3://bucket/key; ArchiveNotFound when absent."""
    head = head_object(client, bucket, key)
    if head is None:
        raise ArchiveNotFound(f"s3://{bucket}/{key}", "the key does not exist")
    reader = S3RangeReader(client, bucket, key, head["ContentLength"])
    return io.BufferedReader(reader, buffer_size=RANGE_READ_BYTES), reader


def read_back_and_verify(client, bucket: str, key: str, *, size: int, sha256: str | None) -> dict:
    """Check the uploaded archive in place: every member against the manifest by ranged reads,
    then the whole object's size and sha256 against what was uploaded (``sha256`` None: an archive
    adopted from an earlier try, whose members were just checked; its hash is what was read). No
    local copy."""
    label = f"s3://{bucket}/{key}"
    started = time.monotonic()
    archive_file, reader = open_s3_archive(client, bucket, key)
    with archive_file:
        result = verify_archive(archive_file, label=label)
        read_sha256 = reader.finish_sha256()
    sha256 = sha256 or read_sha256
    if (reader.size, read_sha256) != (size, sha256):
        raise VerificationFailed(
            label,
            f"it reads back as {reader.size} bytes / sha256 "
            f"{read_sha256}, the upload was {size} / {sha256}",
        )
    seconds = time.monotonic() - started
    log.info(
        "Read back %s: %s fetched in %.1f s (%s), whole-archive sha256 matches",
        label,
        format_bytes(reader.bytes_fetched),
        seconds,
        format_rate(reader.bytes_fetched, seconds),
    )
    result.update(
        {
            "bytes": size,
            "sha256": sha256,
            "bytes_fetched": reader.bytes_fetched,
            "seconds": round(seconds, 3),
        }
    )
    return result


def presigned_download_url(
    client, bucket: str, key: str, expires_in: int = PRESIGNED_URL_SECONDS
) -> str:
    """A GET URL for the archive that works for ``expires_in`` seconds (SigV4)."""
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
    )


# --- the verified record ------------------------------------------------------------------------


def verified_record_key(archive_key: str) -> str:
    return archive_key + VERIFIED_RECORD_SUFFIX


def write_verified_record(
    client,
    bucket: str,
    archive_key: str,
    record: dict,
    *,
    server_side_encryption: str = "AES256",
    kms_key_id: str | None = None,
) -> str:
    """``PutObject`` of ``<archive key>.verified.json``: ``record`` (it names ``run_id``, the
    ``attempt`` and everything the run's history row needs) after the archive was verified.
    Written only by verification, so its presence is the fact "this archive was verified". A
    retried verification rewrites it with the same content; it is never written for another
    run's archive (the key is this run's archive's). Returns its key."""
    key = verified_record_key(archive_key)
    body = {"format": VERIFIED_RECORD_FORMAT, "version": VERIFIED_RECORD_VERSION, **record}
    client.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(body, sort_keys=True, default=str).encode(),
        ContentType="application/json",
        Metadata=run_metadata(record.get("run_id")),
        **encryption_arguments(server_side_encryption, kms_key_id),
    )
    return key


def find_verified_record(
    client, bucket: str, prefix: str, run_id: str, *, attempt: int, since: datetime
) -> dict | None:
    """The verified record of attempt ``attempt`` of ``run_id`` whose archive is still in S3 with
    the size verified (and, when its metadata names a run, naming this one), or None.

    Archive keys sort by their run's start, so the listing starts a day before ``since`` (when the
    run's history row was started, a little after the start that named the key) and only records
    of archives named from then on are read: a settle costs a listing of the newest keys and a GET
    of each of their few records, however many archives the prefix holds."""
    start_after = f"{prefix}backup-{(since - timedelta(days=1)):%Y-%m-%d}"
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(
        Bucket=bucket, Prefix=f"{prefix}backup-", StartAfter=start_after
    ):
        for item in page.get("Contents") or []:
            if not item["Key"].endswith(VERIFIED_RECORD_SUFFIX):
                continue
            record = _read_verified_record(client, bucket, item["Key"])
            if record is None or record.get("run_id") != run_id:
                continue
            if int(record.get("attempt") or 0) != attempt:
                log.info("%s is of an earlier attempt of run %s", item["Key"], run_id)
                continue
            if _archive_is_there(client, bucket, record, run_id):
                return {**record, "record_key": item["Key"]}
    return None


def _read_verified_record(client, bucket: str, key: str) -> dict | None:
    with client.get_object(Bucket=bucket, Key=key)["Body"] as body:
        try:
            record = json.loads(body.read())
        except ValueError:
            log.warning("s3://%s/%s is not a verified record (not JSON); ignored", bucket, key)
            return None
    if not isinstance(record, dict) or record.get("format") != VERIFIED_RECORD_FORMAT:
        log.warning("s3://%s/%s is not a verified record; ignored", bucket, key)
        return None
    return record


def _archive_is_there(client, bucket: str, record: dict, run_id: str) -> bool:
    """The record's archive exists, holds the bytes verified and is not another run's."""
    archive_key = record.get("s3_key") or ""
    head = head_object(client, bucket, archive_key) if archive_key else None
    if head is None:
        log.warning(
            "The verified archive s3://%s/%s of run %s is gone", bucket, archive_key, run_id
        )
        return False
    named = (head.get("Metadata") or {}).get(RUN_ID_METADATA_KEY)
    if head["ContentLength"] != (record.get("summary") or {}).get("size_bytes") or (
        named is not None and unquote(named) != run_id
    ):
        log.warning(
            "s3://%s/%s does not match the verified record of run %s: not trusted",
            bucket,
            archive_key,
            run_id,
        )
        return False
    return True
