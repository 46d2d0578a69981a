#!/usr/bin/env python3
"""PNGs of each role's main pages at 390 and 1280 px, into docs/screenshots/ (the README's
tour shows them).

    make screenshots          # or: .venv/bin/python scripts/screenshots.py [--all] [DIR]

It runs tests/e2e/test_accessibility.py with SCREENSHOTS_DIR set: the same pages, data and
widths as the accessibility test (a live portal on PostgreSQL and Redis, the Stripe sandbox,
Debian's Chromium; TEST_DATABASE_URL and TEST_REDIS_URL as for the tests), one file per page
and width, named `<role>-<page>-<width>.png` (customer-orders-1280.png). Every page is saved,
whether or not its accessibility check passes; the exit code is the test run's. ``--all``:
every page the test visits, not only the main ones.
"""

from __future__ import annotations

import os
import subprocess  # nosec B404 - runs pytest, the command below, nothing from input
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# Each role's main pages: those the README's tour shows.
MAIN = ("customer-orders", "customer-checkout", "customer-payment", "customer-history",
        "customer-cards", "vendor-dashboard", "vendor-sales", "vendor-sale",
        "vendor-refund-request", "admin-payments", "admin-payment", "admin-refunds",
        "admin-refunds-confirm", "admin-payouts", "admin-analytics", "admin-api-docs")


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--all"]
    out = Path(args[0]) if args else ROOT / "docs" / "screenshots"
    env = {**os.environ, "SCREENSHOTS_DIR": str(out.resolve()),
           "SCREENSHOTS_ONLY": "" if "--all" in sys.argv else ",".join(MAIN)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:logging",
               "tests/e2e/test_accessibility.py"]
    code = subprocess.call(command, cwd=ROOT, env=env)  # nosec B603 - a fixed command
    print(f"{len(list(out.glob('*.png')))} screenshots in {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
