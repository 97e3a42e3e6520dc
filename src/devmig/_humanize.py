"""Sizes and times for people: one way of writing them in the CLI, the tour and the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["ago", "seconds_since", "size"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(n: float | int) -> str:
    """A byte count in binary units: ``512 B``, ``1.1 KiB``, ``64.0 MiB``, ``1.0 GiB``."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def seconds_since(when: str, now: datetime) -> float:
    """Seconds from an ISO-8601 time (naive means UTC) to ``now``.

    Raises:
        ValueError: ``when`` is no ISO-8601 time.
    """
    at = datetime.fromisoformat(when)
    return (now - (at if at.tzinfo else at.replace(tzinfo=UTC))).total_seconds()


def ago(when: str | None, now: datetime) -> str:
    """How long before ``now`` an ISO-8601 time was (naive means UTC): ``12 s ago``, ``3 min ago``, ``never``.

    A time a little after ``now`` (another host's clock) is ``0 s ago``; a text that is no time is
    returned as it is.
    """
    if not when:
        return "never"
    try:
        seconds = max(0, int(seconds_since(when, now)))
    except ValueError:
        return when
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds // span} {unit} ago"
    return f"{seconds} s ago"
