"""Storage downloads: every listed object of a bucket, streamed into staging.

Downloads stream in 1 MiB chunks straight to the staged file while hashing, through a fixed number of
download threads sharing one urllib3 pool (api_client.DownloadPool), each holding one object at a time:
memory stays flat whatever the number or size of objects. Listing stays on httpx like every other
JSON call (``storage_listing``); the bytes go through urllib3 because a bucket of many small objects is
one request per object, the export is CPU-bound on its HTTP client, and urllib3 costs well under half
of httpx's CPU per request (bench/README.md). Objects are staged under sequence numbers
(``objects/00000001``), never under their names, so no key can reach outside the bucket's folder;
``index.jsonl`` maps each number back to its key. Layout and field names are the contract with
reconcile and the archive builder (see staging.py).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from typing import IO, Any

from supabase_backup.archive.hashing import HashingWriter
from supabase_backup.errors import (
    ApiNotFound,
    ApiTransientError,
    ApiUnauthorized,
    ObjectDownloadFailed,
)
from supabase_backup.sources.api_client import (
    ApiSettings,
    DownloadPool,
    call_with_retries,
    open_client,
)
from supabase_backup.sources.storage_listing import (
    ListedObject,
    ObjectListing,
    list_objects,
    object_route,
    read_ahead,
)
from supabase_backup.staging import BucketStaging, StagingPath
from supabase_backup.units import format_bytes, format_rate

log = logging.getLogger(__name__)

DOWNLOAD_CHUNK_BYTES = 1024 * 1024
PROGRESS_LOG_SECONDS = 5.0
MISSING_FILE_NAME = "missing.jsonl"
UNREADABLE_FILE_NAME = "unreadable.jsonl"
# This many objects failing after their retries, with no success between them, is the service failing
# (down, or refusing everything), not a few bad objects: the export stops instead of going on.
MAX_FAILURES_IN_A_ROW = 10

# report_progress(progress) is told a bucket's counts at most every PROGRESS_LOG_SECONDS and at the end:
# {"bucket", "objects_done", "objects_known", "listing_done", "bytes_done", "missing"}.
ProgressReport = Callable[[dict[str, Any]], None]


def _is_local(path: StagingPath) -> bool:
    return path.protocol in ("file", "local", "")


class _NewLocalFile:
    """A local file created (or emptied) for writing, written with ``os.write`` straight from each chunk.

    ``open(path, "wb")`` makes six system calls for a small object (it also stats the file, asks whether
    it is a terminal and where its position is) and copies every chunk through its buffer; this makes
    three: open, write, close. With thousands of small objects that is measurable, the more so as every
    system call lets go of the GIL the download threads share.
    """

    def __init__(self, path: str) -> None:
        self._descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)

    def write(self, data: bytes) -> int:
        written = os.write(self._descriptor, data)
        # A regular file takes the whole write unless something is wrong (a full disk), and then the
        # next write raises.
        while written < len(data):
            written += os.write(self._descriptor, memoryview(data)[written:])
        return written

    def close(self) -> None:
        os.close(self._descriptor)

    def __enter__(self) -> _NewLocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_binary_for_writing(path: StagingPath | str) -> Any:
    # A str is a local file path, and so is a local StagingPath: no fsspec layers for thousands of
    # small files.
    if isinstance(path, str):
        return _NewLocalFile(path)
    if _is_local(path):
        return _NewLocalFile(path.path)
    return path.open("wb")


def _staged_object_name(number: int) -> str:
    # Must match BucketStaging.object_path (a unit test holds them together). Building the name here
    # instead of a path object per file saves about 0.2 ms of CPU per object (measured), which is a
    # fifth of the per-object cost with thousands of small objects.
    return f"{number:08d}"


class _DownloadCancelled(Exception):
    pass


def download_object(
    pool: DownloadPool,
    bucket_id: str,
    key: str,
    target: StagingPath | str,
    *,
    on_bytes: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Stream one object to ``target`` (a str is a local file path) and describe what was written.

    ``GET /storage/v1/object/authenticated/<bucket>/<key>`` through the urllib3 ``pool`` in 1 MiB chunks,
    hashing as it writes. A body shorter than its Content-Length, a dropped connection, a timeout,
    5xx/429 are retried from the start (the target is overwritten). Returns ``{"size", "sha256",
    "content_type", "cache_control", "etag", "last_modified"}`` (headers as the server sent them, etag
    with its quotes). Raises ApiNotFound when the object does not exist (NoSuchKey), ApiUnauthorized for
    a refused key, other errors after retries. ``on_bytes`` is told every chunk's size (progress);
    ``cancel`` stops a long download early.
    """
    route = object_route(bucket_id, key)
    return call_with_retries(
        f"Downloading {key!r} from bucket {bucket_id!r}",
        _download_once,
        pool,
        route,
        target,
        on_bytes,
        cancel,
    )


def _download_once(
    pool: DownloadPool,
    route: str,
    target: StagingPath | str,
    on_bytes: Callable[[int], None] | None,
    cancel: threading.Event | None,
) -> dict[str, Any]:
    with pool.get(route) as response:
        headers = response.headers
        content_encoding = headers.get("content-encoding", "identity").lower()
        content_length = headers.get("content-length")
        expected_size = int(content_length) if content_length is not None else None
        with _open_binary_for_writing(target) as output:
            writer = HashingWriter(output)
            for chunk in response.stream(DOWNLOAD_CHUNK_BYTES):
                writer.write(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
                if cancel is not None and cancel.is_set():
                    raise _DownloadCancelled()
        size = writer.size
        # urllib3 already raises (TruncatedBody) when the connection closes early; this also catches a
        # server that ends a keep-alive body short some other way.
        if (
            expected_size is not None
            and content_encoding in ("identity", "")
            and size != expected_size
        ):
            raise ApiTransientError(
                "GET",
                route,
                response.status,
                response.status,
                "TruncatedBody",
                f"the body ended after {size} of {expected_size} bytes",
            )
        return {
            "size": size,
            "sha256": writer.sha256,
            "content_type": headers.get("content-type"),
            "cache_control": headers.get("cache-control"),
            "etag": headers.get("etag"),
            "last_modified": headers.get("last-modified"),
        }


class _LineWriter:
    """JSON lines to a staged file, written by one thread at a time. Append on an object store rewrites
    the file (object stores have no append); index files are small enough for that."""

    def __init__(self, path: StagingPath, *, append: bool) -> None:
        self.path = path
        if _is_local(path):
            self._file: IO[bytes] = open(path.path, "ab" if append else "wb")
        else:
            existing = path.read_bytes() if append and path.exists() else b""
            self._file = path.open("wb")
            self._file.write(existing)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _LineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Progress:
    """Counts of one bucket's export. The download threads change the outcome counts under ``lock``,
    ``listed`` as they take objects from the listing and ``bytes_written`` per chunk; only the thread
    that runs the export logs and reports them."""

    def __init__(self, bucket_id: str, report: ProgressReport | None = None) -> None:
        self.bucket_id = bucket_id
        self.report = report
        self.started = time.monotonic()
        self.last_logged = self.started
        self.lock = threading.Lock()
        self.listed = 0
        self.listing_done = False
        self.objects = 0
        self.missing = 0
        self.unreadable = 0
        self.bytes_written = 0  # file bytes including retried attempts, for the live rate
        self.bytes_exported = 0  # sizes of finished objects
        self._bytes_lock = threading.Lock()  # apart from ``lock``: taken for every chunk

    def add_bytes(self, count: int) -> None:
        with self._bytes_lock:
            self.bytes_written += count

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "bucket": self.bucket_id,
                "objects_done": self.objects + self.missing,
                "objects_known": self.listed,
                "listing_done": self.listing_done,
                "bytes_done": self.bytes_exported,
                "missing": self.missing,
                "unreadable": self.unreadable,
            }

    def maybe_log(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_logged < PROGRESS_LOG_SECONDS:
            return
        self.last_logged = now
        elapsed = max(now - self.started, 1e-6)
        counts = self.snapshot()
        finished, listed = counts["objects_done"], counts["objects_known"]
        if counts["listing_done"]:
            of_total, remaining = f"{listed:,}", f"{listed - finished:,} to go"
        else:
            of_total, remaining = f"{listed:,}+", "listing continues"
        log.info(
            "Bucket %r: %s of %s objects done (%s in %.1f s, %s), %s missing, %s",
            self.bucket_id,
            f"{finished:,}",
            of_total,
            format_bytes(counts["bytes_done"]),
            elapsed,
            format_rate(self.bytes_written, elapsed),
            f"{counts['missing']:,}",
            remaining,
        )
        if self.report is not None:
            try:
                self.report(counts)
            except Exception:  # noqa: BLE001 - progress is a courtesy; it never fails an export
                log.warning("Could not report progress of bucket %r", self.bucket_id, exc_info=True)


def _download_all(
    pool: DownloadPool,
    staging: BucketStaging,
    objects: Iterable[ListedObject],
    *,
    first_number: int,
    concurrency: int,
    progress: _Progress,
    on_downloaded: Callable[[dict[str, Any]], None],
    on_missing: Callable[[dict[str, Any]], None],
    on_unreadable: Callable[[dict[str, Any]], None],
) -> None:
    """Download ``objects`` with ``concurrency`` threads into ``staging.object_path(n)`` for n counting up
    from ``first_number``. ``on_downloaded``/``on_missing``/``on_unreadable`` are called one at a time
    (under one lock), so each index file has a single writer. Each thread holds one object at a time,
    so a long listing never piles up.

    Each thread takes the next listed object, downloads it and records the outcome itself; this thread
    only waits, and logs and reports progress every PROGRESS_LOG_SECONDS. Handing every object to a
    thread pool and its result back (a future, a wait over all the futures in flight, a wake-up of
    this thread) was about a third of the CPU the exporter spent per object beyond fetching it, with
    thousands of small objects (measured with bench/, issue 10).

    An object that still fails after its retries is unreadable: it is reported and the export goes on
    (one bad object must not sink the whole backup; the run ends ``incomplete``). But
    ``MAX_FAILURES_IN_A_ROW`` failures with no success between them mean the service, not an object, is
    failing: the export stops with ObjectDownloadFailed. A refused key stops it at once, and so does a
    listing that fails: the other threads stop taking objects and interrupt their downloads between
    chunks, and the first such error is raised here once they have all stopped.
    """
    bucket_id = staging.bucket_id
    objects_folder = staging.objects_folder
    objects_folder_name = objects_folder.name
    local_objects_folder = objects_folder.path if _is_local(objects_folder) else None
    listing = iter(objects)
    next_number = first_number
    taking = threading.Lock()  # the listing is one iterator, and numbers follow its order
    recording = progress.lock  # the counts and the on_* callbacks
    cancel = threading.Event()
    failures_in_a_row = 0
    stopped_by: list[BaseException] = []

    def take() -> tuple[str, ListedObject] | None:
        nonlocal next_number
        with taking:
            if cancel.is_set():
                return None
            try:
                listed = next(listing)
            except StopIteration:
                progress.listing_done = True
                return None
            object_name = _staged_object_name(next_number)
            next_number += 1
            progress.listed += 1
            return object_name, listed

    def record_failure(listed: ListedObject, error: Exception) -> None:
        nonlocal failures_in_a_row
        if isinstance(error, ApiNotFound):
            progress.missing += 1
            on_missing({"key": listed.key, "listed_size": listed.size, "listed_etag": listed.etag})
            return
        if isinstance(error, ApiUnauthorized):
            raise error
        reason = f"{type(error).__name__}: {error}"
        failures_in_a_row += 1
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise ObjectDownloadFailed(
                listed.key,
                bucket_id,
                f"{failures_in_a_row} objects in a row failed after their "
                f"retries, so the Storage API itself is failing; the last: {reason}",
            ) from error
        progress.unreadable += 1
        log.warning(
            "Bucket %r: object %r is unreadable after retries (%s); going on without it",
            bucket_id,
            listed.key,
            reason,
        )
        on_unreadable({"key": listed.key, "reason": reason})

    def record_success(object_name: str, listed: ListedObject, result: dict[str, Any]) -> None:
        nonlocal failures_in_a_row
        failures_in_a_row = 0
        progress.objects += 1
        progress.bytes_exported += result["size"]
        on_downloaded(
            {
                "key": listed.key,
                "file": f"{objects_folder_name}/{object_name}",
                **result,
                "listed_size": listed.size,
                "listed_etag": listed.etag,
                "listed_content_type": listed.content_type,
                "listed_cache_control": listed.cache_control,
            }
        )

    def download_until_done() -> None:
        try:
            while (taken := take()) is not None:
                object_name, listed = taken
                target: StagingPath | str = (
                    os.path.join(local_objects_folder, object_name)
                    if local_objects_folder is not None
                    else objects_folder / object_name
                )
                try:
                    result = download_object(
                        pool,
                        bucket_id,
                        listed.key,
                        target,
                        on_bytes=progress.add_bytes,
                        cancel=cancel,
                    )
                except _DownloadCancelled:
                    return
                except Exception as error:  # noqa: BLE001 - any failure of one object is recorded with its reason
                    with recording:
                        if not cancel.is_set():
                            record_failure(listed, error)
                    continue
                with recording:
                    record_success(object_name, listed, result)
        except BaseException as error:  # noqa: BLE001 - the first error stops the export and is re-raised
            # The first error stops the export; the others stop their downloads between chunks.
            with recording:
                if not stopped_by:
                    stopped_by.append(error)
            cancel.set()

    threads = [
        threading.Thread(target=download_until_done, name=f"download-{bucket_id}-{number}")
        for number in range(1, concurrency + 1)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=PROGRESS_LOG_SECONDS)
                progress.maybe_log()
    except BaseException:
        # Interrupted here (the task is being killed): stop queued and running downloads promptly.
        cancel.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        raise
    if stopped_by:
        raise stopped_by[0]


def _reset_folder(staging: BucketStaging) -> None:
    # A retried task starts over: nothing from an earlier attempt may end up in this attempt's index.
    if staging.folder.exists():
        staging.folder.rmdir(recursive=True)
    staging.objects_folder.mkdir(parents=True, exist_ok=True)


def export_bucket(
    settings: ApiSettings,
    staging: BucketStaging,
    *,
    concurrency: int = 8,
    page_size: int = 1000,
    report_progress: ProgressReport | None = None,
    listing: ObjectListing | None = None,
) -> dict[str, Any]:
    """Export every object of ``staging.bucket_id`` into ``staging.folder``.

    Lists the bucket (list-v2, or a v1 walk where the server lacks it) and downloads every object with
    ``concurrency`` threads. A given ``listing`` is downloaded instead: one shard of a big bucket,
    whose objects come from ``storage.objects`` (``shards``). Writes, replacing what an earlier
    attempt left:

    - ``objects/<n>``: the object's bytes, n = 1, 2, 3... in listing order;
    - ``index.jsonl``: one line per downloaded object, ``{"key", "file", "size", "sha256",
      "content_type", "cache_control", "etag", "last_modified", "listed_size", "listed_etag",
      "listed_content_type", "listed_cache_control"}`` (``file`` relative to the bucket folder, e.g.
      ``objects/00000001``; ``listed_*`` from the listing row's stored metadata; the unprefixed
      metadata fields are the download's headers, which reconcile replaces with the stored metadata:
      the real server serves stored ``text/html`` as ``text/plain``);
    - ``missing.jsonl``: one line ``{"key", "listed_size", "listed_etag"}`` per listed object that then
      answered NoSuchKey (deleted meanwhile, or a wrong-case v1 path);
    - ``unreadable.jsonl``: one line ``{"key", "reason"}`` per object that still failed after its
      retries (reconcile tries it once more).

    Returns ``{"bucket", "objects", "bytes", "missing", "unreadable", "listing": "list-v2"|"v1"
    (or the given listing's method), "seconds"}``. ``report_progress`` is told the bucket's counts
    every few seconds (see ``ProgressReport``). Raises ObjectDownloadFailed when ``MAX_FAILURES_IN_A_ROW`` objects fail in a
    row (the service is failing), ApiUnauthorized when the key is refused.
    """
    progress = _Progress(staging.bucket_id, report_progress)
    _reset_folder(staging)
    # httpx for the listing (JSON, and the read-ahead thread), urllib3 for the object bytes: see the
    # module docstring. The listing needs one connection; the downloads one per thread, plus slack.
    with (
        open_client(settings, max_connections=2) as client,
        DownloadPool(settings, max_connections=concurrency + 2) as pool,
    ):
        if listing is None:
            listing = list_objects(client, staging.bucket_id, page_size=page_size)
        log.info(
            "Bucket %r: listing with %s, downloading with %d threads",
            staging.bucket_id,
            listing.method,
            concurrency,
        )
        listed_ahead = read_ahead(
            listing.objects, max_items=page_size, thread_name=f"list-{staging.bucket_id}"
        )
        with (
            closing(listed_ahead),
            _LineWriter(staging.index_path, append=False) as index,
            _LineWriter(staging.folder / MISSING_FILE_NAME, append=False) as missing,
            _LineWriter(staging.folder / UNREADABLE_FILE_NAME, append=False) as unreadable,
        ):
            _download_all(
                pool,
                staging,
                listed_ahead,
                first_number=1,
                concurrency=concurrency,
                progress=progress,
                on_downloaded=index.write,
                on_missing=missing.write,
                on_unreadable=unreadable.write,
            )
    progress.maybe_log(force=True)
    summary = {
        "bucket": staging.bucket_id,
        "objects": progress.objects,
        "bytes": progress.bytes_exported,
        "missing": progress.missing,
        "unreadable": progress.unreadable,
        "listing": listing.method,
        "seconds": round(progress.seconds(), 3),
    }
    log.info("Bucket %r exported: %s", staging.bucket_id, summary)
    return summary


def combine_summaries(bucket_id: str, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One bucket's export summary from those of its shards: the counts added up, ``seconds`` the
    shards' task time together, and ``shards`` how many there were."""
    methods = sorted({summary["listing"] for summary in summaries})
    return {
        "bucket": bucket_id,
        **{
            name: sum(summary[name] for summary in summaries)
            for name in ("objects", "bytes", "missing", "unreadable")
        },
        "listing": ",".join(methods),
        "seconds": round(sum(summary["seconds"] for summary in summaries), 3),
        "shards": len(summaries),
    }


def _next_sequence_number(staging: BucketStaging) -> int:
    """One past the highest number used by the index or present in the objects folder, so fetching more
    objects never overwrites a staged file, referenced or not."""
    highest = 0
    if staging.index_path.exists():
        with staging.index_path.open("rb") as index:
            for line in index:
                if line.strip():
                    name = json.loads(line)["file"].rsplit("/", 1)[-1]
                    if name.isdigit():
                        highest = max(highest, int(name))
    if staging.objects_folder.exists():
        names = (
            os.listdir(staging.objects_folder.path)
            if _is_local(staging.objects_folder)
            else [child.name for child in staging.objects_folder.iterdir()]
        )
        highest = max([highest, *(int(name) for name in names if name.isdigit())])
    return highest + 1


def fetch_objects(
    settings: ApiSettings,
    staging: BucketStaging,
    keys: Iterable[str],
    *,
    concurrency: int = 8,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Download the given keys into an already exported bucket folder (the reconcile step's path).

    Numbering continues after the highest number in ``index.jsonl`` or ``objects/``; each downloaded
    object is appended to ``index.jsonl`` in the same format as ``export_bucket`` (``listed_size`` and
    ``listed_etag`` are None). Returns ``(records, missing_keys)``: the index records written, and the
    keys that answered NoSuchKey. Objects still failing after their retries are appended to
    ``unreadable.jsonl``. ``missing.jsonl`` is left alone: what a missing key means is the caller's
    decision. The service failing raises as in ``export_bucket``.
    """
    records: list[dict[str, Any]] = []
    missing_keys: list[str] = []
    progress = _Progress(staging.bucket_id)
    staging.objects_folder.mkdir(parents=True, exist_ok=True)
    first_number = _next_sequence_number(staging)
    with (
        DownloadPool(settings, max_connections=concurrency + 2) as pool,
        _LineWriter(staging.index_path, append=True) as index,
        _LineWriter(staging.folder / UNREADABLE_FILE_NAME, append=True) as unreadable,
    ):

        def downloaded(record: dict[str, Any]) -> None:
            index.write(record)
            records.append(record)

        _download_all(
            pool,
            staging,
            (ListedObject(key) for key in keys),
            first_number=first_number,
            concurrency=concurrency,
            progress=progress,
            on_downloaded=downloaded,
            on_missing=lambda entry: missing_keys.append(entry["key"]),
            on_unreadable=unreadable.write,
        )
    progress.maybe_log(force=True)
    return records, missing_keys
