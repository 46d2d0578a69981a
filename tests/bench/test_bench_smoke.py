"""Each benchmark, at a tiny size: it still runs against today's schema and sandbox to its
verdict. Its figures mean nothing at this size (the verdict may be FAIL); a crash fails, and so
do the payout run's checks of the money and the analytics' checks of its split lines and
rollups, which hold at any size. The real runs and their targets are in bench/README.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SMOKE = {
    "admin_search.py": ["--payments", "3000", "--target-payments", "1000", "--customers", "50",
                        "--vendors", "5", "--requests", "5", "--warmup", "1",
                        "--case-seconds", "1"],
    "analytics.py": ["--payments", "3000", "--target-payments", "1000", "--customers", "50",
                     "--vendors", "5", "--requests", "5", "--warmup", "1", "--settles", "10",
                     "--settle-warmup", "2"],
    "api_latency.py": ["--calls", "5", "--warmup", "1"],
    "documents.py": ["--items", "3", "--renders", "2", "--warmup", "1", "--allocations", "40",
                     "--threads", "4", "--hold-ms", "0"],
    "history.py": ["--payments", "3000", "--target-payments", "1000", "--customers", "50",
                   "--vendors", "5", "--requests", "5", "--warmup", "1", "--case-seconds", "1"],
    "payouts.py": ["--lines", "3000", "--vendors", "60", "--customers", "100"],
    "webhook_isolation.py": ["--runs", "1", "--deliveries", "40", "--checkouts", "4",
                             "--checkout-clients", "2", "--unsettled", "2", "--stripe-latency",
                             "0.01", "--lead", "0.2", "--warmup", "20", "--rounds", "1",
                             "--max-seconds", "1", "--seconds", "1", "--rate", "20",
                             "--web-workers", "1", "--intake-workers", "1"],
    "webhooks.py": ["--events", "40", "--fork-events", "10", "--stripe-events", "20",
                    "--inproc", "20", "--seconds", "1", "--max-seconds", "1", "--rate", "20"],
}


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_the_benchmark_runs_to_its_verdict(script, pg_url, redis_url):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *SMOKE[script]],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-4000:]
    verdicts = [line for line in output.splitlines()
                if line.startswith(("PASS", "FAIL"))]
    assert done.returncode in (0, 1) and verdicts, output[-4000:]
    if script == "payouts.py":  # its checks of the money hold at any size; its times do not
        checks = output.split("== checks after", 1)[1].split("\n==", 1)[0]
        assert checks.rstrip().endswith("OK"), checks
    if script == "analytics.py":  # so do its checks of the lines and the rollups
        assert "equal what splits.sale_shares / refund_targets give" in output, output[-4000:]
        assert "rollups against the rows: equal" in output, output[-4000:]
