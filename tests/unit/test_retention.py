"""Retention rules (restic's ``forget`` semantics): a table of dated backups and what each rule keeps."""

from datetime import datetime, timezone

import pytest

from supabase_backup.errors import ConfigurationError
from supabase_backup.retention_rules import Backup, RetentionRules, format_plan, plan_retention


def backup(number: int, when: str) -> Backup:
    moment = datetime.fromisoformat(when).replace(tzinfo=timezone.utc)
    return Backup(history_id=number, run_id=f"run-{number}", started_at=moment, s3_bucket="b",
                  s3_key=f"supabase-backups/backup-{moment:%Y-%m-%d-%H-%M}-UTC.zip")


# Newest first; 11-27 has two backups, 11-25 none, and 2025-12-31 lies in ISO week 2026-W01.
HISTORY = [
    backup(1, "2026-11-28 03:00"),   # Sat, week 48
    backup(2, "2026-11-27 15:00"),   # Fri, week 48
    backup(3, "2026-11-27 03:00"),   # same day as 2
    backup(4, "2026-11-26 03:00"),   # week 48
    backup(5, "2026-11-24 03:00"),   # week 48 (no backup on 11-25)
    backup(6, "2026-11-20 03:00"),   # week 47
    backup(7, "2026-11-10 03:00"),   # week 46
    backup(8, "2026-10-31 03:00"),   # week 44, October
    backup(9, "2026-10-01 03:00"),   # week 40, October
    backup(10, "2025-12-31 03:00"),  # ISO week 2026-W01, December 2025, year 2025
]


def kept(rules: dict, history=HISTORY, protected=None) -> set[int]:
    decisions = plan_retention(history, RetentionRules.parse(rules), protected=protected)
    return {decision.backup.history_id for decision in decisions if decision.keep}


@pytest.mark.parametrize("rules, expected", [
    ({"keep_last": 1}, {1}),
    ({"keep_last": 3}, {1, 2, 3}),
    ({"keep_daily": 3}, {1, 2, 4}),                    # newest of each day; a gap uses no day
    ({"keep_daily": 20}, {1, 2, 4, 5, 6, 7, 8, 9, 10}),  # only 3 goes (2 is newer that day)
    ({"keep_weekly": 3}, {1, 6, 7}),
    ({"keep_weekly": 10}, {1, 6, 7, 8, 9, 10}),
    ({"keep_weekly": -1}, {1, 6, 7, 8, 9, 10}),
    ({"keep_monthly": 1}, {1}),
    ({"keep_monthly": 2}, {1, 8}),
    ({"keep_monthly": 12}, {1, 8, 10}),
    ({"keep_yearly": 5}, {1, 10}),
    ({"keep_daily": 2, "keep_weekly": 2}, {1, 2, 6}),  # kept by any rule is kept
    ({"keep_last": 2, "keep_monthly": 2}, {1, 2, 8}),
])
def test_each_rule_keeps_the_newest_backup_of_its_last_periods(rules, expected):
    assert kept(rules) == expected


def test_the_reasons_name_the_rule_and_period():
    decisions = plan_retention(HISTORY, RetentionRules.parse({"keep_daily": 2, "keep_weekly": 2}))
    reasons = {d.backup.history_id: d.reasons for d in decisions}
    assert reasons[1] == ["newest successful backup", "daily 2026-11-28", "weekly 2026-W48"]
    assert reasons[2] == ["daily 2026-11-27"]
    assert reasons[6] == ["weekly 2026-W47"]
    assert reasons[3] == []


def test_a_rule_with_periods_left_keeps_the_oldest_backup_too():
    # restic: while a rule still has periods left when the backups run out, the oldest stays.
    history = [backup(1, "2026-11-28 03:00"), backup(2, "2026-11-27 03:00"),
               backup(3, "2026-11-26 03:00")]
    assert kept({"keep_monthly": 5}, history) == {1, 3}
    decisions = plan_retention(history, RetentionRules.parse({"keep_monthly": 5}))
    assert decisions[-1].reasons == ["monthly 2026-11 (oldest backup, periods left)"]


def test_periods_follow_the_configured_time_zone():
    history = [backup(1, "2026-11-28 00:30"), backup(2, "2026-11-27 23:30"),
               backup(3, "2026-11-27 10:00")]
    assert kept({"keep_daily": 2}, history) == {1, 2}  # UTC: two days
    # In New York all three fall on 11-27: the newest, and (restic) the oldest while a day is left.
    assert kept({"keep_daily": 2, "timezone": "America/New_York"}, history) == {1, 3}
    assert kept({"keep_daily": 1, "timezone": "America/New_York"}, history) == {1}


def test_several_backups_a_day_keep_only_the_newest_of_each_day():
    history = [backup(n, f"2026-11-{28 - (n - 1) // 4:02d} {23 - 5 * ((n - 1) % 4):02d}:00")
               for n in range(1, 13)]
    assert kept({"keep_daily": 3}, history) == {1, 5, 9}


def test_the_newest_and_archives_in_use_are_never_deleted():
    assert kept({"keep_yearly": 1}, HISTORY) == {1}
    # keep_last 0 and a single daily: the newest stays even with rules that would pick others.
    assert kept({"keep_daily": 1}, HISTORY[:3], protected={3: "download URL minted 06:40:00 UTC"}) \
        == {1, 3}
    decisions = plan_retention(HISTORY, RetentionRules.parse({"keep_last": 1}),
                               protected={7: "a restore drill is using it"})
    assert [d.reasons for d in decisions if d.backup.history_id == 7] == [["a restore drill is using it"]]


def test_order_of_input_does_not_matter():
    assert kept({"keep_daily": 3}, list(reversed(HISTORY))) == {1, 2, 4}


@pytest.mark.parametrize("value", [
    "not json", "[1]", '{"keep_dayly": 3}', '{"keep_daily": -2}', '{"keep_daily": "3"}',
    '{"keep_daily": 0}', '{"keep_daily": 3, "timezone": "Mars/Olympus"}', '{"keep_daily": true}',
])
def test_bad_rules_are_configuration_errors_naming_the_variable(value):
    with pytest.raises(ConfigurationError, match="supabase_backup_retention"):
        RetentionRules.parse(value)


def test_unset_rules_keep_everything():
    assert RetentionRules.parse(None) is None
    assert RetentionRules.parse("  ") is None


def test_the_plan_text_says_what_goes_and_why():
    rules = RetentionRules.parse({"keep_daily": 2})
    text = format_plan(plan_retention(HISTORY[:4], rules), rules, dry_run=True)
    assert text.splitlines()[0] == "retention keep_daily=2 (periods in UTC); 2 kept, 2 would be deleted"
    assert "would delete #3" in text and "no rule keeps it" in text
    assert "keep         #2     2026-11-27 15:00 UTC" in text


def test_the_readme_worked_example():
    history = [backup(1, "2026-11-28 03:00"), backup(2, "2026-11-27 15:00"),
               backup(3, "2026-11-27 03:00"), backup(4, "2026-11-26 03:00"),
               backup(5, "2026-11-24 03:00"), backup(6, "2026-11-20 03:00"),
               backup(7, "2026-11-10 03:00")]
    assert kept({"keep_daily": 3, "keep_weekly": 2}, history) == {1, 2, 4, 6}


# --- the newest copy of each part (issue 19, item 7) ----------------------------------------------

EVERYTHING = frozenset({"database", "auth", "storage/avatars", "storage/docs"})


def holding(number: int, when: str, parts=EVERYTHING, *, recorded=True, damaged=False) -> Backup:
    base = backup(number, when)
    return Backup(**{**base.__dict__, "parts": frozenset(parts), "parts_recorded": recorded,
                     "damaged": damaged})


def decided(rules: dict, history) -> dict[int, list[str]]:
    """{history id: reasons} of the backups kept."""
    decisions = plan_retention(history, RetentionRules.parse(rules))
    return {d.backup.history_id: d.reasons for d in decisions if d.keep}


def test_keep_last_one_keeps_the_newest_archive_holding_storage_when_the_newest_left_it_out():
    # The case: the newest success left Storage out; every archive holding it used to go.
    history = [holding(1, "2026-11-28 03:00", {"database", "auth"}),
               holding(2, "2026-11-27 03:00"), holding(3, "2026-11-26 03:00")]
    assert decided({"keep_last": 1}, history) == {
        1: ["newest successful backup", "last", "last copy of database, auth"],
        2: ["last copy of storage/avatars, storage/docs"],
    }


def test_each_bucket_keeps_its_own_newest_copy():
    history = [holding(1, "2026-11-28 03:00", {"database", "auth", "storage/avatars"}),
               holding(2, "2026-11-27 03:00", {"storage/docs"}),
               holding(3, "2026-11-26 03:00"),
               holding(4, "2026-11-25 03:00")]
    reasons = decided({"keep_last": 1}, history)
    assert set(reasons) == {1, 2}
    assert reasons[2] == ["last copy of storage/docs"]


def test_a_damaged_archive_is_no_copy_of_anything():
    history = [holding(1, "2026-11-28 03:00", {"database"}),
               holding(2, "2026-11-27 03:00", damaged=True),
               holding(3, "2026-11-26 03:00")]
    reasons = decided({"keep_last": 1}, history)
    assert set(reasons) == {1, 3}
    assert reasons[3] == ["last copy of auth, storage/avatars, storage/docs"]


def test_an_archive_whose_parts_were_not_recorded_is_kept_while_it_may_be_the_newest_copy():
    history = [holding(1, "2026-11-28 03:00", {"database", "auth"}),
               holding(2, "2026-11-27 03:00", {"database"}, recorded=False),  # an old row
               holding(3, "2026-11-26 03:00", {"database", "storage/avatars"}),
               holding(4, "2026-11-25 03:00", {"database"}, recorded=False)]
    reasons = decided({"keep_last": 1}, history)
    assert reasons[2] == ["may hold the last copy of storage/avatars (parts not recorded)",
                          "newest archive whose parts were not recorded"]
    assert reasons[3] == ["last copy of storage/avatars"]
    assert 4 not in reasons  # older than a known copy of everything named, and not the newest old row


def test_only_rows_written_before_parts_were_recorded_keep_the_newest_of_them():
    history = [holding(1, "2026-11-28 03:00", set(), recorded=False),
               holding(2, "2026-11-27 03:00", set(), recorded=False)]
    assert set(decided({"keep_last": 1}, history)) == {1}


def test_the_rules_may_let_a_named_last_copy_go_in_so_many_words():
    history = [holding(1, "2026-11-28 03:00", {"database", "auth", "storage/avatars"}),
               holding(2, "2026-11-27 03:00", {"storage/retired"})]
    assert set(decided({"keep_last": 1}, history)) == {1, 2}
    rules = {"keep_last": 1, "allow_deleting_last_copy_of": ["storage/retired"]}
    assert set(decided(rules, history)) == {1}
    assert RetentionRules.parse(rules).describe() == (
        "retention keep_last=1 allow_deleting_last_copy_of=storage/retired")


@pytest.mark.parametrize("value", ['{"keep_last": 1, "allow_deleting_last_copy_of": "storage/x"}',
                                   '{"keep_last": 1, "allow_deleting_last_copy_of": ["avatars"]}'])
def test_allowing_a_last_copy_to_go_names_parts(value):
    with pytest.raises(ConfigurationError, match="allow_deleting_last_copy_of must be a list"):
        RetentionRules.parse(value)


def test_the_plan_shows_the_parts_each_archive_holds():
    history = [holding(1, "2026-11-28 03:00", {"auth", "database"}),
               holding(2, "2026-11-27 03:00"),
               holding(3, "2026-11-26 03:00", {"database"}, recorded=False),
               holding(4, "2026-11-25 03:00", damaged=True)]
    rules = RetentionRules.parse({"keep_last": 1})
    lines = format_plan(plan_retention(history, rules), rules, dry_run=True).splitlines()
    assert "[database, auth]" in lines[1]
    assert "[database, auth, storage/avatars, storage/docs]  (last copy of storage/avatars, " \
           "storage/docs)" in lines[2]
    assert "[database, maybe more (parts not recorded)]" in lines[3]
    assert "would delete" in lines[4] and "[DAMAGED (a restore drill)]" in lines[4]
