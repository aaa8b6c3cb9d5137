"""drill.py: the plan travels as a dict, scratch names are plain identifiers, one per run."""

import re

from supabase_backup import drill


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
