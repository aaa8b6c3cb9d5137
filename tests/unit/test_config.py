import json

import pytest

from supabase_backup import config
from supabase_backup.errors import ConfigurationError


def variables(values):
    return lambda name, default: values.get(name, default)


def test_defaults():
    settings = config.BackupSettings.from_variables(variables({"supabase_backup_s3_bucket": "b"}))
    assert settings.s3_bucket == "b"
    assert settings.s3_prefix == "supabase-backups/"
    assert settings.staging_root == "file:///tmp/supabase-backup-staging"
    assert settings.buckets is None and settings.download_concurrency == 8
    assert settings.server_side_encryption == "AES256"


def test_missing_bucket_says_which_variable_to_set():
    with pytest.raises(ConfigurationError, match="supabase_backup_s3_bucket"):
        config.BackupSettings.from_variables(variables({}))


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("a, b,,a", ("a", "b")), ('["x", "y"]', ("x", "y")), (["z"], ("z",)),
])
def test_bucket_list_forms(value, expected):
    assert config.parse_bucket_list(value) == expected


def test_bad_values_are_explained():
    with pytest.raises(ConfigurationError, match="1 to 64"):
        config.BackupSettings.from_variables(variables(
            {"supabase_backup_s3_bucket": "b", "supabase_backup_download_concurrency": "lots"}))
    with pytest.raises(ConfigurationError, match="supabase_backup_sse"):
        config.BackupSettings.from_variables(variables(
            {"supabase_backup_s3_bucket": "b", "supabase_backup_sse": "rot13"}))


def test_prefix_gets_a_trailing_slash(monkeypatch):
    settings = config.BackupSettings.from_variables(variables(
        {"supabase_backup_s3_bucket": "b", "supabase_backup_s3_prefix": "nightly"}))
    assert settings.s3_prefix == "nightly/"
    monkeypatch.setenv("SUPABASE_BACKUP_SCHEDULE", "none")
    assert config.schedule_from_environment() is None
    monkeypatch.setenv("SUPABASE_BACKUP_SCHEDULE", "0 3 * * *")
    assert config.schedule_from_environment() == "0 3 * * *"


@pytest.mark.parametrize("root", ["relative/folder", "ftp://host/x", "gs:/no-host", "file://rel",
                                  "file://relative/staging", "file://localhost/x",
                                  "s3://aws_default@/staging"])
def test_an_unknown_or_relative_staging_root_names_the_variable(root):
    with pytest.raises(ConfigurationError, match="supabase_backup_staging_root"):
        config.BackupSettings.from_variables(variables(
            {"supabase_backup_s3_bucket": "b", "supabase_backup_staging_root": root}))


@pytest.mark.parametrize("root", ["file:///var/stage", "s3://bucket/staging",
                                  "s3://aws_default@bucket/staging"])
def test_the_documented_staging_roots_are_accepted(root):
    settings = config.BackupSettings.from_variables(variables(
        {"supabase_backup_s3_bucket": "b", "supabase_backup_staging_root": root}))
    assert settings.staging_root == root


def test_a_plain_absolute_folder_is_a_file_url():
    settings = config.BackupSettings.from_variables(variables(
        {"supabase_backup_s3_bucket": "b", "supabase_backup_staging_root": "/var/stage"}))
    assert settings.staging_root == "file:///var/stage"


@pytest.mark.parametrize("prefix", ["/abs/", "a/../b", "..", "x/../"])
def test_a_prefix_with_dot_dot_or_a_leading_slash_is_refused(prefix):
    with pytest.raises(ConfigurationError, match="supabase_backup_s3_prefix"):
        config.BackupSettings.from_variables(variables(
            {"supabase_backup_s3_bucket": "b", "supabase_backup_s3_prefix": prefix}))


def test_a_run_with_every_part_left_out_is_refused():
    settings = config.BackupSettings(s3_bucket="b")
    with pytest.raises(ConfigurationError, match="back up nothing"):
        config.RunPlan.create(settings, run_id="r", trigger="manual", started_at="t", params={
            "include_database": False, "include_auth": False, "include_storage": False})
    plan = config.RunPlan.create(settings, run_id="r", trigger="manual", started_at="t",
                                 params={"include_auth": False, "buckets": ["a"]})
    assert (plan.include_database, plan.include_auth, plan.buckets) == (True, False, ("a",))


def test_exact_figures_limit_is_a_number_of_bytes_carried_into_the_plan():
    default = config.BackupSettings.from_variables(variables({"supabase_backup_s3_bucket": "b"}))
    assert default.exact_figures_max_bytes == 2**30
    settings = config.BackupSettings.from_variables(variables(
        {"supabase_backup_s3_bucket": "b", "supabase_backup_exact_figures_max_bytes": "0"}))
    plan = config.RunPlan.create(settings, run_id="r", trigger="manual", started_at="x", params={})
    assert config.RunPlan.from_dict(plan.to_dict()).settings.exact_figures_max_bytes == 0
    for bad in ("-1", "1GiB"):
        with pytest.raises(ConfigurationError, match="supabase_backup_exact_figures_max_bytes"):
            config.BackupSettings.from_variables(variables(
                {"supabase_backup_s3_bucket": "b", "supabase_backup_exact_figures_max_bytes": bad}))


def test_the_drill_schedule_is_weekly_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv("SUPABASE_BACKUP_DRILL_SCHEDULE", raising=False)
    assert config.drill_schedule_from_environment() == "@weekly"
    monkeypatch.setenv("SUPABASE_BACKUP_DRILL_SCHEDULE", "None")
    assert config.drill_schedule_from_environment() is None


def test_shard_size_is_a_positive_number_of_objects_carried_into_the_plan():
    default = config.BackupSettings.from_variables(variables({"supabase_backup_s3_bucket": "b"}))
    assert default.shard_max_objects == 250_000
    settings = config.BackupSettings.from_variables(variables(
        {"supabase_backup_s3_bucket": "b", "supabase_backup_shard_max_objects": " 1000 "}))
    plan = config.RunPlan.create(settings, run_id="r", trigger="manual", started_at="x", params={})
    assert config.RunPlan.from_dict(plan.to_dict()).settings.shard_max_objects == 1000
    for bad in ("0", "-5", "many", "1e6"):
        with pytest.raises(ConfigurationError, match="supabase_backup_shard_max_objects"):
            config.BackupSettings.from_variables(variables(
                {"supabase_backup_s3_bucket": "b", "supabase_backup_shard_max_objects": bad}))


def test_the_plan_holds_the_settings_and_records_them_flat():
    settings = config.BackupSettings(s3_bucket="b", buckets=("a", "b"), s3_prefix="nightly/")
    plan = config.RunPlan.create(settings, run_id="r", trigger="api", started_at="t",
                                 params={"buckets": ["c"], "include_auth": False})
    assert (plan.settings.s3_bucket, plan.settings.s3_prefix) == ("b", "nightly/")
    assert (plan.buckets, plan.include_auth, plan.forced) == (("c",), False, False)
    assert config.RunPlan.create(settings, run_id="r", trigger="api", started_at="t",
                                 params={}).buckets == ("a", "b")
    # One flat record, the manifest's run and plan sections (FORMAT.md) cut from it as before.
    assert set(plan.to_dict()) == {
        "run_id", "trigger", "started_at", "triggered_by", "logical_date", "attempt", "forced",
        "include_database", "include_auth", "include_storage", "stream_archive", "buckets",
        "s3_bucket", "s3_prefix", "staging_root", "download_concurrency",
        "server_side_encryption", "sse_kms_key_id", "pg_dump_path", "exact_figures_max_bytes",
        "shard_max_objects", "database_conn_id", "api_conn_id", "aws_conn_id", "retention",
        "age_recipients"}
    assert plan.to_dict()["buckets"] == ["c"]
    assert config.RunPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
