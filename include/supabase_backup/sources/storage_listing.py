"""Storage listing: the buckets of a project and every object of a bucket, page by page.

Listing prefers the flat, case-sensitive ``list-v2`` route with a cursor and falls back to a recursive
walk of the v1 ``object/list`` route (offset paging, folder rows have ``id`` null) where a project
answers ``FeatureNotEnabled`` or does not have the route. v1 is case-insensitive on the server, so its
paths can be wrong (folders ``Case/`` and ``case/`` merge); such objects answer NoSuchKey when
downloaded, and the reconcile step fetches what the database inventory holds but the listing missed.
Every JSON call goes through the httpx client of ``api_client.open_client``.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from supabase_backup.errors import ApiFeatureNotEnabled, ApiNotFound, IncompleteExport
from supabase_backup.sources.api_client import request_json

log = logging.getLogger(__name__)

LIST_V2_MAX_LIMIT = 1000  # the server's cap for list-v2
LIST_V1_MAX_LIMIT = (
    1500  # the server's cap for v1; asking for more would make every page look short
)

LISTING_LIST_V2 = "list-v2"
LISTING_V1 = "v1"


# --- buckets and object URLs ------------------------------------------------------------------------


def list_buckets(client: httpx.Client) -> list[dict[str, Any]]:
    """Every bucket of the project (``GET /storage/v1/bucket``), as the API returns them:
    ``id, name, owner, public, type, file_size_limit, allowed_mime_types, created_at, updated_at``."""
    return request_json(client, "GET", "/storage/v1/bucket", what="Listing buckets").json()


def encode_path_segment(segment: str) -> str:
    """Percent-encode one segment of a bucket id or object key for a URL path.

    Everything but unreserved characters is encoded, so ``?``, ``#``, ``%``, ``\\``, spaces and unicode
    arrive as written. ``.`` and ``..`` segments are encoded as ``%2E``/``%2E%2E``: httpx and urllib3
    (like any URL library) would otherwise resolve them and ask for a different key (``dot/../escape.txt`` →
    ``escape.txt``). Empty segments stay empty, so ``a//b`` and leading or trailing slashes survive.
    """
    if segment in (".", ".."):
        return "%2E" * len(segment)
    return quote(segment, safe="")


def object_route(bucket_id: str, key: str, *, route: str = "object/authenticated") -> str:
    """The path of an object route, e.g. ``/storage/v1/object/authenticated/<bucket>/<key>``, with every
    segment of the bucket id and the key percent-encoded by ``encode_path_segment``."""
    encoded_key = "/".join(encode_path_segment(segment) for segment in key.split("/"))
    return f"/storage/v1/{route}/{encode_path_segment(bucket_id)}/{encoded_key}"


# --- listing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListedObject:
    """One object as the listing described it: its stored metadata (``metadata`` of the listing row),
    each None when unknown (fetch_objects knows only keys)."""

    key: str
    size: int | None = None
    etag: str | None = None
    content_type: str | None = None
    cache_control: str | None = None


@dataclass
class ObjectListing:
    """Every object of one bucket, streamed page by page; ``method`` is ``list-v2`` or ``v1``."""

    bucket_id: str
    method: str
    objects: Iterator[ListedObject]

    def __iter__(self) -> Iterator[ListedObject]:
        return self.objects


def _listed(key: str, row: dict[str, Any]) -> ListedObject:
    return listed_from_metadata(key, row.get("metadata"))


def listed_from_metadata(key: str, metadata: dict[str, Any] | None) -> ListedObject:
    """An object described by its stored metadata (a listing row's ``metadata``, which is
    ``storage.objects.metadata``)."""
    metadata = metadata or {}
    size = metadata.get("size", metadata.get("contentLength"))
    return ListedObject(
        key=key,
        size=size if isinstance(size, int) else None,
        etag=metadata.get("eTag"),
        content_type=metadata.get("mimetype"),
        cache_control=metadata.get("cacheControl"),
    )


def list_objects(client: httpx.Client, bucket_id: str, *, page_size: int = 1000) -> ObjectListing:
    """List every object of a bucket, lazily.

    Asks ``list-v2`` for its first page right away, to learn whether the server has it; on
    ``FeatureNotEnabled`` or a missing route it walks v1 instead. Later pages are fetched as the
    iterator is consumed, so at most one page is held at a time. A bucket that does not exist raises
    ApiNotFound; other failures raise after retries.
    """
    v2_limit = max(1, min(page_size, LIST_V2_MAX_LIMIT))
    try:
        first_page = _list_v2_page(client, bucket_id, v2_limit, cursor=None)
    except ApiFeatureNotEnabled:
        log.info(
            "Bucket %r: this project has no list-v2 (FeatureNotEnabled); walking folders with v1 listing",
            bucket_id,
        )
    except ApiNotFound as error:
        if error.code == "NoSuchBucket":
            raise
        log.info(
            "Bucket %r: the server has no list-v2 route (HTTP 404); walking folders with v1 listing",
            bucket_id,
        )
    else:
        return ObjectListing(
            bucket_id, LISTING_LIST_V2, _iter_list_v2(client, bucket_id, v2_limit, first_page)
        )
    v1_limit = max(1, min(page_size, LIST_V1_MAX_LIMIT))
    return ObjectListing(bucket_id, LISTING_V1, _iter_list_v1(client, bucket_id, v1_limit))


def _list_v2_page(
    client: httpx.Client, bucket_id: str, limit: int, cursor: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"prefix": "", "limit": limit, "with_delimiter": False}
    if cursor is not None:
        body["cursor"] = cursor
    route = f"/storage/v1/object/list-v2/{encode_path_segment(bucket_id)}"
    return request_json(
        client, "POST", route, json=body, what=f"Listing bucket {bucket_id!r} (list-v2)"
    ).json()


def _iter_list_v2(
    client: httpx.Client, bucket_id: str, limit: int, page: dict[str, Any]
) -> Iterator[ListedObject]:
    pages = 1
    previous_cursor: str | None = None
    while True:
        if page.get("folders"):
            # Without a delimiter the listing is flat; folders here would mean objects we cannot see.
            log.warning(
                "Bucket %r: list-v2 returned %d folder rows despite with_delimiter=false",
                bucket_id,
                len(page["folders"]),
            )
        for row in page.get("objects") or []:
            yield _listed(row["name"], row)
        if not page.get("hasNext"):
            log.info("Bucket %r: list-v2 listing complete after %d pages", bucket_id, pages)
            return
        cursor = page.get("nextCursor")
        if not cursor or cursor == previous_cursor:
            raise IncompleteExport(
                f"list-v2 of bucket {bucket_id!r} said hasNext but gave no new cursor after page {pages}; "
                "the listing cannot continue"
            )
        previous_cursor = cursor
        page = _list_v2_page(client, bucket_id, limit, cursor=cursor)
        pages += 1


def _iter_list_v1(client: httpx.Client, bucket_id: str, limit: int) -> Iterator[ListedObject]:
    route = f"/storage/v1/object/list/{encode_path_segment(bucket_id)}"
    # A stack of folder prefixes still to list: depth-first keeps it as small as the widest folder.
    pending_prefixes = [""]
    visited_prefixes = {""}
    requests = 0
    while pending_prefixes:
        prefix = pending_prefixes.pop()
        offset = 0
        while True:
            body = {
                "prefix": prefix,
                "limit": limit,
                "offset": offset,
                "sortBy": {"column": "name", "order": "asc"},
            }
            rows = request_json(
                client,
                "POST",
                route,
                json=body,
                what=f"Listing bucket {bucket_id!r} (v1, prefix {prefix!r})",
            ).json()
            requests += 1
            for row in rows:
                name = row["name"]
                if row.get("id") is None:
                    folder = f"{prefix}{name}/"
                    # An empty folder name (from a key like ``a//b``) or a folder seen before would
                    # make the walk loop; skip it: reconcile fetches what the inventory holds there.
                    if name and folder not in visited_prefixes:
                        visited_prefixes.add(folder)
                        pending_prefixes.append(folder)
                    else:
                        log.info("Bucket %r: not descending into v1 folder %r", bucket_id, folder)
                else:
                    yield _listed(prefix + name, row)
            # The server caps limit at 1500; limit was clamped to that, so a short page is the last one.
            if len(rows) < limit:
                break
            offset += len(rows)
    log.info("Bucket %r: v1 listing complete after %d requests", bucket_id, requests)


def read_ahead(items: Iterator[Any], max_items: int, thread_name: str) -> Generator[Any]:
    """Run ``items`` in a background thread, keeping at most ``max_items`` ready: the next listing page
    is fetched while downloads proceed, and the listing never runs more than that far ahead. An error
    of ``items`` is raised here after the items that came before it.

    Each side wakes the other only when the other waits for it: the listing thread once the buffer is
    down to half, the consumer when an item arrives while it waits. A ``queue.Queue`` woke the listing
    thread for every item taken from a full buffer: a thread switch per object.
    """
    ready: collections.deque[Any] = collections.deque()
    lock = threading.Lock()
    item_added = threading.Condition(lock)
    room_made = threading.Condition(lock)
    refill_below = max(1, max_items // 2)
    # All below change under ``lock``.
    producer_waits = consumer_waits = stopped = finished = False
    failure: BaseException | None = None

    def produce() -> None:
        nonlocal producer_waits, finished, failure
        try:
            for item in items:
                with lock:
                    while len(ready) >= max_items and not stopped:
                        producer_waits = True
                        room_made.wait()
                        producer_waits = False
                    if stopped:
                        return
                    ready.append(item)
                    if consumer_waits:
                        item_added.notify()
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it in its own thread
            with lock:
                failure = error
        finally:
            with lock:
                finished = True
                item_added.notify()

    producer = threading.Thread(target=produce, name=thread_name, daemon=True)
    producer.start()
    try:
        while True:
            with lock:
                while not ready and not finished:
                    consumer_waits = True
                    item_added.wait()
                    consumer_waits = False
                if not ready:
                    if failure is not None:
                        raise failure
                    return
                item = ready.popleft()
                if producer_waits and len(ready) < refill_below:
                    room_made.notify()
            yield item
    finally:
        with lock:
            stopped = True
            room_made.notify()
        producer.join(timeout=5)
