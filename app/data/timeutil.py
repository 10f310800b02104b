"""Times as users write them and as Trad stores them (epoch milliseconds, UTC)."""
from __future__ import annotations

from datetime import UTC, datetime

from app.errors import InputError

__all__ = ["iso", "parse_time", "now_ms"]


def iso(ms: int | None) -> str | None:
    """Epoch ms as an ISO-8601 UTC string.

    >>> iso(0)
    '1970-01-01T00:00:00Z'
    """
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value, field: str = "time") -> int:
    """An ISO-8601 date or datetime (naive means UTC), or epoch seconds/ms, as epoch ms.

    >>> parse_time("2024-01-01"), parse_time("2024-01-01T00:05:00+00:00"), parse_time(1704067200)
    (1704067200000, 1704067500000, 1704067200000)
    """
    if isinstance(value, bool):
        raise InputError(f"{field}: expected a date, got {value!r}", field=field)
    if isinstance(value, (int, float)):
        # Epoch seconds until the year 5138; anything larger is milliseconds.
        return int(value * 1000) if abs(value) < 1e11 else int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return parse_time(int(text), field)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{field}: cannot read {text!r} as a date",
                         field=field, hint="use ISO-8601, e.g. 2024-01-31 or 2024-01-31T12:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def now_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)
