"""The attack suite (issue 15): the in-process fixtures of the integration tests (the app on
PostgreSQL and the Stripe sandbox, each test rolled back), and the report of what was tried."""

from __future__ import annotations

from tests.integration.conftest import (  # noqa: F401 - fixtures used by this suite
    _transaction,
    api,
    app,
    client,
    no_rate_limits,
    spec,
    stripe_client,
    test_app,
)
from tests.security.report import COUNTS


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if COUNTS:
        terminalreporter.section("attack suite")
        for what, n in COUNTS.items():
            terminalreporter.write_line(f"{n:>8,} {what}")
