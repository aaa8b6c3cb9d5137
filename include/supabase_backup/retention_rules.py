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
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from supabase_backup.errors import ConfigurationError

RULE_NAMES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


@dataclass(frozen=True)
class RetentionRules:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    timezone: str = "UTC"

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
        unknown = sorted(set(value) - set(RULE_NAMES) - {"timezone"})
        if unknown:
            raise ConfigurationError(
                f"supabase_backup_retention has unknown key(s) {', '.join(unknown)}: use "
                f"{', '.join(RULE_NAMES)} and timezone"
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
        return cls(**counts, timezone=zone)

    def describe(self) -> str:
        """The rule set as text (``deleted_by`` on a deleted row)."""
        parts = [f"{name}={getattr(self, name)}" for name in RULE_NAMES if getattr(self, name)]
        if self.timezone != "UTC":
            parts.append(f"timezone={self.timezone}")
        return "retention " + " ".join(parts)


@dataclass(frozen=True)
class Backup:
    """One candidate: a verified successful archive."""

    history_id: int
    run_id: str
    started_at: datetime
    s3_bucket: str
    s3_key: str
    size_bytes: int | None = None


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
    return decisions


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
        lines.append(f"  {action:<12} #{backup.history_id:<5} {when}  {backup.s3_key}  ({why})")
    return "\n".join(lines)
