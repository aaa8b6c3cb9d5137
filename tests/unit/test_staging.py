from supabase_backup.staging import StagingArea, bucket_folder_name, run_folder_name


def test_run_and_bucket_folder_names_are_safe_and_distinct():
    assert run_folder_name("manual__2026-11-25T08:35:10.811357+00:00") == (
        "manual__2026-11-25T08_35_10.811357_00_00")
    names = [bucket_folder_name(bucket) for bucket in (".", "..", "a/b", "a%2Fb", "avatars")]
    assert names == ["%2E", "%2E%2E", "a%2Fb", "a%252Fb", "avatars"]
    assert len(set(names)) == len(names)


def test_layout_and_removal(tmp_path):
    staging = StagingArea.for_run(f"file://{tmp_path}/", "scheduled__x")
    staging.create()
    bucket = staging.bucket("..")
    assert bucket.object_path(7).path.endswith("/scheduled__x/storage/%2E%2E/objects/00000007")
    assert staging.database_dump.path.endswith("/scheduled__x/db/backup.sql")
    (tmp_path / "scheduled__x" / "leftover").write_text("x")
    staging.remove()
    assert not (tmp_path / "scheduled__x").exists()
    staging.remove()  # removing twice is fine (the teardown may run after a failed create)
