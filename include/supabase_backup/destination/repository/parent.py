"""Whether an object is read again or its parent snapshot's blobs are reused (pure).

The rule (issue 15, rustic's "parent snapshot" change detection): Supabase Storage gives an
object a new random ``version`` on every upload, overwrite, copy and move, so an unchanged
``(bucket, key, version)`` means unchanged bytes. Where a server gives no version (on either
side), the object's id, eTag, size and ``updated_at`` must all be equal instead. Anything else,
including a version on one side only, is read again: reading too much costs egress, reusing
wrongly loses data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InventoryRow:
    """An object as the inventory (``storage.objects`` in the dump's snapshot) lists it."""

    bucket_id: str
    name: str
    version: str | None = None
    id: str | None = None
    etag: str | None = None
    size: int | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class Decision:
    reuse: bool
    reason: str
    parent_entry: dict | None = None


def decide(parent_entry: dict | None, row: InventoryRow) -> Decision:
    """Reuse the parent's entry (its blobs, size, sha256) or download the object."""
    if parent_entry is None:
        return Decision(False, "not in the parent snapshot")
    parent_version = parent_entry.get("version")
    if parent_version is not None and row.version is not None:
        if parent_version == row.version:
            return Decision(True, "same version", parent_entry)
        return Decision(False, "new version")
    if parent_version is not None or row.version is not None:
        return Decision(False, "a version on one side only")
    fields: dict[str, Any] = {
        "id": row.id,
        "etag": row.etag,
        "size": row.size,
        "updated_at": row.updated_at,
    }
    unknown = [name for name, value in fields.items() if value is None]
    if unknown:
        return Decision(False, f"no version and no {', '.join(unknown)} to compare")
    differing = [name for name, value in fields.items() if parent_entry.get(name) != value]
    if differing:
        return Decision(False, f"no version, and {', '.join(differing)} differ")
    return Decision(True, "no version; same id, etag, size and updated_at", parent_entry)


class ParentObjects:
    """The parent snapshot's object entries by (bucket, key), for ``decide``. Held in memory:
    about 400 bytes an object (a later slice may keep them in a local SQLite file for millions)."""

    def __init__(self, entries: Iterable[dict]) -> None:
        self._entries = {(entry["bucket"], entry["key"]): entry for entry in entries}

    def __len__(self) -> int:
        return len(self._entries)

    def decide(self, row: InventoryRow) -> Decision:
        return decide(self._entries.get((row.bucket_id, row.name)), row)
