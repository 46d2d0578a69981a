#!/usr/bin/env python3
"""Money documents (issue 20): how fast an invoice's PDF renders, and that gap-free numbers
hold under concurrency.

1. PDF: ``documents.pdf.render`` of an invoice of ``--items`` items (the page's own body
   template), ``--renders`` times after ``--warmup``: p50 / p95, target **p95 < 300 ms**.
2. Numbers: ``--allocations`` transactions on ``--threads`` threads, each taking the next
   number of one kind and year (documents.numbering, as a settle does, last before its
   commit) and holding it ``--hold-ms`` before committing, one in ``--rollback-every``
   rolled back instead: the committed numbers must be 1..n exactly (no gap, no duplicate),
   every thread must finish (no deadlock), and the run's rate is printed.

It runs on a database of its own (drop, create, Alembic upgrade; dropped at the end).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchdb import database_args, drop_database, plain_url, recreate_database  # noqa: E402
from bench.payouts import app_env  # noqa: E402


def facts(items: int) -> dict:
    return {
        "seller": {"name": "ShopSphere Marketplace Ltd", "address": "1 Example Street",
                   "tax_id": "GB123456789"},
        "customer": {"email": "customer@example.com", "name": "Ada Customer"},
        "order": "3D79CAB7",
        "items": [{"description": f"Walnut desk lamp no. {i}", "vendor": f"v{i % 3}@ex.com",
                   "quantity": 1 + i % 3, "unit_amount": 2999 + i, "amount": (1 + i % 3) *
                   (2999 + i)} for i in range(items)],
        "subtotal": 123456, "discount": 1000, "tax": 12345, "shipping": 499, "total": 135300,
        "currency": "USD", "card": {"brand": "visa", "last4": "4242"},
        "paid_at": datetime.now(UTC).isoformat(),
    }


def time_renders(app, items: int, renders: int, warmup: int) -> list[float]:
    from portal.documents import pdf

    invoice = SimpleNamespace(number="INV-2026-000123", issued_at=datetime.now(UTC))
    f = facts(items)
    times = []
    with app.app_context():
        for n in range(warmup + renders):
            t0 = time.perf_counter()
            data = pdf.render("documents/_invoice.html", "Invoice INV-2026-000123",
                              invoice=invoice, f=f)
            if n >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
            assert data.startswith(b"%PDF")
    return times


def allocate_concurrently(app, allocations: int, threads: int, hold_ms: float,
                          rollback_every: int) -> tuple[list[int], float, list[str]]:
    from portal.documents import numbering
    from portal.extensions import db

    kind, year = "BEN", 2026
    committed: list[int] = []
    errors: list[str] = []
    lock, counter = threading.Lock(), iter(range(allocations))
    start = threading.Barrier(threads)

    def work() -> None:
        with app.app_context():
            start.wait()
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    break
                try:
                    value = numbering.next_number(kind, year)
                    time.sleep(hold_ms / 1000)  # the rest of a settle's transaction
                    if rollback_every and n % rollback_every == rollback_every - 1:
                        db.session.rollback()
                        continue
                    db.session.commit()
                    with lock:
                        committed.append(value)
                except Exception as exc:  # noqa: BLE001 - reported in the verdict
                    db.session.rollback()
                    errors.append(repr(exc))
            db.session.remove()

    t0 = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=600)
    elapsed = time.perf_counter() - t0
    if any(t.is_alive() for t in pool):
        errors.append("a thread did not finish (deadlock?)")
    return committed, elapsed, errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    database_args(ap, "portal_bench_documents")
    ap.add_argument("--items", type=int, default=12)
    ap.add_argument("--renders", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--allocations", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--hold-ms", type=float, default=1.0)
    ap.add_argument("--rollback-every", type=int, default=20)
    args = ap.parse_args(argv)

    from flask_migrate import upgrade

    from portal import create_app
    from portal.config import Config
    from portal.extensions import db

    url = plain_url(args.pg, args.db)
    # A connection per thread: the pool is not what is measured.
    app = create_app(Config.from_env(app_env(url), extra={"SQLALCHEMY_ENGINE_OPTIONS": {
        "pool_size": args.threads + 2, "max_overflow": 0, "hide_parameters": True}}))
    failures: list[str] = []
    try:
        if not args.reuse:
            print(f"== database {args.db}: drop, create, alembic upgrade")
            recreate_database(args.pg, args.db)
            with app.app_context():
                upgrade()
                db.engine.dispose()
        times = time_renders(app, args.items, args.renders, args.warmup)
        p50 = statistics.median(times)
        p95 = sorted(times)[max(0, int(len(times) * 0.95) - 1)]
        print(f"== invoice PDF, {args.items} items: {len(times)} renders, p50 {p50:.1f} ms, "
              f"p95 {p95:.1f} ms (target p95 < 300 ms)")
        if p95 >= 300:
            failures.append(f"PDF p95 {p95:.1f} ms")
        committed, elapsed, errors = allocate_concurrently(
            app, args.allocations, args.threads, args.hold_ms, args.rollback_every)
        gapless = sorted(committed) == list(range(1, len(committed) + 1))
        print(f"== numbers: {args.allocations} transactions on {args.threads} threads "
              f"({len(committed)} committed, the rest rolled back) in {elapsed:.2f} s "
              f"({args.allocations / elapsed:.0f} a second): "
              f"{'1..' + str(len(committed)) + ', no gap, no duplicate' if gapless else 'GAPS'}"
              f"{'; errors: ' + '; '.join(errors[:3]) if errors else ''}")
        if not gapless or errors:
            failures.append("numbers not gap-free" if not gapless else errors[0])
    finally:
        with app.app_context():
            db.engine.dispose()
        if not args.keep:
            drop_database(args.pg, args.db)
    print(("FAIL: " + "; ".join(failures)) if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
