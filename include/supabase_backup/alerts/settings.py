"""The alert Variables, validated: who gets alerts, through which connections, and the staleness
thresholds. Read by ``supabase_backup.airflow.alerting``; a wrong value is refused naming its
Variable."""

from __future__ import annotations

import math
from dataclasses import dataclass

from supabase_backup.errors import ConfigurationError

DEFAULT_SMTP_CONNECTION = "smtp_default"


DEFAULT_STALE_REMINDER_HOURS = 24.0


@dataclass(frozen=True)
class AlertSettings:
    email_to: tuple[str, ...] = ()
    smtp_conn_id: str = DEFAULT_SMTP_CONNECTION
    slack_conn_id: str | None = None
    max_backup_age_hours: float | None = None
    stale_reminder_hours: float = DEFAULT_STALE_REMINDER_HOURS  # 0: never remind
    base_url: str = "http://localhost:8080"

    @property
    def configured(self) -> bool:
        return bool(self.email_to or self.slack_conn_id)

    @classmethod
    def from_variables(
        cls, get_variable, default_base_url: str | None, *, staleness: bool = True
    ) -> AlertSettings:
        """``staleness=False`` (the failure alerts) leaves the staleness Variables unread, so a
        mistyped one stops only the staleness check, never the alert of a failed backup."""
        emails = tuple(
            item.strip()
            for item in (get_variable("supabase_backup_alert_email", None) or "").split(",")
            if item.strip()
        )
        for address in emails:
            if "@" not in address:
                raise ConfigurationError(
                    f"supabase_backup_alert_email holds {address!r}, not an e-mail address "
                    "(comma-separated addresses, e.g. ops@example.com,oncall@example.com)"
                )
        age_text = (
            (get_variable("supabase_backup_max_backup_age_hours", None) or "").strip()
            if staleness
            else ""
        )
        max_age = None
        if age_text:
            try:
                max_age = float(age_text)
            except ValueError:
                max_age = -1.0
            # float() also reads "nan" and "inf": nan compares false with every age (the check
            # would report "recovered" forever) and inf turns the check off without saying so.
            if not (max_age > 0 and math.isfinite(max_age)):
                raise ConfigurationError(
                    f"supabase_backup_max_backup_age_hours must be a positive, finite number of "
                    f"hours, not {age_text!r} (e.g. 26 for a daily backup; unset it to turn the "
                    f"check off)"
                )
        reminder_text = (
            (get_variable("supabase_backup_stale_reminder_hours", None) or "").strip()
            if staleness
            else ""
        )
        reminder_hours = DEFAULT_STALE_REMINDER_HOURS
        if reminder_text:
            try:
                reminder_hours = float(reminder_text)
            except ValueError:
                reminder_hours = -1.0
            if not (reminder_hours >= 0 and math.isfinite(reminder_hours)):
                raise ConfigurationError(
                    f"supabase_backup_stale_reminder_hours must be a number of hours, 0 or more, "
                    f"not {reminder_text!r} (e.g. 24 for a daily reminder; 0 for none)"
                )
        base_url = (
            get_variable("supabase_backup_ui_base_url", None)
            or default_base_url
            or "http://localhost:8080"
        ).rstrip("/")
        return cls(
            email_to=emails,
            smtp_conn_id=get_variable("supabase_backup_alert_smtp_conn_id", None)
            or DEFAULT_SMTP_CONNECTION,
            slack_conn_id=get_variable("supabase_backup_alert_slack_conn_id", None) or None,
            max_backup_age_hours=max_age,
            stale_reminder_hours=reminder_hours,
            base_url=base_url,
        )
