"""storage_download: streamed downloads, export_bucket and fetch_objects (against storage_fake)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import subprocess
import threading

import pytest

from supabase_backup.sources import api_client
from supabase_backup.sources.api_client import ApiSettings, DownloadPool
from supabase_backup.errors import ApiNotFound, ApiTransientError, ApiUnauthorized, ObjectDownloadFailed
from supabase_backup.sources.storage_download import (
    _DownloadCancelled,
    download_object,
    export_bucket,
    fetch_objects,
)
from supabase_backup.sources.storage_listing import object_route
from tests.unit.http_server import DROP, RESET, STALL, TRUNCATE, Reply, serve
from tests.unit.storage_fake import (  # noqa: F401 - serve_fake is a fixture
    SECRET,
    TRICKY_KEYS,
    FakeStorage,
    read_lines,
    serve_fake,
    staging_for,
    storage_error,
)


# --- export_bucket ----------------------------------------------------------------------------------


def test_export_bucket_writes_objects_index_and_summary(tmp_path, serve_fake):
    big = bytes(range(256)) * 12_000  # ~3 MiB: several 1 MiB chunks
    keys = {
        "notes/hello.txt": b"hello",
        "dot/../escape.txt": b"not outside",
        "a//b": b"double slash",
        "q?/what?.txt": b"question",
        "folder/.emptyFolderPlaceholder": b"",
        "big.bin": big,
    }
    fake = FakeStorage({"media": keys})
    staging = staging_for(tmp_path)
    summary = export_bucket(serve_fake(fake), staging, concurrency=4)

    assert summary["bucket"] == "media"
    assert summary["objects"] == len(keys)
    assert summary["bytes"] == sum(map(len, keys.values()))
    assert summary["missing"] == 0
    assert summary["listing"] == "list-v2"
    assert isinstance(summary["seconds"], float)
    json.dumps(summary)  # fits in an XCom

    index = read_lines(staging.index_path)
    assert sorted(line["key"] for line in index) == sorted(keys)
    for line in index:
        content = keys[line["key"]]
        assert set(line) == {
            "key", "file", "size", "sha256", "content_type", "cache_control", "etag", "last_modified",
            "listed_size", "listed_etag", "listed_content_type", "listed_cache_control",
        }  # fmt: skip
        assert line["file"].startswith("objects/")
        assert (staging.folder / line["file"]).read_bytes() == content
        assert line["size"] == line["listed_size"] == len(content)
        assert line["sha256"] == hashlib.sha256(content).hexdigest()
        assert line["etag"] == line["listed_etag"] == f'"{hashlib.md5(content).hexdigest()}"'
        assert line["content_type"] == "text/plain; charset=utf-8"
        assert line["cache_control"] == "max-age=3600"
        assert line["last_modified"] == "Wed, 25 Nov 2026 10:00:00 GMT"
    assert sorted(line["file"] for line in index) == [
        str(staging.object_path(n).relative_to(staging.folder)) for n in range(1, len(keys) + 1)
    ]
    assert read_lines(staging.folder / "missing.jsonl") == []
    # Nothing was written anywhere but the bucket folder's objects/ and its two index files.
    written = {str(path.relative_to(staging.folder)) for path in staging.folder.rglob("*") if path.is_file()}
    assert written == {"index.jsonl", "missing.jsonl", "unreadable.jsonl", *(line["file"] for line in index)}


def test_export_bucket_with_many_objects_over_v1(tmp_path, serve_fake):
    keys = {f"d{n % 13}/sub{n % 3}/obj-{n:05d}": f"object {n}".encode() for n in range(1200)}
    fake = FakeStorage({"media": keys}, list_v2="feature-not-enabled")
    staging = staging_for(tmp_path)
    summary = export_bucket(serve_fake(fake), staging, concurrency=8, page_size=100)
    assert summary["listing"] == "v1"
    assert summary["objects"] == 1200
    index = read_lines(staging.index_path)
    assert {line["key"] for line in index} == set(keys)
    assert len({line["file"] for line in index}) == 1200


def test_objects_gone_after_listing_and_wrong_case_v1_paths_are_missing_not_fatal(tmp_path, serve_fake):
    keys = {"Case/upper.txt": b"U", "case/lower.txt": b"L", "kept.txt": b"K", "deleted.txt": b"D"}
    fake = FakeStorage({"media": keys}, list_v2="feature-not-enabled")
    fake.vanished.add("deleted.txt")
    staging = staging_for(tmp_path)
    summary = export_bucket(serve_fake(fake), staging)

    exported = {line["key"] for line in read_lines(staging.index_path)}
    missing = read_lines(staging.folder / "missing.jsonl")
    # The merged folder row makes one of the two case folders' files appear under the other's name.
    assert "kept.txt" in exported
    assert {"key": "deleted.txt", "listed_size": 1, "listed_etag": f'"{hashlib.md5(b"D").hexdigest()}"'} in missing
    assert any(line["key"].lower().startswith("case/") and line["key"] not in keys for line in missing)
    assert summary["missing"] == len(missing) >= 2
    assert summary["objects"] == len(exported)


def test_truncated_bodies_and_server_errors_are_retried_and_overwrite_the_target(tmp_path, serve_fake):
    content = b"0123456789" * 1000
    fake = FakeStorage({"media": {"flaky.txt": content, "broken.txt": b"fine", "chunked.txt": b"no length" * 10}})
    fake.faults["flaky.txt"] = ["truncate", "503", "truncate"]
    fake.faults["broken.txt"] = ["internal"]
    fake.faults["chunked.txt"] = ["chunked"]
    staging = staging_for(tmp_path)
    summary = export_bucket(serve_fake(fake), staging)

    assert summary["objects"] == 3
    assert fake.downloads == {"flaky.txt": 4, "broken.txt": 2, "chunked.txt": 1}
    by_key = {line["key"]: line for line in read_lines(staging.index_path)}
    assert (staging.folder / by_key["flaky.txt"]["file"]).read_bytes() == content
    assert by_key["flaky.txt"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert by_key["chunked.txt"]["size"] == 90


def test_one_object_failing_every_retry_is_unreadable_and_the_rest_are_exported(tmp_path, serve_fake):
    fake = FakeStorage({"media": {f"ok-{n}": b"x" for n in range(50)} | {"always-500.txt": b"y"}})
    fake.faults["always-500.txt"] = ["503"] * 10
    staging = staging_for(tmp_path)
    summary = export_bucket(serve_fake(fake), staging)
    assert (summary["objects"], summary["unreadable"]) == (50, 1)
    (unreadable,) = read_lines(staging.folder / "unreadable.jsonl")
    assert unreadable["key"] == "always-500.txt" and "503" in unreadable["reason"]
    assert SECRET not in unreadable["reason"]
    assert fake.downloads["always-500.txt"] == api_client.RETRY_ATTEMPTS


def test_a_client_error_is_not_retried(tmp_path, serve_fake):
    fake = FakeStorage({"media": {"refused.txt": b"y"}})
    fake.faults["refused.txt"] = ["invalid"]
    staging = staging_for(tmp_path)
    assert export_bucket(serve_fake(fake), staging)["unreadable"] == 1
    assert "InvalidKey" in read_lines(staging.folder / "unreadable.jsonl")[0]["reason"]
    assert fake.downloads["refused.txt"] == 1


def test_many_failures_in_a_row_mean_the_service_is_failing(tmp_path, serve_fake, monkeypatch):
    from supabase_backup.sources import storage_download

    monkeypatch.setattr(storage_download, "MAX_FAILURES_IN_A_ROW", 3)
    fake = FakeStorage({"media": {f"bad-{n}": b"x" for n in range(5)}})
    for n in range(5):
        fake.faults[f"bad-{n}"] = ["invalid"]
    with pytest.raises(ObjectDownloadFailed, match="3 objects in a row failed") as raised:
        export_bucket(serve_fake(fake), staging_for(tmp_path), concurrency=1)
    assert "media" in str(raised.value) and SECRET not in str(raised.value)


def test_a_refused_key_fails_with_the_fix(tmp_path, serve_fake):
    fake = FakeStorage({"media": {"x.txt": b"y"}})
    fake.faults["x.txt"] = ["unauthorized"]
    with pytest.raises(ApiUnauthorized, match="supabase_api connection") as raised:
        export_bucket(serve_fake(fake), staging_for(tmp_path))
    assert SECRET not in str(raised.value)


def test_a_listing_that_fails_part_way_fails_the_export(tmp_path, serve_fake):
    fake = FakeStorage({"media": {f"k{n:04d}": b"x" for n in range(30)}})
    answer_page = fake.list_v2_page

    def second_page_always_fails(bucket, body):
        if body.get("cursor"):
            return storage_error("500", "InternalError", "Internal Server Error")
        return answer_page(bucket, body)

    fake.list_v2_page = second_page_always_fails
    with pytest.raises(ApiTransientError, match="list-v2"):
        export_bucket(serve_fake(fake), staging_for(tmp_path), page_size=10)


def test_progress_is_reported_from_the_exporting_thread_and_ends_with_the_totals(tmp_path, serve_fake, monkeypatch):
    from supabase_backup.sources import storage_download

    monkeypatch.setattr(storage_download, "PROGRESS_LOG_SECONDS", 0.01)
    keys = {f"k{n:03d}": bytes([n]) * n for n in range(200)}
    fake = FakeStorage({"media": keys})
    fake.vanished.add("k007")
    reports = []

    def report(counts):
        reports.append((threading.get_ident(), counts))

    summary = export_bucket(serve_fake(fake), staging_for(tmp_path), concurrency=4, report_progress=report)
    assert {thread for thread, _ in reports} == {threading.get_ident()}
    assert reports[-1][1] == {
        "bucket": "media", "objects_done": 200, "objects_known": 200, "listing_done": True,
        "bytes_done": summary["bytes"], "missing": 1, "unreadable": 0,
    }  # fmt: skip
    done = [counts["objects_done"] for _, counts in reports]
    assert done == sorted(done)


def test_a_retried_export_starts_over(tmp_path, serve_fake):
    fake = FakeStorage({"media": {"a": b"1", "b": b"2"}})
    staging = staging_for(tmp_path)
    settings = serve_fake(fake)
    export_bucket(settings, staging)
    fake.buckets["media"] = {"a": b"1"}
    summary = export_bucket(settings, staging)
    assert summary["objects"] == 1
    assert [line["key"] for line in read_lines(staging.index_path)] == ["a"]
    assert sorted(path.name for path in staging.objects_folder.iterdir()) == ["00000001"]


# --- fetch_objects ----------------------------------------------------------------------------------


def test_fetch_objects_continues_numbering_and_appends_to_the_index(tmp_path, serve_fake):
    fake = FakeStorage({"media": {"a": b"1", "b": b"2", "case/lower.txt": b"L", "late.txt": b"late"}})
    staging = staging_for(tmp_path)
    fake.buckets["media"].pop("late.txt")
    late = b"late"
    settings = serve_fake(fake)
    export_bucket(settings, staging)
    fake.buckets["media"]["late.txt"] = late
    # A stray file from an interrupted earlier fetch must not be overwritten either.
    (staging.objects_folder / "00000007").write_bytes(b"stray")

    records, missing = fetch_objects(
        settings, staging, ["late.txt", "case/lower.txt", "never-existed"], concurrency=2
    )
    assert sorted(record["key"] for record in records) == ["case/lower.txt", "late.txt"]
    assert sorted(record["file"] for record in records) == ["objects/00000008", "objects/00000009"]
    assert missing == ["never-existed"]
    assert all(record["listed_size"] is None and record["listed_etag"] is None for record in records)
    assert (staging.objects_folder / "00000007").read_bytes() == b"stray"

    index = read_lines(staging.index_path)
    assert sorted(line["key"] for line in index[:3]) == ["a", "b", "case/lower.txt"]
    assert index[3:] == records
    late_record = next(record for record in records if record["key"] == "late.txt")
    assert (staging.folder / late_record["file"]).read_bytes() == late
    assert late_record["sha256"] == hashlib.sha256(late).hexdigest()


def test_fetch_objects_into_an_empty_folder_starts_at_one(tmp_path, serve_fake):
    fake = FakeStorage({"media": {"x": b"x"}})
    staging = staging_for(tmp_path)
    records, missing = fetch_objects(serve_fake(fake), staging, ["x"])
    assert [record["file"] for record in records] == ["objects/00000001"]
    assert read_lines(staging.index_path) == records
    assert missing == []



# --- the urllib3 download path on a real socket ---------------------------------------------------


DOWNLOADABLE_KEYS = [key for key in TRICKY_KEYS if key] + ["with space/and%25/#hash?x=1&y", "a//b/", "trailing2/"]


def test_tricky_keys_reach_the_server_exactly_as_encoded_and_come_back_whole(tmp_path, serve_fake):
    """urllib3 must neither resolve ``%2E`` segments nor re-encode ``%``, ``?``, ``#``, spaces, unicode,
    empty segments (``a//b``) or a trailing ``/``: the server must be asked for exactly object_route."""
    keys = {key: f"content of {key}".encode() for key in DOWNLOADABLE_KEYS}
    fake = FakeStorage({"my bucket": keys})
    staging = staging_for(tmp_path, "my bucket")
    records, missing = fetch_objects(serve_fake(fake), staging, list(keys), concurrency=4)
    assert missing == []
    assert sorted(fake.download_targets) == sorted(object_route("my bucket", key) for key in keys)
    for record in records:
        assert (staging.folder / record["file"]).read_bytes() == keys[record["key"]]
        assert record["sha256"] == hashlib.sha256(keys[record["key"]]).hexdigest()


@pytest.mark.parametrize("fault", [TRUNCATE, RESET, DROP, STALL])
def test_broken_connections_and_stalled_bodies_are_retried(tmp_path, serve_fake, monkeypatch, fault):
    monkeypatch.setattr(api_client, "READ_TIMEOUT_SECONDS", 0.3)  # STALL pauses 1.5 s mid-body
    content = os.urandom(300_000)
    fake = FakeStorage({"media": {"object.bin": content, "other.txt": b"fine"}})
    fake.faults["object.bin"] = [fault, fault]
    staging = staging_for(tmp_path)
    summary = export_bucket(serve_fake(fake), staging, concurrency=2)
    assert summary["objects"] == 2
    assert fake.downloads["object.bin"] == 3
    line = next(line for line in read_lines(staging.index_path) if line["key"] == "object.bin")
    assert (staging.folder / line["file"]).read_bytes() == content
    assert line["size"] == len(content) and line["sha256"] == hashlib.sha256(content).hexdigest()


def test_a_truncated_body_is_a_transient_error_saying_how_much_arrived(tmp_path, serve_fake, monkeypatch):
    monkeypatch.setattr(api_client, "RETRY_ATTEMPTS", 1)
    fake = FakeStorage({"media": {"cut.bin": b"x" * 1000}})
    fake.faults["cut.bin"] = [TRUNCATE]
    with DownloadPool(serve_fake(fake)) as pool, pytest.raises(ApiTransientError) as raised:
        download_object(pool, "media", "cut.bin", str(tmp_path / "out"))
    assert raised.value.code == "TruncatedBody"
    assert "after 500 of 1000 bytes" in str(raised.value)


def test_connection_failures_are_transient_and_never_show_the_key(tmp_path, monkeypatch):
    monkeypatch.setattr(api_client, "RETRY_ATTEMPTS", 2)
    with socket_that_refuses() as url, DownloadPool(ApiSettings(url, SECRET)) as pool:
        with pytest.raises(ApiTransientError) as raised:
            download_object(pool, "media", "x", str(tmp_path / "out"))
    assert SECRET not in str(raised.value)
    assert raised.value.code == "ConnectionError"


class socket_that_refuses:
    def __enter__(self) -> str:
        import socket

        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there any more
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        pass


def test_error_replies_decode_as_api_client_decodes_them(tmp_path, serve_fake):
    fake = FakeStorage({"media": {"x": b"1", "gone": b"2", "slow": b"3", "bad": b"4", "no": b"5"}})
    fake.vanished.add("gone")
    fake.faults.update(slow=["503"], bad=["invalid"], no=["unauthorized"])
    target = str(tmp_path / "out")
    with DownloadPool(serve_fake(fake)) as pool:
        with pytest.raises(ApiNotFound) as not_found:
            download_object(pool, "media", "gone", target)
        assert (not_found.value.status, not_found.value.code) == (404, "NoSuchKey")
        assert "HTTP 400 (body status 404)" in str(not_found.value)
        assert download_object(pool, "media", "slow", target)["size"] == 1  # 503, then retried
        with pytest.raises(api_client.ApiError, match="InvalidKey"):
            download_object(pool, "media", "bad", target)
        with pytest.raises(ApiUnauthorized) as refused:
            download_object(pool, "media", "no", target)
    assert "Supabase Storage at http://127.0.0.1:" in str(refused.value)
    assert SECRET not in str(refused.value)
    assert fake.downloads == {"gone": 1, "slow": 2, "bad": 1, "no": 1}


def test_connections_are_kept_alive_across_objects_and_error_replies(tmp_path, serve_fake):
    fake = FakeStorage({"media": {f"k{n}": bytes([n]) * n for n in range(30)}})
    fake.vanished.update({"k3", "k7"})
    records, missing = fetch_objects(serve_fake(fake), staging_for(tmp_path), [f"k{n}" for n in range(30)], concurrency=1)
    assert len(records) == 28 and sorted(missing) == ["k3", "k7"]
    assert fake.seen.connections == 1  # every body read to its end, every connection back in the pool


def test_a_cancelled_download_closes_its_connection_and_the_pool_stays_usable(tmp_path, serve_fake):
    big = os.urandom(5 * 2**20)
    fake = FakeStorage({"media": {"big.bin": big, "small.txt": b"small"}})
    cancel = threading.Event()
    cancel.set()
    with DownloadPool(serve_fake(fake), max_connections=1) as pool:
        with pytest.raises(_DownloadCancelled):
            download_object(pool, "media", "big.bin", str(tmp_path / "big"), cancel=cancel)
        # Had the half-read connection gone back to the pool, this would read the rest of big.bin.
        result = download_object(pool, "media", "small.txt", str(tmp_path / "small"))
    assert (tmp_path / "small").read_bytes() == b"small" and result["size"] == 5
    assert fake.seen.connections == 2


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A certificate for 127.0.0.1 that no trust store holds."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


def test_https_downloads_verify_the_certificate(tmp_path, self_signed, monkeypatch):
    cert, server_context = self_signed
    monkeypatch.setattr(api_client, "RETRY_ATTEMPTS", 1)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    fake = FakeStorage({"media": {"x": b"secret bytes"}})
    with serve(fake.handle, ssl_context=server_context) as (url, _):
        with DownloadPool(ApiSettings(url, SECRET)) as pool, pytest.raises(ApiTransientError) as raised:
            download_object(pool, "media", "x", str(tmp_path / "out"))
        assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)
        assert fake.downloads == {}
        # Trusted the way httpx trusts it (SSL_CERT_FILE), the same server is fine.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        with DownloadPool(ApiSettings(url, SECRET)) as pool:
            assert download_object(pool, "media", "x", str(tmp_path / "out"))["size"] == len(b"secret bytes")


def test_downloads_use_the_proxy_the_environment_names(tmp_path, monkeypatch):
    fake = FakeStorage({"media": {"via proxy/x?.txt": b"proxied"}})
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with serve(fake.handle) as (proxy_url, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        # Not resolvable: only a request through the proxy can reach anything.
        settings = ApiSettings("http://storage.invalid:54321", SECRET)
        summary = export_bucket(settings, staging_for(tmp_path))
    assert summary["objects"] == 1
    assert f"http://storage.invalid:54321{object_route('media', 'via proxy/x?.txt')}" in [
        target for _, target, _ in seen.requests
    ]


@pytest.mark.parametrize("status", [302, 204, 206])
def test_a_reply_that_is_not_the_object_is_never_saved_as_it(tmp_path, status):
    def handle(method, target, headers, body):
        return Reply(status, {"Location": "https://elsewhere.example/x", "Content-Length": "4"}
                     if status != 204 else {}, b"oops" if status != 204 else b"")

    target = tmp_path / "out"
    with serve(handle) as (url, _), DownloadPool(ApiSettings(url=url, key=SECRET)) as pool:
        with pytest.raises(api_client.ApiError, match=f"got HTTP {status}"):
            download_object(pool, "media", "x", str(target))
    assert not target.exists()

