"""supabase-backup restore against real targets: a backup of the small sandbox made by the real DAG,
its database restored into a fresh database on the sandbox's Postgres, its objects into a second
sandbox's Storage API (and again after an interruption). Checked from the outside: row counts
straight from both databases, object bytes from the target's blob files, metadata from its
storage.objects rows."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.archive_reader import read_archive

from supabase_backup.sources.api_client import ApiSettings
from supabase_backup.cli import main
from supabase_backup.restore.archive import RestoreArchive, read_header_and_members
from supabase_backup.restore.storage import Progress, restore_storage
from tests.sandbox_fixtures import running_sandbox

SKIP_TABLES = {("public", "backup_history")}  # written to by the backup run itself
# Held by the source database (older projects, direct SQL) but refused by today's Storage API.
REFUSED_KEYS = {("documents", key) for key in
                ["café/naïve ☃.txt", "100% done.txt", "dot/../escape.txt", "back\\slash.txt", "hash#1.txt"]}


def table_row_counts(connection) -> dict:
    tables = connection.execute(
        "SELECT schemaname, tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
    return {(schema, table): connection.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
            for schema, table in tables if (schema, table) not in SKIP_TABLES}


def object_metadata(sandbox) -> dict:
    with sandbox.connect() as connection:
        rows = connection.execute("SELECT bucket_id, name, metadata->>'mimetype', metadata->>'cacheControl' "
                                  "FROM storage.objects").fetchall()
    return {(bucket, key): (mimetype, cache_control) for bucket, key, mimetype, cache_control in rows}


def bucket_settings(sandbox) -> dict:
    with sandbox.connect() as connection:
        rows = connection.execute("SELECT id, public, file_size_limit, allowed_mime_types "
                                  "FROM storage.buckets").fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


@pytest.fixture(scope="module")
def archive(small_sandbox, backup_runner, tmp_path_factory):
    dag_run = backup_runner.run(small_sandbox, {})
    row = small_sandbox.history_row(dag_run.run_id)
    assert row["status"] == "success", row
    path = small_sandbox.download_archive(row["s3_key"], tmp_path_factory.mktemp("restore") / "archive.zip")
    return {"path": path, "row": row}


@pytest.fixture(scope="module")
def target_sandbox():
    with running_sandbox("restore-target") as sandbox:
        yield sandbox


def empty_storage(sandbox) -> None:
    """The second sandbox is seeded like the first: clear its objects and buckets (by SQL, as a
    fresh project has none)."""
    with sandbox.connect() as connection:
        connection.execute("DELETE FROM storage.objects")
        connection.execute("DELETE FROM storage.buckets")


def test_database_restore_matches_every_table(small_sandbox, archive, monkeypatch, capsys):
    name = f"restored_{uuid.uuid4().hex[:8]}"
    with small_sandbox.connect() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    settings = small_sandbox.settings
    # The password travels in PGPASSWORD only: not in the URL, so in no argv at all.
    monkeypatch.setenv("PGPASSWORD", settings["pg_password"])
    url = f"postgresql://{settings['pg_user']}@{settings['pg_host']}:{settings['pg_port']}/{name}"
    assert main(["restore", "--only", "db", "--database-url", url, str(archive["path"])]) == 0
    out = capsys.readouterr().out
    with small_sandbox.connect() as source, small_sandbox.connect(name) as target:
        source_counts, target_counts = table_row_counts(source), table_row_counts(target)
        large_objects = target.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
    assert source_counts == target_counts
    assert len(target_counts) > 15 and sum(target_counts.values()) > 1000
    assert large_objects >= 1
    assert f"Database restored into {settings['pg_user']}@" in out and "statements run in one transaction" in out
    assert "Roles created (NOLOGIN): none" in out  # the cluster has the sandbox's roles already
    assert "psql said" not in out  # no warning: e.g. no COMMIT ending the one transaction early
    # Every table's exact count and checksum, recorded in the dump's snapshot, found again.
    assert f"Figures: {len(target_counts) + 1} tables" in out and "checksums compared" in out
    assert "all equal" in out
    assert f"  auth.users: {source_counts[('auth', 'users')]:,}" in out
    assert settings["pg_password"] not in out
    # A second run into the same (now not empty) database is refused and changes nothing.
    assert main(["restore", "--only", "db", "--database-url", url, str(archive["path"])]) == 10
    # (It now has auth.schema_migrations, so --target auto takes it for a Supabase project, which
    # is refused as well: it holds user tables.)
    assert "already holds user tables" in capsys.readouterr().err
    assert main(["restore", "--only", "db", "--target", "postgres", "--database-url", url,
                 str(archive["path"])]) == 10
    assert "is not empty" in capsys.readouterr().err


def test_missing_extensions_are_refused_unless_skipped_and_missing_roles_are_created(
        small_sandbox, tmp_path, monkeypatch):
    """A hand-made dump naming an extension no Postgres here offers and a role the cluster lacks."""
    from supabase_backup.sources.database import DatabaseSettings
    from supabase_backup.errors import ExtensionsMissing
    from supabase_backup.restore.database import restore_database

    role = f"restore_role_{uuid.uuid4().hex[:8]}"
    dump = (
        "SET statement_timeout = 0;\n\n--\n-- Name: not_an_extension; Type: EXTENSION; Schema: -; Owner: -\n--\n\n"
        "CREATE EXTENSION IF NOT EXISTS not_an_extension WITH SCHEMA public;\n\n"
        "--\n-- Name: EXTENSION not_an_extension; Type: COMMENT; Schema: -; Owner: -\n--\n\n"
        "COMMENT ON EXTENSION not_an_extension IS 'nope';\n\n"
        "--\n-- Name: notes; Type: TABLE; Schema: public; Owner: -\n--\n\n"
        "CREATE TABLE public.notes (id int, body text);\n\n"
        "--\n-- Data for Name: notes; Type: TABLE DATA; Schema: public; Owner: -\n--\n\n"
        "COPY public.notes (id, body) FROM stdin;\n1\tone\n2\ttwo\n\\.\n\n"
        "ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;\n"
        f"CREATE POLICY mine ON public.notes FOR SELECT TO {role} USING (true);\n")
    name = f"restored_{uuid.uuid4().hex[:8]}"
    with small_sandbox.connect() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    settings = small_sandbox.settings
    target = DatabaseSettings(host=settings["pg_host"], port=settings["pg_port"], user=settings["pg_user"],
                              password=settings["pg_password"], dbname=name)

    def open_dump():
        import io

        return io.StringIO(dump)

    with pytest.raises(ExtensionsMissing, match="not_an_extension") as refused:
        restore_database(open_dump, target)
    assert refused.value.exit_code == 11
    try:
        result = restore_database(open_dump, target, skip_extensions=["not_an_extension"])
        assert result.roles_created == [role]
        assert result.extensions_skipped == ["not_an_extension"]
        assert result.skipped_entries == ["EXTENSION not_an_extension", "COMMENT EXTENSION not_an_extension"]
        assert result.row_counts == {"public.notes": 2}
        with small_sandbox.connect(name) as connection:
            assert connection.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                                      (role,)).fetchone() == (False,)
            assert connection.execute("SELECT count(*) FROM pg_policies WHERE policyname = 'mine'").fetchone() == (1,)
        assert "Extensions skipped: not_an_extension" in result.describe()
    finally:
        with small_sandbox.connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_failing_statement_rolls_everything_back(small_sandbox):
    from supabase_backup.sources.database import DatabaseSettings
    from supabase_backup.errors import RestoreFailed
    from supabase_backup.restore.database import restore_database

    name = f"restored_{uuid.uuid4().hex[:8]}"
    with small_sandbox.connect() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    settings = small_sandbox.settings
    target = DatabaseSettings(host=settings["pg_host"], port=settings["pg_port"], user=settings["pg_user"],
                              password=settings["pg_password"], dbname=name)
    import io

    # Shaped like pg_dump 15's large-object section, whose COMMIT must not end the transaction.
    dump = ("CREATE TABLE public.kept (id int);\nINSERT INTO public.kept VALUES (1);\n"
            "SELECT pg_catalog.lo_create('424242');\n\n"
            "--\n-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -\n--\n\nBEGIN;\n\n"
            "SELECT pg_catalog.lo_open('424242', 131072);\nSELECT pg_catalog.lowrite(0, '\\x41');\n"
            "SELECT pg_catalog.lo_close(0);\n\nCOMMIT;\n\nSELECT 1/0;\n")
    with pytest.raises(RestoreFailed, match="division by zero") as failed:
        restore_database(lambda: io.StringIO(dump), target)
    assert failed.value.exit_code == 12
    with small_sandbox.connect(name) as connection:
        assert connection.execute("SELECT to_regclass('public.kept')").fetchone() == (None,)
        assert connection.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)


def test_storage_restore_into_another_project_then_resume_and_conflicts(
        small_sandbox, archive, target_sandbox, monkeypatch, capsys):
    source_objects = small_sandbox.objects()
    expected = {key: value for key, value in source_objects.items() if key not in REFUSED_KEYS}
    empty_storage(target_sandbox)
    monkeypatch.setenv("TARGET_SERVICE_KEY", target_sandbox.settings["service_key"])
    command = ["restore", "--only", "storage", "--storage-url", target_sandbox.settings["api_url"],
               "--storage-key-env", "TARGET_SERVICE_KEY", str(archive["path"])]

    # 1. Into an empty project: buckets recreated, every object that the API accepts uploaded, the
    #    five legacy names listed with the server's reason and exit 13.
    assert main(command) == 13
    captured = capsys.readouterr()
    assert f"{len(expected):,} objects uploaded" in captured.out
    # Every bucket of the archive (other test modules may have added buckets to the shared sandbox).
    buckets = sorted(bucket["bucket"] for bucket in
                     read_archive(archive["path"])["manifest"]["storage"]["buckets"])
    assert f"Buckets created: {', '.join(buckets)}\n" in captured.out
    for _, key in REFUSED_KEYS:
        assert f"documents/{key!r}: InvalidKey" in captured.err
    assert "storage documents: " in captured.err  # the progress lines
    assert target_sandbox.objects() == expected
    assert bucket_settings(target_sandbox) == bucket_settings(small_sandbox)
    source_metadata = object_metadata(small_sandbox)
    assert object_metadata(target_sandbox) == {key: source_metadata[key] for key in expected}

    # 2. Half the objects lost on the target (an interrupted restore): a second run uploads just
    #    those and skips the rest after comparing their bytes.
    keys = sorted(expected)
    lost = keys[::2]
    api = target_sandbox.settings["api_url"]
    headers = {"Authorization": f"Bearer {target_sandbox.settings['service_key']}"}
    by_bucket: dict[str, list[str]] = {}
    for bucket, key in lost:
        by_bucket.setdefault(bucket, []).append(key)
    for bucket, names in by_bucket.items():
        httpx.request("DELETE", f"{api}/storage/v1/object/{bucket}", json={"prefixes": names},
                      headers=headers).raise_for_status()
    assert len(target_sandbox.objects()) == len(expected) - len(lost)
    assert main(command) == 13
    out = capsys.readouterr().out
    assert f"{len(lost):,} objects uploaded" in out
    assert f"{len(expected) - len(lost):,} already there with the same bytes (skipped)" in out
    assert target_sandbox.objects() == expected

    # 3. One object changed on the target: refused as a conflict, replaced with --overwrite.
    bucket, key = "documents", "reports/2024/q1/summary.json"
    httpx.post(f"{api}/storage/v1/object/{bucket}/reports/2024/q1/summary.json", content=b"{}",
               headers={**headers, "x-upsert": "true", "content-type": "application/json"}).raise_for_status()
    assert main(command) == 13
    err = capsys.readouterr().err
    assert "1 object(s) already exist on the target with different bytes" in err
    assert "summary.json" in err
    assert target_sandbox.objects()[(bucket, key)] != expected[(bucket, key)]
    assert main(command + ["--overwrite"]) == 13  # still 13: the legacy names stay refused
    assert "1 overwritten" in capsys.readouterr().out
    assert target_sandbox.objects() == expected


class StopAfter(Progress):
    """A progress display that stops the restore like Ctrl-C after ``limit`` objects."""

    def __init__(self, totals, limit):
        super().__init__(totals)
        self.limit = limit
        self.count = 0

    def object_done(self, bucket, size, outcome):
        super().object_done(bucket, size, outcome)
        self.count += 1
        if self.count == self.limit:
            raise KeyboardInterrupt


def test_an_interrupted_storage_restore_completes_when_run_again(small_sandbox, archive, target_sandbox):
    from supabase_backup.errors import RestoreIncomplete

    empty_storage(target_sandbox)
    expected = {key: value for key, value in small_sandbox.objects().items() if key not in REFUSED_KEYS}
    settings = ApiSettings(target_sandbox.settings["api_url"], target_sandbox.settings["service_key"])
    with open(archive["path"], "rb") as file, RestoreArchive(file, str(archive["path"])) as zip_file:
        header, _ = read_header_and_members(zip_file)
        total = len(small_sandbox.objects())
        with pytest.raises(KeyboardInterrupt):
            restore_storage(zip_file, header, settings, progress=StopAfter({}, total // 2))
        done_first = len(target_sandbox.objects())
        assert 0 < done_first < len(expected)
        with pytest.raises(RestoreIncomplete) as incomplete:
            restore_storage(zip_file, header, settings)
    result = incomplete.value.result
    assert result.counts["skipped"] == done_first
    assert result.counts["uploaded"] == len(expected) - done_first
    assert result.counts["refused"] == len(REFUSED_KEYS)
    assert target_sandbox.objects() == expected  # a dict by (bucket, key): no duplicates either
    with target_sandbox.connect() as connection:
        assert connection.execute("SELECT count(*), count(DISTINCT (bucket_id, name)) FROM storage.objects"
                                  ).fetchone() == (len(expected), len(expected))


def test_an_archive_on_s3_is_read_in_place_for_a_dry_run_and_a_restore(small_sandbox, archive, monkeypatch, capsys):
    settings = small_sandbox.settings
    for name, value in {"AWS_ENDPOINT_URL": settings["s3_endpoint"], "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    row = archive["row"]
    location = f"s3://{row['s3_bucket']}/{row['s3_key']}"
    assert main(["restore", "--dry-run", location]) == 0
    out = capsys.readouterr().out
    assert f"up to {row['storage_objects']:,} objects" in out and "Dry run: nothing was changed." in out
    # And a real restore from it: the dump is read twice (scan, then psql) by ranged GETs.
    name = f"restored_{uuid.uuid4().hex[:8]}"
    with small_sandbox.connect() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("PGPASSWORD", settings["pg_password"])
    url = f"postgresql://{settings['pg_user']}@{settings['pg_host']}:{settings['pg_port']}/{name}"
    assert main(["restore", "--only", "db", "--database-url", url, location]) == 0
    with small_sandbox.connect() as source, small_sandbox.connect(name) as target:
        assert table_row_counts(source) == table_row_counts(target)
