"""How sizes and rates are written in log lines and messages, the same way everywhere."""

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
