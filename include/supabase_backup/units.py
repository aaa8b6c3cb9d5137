"""How sizes, rates and a run's outcome are written in log lines and messages, the same way
everywhere."""

from __future__ import annotations


def format_bytes(count: int) -> str:
    """Bytes as a person reads them: 812 B, 3.4 KiB, 1.2 MiB, 5.0 GiB."""
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def format_rate(count: int, seconds: float) -> str:
    return f"{format_bytes(int(count / max(seconds, 1e-6)))}/s"


# The words that open a run's outcome sentence (the DAG run's note, a failed task's last log line).
SUCCESS, INCOMPLETE, FAILED, SKIPPED = "Success", "Incomplete", "Failed", "Skipped"


def outcome_sentence(outcome: str, detail: str) -> str:
    """``Outcome: cause or result.``, the one sentence a person reads first."""
    return f"{outcome}: {detail.strip().rstrip('.')}."
