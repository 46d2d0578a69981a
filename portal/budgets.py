"""Budgets of attempts (password guesses, card declines) counted in Flask-Limiter's store
(Redis, or memory without REDIS_URL), for the limits a route decorator cannot express: counted
only when an attempt fails, across routes. If the store fails, nothing is limited (as the
routes' own limits, RATELIMIT_SWALLOW_ERRORS), and the failure is logged."""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem

from .extensions import limiter

log = logging.getLogger(__name__)
Budget = tuple[RateLimitItem, tuple[str, ...]]  # a limit and the keys it counts under


def refused(budgets: list[Budget]) -> int | None:
    """Seconds until every budget allows an attempt again, or None when they allow one now."""
    waits = []
    try:
        for item, keys in budgets:
            if not limiter.limiter.test(item, *keys):
                reset, _ = limiter.limiter.get_window_stats(item, *keys)
                waits.append(max(1, math.ceil(reset - time.time())))
    except Exception:
        log.exception("attempt budgets unavailable")
    return max(waits, default=None)


def spend(budgets: list[Budget]) -> None:
    """Count a failed attempt in each budget."""
    try:
        for item, keys in budgets:
            limiter.limiter.hit(item, *keys)
    except Exception:
        log.exception("attempt budgets unavailable")


def wait_text(seconds: int) -> str:
    """"3 minutes"."""
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
