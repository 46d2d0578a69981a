"""What the attack suite tried, counted by its modules and printed at the end of the run."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()


def count(what: str, n: int = 1) -> None:
    """Add ``n`` to the line ``what`` of the report ("routes x roles tried", ...)."""
    COUNTS[what] += n
