"""Days typed into filters and links (YYYY-MM-DD), bounded so that no arithmetic on them can
overflow (`?to=9999-12-31` plus a day was a 500, issue 15)."""

from __future__ import annotations

from datetime import UTC, datetime

FIRST, LAST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 12, 31, tzinfo=UTC)
RANGE = "dates (YYYY-MM-DD) from 2000-01-01 to 2100-12-31"


def parse_day(value: str | None) -> datetime | None:
    """The day at 00:00 UTC, or None when it is not a day from FIRST to LAST."""
    try:
        day = datetime.strptime(value or "", "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day if FIRST <= day <= LAST else None
