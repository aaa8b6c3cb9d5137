"""destination.repository.parent: when an object's parent blobs are reused, and when it is read again."""

from __future__ import annotations

import pytest

from supabase_backup.destination.repository.parent import InventoryRow, ParentObjects, decide

PARENT = {
    "bucket": "avatars",
    "key": "a.png",
    "version": "v1",
    "id": "obj-1",
    "etag": '"e1"',
    "size": 10,
    "updated_at": "2026-12-01T00:00:00+00:00",
    "sha256": "s",
    "blobs": ["b1"],
}
UNVERSIONED = {**PARENT, "version": None}
SAME = {"id": "obj-1", "etag": '"e1"', "size": 10, "updated_at": "2026-12-01T00:00:00+00:00"}


@pytest.mark.parametrize(
    ("parent", "row", "reuse", "reason"),
    [
        (None, InventoryRow("avatars", "a.png", "v1"), False, "not in the parent snapshot"),
        (PARENT, InventoryRow("avatars", "a.png", "v1"), True, "same version"),
        # A new version is new bytes even when everything else looks the same.
        (PARENT, InventoryRow("avatars", "a.png", "v2", **SAME), False, "new version"),
        (PARENT, InventoryRow("avatars", "a.png", None, **SAME), False, "a version on one side only"),
        (UNVERSIONED, InventoryRow("avatars", "a.png", "v1", **SAME), False, "a version on one side only"),
        (UNVERSIONED, InventoryRow("avatars", "a.png", None, **SAME), True,
         "no version; same id, etag, size and updated_at"),
        (UNVERSIONED, InventoryRow("avatars", "a.png", None, **{**SAME, "etag": '"e2"'}), False,
         "no version, and etag differ"),
        (UNVERSIONED, InventoryRow("avatars", "a.png", None, **{**SAME, "size": 11}), False,
         "no version, and size differ"),
        (UNVERSIONED, InventoryRow("avatars", "a.png", None, **{**SAME, "id": "obj-2"}), False,
         "no version, and id differ"),
        (UNVERSIONED,
         InventoryRow("avatars", "a.png", None, **{**SAME, "updated_at": "2026-12-02T00:00:00+00:00"}),
         False, "no version, and updated_at differ"),
        # Nothing to compare is never "equal".
        ({**UNVERSIONED, "etag": None}, InventoryRow("avatars", "a.png", None, **{**SAME, "etag": None}),
         False, "no version and no etag to compare"),
    ],
)  # fmt: skip
def test_the_parent_decision_table(parent, row, reuse, reason):
    decision = decide(parent, row)
    assert (decision.reuse, decision.reason) == (reuse, reason)
    assert decision.parent_entry is (parent if reuse else None)


def test_parent_objects_are_looked_up_by_bucket_and_key():
    parent = ParentObjects([PARENT, {**PARENT, "bucket": "docs", "version": "v9"}])
    assert len(parent) == 2
    assert parent.decide(InventoryRow("avatars", "a.png", "v1")).reuse
    assert not parent.decide(InventoryRow("docs", "a.png", "v1")).reuse
    assert parent.decide(InventoryRow("docs", "a.png", "v9")).reuse
    assert not parent.decide(InventoryRow("avatars", "b.png", "v1")).reuse
