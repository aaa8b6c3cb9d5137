"""The supabase-backup command: verify's output and exit codes, help text, usage errors."""

import json

import pytest

from supabase_backup.cli import main
from tests.unit.test_verify import MEMBERS, write_zip


def test_verify_says_ok_and_exits_0(tmp_path, capsys):
    archive = write_zip(tmp_path / "ok.zip", MEMBERS)
    assert main(["verify", str(archive)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {archive}: 2 members") and "sha256 " in out
    assert main(["verify", "--json", str(archive)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["members_checked"] == 2 and len(result["sha256"]) == 64


def test_a_damaged_archive_exits_1_naming_the_member(tmp_path, capsys):
    bad = write_zip(tmp_path / "bad.zip", {**MEMBERS, "x": b"1"})
    assert main(["verify", str(bad)]) == 1
    assert "verification failed" in capsys.readouterr().err.lower()


def test_a_missing_file_and_a_bad_usage_have_their_own_exit_codes(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope.zip")]) == 9  # nothing read: not "damaged" (1)
    assert "No archive at" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["verify"])
    assert usage.value.code == 3


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as shown:
        main(["--help"])
    assert shown.value.code == 0
    text = capsys.readouterr().out
    for expected in ("verify", "exit codes:", "AWS_ENDPOINT_URL", "without Airflow"):
        assert expected in text
