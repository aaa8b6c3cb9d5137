"""drill.py: the plan travels as a dict, scratch names are plain identifiers, one per run; the
archive is read from S3 by ranged reads without zipfile (memory bounded whatever its member count)."""

import io
import re
import zipfile
from types import SimpleNamespace

from supabase_backup.restore import drill


def test_scratch_database_names_are_short_plain_and_one_per_run():
    first = drill.scratch_database_name("manual__2026-11-28T06:37:54.844589+00:00",
                                        "2026-11-28T06:37:54.844589+00:00")
    second = drill.scratch_database_name("scheduled__2026-11-29T00:00:00+00:00",
                                         "2026-11-28T06:37:54.844589+00:00")
    assert re.fullmatch(r"drill_20261128063754_[0-9a-f]{8}", first)
    assert first != second and len(first) < 63


def test_history_run_ids_never_collide_with_the_backup_dags():
    assert drill.history_run_id("scheduled__2026-11-29T00:00:00+00:00") == (
        "supabase_backup_restore_drill:scheduled__2026-11-29T00:00:00+00:00")


def test_the_plan_round_trips_through_a_dict():
    plan = drill.DrillPlan(run_id="d:r", dag_run_id="r", trigger="manual", started_at="t",
                           scratch_database="drill_x", backup_run_id="b", s3_bucket="bk",
                           s3_key="k.zip", size_bytes=10, sha256="ab")
    assert drill.DrillPlan.from_dict({**plan.to_dict(), "unknown": 1}) == plan
    assert plan.archive_url == "s3://bk/k.zip"


class RangedS3:
    """head_object and ranged get_object over one archive's bytes: what S3RangeReader calls."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.gets = 0

    def head_object(self, Bucket, Key):
        return {"ContentLength": len(self.data)}

    def get_object(self, Bucket, Key, Range):
        start, end = (int(number) for number in Range.removeprefix("bytes=").split("-"))
        self.gets += 1
        return {"Body": io.BytesIO(self.data[start:end + 1])}


def test_the_recorded_tables_are_read_from_s3_without_zipfile(tmp_path, monkeypatch):
    from tests.unit.test_restore import write_many

    path = tmp_path / "many.zip"
    write_many(path, 2000)

    def refuse(*args, **kwargs):
        raise AssertionError("the drill built a zipfile.ZipFile")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)
    s3 = RangedS3(path.read_bytes())
    plan = drill.DrillPlan(run_id="d:r", dag_run_id="r", trigger="manual", started_at="t",
                           scratch_database="drill_x", backup_run_id="b", s3_bucket="bk",
                           s3_key="many.zip", size_bytes=len(s3.data), sha256="ab")
    section, tables = drill.read_recorded_tables(plan, SimpleNamespace(s3=s3))
    assert section["member"] == "db/backup.sql"
    assert tables == [{"schema": "public", "table": "t", "row_estimate": 7}]
    assert s3.gets >= 1


def test_a_finding_about_the_archive_is_recognised_through_the_task_failure_airflow_raises():
    from supabase_backup.errors import FiguresDiffer, VerificationFailed

    finding = FiguresDiffer("s3://b/k.zip", 1, "auth.users: 3 rows, 4 at dump time")
    try:
        try:
            raise finding
        except FiguresDiffer as error:  # what failing_fast does with a permanent error
            raise RuntimeError(str(error)) from error
    except RuntimeError as raised:
        assert drill._is_archive_damage(raised)
    assert drill._is_archive_damage(VerificationFailed("s3://b/k.zip", "damaged member: CRC"))
    assert not drill._is_archive_damage(OSError("connection refused"))
    assert not drill._is_archive_damage(None)


def test_a_finding_stands_only_while_its_step_never_succeeded():
    row = {"details": {"archive_damage": {"step": "verify_backup", "finding": "damaged member"}}}
    assert drill._damage_found(row, {"verified": None, "compared": None}) == "damaged member"
    assert drill._damage_found(row, {"verified": {"members_checked": 3}, "compared": None}) is None
    assert drill._damage_found({"details": {}}, {"verified": None, "compared": None}) is None
