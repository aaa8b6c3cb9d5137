import io
import json

import pytest

from supabase_backup.archive import manifest


def test_manifest_is_plain_json_and_streams_back():
    members = [{"path": f"storage/b/{index}", "size": index, "sha256": "0" * 64} for index in range(5)]
    output = io.StringIO()
    count = manifest.write_manifest(output, {"run": {"run_id": "r1"}, "note": "a\nb"}, iter(members))
    assert count == 5
    document = json.loads(output.getvalue())
    assert document["format"] == "supabase-backup" and document["format_version"] == 2
    assert document["members"] == members and document["note"] == "a\nb"
    header, streamed = manifest.read_manifest(io.StringIO(output.getvalue()))
    assert header["run"] == {"run_id": "r1"} and "members" not in header
    assert list(streamed) == members


def test_empty_member_list():
    output = io.StringIO()
    manifest.write_manifest(output, {}, [])
    assert json.loads(output.getvalue())["members"] == []
    _, streamed = manifest.read_manifest(io.StringIO(output.getvalue()))
    assert list(streamed) == []


def test_newer_format_version_is_refused():
    output = io.StringIO()
    manifest.write_manifest(output, {}, [])
    text = output.getvalue().replace('"format_version": 2', '"format_version": 3')
    with pytest.raises(manifest.ManifestInvalid, match="format_version 3"):
        manifest.read_manifest(io.StringIO(text))


def test_truncated_manifest_is_refused():
    output = io.StringIO()
    manifest.write_manifest(output, {}, [{"path": "x", "size": 1, "sha256": "a"}])
    truncated = output.getvalue().rsplit("]}", 1)[0]
    _, streamed = manifest.read_manifest(io.StringIO(truncated))
    with pytest.raises(manifest.ManifestInvalid):
        list(streamed)
