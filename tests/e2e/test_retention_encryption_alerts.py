"""Issue 11 end to end, the real DAGs against the sandbox: an age-encrypted backup whose
apply_retention task deletes old archives; a failed run whose alert e-mail reaches a real SMTP
server (aiosmtpd); the staleness check's e-mail, once per stale episode."""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from pyrage import x25519

from tests.archive_reader import read_archive
from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import run_dag
from tests.sandbox_fixtures import MIGRATION

BASE_URL = "https://airflow.example.com"


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(
            envelope.content, policy=email.policy.default)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_sink(monkeypatch):
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.com",
                  "retry_limit": 0}}))
    try:
        yield inbox
    finally:
        controller.stop()


def body_text(message) -> str:
    import html

    part = message.get_body(preferencelist=("html", "plain"))
    return html.unescape(part.get_content())


def test_an_encrypted_backup_verifies_and_its_retention_deletes_old_archives(
        small_sandbox, backup_runner, tmp_path):
    sandbox = small_sandbox
    s3, bucket = sandbox.s3(), sandbox.settings["s3_bucket"]
    identities = [x25519.Identity.generate() for _ in range(2)]
    recipients = [str(identity.to_public()) for identity in identities]
    # Old archives (2020) that retention should delete; the real ones stay (keep_last covers them).
    prefix = f"old-{uuid.uuid4().hex[:6]}/"
    old_ids = []
    with sandbox.connect() as connection:
        for day in range(3):
            started = datetime(2020, 1, 1 + day, 3, tzinfo=timezone.utc)
            key = f"{prefix}backup-{started:%Y-%m-%d-%H-%M}-UTC.zip"
            s3.put_object(Bucket=bucket, Key=key, Body=b"old")
            old_ids.append(connection.execute(
                "INSERT INTO public.backup_history (run_id, status, trigger, started_at, "
                "finished_at, s3_bucket, s3_key) VALUES (%s, 'success', 'scheduled', %s, %s, %s, %s)"
                " RETURNING id", (f"old-{prefix}{day}", started, started, bucket, key)).fetchone()[0])
        real = connection.execute(
            "SELECT count(*) FROM public.backup_history WHERE status = 'success' AND "
            "deleted_at IS NULL AND kind = 'backup'").fetchone()[0] - len(old_ids)
    keep_last = real + 1  # every earlier real backup and this run's

    dag_run = backup_runner.run(
        sandbox, {}, supabase_backup_age_recipients=",".join(recipients),
        supabase_backup_retention=json.dumps({"keep_last": keep_last}))

    assert dag_run.state == "success"
    row = sandbox.history_row(dag_run.run_id)
    assert row["status"] == "success" and row["error"] is None
    assert row["s3_key"].endswith(".zip.age")
    assert row["encrypted"] is True and row["encryption_recipients"] == recipients
    head = s3.head_object(Bucket=bucket, Key=row["s3_key"])
    assert head["Metadata"]["age-recipients"] == ",".join(recipients)
    assert head["ContentLength"] == row["size_bytes"]
    ciphertext = tmp_path / "archive.zip.age"
    s3.download_file(bucket, row["s3_key"], str(ciphertext))
    assert not ciphertext.read_bytes().startswith(b"PK")  # no plaintext zip on S3

    # Either recipient's identity decrypts it; the manifest's checksums hold after decryption.
    identity_file = tmp_path / "identity.txt"
    identity_file.write_text(f"{identities[1]}\n")
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "include"),
                   "AWS_ENDPOINT_URL": sandbox.settings["s3_endpoint"],
                   "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    for location in (str(ciphertext), f"s3://{bucket}/{row['s3_key']}"):
        verified = subprocess.run(
            [sys.executable, "-m", "supabase_backup", "verify", location, "--identity",
             str(identity_file), "--json"], capture_output=True, text=True, env=environment)
        assert verified.returncode == 0, verified.stderr
        result = json.loads(verified.stdout)
        assert result["decrypted"] and result["run_id"] == dag_run.run_id
    plaintext = tmp_path / "archive.zip"
    with ciphertext.open("rb") as source, plaintext.open("wb") as target:
        import pyrage

        pyrage.decrypt_io(source, target, [identities[0]])
    contents = read_archive(plaintext)  # the tests' own zip reader
    assert contents["manifest"]["run"]["run_id"] == dag_run.run_id
    assert contents["objects"] == sandbox.objects()

    # Retention ran after the verified run: the 2020 archives are gone, their rows marked.
    with sandbox.connect() as connection:
        marked = connection.execute(
            "SELECT id, deleted_by FROM public.backup_history WHERE id = ANY(%s)",
            (old_ids,)).fetchall()
    assert {deleted_by for _, deleted_by in marked} == {f"retention keep_last={keep_last}"}
    assert not [key for key in sandbox.archive_keys() if key.startswith(prefix)]
    assert row["deleted_at"] is None and row["s3_key"] in sandbox.archive_keys()
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["apply_retention"] == "success"


def test_a_failed_run_sends_an_email_naming_the_run_the_cause_and_the_links(
        small_sandbox, backup_runner, smtp_sink, capsys):
    missing_bucket = f"no-such-bucket-{uuid.uuid4().hex[:6]}"
    dag_run = backup_runner.run(
        small_sandbox, {}, supabase_backup_s3_bucket=missing_bucket,
        supabase_backup_alert_email="ops@example.com,oncall@example.com",
        supabase_backup_ui_base_url=BASE_URL)

    assert dag_run.state == "failed"
    row = small_sandbox.history_row(dag_run.run_id)
    assert row["status"] == "failed" and missing_bucket in row["error"]
    assert len(smtp_sink.messages) == 1
    recipients, message = smtp_sink.messages[0]
    assert sorted(recipients) == ["oncall@example.com", "ops@example.com"]
    assert message["Subject"] == f"[supabase-backup] Backup FAILED: {dag_run.run_id}"
    assert message["From"] == "airflow@example.com"
    text = body_text(message)
    assert f"run {dag_run.run_id}" in text
    assert f"Cause: {row['error']}" in text
    assert f"{BASE_URL}/dags/supabase_backup/runs/{quote(dag_run.run_id, safe='')}" in text
    assert f"{BASE_URL}/backup/ui" in text
    assert small_sandbox.settings["pg_password"] not in text
    with capsys.disabled():
        print(f"\n--- alert e-mail ---\nSubject: {message['Subject']}\n\n{text}\n---")


@pytest.fixture
def old_history_database(small_sandbox, monkeypatch):
    """A private history database whose newest verified backup is ten days old."""
    name = f"stale_{uuid.uuid4().hex[:8]}"
    with small_sandbox.connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(["psql", "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(MIGRATION)],
                   env=small_sandbox.libpq_environment(name), check=True, capture_output=True)
    finished = datetime.now(timezone.utc) - timedelta(days=10)
    with small_sandbox.connect(name) as connection:
        connection.execute(
            "INSERT INTO public.backup_history (run_id, status, trigger, started_at, finished_at, "
            "s3_bucket, s3_key) VALUES ('scheduled__old', 'success', 'scheduled', %s, %s, 'b', "
            "'supabase-backups/backup-old.zip')", (finished, finished))
    connection_uri = json.loads(small_sandbox.env["AIRFLOW_CONN_SUPABASE_DB"]) \
        if small_sandbox.env["AIRFLOW_CONN_SUPABASE_DB"].startswith("{") else None
    if connection_uri is not None:
        connection_uri["schema"] = name
        monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_DB", json.dumps(connection_uri))
    else:
        base = small_sandbox.env["AIRFLOW_CONN_SUPABASE_DB"]
        head, _, query = base.partition("?")
        monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_DB",
                           head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else ""))
    yield name
    with small_sandbox.connect() as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def run_staleness_check(sandbox, **variables):
    environment = {**{name: value for name, value in sandbox.env.items()
                      if name != "AIRFLOW_CONN_SUPABASE_DB"},
                   **{f"AIRFLOW_VAR_{name.upper()}": value for name, value in variables.items()}}
    return run_dag("supabase_backup_staleness", environment)


def test_a_stale_project_sends_an_email(small_sandbox, airflow_metadata, old_history_database,
                                        smtp_sink):
    dag_run = run_staleness_check(
        small_sandbox, supabase_backup_max_backup_age_hours="26",
        supabase_backup_alert_email="ops@example.com", supabase_backup_ui_base_url=BASE_URL)
    assert dag_run.state == "failed"
    assert len(smtp_sink.messages) == 1
    _, message = smtp_sink.messages[0]
    assert message["Subject"] == "[supabase-backup] STALE: no verified backup in 26 h"
    text = body_text(message)
    assert "run scheduled__old" in text and "more than the 26 hours allowed" in text
    assert f"{BASE_URL}/backup/ui" in text

    # Fresh enough under a looser limit: the alert's episode closes with one notice.
    fresh = run_staleness_check(small_sandbox, supabase_backup_max_backup_age_hours="1000",
                                supabase_backup_alert_email="ops@example.com")
    assert fresh.state == "success" and len(smtp_sink.messages) == 2
    assert smtp_sink.messages[1][1]["Subject"] == (
        "[supabase-backup] RECOVERED: verified backup scheduled__old")


def test_a_stale_project_alerts_once_reminds_and_says_when_it_recovered(
        small_sandbox, airflow_metadata, old_history_database, smtp_sink, monkeypatch):
    """The real DAG, the real episode store (backup_alert_state in the project's database) and
    the real e-mail path, over a day and a half of checks: the checks' clock moves between runs."""
    from supabase_backup.airflow import staleness

    clock = [datetime.now(timezone.utc)]
    monkeypatch.setattr(staleness, "utc_now", lambda: clock[0])
    variables = {"supabase_backup_max_backup_age_hours": "26",
                 "supabase_backup_stale_reminder_hours": "24",
                 "supabase_backup_alert_email": "ops@example.com",
                 "supabase_backup_ui_base_url": BASE_URL}

    def check_after(elapsed: timedelta) -> tuple[str, list[str]]:
        """Move the clock on, run one check: its DAG run state and the subjects it e-mailed."""
        clock[0] += elapsed
        already = len(smtp_sink.messages)
        dag_run = run_staleness_check(small_sandbox, **variables)
        return dag_run.state, [message["Subject"] for _, message in smtp_sink.messages[already:]]

    stale = "[supabase-backup] STALE: no verified backup in 26 h"
    assert check_after(timedelta(0)) == ("failed", [stale])
    first_alert = body_text(smtp_sink.messages[-1][1])
    assert "Next reminder in 24 h while it stays stale" in first_alert
    # Still stale an hour later: the task fails again (the grid stays truthful), no e-mail.
    assert check_after(timedelta(hours=1)) == ("failed", [])
    # The 24th hourly check, started a few seconds earlier in its hour than the first: a reminder.
    assert check_after(timedelta(hours=23, seconds=-3)) == (
        "failed", ["[supabase-backup] STILL STALE: no verified backup in 26 h"])
    assert "reminder 1." in body_text(smtp_sink.messages[-1][1])
    assert check_after(timedelta(hours=1)) == ("failed", [])

    # A verified backup lands: one recovered notice, then nothing.
    with small_sandbox.connect(old_history_database) as connection:
        connection.execute(
            "INSERT INTO public.backup_history (run_id, status, trigger, started_at, finished_at, "
            "s3_bucket, s3_key) VALUES ('scheduled__new', 'success', 'scheduled', %s, %s, 'b', "
            "'supabase-backups/backup-new.zip')", (clock[0] - timedelta(minutes=20), clock[0]))
    assert check_after(timedelta(minutes=30)) == (
        "success", ["[supabase-backup] RECOVERED: verified backup scheduled__new"])
    recovered = body_text(smtp_sink.messages[-1][1])
    assert "run scheduled__new" in recovered and "1 reminder sent" in recovered
    assert check_after(timedelta(hours=1)) == ("success", [])
    with small_sandbox.connect(old_history_database) as connection:
        assert connection.execute(
            "SELECT alerted_at, reminders_sent, recovered_at = %s FROM public.backup_alert_state",
            (clock[0] - timedelta(hours=1),)).fetchone() == (None, 0, True)


def test_without_the_episode_table_every_stale_check_still_alerts(
        small_sandbox, airflow_metadata, old_history_database, smtp_sink):
    """Code upgraded, migration not re-applied: better an alert every hour than none."""
    with small_sandbox.connect(old_history_database) as connection:
        connection.execute("DROP TABLE public.backup_alert_state")
    for _ in range(2):
        dag_run = run_staleness_check(
            small_sandbox, supabase_backup_max_backup_age_hours="26",
            supabase_backup_alert_email="ops@example.com")
        assert dag_run.state == "failed"
    assert len(smtp_sink.messages) == 2
    text = body_text(smtp_sink.messages[-1][1])
    assert "Alerting at every check: Table public.backup_alert_state does not exist" in text
    assert "include/sql/001_backup_system.sql" in text


def test_a_failed_retention_fails_the_dag_run_but_the_backup_row_stays_success(
        small_sandbox, backup_runner, smtp_sink):
    sandbox = small_sandbox
    # An old archive recorded in a bucket that is gone: deleting it fails (NoSuchBucket).
    with sandbox.connect() as connection:
        broken = connection.execute(
            "INSERT INTO public.backup_history (run_id, status, trigger, started_at, finished_at, "
            "s3_bucket, s3_key) VALUES (%s, 'success', 'scheduled', '2019-01-01 03:00Z', "
            "'2019-01-01 03:05Z', 'bucket-that-was-removed', 'supabase-backups/backup-2019.zip') "
            "RETURNING id", (f"old-broken-{uuid.uuid4().hex[:6]}",)).fetchone()[0]
        real = connection.execute(
            "SELECT count(*) FROM public.backup_history WHERE status = 'success' AND "
            "deleted_at IS NULL AND kind = 'backup'").fetchone()[0] - 1
    try:
        dag_run = backup_runner.run(
            sandbox, {"include_storage": False, "include_auth": False},
            supabase_backup_retention=json.dumps({"keep_last": real + 1}),
            supabase_backup_alert_email="ops@example.com", supabase_backup_ui_base_url=BASE_URL)
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        assert states["verify_upload"] == "success" and states["record_history"] == "success"
        assert states["apply_retention"] == "failed"
        assert dag_run.state == "failed"  # so the failure is seen …
        row = sandbox.history_row(dag_run.run_id)
        assert row["status"] == "success" and row["error"] is None  # … but the backup stands
        assert sandbox.history_row(row["run_id"])["deleted_at"] is None
        (_, message), = smtp_sink.messages
        assert message["Subject"] == (
            f"[supabase-backup] Backup verified, but a later task FAILED: {dag_run.run_id}")
        text = body_text(message)
        assert "apply_retention" in text and "bucket-that-was-removed" in text
    finally:
        with sandbox.connect() as connection:
            connection.execute("UPDATE public.backup_history SET deleted_at = now(), "
                               "deleted_by = 'test clean-up' WHERE id = %s", (broken,))


@pytest.fixture
def slack_webhook(monkeypatch):
    """A local HTTP server standing in for a Slack incoming webhook: records each JSON post."""
    import http.server
    import threading

    posts = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            posts.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_BACKUP_ALERTS", json.dumps({
        "conn_type": "slackwebhook",
        "password": f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX"}))
    try:
        yield posts
    finally:
        server.shutdown()


def test_a_stale_project_alerts_slack_when_configured(small_sandbox, airflow_metadata,
                                                      old_history_database, slack_webhook):
    dag_run = run_staleness_check(
        small_sandbox, supabase_backup_max_backup_age_hours="26",
        supabase_backup_alert_slack_conn_id="slack_backup_alerts",
        supabase_backup_ui_base_url=BASE_URL)
    assert dag_run.state == "failed"
    (path, payload), = slack_webhook
    assert path == "/services/T000/B000/XXXX"
    assert payload["text"].startswith("*[supabase-backup] STALE: no verified backup in 26 h*")
    assert "run scheduled__old" in payload["text"] and f"{BASE_URL}/backup/ui" in payload["text"]
