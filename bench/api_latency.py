"""Benchmark: the portal's own latency on POST /api/payments/create-intent and /confirm.

Issue 3, "Benchmark": "Portal-side latency of create-intent and confirm against the sandbox
(p50/p95), and the same calls made directly to the sandbox, so the portal's own share is
visible. Target: the portal's own share <= 20 ms p95."

What it does (see bench/README.md, section "api_latency.py"):

1. drops and creates its own database (default ``portal_bench_api``) and builds the schema with
   the project's Alembic migrations (``flask_migrate.upgrade()``); starts a Stripe sandbox
   (``stripe_sandbox.testing.Sandbox``, its own process on a free loopback port);
2. builds the app with an explicit environment (PostgreSQL, the sandbox, test keys, Redis as
   in production: rate limits there, the jobs a confirm queues (order-service notification,
   receipt) left in the queue; nothing from the developer's shell) and seeds one customer,
   one order and two 4242 PaymentMethods per timed call (each call on a new order; every
   customer pays once, so the per-caller rate limit of 60/min stays on and in the measured
   path without ever answering 429);
3. per iteration, in an order that alternates between iterations: the portal's create-intent
   and confirm through Flask's test client in-process (WSGI: routing, JWT, validation, SQL,
   the gateway, the Stripe SDK and its HTTP round trips to the sandbox; no gunicorn, no
   network in front of the portal), and the same two Stripe calls made directly with
   stripe-python (the gateway's parameters: allowed_payment_method_types, capture_method,
   metadata, description, expand, idempotency key; confirm with payment_method and
   return_url);
4. reports p50/p95/max of each and the portal's own share two ways:
   - *p95(portal) - p95(direct)*, the difference of the two distributions;
   - *own time per request*: the portal's wall time minus the time its request spent inside
     the Stripe SDK's PaymentIntent calls (the same SDK calls the direct column times), so
     every request has its own value and the p95 is a real percentile;
   and the SQL time per request (SQLAlchemy cursor events);
5. exits 1 when either measure of the own share has p95 > the target (20 ms), or when any call
   did not answer as expected (200 with a succeeded payment); drops the database unless --keep.

Run: ``.venv/bin/python bench/api_latency.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import event  # noqa: E402

VISA = "4242424242424242"
CARD = {"number": VISA, "exp_month": 12, "exp_year": 2034, "cvc": "123"}


# --------------------------------------------------------------------------------------------
# Database lifecycle (as bench/history.py)


from benchdb import drop_database, plain_url, recreate_database  # noqa: E402

# --------------------------------------------------------------------------------------------
# Timers


def timed(method, count):
    """``method`` wrapped so that each call reports its duration in ms to ``count``."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            count((time.perf_counter() - t0) * 1000)

    return wrapper


class SqlTimer:
    """Time and round trips spent in PostgreSQL: cursor.execute (SQLAlchemy events) plus the
    COMMITs and ROLLBACKs (psycopg's Connection methods; a COMMIT is a round trip and, with
    synchronous_commit on, a WAL flush). The pool's pre-ping is not counted."""

    def __init__(self, engine):
        self.ms = 0.0
        self.trips = 0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        for name in ("commit", "rollback"):
            setattr(psycopg.Connection, name, timed(getattr(psycopg.Connection, name), self._count))

    def _count(self, ms: float) -> None:
        self.ms += ms
        self.trips += 1

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        self._count((time.perf_counter() - conn.info.pop("bench_t0")) * 1000)

    def reset(self):
        self.ms, self.trips = 0.0, 0


class StripeTimer:
    """Time spent inside the SDK's PaymentIntent create/confirm/retrieve (request building,
    the HTTP round trip to the sandbox, parsing): what the direct column measures too."""

    def __init__(self):
        import stripe

        self.ms = 0.0
        self.calls = 0
        service = stripe.PaymentIntentService
        for name in ("create", "confirm", "retrieve"):
            setattr(service, name, timed(getattr(service, name), self._count))

    def _count(self, ms: float) -> None:
        self.ms += ms
        self.calls += 1

    def reset(self):
        self.ms, self.calls = 0.0, 0


@dataclass
class Series:
    name: str
    total_ms: list[float] = field(default_factory=list)
    own_ms: list[float] = field(default_factory=list)  # portal: total - time in the SDK
    sql_ms: list[float] = field(default_factory=list)
    sql_trips: list[int] = field(default_factory=list)
    stripe_calls: list[int] = field(default_factory=list)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class Slot:
    """One timed (or warm-up) iteration's inputs."""

    order_id: str
    amount: float
    token: str
    portal_pm: str
    direct_pm: str


def seed(app, stripe_client, n: int) -> list[Slot]:
    # Passwords are never used here (Bearer tokens); a cheap hash keeps seeding fast.
    from werkzeug.security import generate_password_hash

    from portal.auth import models as auth_models
    from portal.auth.services import create_user, issue_token
    from portal.extensions import db
    from portal.orders.services import ItemIn, OrderIn, create_order

    auth_models.generate_password_hash = functools.partial(
        generate_password_hash, method="pbkdf2:sha256:1000")
    slots = []
    with app.app_context():
        vendor = create_user("vendor@bench-api.test", "vendor", "bench-pass-123", "Vendor")
        db.session.commit()
        for i in range(n):
            customer = create_user(f"customer{i:04d}@bench-api.test", "customer",
                                   "bench-pass-123", f"Customer {i}")
            db.session.commit()
            order = create_order(OrderIn(
                customerEmail=customer.email, currency="USD", tax=120, shipping=0,
                items=[ItemIn(vendorEmail=vendor.email, description="Desk lamp", quantity=1,
                              unitAmount=2999 + i)]))
            db.session.commit()
            pms = [stripe_client.v1.payment_methods.create(params={"type": "card", "card": CARD})
                   for _ in range(2)]
            slots.append(Slot(str(order.id), order.total / 100, issue_token(customer)[0],
                              pms[0].id, pms[1].id))
    return slots


def portal_calls(client, slot: Slot, stripe_timer: StripeTimer, sql_timer: SqlTimer,
                 create: Series, confirm: Series, idempotency: bool = False) -> None:
    headers = {"Authorization": f"Bearer {slot.token}"}
    body = {"orderId": slot.order_id, "amount": slot.amount, "currency": "USD"}
    for series, path in ((create, "/api/payments/create-intent"),
                         (confirm, "/api/payments/confirm")):
        stripe_timer.reset()
        sql_timer.reset()
        if idempotency:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        t0 = time.perf_counter()
        resp = client.post(path, json=body, headers=headers)
        total = (time.perf_counter() - t0) * 1000
        if resp.status_code != 200:
            raise SystemExit(f"{path}: {resp.status_code} {resp.get_data(as_text=True)[:300]}")
        series.total_ms.append(total)
        series.own_ms.append(total - stripe_timer.ms)
        series.sql_ms.append(sql_timer.ms)
        series.sql_trips.append(sql_timer.trips)
        series.stripe_calls.append(stripe_timer.calls)
        if path.endswith("create-intent"):
            pi = resp.get_json()["paymentIntent"]["id"]
            body = {"paymentIntentId": pi, "paymentMethodId": slot.portal_pm}
        elif resp.get_json()["payment"]["status"] != "succeeded":
            raise SystemExit(f"confirm: payment not succeeded: {resp.get_json()}")


def direct_calls(stripe_client, slot: Slot, create: Series, confirm: Series) -> None:
    key = uuid.uuid4()
    t0 = time.perf_counter()
    pi = stripe_client.v1.payment_intents.create(
        params={"amount": round(slot.amount * 100), "currency": "usd",
                "allowed_payment_method_types": ["card"], "capture_method": "automatic",
                "metadata": {"orderId": slot.order_id, "userId": str(key),
                             "paymentId": str(key)},
                "description": "ShopSphere order bench",
                "expand": ["latest_charge.balance_transaction", "payment_method"]},
        options={"idempotency_key": f"payment-{key}-intent"})
    create.total_ms.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    pi = stripe_client.v1.payment_intents.confirm(
        pi.id, params={"payment_method": slot.direct_pm,
                       "return_url": f"http://localhost/checkout/{slot.order_id}/complete",
                       "expand": ["latest_charge.balance_transaction", "payment_method"]},
        options={"idempotency_key": f"payment-{key}-confirm-{uuid.uuid4()}"})
    confirm.total_ms.append((time.perf_counter() - t0) * 1000)
    if pi.status != "succeeded":
        raise SystemExit(f"direct confirm: {pi.status}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg", default=os.environ.get("BENCH_PG_URL",
                                                   "postgresql://postgres@127.0.0.1:5432"),
                    help="server URL without database (env BENCH_PG_URL)")
    ap.add_argument("--db", default="portal_bench_api", help="database to (re)create")
    ap.add_argument("--keep", action="store_true", help="keep the database at the end")
    ap.add_argument("--calls", type=int, default=200, help="timed calls per endpoint")
    ap.add_argument("--warmup", type=int, default=20, help="untimed calls per endpoint")
    ap.add_argument("--target-ms", type=float, default=20.0,
                    help="p95 target of the portal's own share")
    ap.add_argument("--idempotency-key", action="store_true",
                    help="send an Idempotency-Key header on every portal call")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/12",
                    help="REDIS_URL of the portal (rate limits, jobs), a database the script "
                         "flushes at the start and the end; '' for the embedded mode (limits "
                         "in memory, jobs run in the request)")
    args = ap.parse_args(argv)

    import stripe
    from flask_migrate import upgrade

    from portal import create_app
    from portal.config import Config
    from portal.extensions import db
    from stripe_sandbox.testing import Sandbox

    started = time.perf_counter()
    db_url = plain_url(args.pg, args.db)
    if args.redis:  # the outbox's jobs of every confirm are queued there, never run
        import redis
        redis.Redis.from_url(args.redis).flushdb()
    print(f"== database {args.db}: drop, create, alembic upgrade; Stripe sandbox")
    recreate_database(args.pg, args.db)
    failures: list[str] = []
    try:
        with Sandbox() as sandbox:
            env = {
                "PORTAL_ENV": "test", "DATABASE_URL": db_url, "LOG_LEVEL": "WARNING",
                "STRIPE_API_BASE": sandbox.url, "STRIPE_JS_URL": sandbox.js_url,
                "STRIPE_SECRET_KEY": "sk_test_bench", "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
                "STRIPE_WEBHOOK_SECRET": "whsec_bench",
                "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123",
                "REDIS_URL": args.redis,
            }
            app = create_app(Config.from_env(env))
            with app.app_context():
                upgrade()
                sql_timer = SqlTimer(db.engine)
            # The direct calls: the SDK configured as the gateway configures it.
            direct = stripe.StripeClient("sk_test_bench", base_addresses={"api": sandbox.url},
                                         max_network_retries=1,
                                         http_client=stripe.RequestsClient(timeout=10))
            t0 = time.perf_counter()
            slots = seed(app, direct, args.warmup + args.calls)
            print(f"   seeded {len(slots)} customers, orders and 2x PaymentMethods "
                  f"in {time.perf_counter() - t0:.1f} s; Redis (limits, jobs): "
                  f"{args.redis or 'none, embedded mode'}; Idempotency-Key header: "
                  f"{'yes' if args.idempotency_key else 'no'}")
            stripe_timer = StripeTimer()
            client = app.test_client()
            p_create, p_confirm = Series("portal create-intent"), Series("portal confirm")
            d_create, d_confirm = Series("direct create"), Series("direct confirm")
            w = [Series("warm-up") for _ in range(4)]
            idem = args.idempotency_key
            for slot in slots[:args.warmup]:
                portal_calls(client, slot, stripe_timer, sql_timer, w[0], w[1], idem)
                direct_calls(direct, slot, w[2], w[3])
            load_before = os.getloadavg()[0]
            t_timed = time.perf_counter()
            for i, slot in enumerate(slots[args.warmup:]):
                # Alternate who goes first, so a drift in load lands on both columns.
                if i % 2:
                    direct_calls(direct, slot, d_create, d_confirm)
                    portal_calls(client, slot, stripe_timer, sql_timer, p_create, p_confirm,
                                 idem)
                else:
                    portal_calls(client, slot, stripe_timer, sql_timer, p_create, p_confirm,
                                 idem)
                    direct_calls(direct, slot, d_create, d_confirm)
            timed_s = time.perf_counter() - t_timed
            load_after = os.getloadavg()[0]
    finally:
        if not args.keep:
            drop_database(args.pg, args.db)
        if args.redis:
            redis.Redis.from_url(args.redis).flushdb()

    cpus = os.cpu_count() or 1
    print(f"   {args.calls} timed calls per endpoint (+{args.warmup} warm-up) in {timed_s:.1f} s;"
          f" load average (1 min) before/after: {load_before:.2f} / {load_after:.2f} on {cpus}"
          f" CPUs{' (busy machine)' if max(load_before, load_after) > cpus else ''}")
    print(f"   {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; Python {sys.version.split()[0]}, "
          f"stripe-python {stripe.VERSION}; portal via Flask's test client (in-process WSGI)")
    print()
    print("Milliseconds; *share* = portal p95 - direct p95; *own* = the portal's wall time minus "
          "the time its request spent in the Stripe SDK; *SQL* = time in PostgreSQL (statements "
          "and COMMITs), *trips* = its round trips per request.")
    print()
    print("| endpoint | n | portal p50 | portal p95 | portal max | direct p50 | direct p95 "
          "| share p95 | own p50 | own p95 | SQL p50 | SQL p95 | trips |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: |")
    notes = []
    for portal, direct_s, label in ((p_create, d_create, "create-intent"),
                                    (p_confirm, d_confirm, "confirm")):
        share = pct(portal.total_ms, 95) - pct(direct_s.total_ms, 95)
        own95 = pct(portal.own_ms, 95)
        print(f"| {label} | {len(portal.total_ms)} | {pct(portal.total_ms, 50):.1f} "
              f"| {pct(portal.total_ms, 95):.1f} | {max(portal.total_ms):.1f} "
              f"| {pct(direct_s.total_ms, 50):.1f} | {pct(direct_s.total_ms, 95):.1f} "
              f"| **{share:.1f}** | {pct(portal.own_ms, 50):.1f} | **{own95:.1f}** "
              f"| {pct(portal.sql_ms, 50):.1f} | {pct(portal.sql_ms, 95):.1f} "
              f"| {statistics.mode(portal.sql_trips)} |")
        paired = statistics.median(a - b for a, b in zip(portal.total_ms, direct_s.total_ms,
                                                         strict=True))
        python = statistics.median(o - q for o, q in zip(portal.own_ms, portal.sql_ms,
                                                         strict=True))
        notes.append(f"   {label}: {statistics.mode(portal.stripe_calls)} Stripe call per "
                     f"request; median per-iteration portal - direct {paired:.1f} ms; "
                     f"own time minus SQL (Python: Flask, JWT, validation, ORM, limiter) "
                     f"median {python:.1f} ms")
        for what, value in (("portal p95 - direct p95", share), ("own time p95", own95)):
            if value > args.target_ms:
                failures.append(f"{label}: {what} {value:.1f} ms > {args.target_ms:.0f} ms")
    print()
    print("\n".join(notes))
    print()
    print(f"== {time.perf_counter() - started:.0f} s in all")
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print(f"PASS: the portal's own share is within {args.target_ms:.0f} ms p95 on both endpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
