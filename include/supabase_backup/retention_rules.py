"""Retention rules as a setting, and which backups they keep: restic's ``forget`` rules, pure.

Rules (the Airflow Variable ``supabase_backup_retention``, JSON)::

    {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 2,
     "timezone": "UTC"}

Semantics are restic's (``restic forget``, ``internal/restic/snapshot_policy.go``): backups are
walked newest first; ``keep_last N`` keeps the N newest; each calendar rule keeps the newest backup
of each of the last N periods *that have a backup* (a day without a backup does not use up a
day), and, while it still has periods left when the backups run out, the oldest backup too (so a
short history is kept as long as the rule allows). A backup kept by any rule is kept. Days, ISO
weeks (Monday first), months and years are taken in ``timezone`` (an IANA name; UTC by default).
``-1`` means "every period". Deleting what the rules do not keep is
``supabase_backup.destination.retention``'s job.

On top of the rules, the newest verified copy of each part is kept: every backup names the parts
its archive holds (``database``, ``auth``, ``storage/<bucket>``), and for each part the newest
archive holding it stays, so a run that left Storage (or one bucket) out never costs the last copy
of it. An archive whose parts were not recorded (made before they were) may hold any part: it is
kept while it is newer than the newest archive known to hold the part, and the newest such archive
is always kept. A backup a restore drill found damaged holds no verified copy of anything. Only
``"allow_deleting_last_copy_of": ["storage/old-bucket", ...]`` lets those parts' last copies go
(a bucket deleted from the project, say).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from supabase_backup.errors import ConfigurationError

RULE_NAMES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
ALLOW_DELETING_LAST_COPY_OF = "allow_deleting_last_copy_of"
DATABASE_PART = "database"
AUTH_PART = "auth"
STORAGE_PART_PREFIX = "storage/"


def storage_part(bucket_id: str) -> str:
    return f"{STORAGE_PART_PREFIX}{bucket_id}"


@dataclass(frozen=True)
class RetentionRules:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    timezone: str = "UTC"
    # Parts whose newest copy may go like any other archive (said in so many words, per part).
    allow_deleting_last_copy_of: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value) -> RetentionRules | None:
        """The Variable's JSON (or a dict); None when unset or empty (= keep everything)."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ConfigurationError(
                    f"supabase_backup_retention is not valid JSON ({error}): use e.g. "
                    '{"keep_daily": 7, "keep_weekly": 4}'
                ) from None
        if not isinstance(value, dict):
            raise ConfigurationError(
                'supabase_backup_retention must be a JSON object, e.g. {"keep_daily": 7}'
            )
        unknown = sorted(set(value) - set(RULE_NAMES) - {"timezone", ALLOW_DELETING_LAST_COPY_OF})
        if unknown:
            raise ConfigurationError(
                f"supabase_backup_retention has unknown key(s) {', '.join(unknown)}: use "
                f"{', '.join(RULE_NAMES)}, timezone and {ALLOW_DELETING_LAST_COPY_OF}"
            )
        allowed = value.get(ALLOW_DELETING_LAST_COPY_OF) or []
        if not isinstance(allowed, list | tuple) or not all(
            isinstance(part, str) and _is_part_name(part) for part in allowed
        ):
            raise ConfigurationError(
                f"supabase_backup_retention: {ALLOW_DELETING_LAST_COPY_OF} must be a list of "
                f'part names ("database", "auth", "storage/<bucket>"), not {allowed!r}'
            )
        counts = {}
        for name in RULE_NAMES:
            count = value.get(name, 0)
            if isinstance(count, bool) or not isinstance(count, int) or count < -1:
                raise ConfigurationError(
                    f"supabase_backup_retention: {name} must be a whole number ≥ 0 (or -1 for "
                    f"every period), not {count!r}"
                )
            counts[name] = count
        zone = value.get("timezone") or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(
                f"supabase_backup_retention: timezone {zone!r} is not an IANA time zone name "
                "(e.g. UTC, Europe/Berlin)"
            ) from None
        if not any(counts.values()):
            raise ConfigurationError(
                "supabase_backup_retention keeps nothing: set at least one keep_* rule above 0 "
                "(or unset the Variable to keep every backup)"
            )
        return cls(**counts, timezone=zone, allow_deleting_last_copy_of=tuple(allowed))

    def describe(self) -> str:
        """The rule set as text (``deleted_by`` on a deleted row)."""
        parts = [f"{name}={getattr(self, name)}" for name in RULE_NAMES if getattr(self, name)]
        if self.timezone != "UTC":
            parts.append(f"timezone={self.timezone}")
        if self.allow_deleting_last_copy_of:
            parts.append(
                f"{ALLOW_DELETING_LAST_COPY_OF}={','.join(self.allow_deleting_last_copy_of)}"
            )
        return "retention " + " ".join(parts)


def _is_part_name(name: str) -> bool:
    return name in (DATABASE_PART, AUTH_PART) or (
        name.startswith(STORAGE_PART_PREFIX) and len(name) > len(STORAGE_PART_PREFIX)
    )


@dataclass(frozen=True)
class Backup:
    """One candidate: a verified successful archive."""

    history_id: int
    run_id: str
    started_at: datetime
    s3_bucket: str
    s3_key: str
    size_bytes: int | None = None
    # The parts the archive is known to hold: "database", "auth", "storage/<bucket>".
    parts: frozenset[str] = frozenset()
    # False for an archive made before its parts were recorded: it may hold any other part too.
    parts_recorded: bool = True
    # A restore drill found the archive damaged: it is no verified copy of any part.
    damaged: bool = False

    def describe_parts(self) -> str:
        known = ", ".join(sorted(self.parts, key=_part_order))
        if self.parts_recorded:
            return known or "no parts"
        return f"{known}, maybe more (parts not recorded)" if known else "parts not recorded"


def _part_order(part: str) -> tuple[int, str]:
    return ({DATABASE_PART: 0, AUTH_PART: 1}.get(part, 2), part)


@dataclass
class Decision:
    backup: Backup
    keep: bool
    reasons: list[str] = field(default_factory=list)  # why kept (empty when it goes)


def _period(rule: str, moment: datetime, index: int, zone: ZoneInfo):
    local = moment.astimezone(zone)
    if rule == "keep_last":
        return index  # every backup is its own period
    if rule == "keep_daily":
        return (local.year, local.month, local.day)
    if rule == "keep_weekly":
        iso = local.isocalendar()
        return (iso.year, iso.week)
    if rule == "keep_monthly":
        return (local.year, local.month)
    return local.year


_REASON = {
    "keep_last": "last",
    "keep_daily": "daily",
    "keep_weekly": "weekly",
    "keep_monthly": "monthly",
    "keep_yearly": "yearly",
}


def plan_retention(
    backups: Iterable[Backup], rules: RetentionRules, *, protected: dict[int, str] | None = None
) -> list[Decision]:
    """Newest first, each backup with keep or forget and the reasons it is kept.

    ``protected`` maps history ids that must stay whatever the rules say (in use) to the reason.
    The newest backup is always kept.
    """
    zone = ZoneInfo(rules.timezone)
    ordered = sorted(
        backups, key=lambda backup: (backup.started_at, backup.history_id), reverse=True
    )
    remaining = {rule: getattr(rules, rule) for rule in RULE_NAMES}
    last_period: dict[str, object] = {rule: None for rule in RULE_NAMES}
    decisions = []
    for index, backup in enumerate(ordered):
        reasons = []
        for rule in RULE_NAMES:
            if remaining[rule] == 0:
                continue
            period = _period(rule, backup.started_at, index, zone)
            # restic also keeps the oldest backup while a rule has periods left, so a history
            # shorter than the rule is kept whole.
            if period != last_period[rule] or index == len(ordered) - 1:
                oldest_only = period == last_period[rule]
                last_period[rule] = period
                if remaining[rule] > 0:
                    remaining[rule] -= 1
                label = _REASON[rule]
                if rule != "keep_last":
                    label += f" {_period_label(rule, backup.started_at, zone)}"
                if oldest_only:
                    label += " (oldest backup, periods left)"
                reasons.append(label)
        if index == 0:
            reasons.insert(0, "newest successful backup")
        if protected and backup.history_id in protected:
            reasons.append(protected[backup.history_id])
        decisions.append(Decision(backup, keep=bool(reasons), reasons=reasons))
    _keep_last_copies(decisions, rules)
    return decisions


def _keep_last_copies(decisions: list[Decision], rules: RetentionRules) -> None:
    """Keep the newest verified copy of each part (``decisions`` newest first): the newest archive
    known to hold it, and every archive with unrecorded parts newer than that one (any of them may
    be the newest copy)."""
    verified = [decision for decision in decisions if not decision.backup.damaged]
    known_parts = sorted(
        {part for decision in verified for part in decision.backup.parts}
        - set(rules.allow_deleting_last_copy_of),
        key=_part_order,
    )
    last_copy_of: dict[int, list[str]] = {}
    may_hold: dict[int, list[str]] = {}
    for part in known_parts:
        for decision in verified:
            backup = decision.backup
            if part in backup.parts:
                last_copy_of.setdefault(backup.history_id, []).append(part)
                break
            if not backup.parts_recorded:
                may_hold.setdefault(backup.history_id, []).append(part)
    for decision in verified:
        history_id = decision.backup.history_id
        if history_id in last_copy_of:
            _keep(decision, f"last copy of {', '.join(last_copy_of[history_id])}")
        if history_id in may_hold:
            _keep(
                decision,
                f"may hold the last copy of {', '.join(may_hold[history_id])} (parts not recorded)",
            )
    # Parts only archives with unrecorded parts may hold have no name to look for: the newest of
    # those archives stands for them.
    unrecorded = next((d for d in verified if not d.backup.parts_recorded), None)
    if unrecorded is not None:
        _keep(unrecorded, "newest archive whose parts were not recorded")


def _keep(decision: Decision, reason: str) -> None:
    decision.keep = True
    decision.reasons.append(reason)


def _period_label(rule: str, moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    if rule == "keep_daily":
        return local.strftime("%Y-%m-%d")
    if rule == "keep_weekly":
        iso = local.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    if rule == "keep_monthly":
        return local.strftime("%Y-%m")
    return local.strftime("%Y")


def format_plan(decisions: list[Decision], rules: RetentionRules, *, dry_run: bool) -> str:
    """The table ``supabase-backup prune`` prints: every candidate, keep or delete, and why."""
    lines = [
        f"{rules.describe()} (periods in {rules.timezone}); "
        f"{sum(d.keep for d in decisions)} kept, "
        f"{sum(not d.keep for d in decisions)} {'would be deleted' if dry_run else 'deleted'}"
    ]
    for decision in decisions:
        backup = decision.backup
        when = backup.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        action = "keep  " if decision.keep else ("would delete" if dry_run else "delete")
        why = ", ".join(decision.reasons) if decision.keep else "no rule keeps it"
        holds = "DAMAGED (a restore drill)" if backup.damaged else backup.describe_parts()
        lines.append(
            f"  {action:<12} #{backup.history_id:<5} {when}  {backup.s3_key}  [{holds}]  ({why})"
        )
    return "\n".join(lines)
