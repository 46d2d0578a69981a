"""Benchmark: the back office's analytics at 1,000,000 payments on PostgreSQL.

Targets (issue 18, "Scale and speed"), for the analytics read from the daily rollups
(portal/ledger/rollups.py), at 1,000,000 payments: ``rollups.rebuild()`` of every day in
< 60 s; the analytics of 90 days in one currency, the admin's page and the API, p95 < 150 ms
with no sequential scan of payments or split_lines; keeping the rollups in a payment's settle
costs <= 2 ms at p95 (p95 with the rollup calls minus p95 without).

What it does (see bench/README.md, section "analytics.py"):

1. builds ``admin_search.py``'s database (its ``seed_database``: the project's Alembic
   migrations, ``history.py``'s generator, COPY, VACUUM (ANALYZE)) under a name of its own
   (default ``portal_bench_analytics``): 1,000,000 payments, 100,000 customers, 1,000
   vendors, two years, 8 currencies, 5 % of the succeeded payments refunded, and an admin;
2. adds the ledger's rows that generator leaves out, in SQL (INSERT ... SELECT, the FK
   triggers off, then every foreign key checked): one sale line per vendor of each succeeded
   payment as ``splits.record_sale`` writes it (the amount divided by the largest remainder
   in proportion to the vendor's items, fee 10 % of them rounded half up, steps of 10 in
   KWD, ``created_at`` = ``succeeded_at``), refund lines (negative) as ``sync_refund_lines``
   writes them for each refunded payment, 1-20 days after the sale, and weekly payout runs:
   each closed week's lines of a vendor and currency in a payout paid the day after, the
   rest in the vendor's open payout; a sample of payments is checked against
   ``splits.sale_shares`` / ``refund_targets``;
3. times ``rollups.rebuild()`` of every day in an app context, the whole transaction to its
   commit: into the empty tables, then again replacing every row (both against the
   target); then the nightly job's ``rebuild(since)`` of the data's last two days, with the
   plans of its statements; checks that the rollups sum to what the lines and payments say;
4. signs the admin in through the real login form, gets a Bearer token for the same admin,
   and times ``GET /admin/analytics?period=90d&currency=USD`` and ``GET
   /api/payments/analytics?from&to&currency=USD`` (the same 90 days) interleaved through
   Flask's test client (app objects frozen out of the GC as gunicorn.conf.py does); prints
   ``EXPLAIN (ANALYZE, BUFFERS)`` of each statement of a request, the heaviest in full; a
   Seq Scan of payments or split_lines fails;
5. on the same database, settles a few hundred pending payments of four vendors in four
   currencies with ``payments.services.settle`` (each committed, as a webhook job does),
   alternately with the rollup calls (``count_sale``, ``count_lines``, and every other
   ``rollups.count_*`` a settle makes) in place and replaced by no-ops (ABBA order), and
   compares the two p95s;
6. prints PASS / FAIL and exits 0 / 1; drops the database unless ``--keep``.

Run: ``.venv/bin/python bench/analytics.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from admin_search import ADMIN_EMAIL, data_args, seed_database  # noqa: E402
from benchdb import check_foreign_keys, database_args, drop_database, plain_url  # noqa: E402
from history import NOW, TARGET_PASSWORD, SqlRecorder, _walk, explain, plan_summary  # noqa: E402
from sqlalchemy import event  # noqa: E402
from webhook_isolation import wait_idle  # noqa: E402

# Tables no analytics query may read by a Seq Scan (the issue's rule); a Seq Scan of another
# table reading more than SEQ_ROWS rows is reported, not failed.
NO_SEQ_SCAN = {"payments", "split_lines"}
SEQ_ROWS = 10_000
SETTLE_CURRENCIES = ("USD", "EUR", "GBP", "JPY")
SETTLE_RANKS = (1, 3, 30, 300)  # the settles' vendors, by their number of order items
FEE_PERCENT = 10  # PLATFORM_FEE_PERCENT, of the app and of the lines made in SQL


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


# --------------------------------------------------------------------------------------------
# The app


def app_env(db_url: str) -> dict:
    """The app's whole environment: nothing comes from the shell. No Redis: the jobs a settle
    queues (the outbox's deliveries) are dropped, never run (see time_settles)."""
    return {"PORTAL_ENV": "test", "DATABASE_URL": db_url, "LOG_LEVEL": "WARNING",
            "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123", "REDIS_URL": "",
            "STRIPE_API_BASE": "http://127.0.0.1:9", "ORDER_SERVICE_URL": "http://127.0.0.1:9",
            "PLATFORM_FEE_PERCENT": str(FEE_PERCENT)}


# --------------------------------------------------------------------------------------------
# The ledger's rows (admin_search's generator writes payments, orders and items only)

# One sale line per vendor of each succeeded payment, as splits.record_sale writes it: the
# amount divided in proportion to the vendor's items (largest remainder, ties in vendor id
# order), the fee PCT % of them rounded half up (min the share), in steps of 10 in a
# three-decimal currency when the amount ends in 0 (splits.sale_shares). Integer arithmetic
# throughout: PostgreSQL's sum() of bigints is numeric, hence the casts.
SALE_LINES = """
INSERT INTO bench_lines (payment_id, vendor_id, kind, currency, gross, fee, created_at,
                         available_at)
WITH v AS (
    SELECT p.id AS payment_id, i.vendor_id, p.currency, p.amount, p.succeeded_at,
           p.funds_available_at, sum(i.quantity * i.unit_amount)::bigint AS subtotal,
           CASE WHEN p.currency = ANY(%(three)s) AND p.amount %% 10 = 0 THEN 10 ELSE 1 END
               AS step
    FROM payments p JOIN order_items i ON i.order_id = p.order_id
    WHERE p.status = 'succeeded' AND p.amount > 0
    GROUP BY p.id, i.vendor_id),
w AS (
    SELECT v.*, amount / step AS units,
           (sum(subtotal) OVER (PARTITION BY payment_id))::bigint AS whole
    FROM v),
s AS (
    SELECT w.*, units * subtotal / whole AS floor_units, units * subtotal %% whole AS rem
    FROM w),
r AS (
    SELECT s.*,
           row_number() OVER (PARTITION BY payment_id ORDER BY rem DESC, vendor_id) AS rnk,
           units - (sum(floor_units) OVER (PARTITION BY payment_id))::bigint AS spare
    FROM s),
x AS (
    SELECT r.*, (floor_units + (rnk <= spare)::int) * step AS gross,
           (2 * subtotal * %(pct)s + 100 * step) / (200 * step) * step AS fee_due
    FROM r)
SELECT payment_id, vendor_id, 'sale', currency, gross, least(fee_due, gross), succeeded_at,
       funds_available_at
FROM x
"""

# What each vendor gave back of a refunded payment, as splits.sync_refund_lines writes it
# after one refund of ``amount_refunded`` (refund_targets: the refunded amount divided in
# proportion to the sale lines' gross, the fee given back floor(fee * refunded / amount)),
# on a day 1-20 days after the sale, before NOW.
REFUND_LINES = """
INSERT INTO bench_lines (payment_id, vendor_id, kind, currency, gross, fee, created_at,
                         available_at)
WITH s AS (
    SELECT l.payment_id, l.vendor_id, l.currency, l.gross, l.fee, l.created_at AS sold_at,
           p.amount, least(p.amount_refunded, p.amount) AS refunded,
           l.currency = ANY(%(three)s) AS three
    FROM bench_lines l JOIN payments p ON p.id = l.payment_id
    WHERE l.kind = 'sale' AND p.amount_refunded > 0),
t AS (
    SELECT s.*,
           CASE WHEN three AND refunded %% 10 = 0 AND amount %% 10 = 0
                     AND bool_and(gross %% 10 = 0 AND fee %% 10 = 0)
                         OVER (PARTITION BY payment_id)
                THEN 10 ELSE 1 END AS step
    FROM s),
u AS (
    SELECT t.*, refunded / step AS units, gross / step AS weight,
           (sum(gross / step) OVER (PARTITION BY payment_id))::bigint AS whole
    FROM t),
v AS (
    SELECT u.*, units * weight / whole AS floor_units, units * weight %% whole AS rem FROM u),
r AS (
    SELECT v.*,
           row_number() OVER (PARTITION BY payment_id ORDER BY rem DESC, vendor_id) AS rnk,
           units - (sum(floor_units) OVER (PARTITION BY payment_id))::bigint AS spare
    FROM v),
x AS (
    SELECT r.*, (floor_units + (rnk <= spare)::int) * step AS back,
           fee / step * units / (amount / step) * step AS fee_back,
           greatest(sold_at, least(
               sold_at + make_interval(days => 1 + abs(hashtext(payment_id::text)) %% 20),
               %(now)s - interval '1 hour')) AS refunded_at
    FROM r)
SELECT payment_id, vendor_id, 'refund', currency, -back, -fee_back, refunded_at, NULL
FROM x WHERE back <> 0 OR fee_back <> 0
"""

# Weekly payout runs (PAYOUT_SCHEDULE=weekly, Monday 00:00 UTC): each closed week's lines of
# a vendor and currency with a positive total in one payout, paid the next day; the other
# lines (the current week's, and groups whose refunds outweigh their sales) in the vendor's
# open payout in that currency. Payout ids are derived from their group, so the lines find
# theirs by the same expression.
GROUPS = """
CREATE UNLOGGED TABLE bench_groups AS
SELECT vendor_id, currency, date_trunc('week', created_at AT TIME ZONE 'UTC') AS week,
       sum(gross - fee) AS net, sum(gross) FILTER (WHERE kind = 'sale') AS sales,
       sum(fee) AS fees, coalesce(sum(gross) FILTER (WHERE kind = 'refund'), 0) AS refunds,
       count(DISTINCT payment_id) AS payments, count(*) AS lines, min(created_at) AS first
FROM bench_lines GROUP BY 1, 2, 3
"""
PAID = "(week + interval '7 days') AT TIME ZONE 'UTC' <= %(now)s AND net > 0"


def payout_id(g: str = "") -> str:
    """The payout of a group of bench_groups (``g``: its alias and a dot)."""
    return (f"CASE WHEN {PAID} "
            f"THEN md5('paid/' || {g}vendor_id || {g}currency || week)::uuid "
            f"ELSE md5('open/' || {g}vendor_id || {g}currency)::uuid END")


RUNS = f"""
INSERT INTO payout_runs (id, period, period_start, until, created_at, created_by_id,
                         approved_at, approved_by_id)
SELECT md5('run/' || week)::uuid, 'weekly', week AT TIME ZONE 'UTC',
       (week + interval '7 days') AT TIME ZONE 'UTC',
       (week + interval '7 days 1 hour') AT TIME ZONE 'UTC', NULL,
       (week + interval '7 days 3 hours') AT TIME ZONE 'UTC', %(admin)s
FROM bench_groups WHERE {PAID} GROUP BY week
"""
PAYOUTS = f"""
INSERT INTO payouts (id, run_id, vendor_id, currency, amount, total_sales, platform_fee,
                     refunds, payment_count, line_count, status, stripe_transfer_id,
                     transfer_attempt, paid_at, created_at, updated_at)
SELECT md5('paid/' || vendor_id || currency || week)::uuid, md5('run/' || week)::uuid,
       vendor_id, currency, net, coalesce(sales, 0), fees, refunds, payments, lines, 'paid',
       'tr_' || left(md5('tr/' || vendor_id || currency || week), 24), 1,
       (week + interval '8 days') AT TIME ZONE 'UTC',
       (week + interval '7 days 1 hour') AT TIME ZONE 'UTC',
       (week + interval '8 days') AT TIME ZONE 'UTC'
FROM bench_groups WHERE {PAID}
UNION ALL
SELECT md5('open/' || vendor_id || currency)::uuid, NULL, vendor_id, currency, 0, 0, 0, 0,
       0, 0, 'open', NULL, 0, NULL, min(first), min(first)
FROM bench_groups WHERE NOT ({PAID}) GROUP BY vendor_id, currency
"""
LINES = f"""
INSERT INTO split_lines (id, payment_id, vendor_id, kind, currency, gross, fee, net,
                         created_at, available_at, payout_id)
SELECT gen_random_uuid(), l.payment_id, l.vendor_id, l.kind, l.currency, l.gross, l.fee,
       l.gross - l.fee, l.created_at, l.available_at, {payout_id("g.")}
FROM bench_lines l JOIN bench_groups g ON g.vendor_id = l.vendor_id
     AND g.currency = l.currency AND g.week = date_trunc('week', l.created_at AT TIME ZONE 'UTC')
ORDER BY l.created_at
"""


def add_ledger(args) -> None:
    """The split lines, payout runs and payouts of the loaded payments (see the SQL above)."""
    from portal.extensions import db
    from portal.money import THREE_DECIMAL

    took = {}
    values = {"three": sorted(THREE_DECIMAL), "pct": FEE_PERCENT, "now": NOW}
    with psycopg.connect(plain_url(args.pg, args.db)) as conn:
        conn.execute("SET work_mem = '256MB'")
        admin = conn.execute("SELECT id FROM users WHERE email = %s",
                             (ADMIN_EMAIL,)).fetchone()[0]
        conn.execute("DROP TABLE IF EXISTS bench_lines, bench_groups")
        conn.execute("CREATE UNLOGGED TABLE bench_lines (payment_id uuid, vendor_id uuid, "
                     "kind text, currency varchar(3), gross bigint, fee bigint, "
                     "created_at timestamptz, available_at timestamptz)")
        for name, stmt, params in (("sale lines", SALE_LINES, values),
                                   ("refund lines", REFUND_LINES, values),
                                   ("groups", GROUPS, None)):
            t0 = time.perf_counter()
            conn.execute(stmt, params)
            took[name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("SET session_replication_role = replica")  # FKs checked below, at once
        conn.execute(RUNS, {**values, "admin": admin})
        conn.execute(PAYOUTS, values)
        took["runs, payouts"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute(LINES, values)
        conn.execute("SET session_replication_role = DEFAULT")
        took["split_lines"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        check_foreign_keys(conn, db.metadata.tables, ("payout_runs", "payouts", "split_lines"))
        took["foreign-key check"] = time.perf_counter() - t0
        counts = conn.execute(
            "SELECT count(*) FILTER (WHERE kind = 'sale'), count(*) FILTER (WHERE kind = "
            "'refund'), (SELECT count(*) FROM payouts WHERE status = 'paid'), (SELECT count(*) "
            "FROM payouts WHERE status = 'open'), (SELECT count(*) FROM payout_runs) "
            "FROM split_lines").fetchone()
        conn.execute("DROP TABLE bench_lines, bench_groups")
        conn.commit()
    with psycopg.connect(plain_url(args.pg, args.db), autocommit=True) as conn:
        t0 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        took["vacuum analyze"] = time.perf_counter() - t0
    print(f"   ledger: {counts[0]:,} sale lines, {counts[1]:,} refund lines, {counts[2]:,} paid "
          f"payouts in {counts[4]:,} weekly runs, {counts[3]:,} open payouts; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))


def check_ledger(args, sample: int = 300) -> list[str]:
    """The lines of a sample of payments (refunded ones, KWD ones, others) against the
    ledger's own functions: what record_sale and sync_refund_lines would have written."""
    from portal.ledger.splits import refund_targets, sale_shares
    from portal.money import amount_step

    problems = []
    with psycopg.connect(plain_url(args.pg, args.db)) as conn:
        ids = [r[0] for r in conn.execute(
            "(SELECT id FROM payments WHERE status = 'succeeded' AND amount_refunded > 0 "
            " ORDER BY md5(id::text) LIMIT %(n)s) UNION "
            "(SELECT id FROM payments WHERE status = 'succeeded' AND currency = 'KWD' "
            " ORDER BY md5(id::text) LIMIT %(n)s) UNION "
            "(SELECT id FROM payments WHERE status = 'succeeded' ORDER BY md5(id::text) "
            " LIMIT %(n)s)", {"n": sample // 3}).fetchall()]
        items = defaultdict(lambda: defaultdict(int))
        for pid, vendor, subtotal in conn.execute(
                "SELECT p.id, i.vendor_id, i.quantity * i.unit_amount FROM payments p "
                "JOIN order_items i ON i.order_id = p.order_id WHERE p.id = ANY(%s)", (ids,)):
            items[pid][vendor] += subtotal
        pays = {r[0]: r[1:] for r in conn.execute(
            "SELECT id, amount, currency, amount_refunded FROM payments WHERE id = ANY(%s)",
            (ids,))}
        lines = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
        for pid, vendor, kind, gross, fee, net in conn.execute(
                "SELECT payment_id, vendor_id, kind, gross, fee, net FROM split_lines "
                "WHERE payment_id = ANY(%s)", (ids,)):
            line = lines[pid][vendor, kind]
            line[0], line[1], line[2] = line[0] + gross, line[1] + fee, line[2] + net
    for pid in ids:
        amount, currency, refunded = pays[pid]
        vendors = sorted(items[pid], key=str)
        step = amount_step(currency)
        sales = sale_shares(amount, [items[pid][v] for v in vendors], FEE_PERCENT, step=step)
        want = {(v, "sale"): [g, f, g - f] for v, (g, f) in zip(vendors, sales, strict=True)}
        if refunded:
            for v, (g, f) in zip(vendors, refund_targets(sales, min(refunded, amount), amount,
                                                         step), strict=True):
                if g or f:
                    want[v, "refund"] = [-g, -f, f - g]
        if dict(lines[pid]) != want:
            problems.append(f"payment {pid}: lines {dict(lines[pid])} != ledger's {want}")
    print(f"   ledger check: the lines of {len(ids)} payments (refunded, KWD, any) "
          + ("equal what splits.sale_shares / refund_targets give" if not problems
             else f"DIFFER for {len(problems)}"))
    return problems[:5]


# --------------------------------------------------------------------------------------------
# 1. rebuild


class StatementTimes:
    """Each statement's text and time while ``on``."""

    def __init__(self, engine):
        self.on = False
        self.rows: list[tuple[str, float, int]] = []
        self.statements: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute", self.before)
        event.listen(engine, "after_cursor_execute", self.after)

    def before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_st0"] = time.perf_counter()

    def after(self, conn, cursor, statement, parameters, context, executemany):
        ms = (time.perf_counter() - conn.info.pop("bench_st0")) * 1000
        if self.on:
            self.rows.append((" ".join(statement.split()), ms, cursor.rowcount))
            self.statements.append((statement, parameters))


def _label(statement: str) -> str:
    s = statement
    if s.startswith("INSERT INTO"):
        return " ".join(s.split()[:3]) + " ... SELECT"
    return s[:70]


def time_rebuild(app, times: StatementTimes, since, label: str) -> dict:
    from portal.database import unit_of_work
    from portal.extensions import db
    from portal.ledger import rollups

    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))  # the pool's connection, outside the timing
        db.session.rollback()
        times.rows.clear()
        times.statements.clear()
        times.on = True
        t0 = time.perf_counter()
        with unit_of_work():
            written = rollups.rebuild(since)
        wall = time.perf_counter() - t0
        times.on = False
        commit_ms = wall * 1000 - sum(ms for _, ms, _ in times.rows)
    # Every table's rows, from its INSERT (rebuild() returns the counts of some of them).
    rows = {st.split()[2]: n for st, _, n in times.rows if st.startswith("INSERT INTO")}
    rows = rows or {f"table {i + 1}": n for i, n in enumerate(written)}
    print(f"   {label}: {wall:.2f} s; rows written: "
          + ", ".join(f"{t} {n:,}" for t, n in rows.items()))
    for statement, ms, rows_done in times.rows:
        print(f"      {ms / 1000:7.2f} s  {_label(statement)}"
              + (f"  ({rows_done:,} rows)" if rows_done and rows_done > 0 else ""))
    print(f"      {commit_ms / 1000:7.2f} s  COMMIT and Python")
    return {"label": label, "wall": wall, "rows": rows}


def explain_nightly(args, app, times: StatementTimes, since) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the nightly job's INSERT ... SELECTs, replayed after its
    LOCK and DELETEs in one transaction rolled back: how it reads split_lines and payments
    for two days. Returns notes (its Seq Scans)."""
    from portal.extensions import db
    from portal.ledger import rollups

    with app.app_context():
        times.rows.clear()
        times.statements.clear()
        times.on = True
        rollups.rebuild(since)
        times.on = False
        db.session.rollback()
        statements = list(times.statements)
    notes = []
    with psycopg.connect(plain_url(args.pg, args.db)) as conn:
        for statement, params in statements:
            if not statement.lstrip().startswith("INSERT"):
                conn.execute(statement, params)
                continue
            plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}",
                                params).fetchone()[0]
            read = []
            for n in _walk(plan[0]["Plan"]):
                if n.get("Relation Name") in NO_SEQ_SCAN:
                    rows = (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * n.get(
                        "Actual Loops", 1)
                    read.append(f"{n['Node Type']} on {n['Relation Name']}"
                                + (f" using {n['Index Name']}" if n.get("Index Name") else "")
                                + f" ({rows:,} rows read)")
            print(f"      EXPLAIN {_label(' '.join(statement.split()))}: "
                  f"{plan[0]['Execution Time']:.0f} ms; " + "; ".join(read))
            notes += [f"the nightly rebuild (2 days): {r}" for r in read
                      if r.startswith(("Seq Scan", "Parallel Seq Scan"))]
        conn.rollback()
    return notes


def check_rollups(args) -> list[str]:
    """The rollups sum to what the lines and the payments say."""
    with psycopg.connect(plain_url(args.pg, args.db)) as conn:
        lines = conn.execute(
            "SELECT count(*) FILTER (WHERE kind = 'sale'), "
            "coalesce(sum(gross) FILTER (WHERE kind = 'sale'), 0), "
            "coalesce(sum(fee) FILTER (WHERE kind = 'sale'), 0), "
            "coalesce(-sum(gross) FILTER (WHERE kind = 'refund'), 0), "
            "coalesce(-sum(fee) FILTER (WHERE kind = 'refund'), 0) FROM split_lines").fetchone()
        sales = conn.execute("SELECT coalesce(sum(sales), 0), coalesce(sum(gross), 0), "
                             "coalesce(sum(fees), 0), coalesce(sum(refunded), 0), "
                             "coalesce(sum(fees_returned), 0) FROM daily_sales").fetchone()
        paid = conn.execute("SELECT count(*), coalesce(sum(amount), 0) FROM payments "
                            "WHERE status = 'succeeded'").fetchone()
        kept = conn.execute("SELECT coalesce(sum(succeeded), 0), coalesce(sum(volume), 0) "
                            "FROM daily_payments").fetchone()
        attempts = None
        if conn.execute("SELECT to_regclass('daily_attempts')").fetchone()[0]:
            attempts = conn.execute(
                "SELECT (SELECT coalesce(sum(payments), 0) FROM daily_attempts "
                "WHERE outcome = 'succeeded'), (SELECT coalesce(sum(payments), 0) "
                "FROM daily_attempts WHERE outcome = 'failed'), count(*) FILTER "
                "(WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed') "
                "FROM payments").fetchone()
    problems = []
    if tuple(lines) != tuple(sales):
        problems.append(f"daily_sales sums {tuple(sales)} != split_lines' {tuple(lines)}")
    if tuple(paid) != tuple(kept):
        problems.append(f"daily_payments sums {tuple(kept)} != payments' {tuple(paid)}")
    if attempts is not None and tuple(attempts[:2]) != tuple(attempts[2:]):
        problems.append(f"daily_attempts (succeeded, failed) {tuple(attempts[:2])} != "
                        f"payments' {tuple(attempts[2:])}")
    print("   rollups against the rows: " + (
        "equal (sales, gross, fees, refunded, fees returned; payments, volume"
        + ("; succeeded, failed" if attempts is not None else "") + ")"
        if not problems else "; ".join(problems)))
    return problems


# --------------------------------------------------------------------------------------------
# 2. the page and the API


@dataclass
class Case:
    name: str
    client: object
    path: str
    headers: dict
    check: object  # response -> None, asserts
    total_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    queries: int = 0


def analytics_cases(app, args) -> list[Case]:
    from portal.auth.models import User
    from portal.auth.services import issue_token
    from portal.extensions import db

    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=args.days - 1), today
    page = app.test_client()
    resp = page.post("/login", data={"email": ADMIN_EMAIL, "password": TARGET_PASSWORD})
    assert resp.status_code == 302, f"login failed: {resp.status_code}"
    with app.app_context():
        admin = db.session.scalar(sa.select(User).where(User.email == ADMIN_EMAIL))
        token = issue_token(admin)[0]
        db.session.rollback()
    shown = f": {first.isoformat()} to {last.isoformat()}, in {args.currency}"

    def page_ok(resp):
        assert resp.status_code == 200, resp.status_code
        assert shown in resp.get_data(as_text=True), f"expected {shown!r} in the page"

    def api_ok(resp):
        assert resp.status_code == 200, (resp.status_code, resp.get_data(as_text=True)[:300])
        body = resp.get_json()
        assert len(body["daily"]) == args.days and body["currency"] == args.currency.lower(), (
            body["period"], body["currency"])

    return [
        Case(f"page: GET /admin/analytics?period={args.days}d&currency={args.currency}", page,
             f"/admin/analytics?period={args.days}d&currency={args.currency}", {}, page_ok),
        Case(f"API: GET /api/payments/analytics ({args.days} days, {args.currency})",
             app.test_client(),
             f"/api/payments/analytics?from={first}&to={last}&currency={args.currency}",
             {"Authorization": f"Bearer {token}"}, api_ok),
    ]


def run_cases(cases: list[Case], rec: SqlRecorder, times: StatementTimes, warmup: int,
              n: int) -> None:
    """Warm-up, then n requests per case, interleaved round-robin; ``times`` records the
    statements of the timed ones."""
    for case in cases:
        for _ in range(warmup):
            case.check(case.client.get(case.path, headers=case.headers))
    times.rows.clear()
    times.on = True
    for _ in range(n):
        for case in cases:
            rec.reset()
            t0 = time.perf_counter()
            resp = case.client.get(case.path, headers=case.headers)
            case.total_ms.append((time.perf_counter() - t0) * 1000)
            case.sql_ms.append(rec.ms)
            case.queries = rec.count
            case.check(resp)
    times.on = False


def request_sql(case: Case, rec: SqlRecorder) -> list[tuple[str, object]]:
    rec.statements.clear()
    rec.keep = True
    case.client.get(case.path, headers=case.headers)
    rec.keep = False
    return [(s, p) for s, p in rec.statements if s.lstrip().upper().startswith("SELECT")]


def scans(plan: list) -> tuple[list[str], list[str]]:
    """(Seq Scans of NO_SEQ_SCAN tables: failures; of other tables reading more than SEQ_ROWS
    rows: notes)."""
    bad, big = [], []
    for n in _walk(plan[0]["Plan"]):
        if n["Node Type"] != "Seq Scan":
            continue
        table = n.get("Relation Name")
        read = (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * n.get(
            "Actual Loops", 1)
        if table in NO_SEQ_SCAN:
            bad.append(f"Seq Scan on {table} ({read:,} rows read)")
        elif read > SEQ_ROWS:
            big.append(f"Seq Scan on {table} ({read:,} rows read)")
    return bad, big


def explain_requests(args, cases: list[Case], rec: SqlRecorder,
                     app_ms: dict[str, list[float]]) -> tuple[list, list]:
    """EXPLAIN (ANALYZE, BUFFERS) of each SELECT of one request of the page (the API sends
    the same statements, checked), as the custom plan for its values and as the generic plan
    a prepared statement may switch to, next to the statement's time in the timed requests
    (``app_ms``); the heaviest printed in full."""
    page_sql = request_sql(cases[0], rec)
    api_sql = request_sql(cases[1], rec)
    same = [s for s, _ in page_sql] == [s for s, _ in api_sql]
    print(f"   the API request sent {'the same' if same else 'OTHER'} {len(api_sql)} "
          f"statements as the page ({len(page_sql)})")
    rows, failures, notes = [], [], []
    for statement, params in page_sql + ([] if same else api_sql):
        row = {"statement": statement, "params": params}
        for kind in ("custom", "generic") if params else ("custom",):
            text, plan = explain(args.pg, args.db, statement, params, generic=kind == "generic")
            bad, big = scans(plan)
            failures += [f"{b} ({kind} plan)" for b in bad]
            notes += big
            row[kind] = (plan[0]["Execution Time"], text, plan, bad + big)
        row.setdefault("generic", row["custom"])  # no parameters: one plan for all
        rows.append(row)
    print("| in the requests, p50 / p95 ms | EXPLAIN custom ms | EXPLAIN generic ms | plan "
          "(custom; the generic one where it differs) | statement |")
    print("| ---: | ---: | ---: | --- | --- |")
    for row in rows:
        (c_ms, _, c_plan, c_found), (g_ms, _, g_plan, g_found) = row["custom"], row["generic"]
        what = " ".join(row["statement"].split())
        timed = app_ms.get(what) or [math.nan]
        what = what[:100] + ("..." if len(what) > 100 else "")
        plan = plan_summary(c_plan) + (f" **{'; '.join(c_found)}**" if c_found else "")
        if plan_summary(g_plan) != plan_summary(c_plan):
            plan += f"; generic: {plan_summary(g_plan)}" + (
                f" **{'; '.join(g_found)}**" if g_found else "")
        print(f"| {pct(timed, 50):.2f} / {pct(timed, 95):.2f} | {c_ms:.2f} | {g_ms:.2f} | "
              f"{plan} | `{what}` |")
    total = sum(r["custom"][0] for r in rows)

    def in_requests(r):
        return pct(app_ms.get(" ".join(r["statement"].split())) or [r["custom"][0]], 50)

    row = max(rows, key=in_requests)  # the heaviest as the requests ran it
    print(f"\n-- the heaviest statement in the requests ({in_requests(row):.2f} ms at the "
          f"median; all {len(rows)} statements {total:.2f} ms by EXPLAIN with custom plans):")
    print("   SQL: " + " ".join(row["statement"].split()))
    print(f"   params: {row['params']}")
    kinds = ("custom", "generic") if plan_summary(row["custom"][2]) != plan_summary(
        row["generic"][2]) else ("custom",)
    for kind in kinds:
        if len(kinds) > 1:
            print(f"   {kind} plan:")
        print("\n".join("   " + line for line in row[kind][1].splitlines()))
    return failures, notes


def generic_plans(app) -> str:
    """How often the app's connection ran the analytics' prepared statements with a generic
    plan (psycopg prepares a statement after 5 executions; PostgreSQL may then plan it once
    for all values)."""
    from portal.extensions import db

    with app.app_context():
        rows = db.session.execute(sa.text(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%daily_%' OR statement LIKE '%payouts%'")).all()
        db.session.rollback()
    return (f"{len(rows)} prepared statements of the analytics on the app's connection ran "
            f"{sum(r[2] for r in rows):,} times with a custom plan and "
            f"{sum(r[1] for r in rows):,} with a generic one")


# --------------------------------------------------------------------------------------------
# 3. settles with and without the rollups


@dataclass
class Pending:
    id: uuid.UUID
    intent: str
    amount: int
    currency: str


def make_pending(args, n: int) -> tuple[list[Pending], list[tuple[str, int]]]:
    """n pending payments (orders of 1-3 items of the settle vendors, in SETTLE_CURRENCIES)
    of random customers; and the vendors (e-mail, items sold)."""
    rng = random.Random(args.seed + 7)
    now = datetime.now(UTC)
    with psycopg.connect(plain_url(args.pg, args.db)) as conn:
        ranked = conn.execute(
            "SELECT u.id, u.email, count(*) FROM users u JOIN order_items i ON "
            "i.vendor_id = u.id GROUP BY u.id, u.email ORDER BY count(*) DESC, u.email"
        ).fetchall()
        vendors = [ranked[min(r, len(ranked)) - 1] for r in SETTLE_RANKS]
        vendors = list({v[0]: v for v in vendors}.values())
        customers = [r[0] for r in conn.execute(
            "SELECT id FROM users WHERE role = 'customer' ORDER BY md5(id::text) LIMIT 50")]
        pays, orders, items, payments = [], [], [], []
        for _ in range(n):
            oid, pid = uuid.uuid4(), uuid.uuid4()
            currency = rng.choice(SETTLE_CURRENCIES)
            customer = rng.choice(customers)
            total = 0
            for pos in range(rng.choice((1, 1, 2, 3))):
                unit, qty = rng.randrange(400, 18000), rng.choice((1, 1, 2))
                total += unit * qty
                items.append((uuid.uuid4(), oid, rng.choice(vendors)[0], pos, "Bench item",
                              qty, unit))
            orders.append((oid, customer, currency, total, 0, 0, 0, total, "unpaid", now, now))
            intent = f"pi_bench_{pid.hex[:20]}"
            payments.append((pid, customer, oid, intent, currency, total, "pending", total, 0, 0,
                             0, 0, "web", now, now))
            pays.append(Pending(pid, intent, total, currency))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO orders (id, customer_id, currency, subtotal, tax, shipping, "
                "discount, total, status, created_at, updated_at) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", orders)
            cur.executemany(
                "INSERT INTO order_items (id, order_id, vendor_id, position, description, "
                "quantity, unit_amount) VALUES (%s, %s, %s, %s, %s, %s, %s)", items)
            cur.executemany(
                "INSERT INTO payments (id, user_id, order_id, stripe_payment_intent_id, "
                "currency, amount, status, subtotal, tax, shipping, discount, amount_refunded, "
                "source, created_at, updated_at) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", payments)
        conn.commit()
    with psycopg.connect(plain_url(args.pg, args.db), autocommit=True) as conn:
        conn.execute("ANALYZE orders, order_items, payments")
    return pays, [(email, count) for _, email, count in vendors]


@dataclass
class Arm:
    name: str
    total_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    rollup_ms: list[float] = field(default_factory=list)  # inside count_sale + count_lines
    upsert_ms: list[float] = field(default_factory=list)  # their statements' time
    rollup_statements: list[int] = field(default_factory=list)  # and number
    queries: list[int] = field(default_factory=list)


def time_settles(app, args, rec: SqlRecorder,
                 times: StatementTimes) -> tuple[Arm, Arm, list[tuple[str, int]], list[str]]:
    from flask import g

    from portal import jobs
    from portal.extensions import db
    from portal.ledger import rollups
    from portal.payments.services import settle
    from portal.stripe_gateway import Intent

    pays, vendors = make_pending(args, args.settle_warmup + 2 * args.settles)
    # Every rollup call a settle makes (count_sale and count_lines; count_outcome and any
    # other count_* where there is one).
    real = {name: func for name, func in vars(rollups).items()
            if name.startswith("count_") and callable(func)}
    inside = [0.0]
    depth = [0]

    def timed(func):
        """``func`` timed, its statements recorded (``times``), the outermost call only."""
        def wrapper(*a, **kw):
            depth[0] += 1
            times.on = True
            t0 = time.perf_counter()
            try:
                return func(*a, **kw)
            finally:
                depth[0] -= 1
                if not depth[0]:
                    inside[0] += (time.perf_counter() - t0) * 1000
                    times.on = False
        return wrapper

    def noop(*a, **kw):
        return None

    variants = {"with rollups": {k: timed(f) for k, f in real.items()},
                "rollups no-ops": {k: noop for k in real}}
    arms = {name: Arm(name) for name in variants}
    names = list(variants)
    # ABBA: each pair in the other order than the last, so neither arm always goes first.
    schedule = [names[(i + i // 2) % 2] for i in range(2 * args.settles)]
    schedule = [names[i % 2] for i in range(args.settle_warmup)] + schedule
    with app.app_context():
        try:
            for i, (name, pay) in enumerate(zip(schedule, pays, strict=True)):
                for attr, func in variants[name].items():
                    setattr(rollups, attr, func)
                intent = Intent(id=pay.intent, status="succeeded", amount=pay.amount,
                                currency=pay.currency, client_secret=None, created=1,
                                metadata={}, funds_available_at=1900000000, charge_id="ch_x")
                rec.reset()
                times.rows.clear()
                times.statements.clear()
                inside[0] = 0.0
                t0 = time.perf_counter()
                payment = settle(pay.id, intent)
                db.session.commit()
                ms = (time.perf_counter() - t0) * 1000
                assert payment.status == "succeeded", payment.status
                g.pop(jobs._PENDING, None)  # the outbox's deliveries: not part of a settle
                db.session.remove()  # a fresh session per settle, as a job has
                if i < args.settle_warmup:
                    continue
                arm = arms[name]
                arm.total_ms.append(ms)
                arm.sql_ms.append(rec.ms)
                arm.rollup_ms.append(inside[0])
                arm.upsert_ms.append(sum(t for _, t, _ in times.rows))
                arm.rollup_statements.append(len(times.rows))
                arm.queries.append(rec.count)
        finally:
            for attr, func in real.items():
                setattr(rollups, attr, func)
            times.on = False
    return arms[names[0]], arms[names[1]], vendors, sorted(real)


# --------------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    database_args(ap, "portal_bench_analytics")
    ap.add_argument("--requests", type=int, default=50, help="timed requests per case")
    ap.add_argument("--warmup", type=int, default=5, help="untimed requests per case")
    ap.add_argument("--settles", type=int, default=300, help="timed settles per arm")
    ap.add_argument("--settle-warmup", type=int, default=20, help="untimed settles")
    ap.add_argument("--days", type=int, default=90, choices=(7, 30, 90),
                    help="the period timed (the page's 7d / 30d / 90d)")
    ap.add_argument("--currency", default="USD")
    data_args(ap)  # admin_search.py's data, with its defaults (the same rows)
    ap.add_argument("--target-rebuild-s", type=float, default=60.0, help="rebuild() target")
    ap.add_argument("--target-ms", type=float, default=150.0, help="page / API p95 target")
    ap.add_argument("--target-settle-ms", type=float, default=2.0,
                    help="settle p95 with rollups minus without, target")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="before each timed part, wait up to this long for 5 s with the "
                         "machine < 0.3 cores busy")
    ap.add_argument("--sql", action="append", default=[], metavar="STATEMENT",
                    help="run this SQL in the bench database before timing (experiments, "
                         "e.g. --sql 'CREATE INDEX ...'); repeatable")
    return ap.parse_args(argv)


def make_app(args):
    from portal import create_app
    from portal.config import Config

    return create_app(Config.from_env(app_env(plain_url(args.pg, args.db)),
                                      # The login form is posted without a CSRF token.
                                      extra={"WTF_CSRF_ENABLED": False}))


def describe(args) -> None:
    with psycopg.connect(plain_url(args.pg, args.db), autocommit=True) as conn:
        for stmt in args.sql:
            print(f"   experiment: {stmt}")
            conn.execute(stmt)
        if args.sql:
            conn.execute("ANALYZE")
        rows = conn.execute(
            "SELECT c.relname, c.reltuples::bigint, "
            "pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relname IN "
            "('payments', 'split_lines', 'payouts', 'daily_sales', 'daily_payments') "
            "AND c.relkind = 'r' ORDER BY 1").fetchall()
        server = conn.execute("SHOW server_version").fetchone()[0]
        shared = conn.execute("SHOW shared_buffers").fetchone()[0]
    print("   " + ", ".join(f"{name} ~{n:,} rows {size}" for name, n, size in rows)
          + f"; PostgreSQL {server}, shared_buffers {shared}; {os.cpu_count()} CPUs")


def stage_rebuild(args, app, times, failures: list, notes: list) -> list[dict]:
    from portal.extensions import db

    print("\n== 1. rollups.rebuild() in an app context, the whole transaction to its commit")
    wait_idle(args.wait_idle, " before the rebuilds")
    with app.app_context():
        empty = not db.session.execute(sa.text("SELECT EXISTS (SELECT 1 FROM daily_sales)")
                                       ).scalar()
        db.session.rollback()
    results = [time_rebuild(app, times, None, "every day, into empty tables" if empty
                            else "every day, replacing every row"),
               time_rebuild(app, times, None, "every day, again: replacing every row")]
    for r in results:
        if r["wall"] >= args.target_rebuild_s:
            failures.append(f"rebuild ({r['label']}): {r['wall']:.1f} s >= "
                            f"{args.target_rebuild_s:g} s")
    since = NOW.date() - timedelta(days=1)
    nightly = time_rebuild(app, times, since, f"the nightly job: since {since} (the data's "
                                              "yesterday), two days")
    nightly["label"] = f"since {since} (nightly job, 2 days)"
    results.append(nightly)
    notes += explain_nightly(args, app, times, since)
    rollup_tables = ", ".join(results[0]["rows"])
    with psycopg.connect(plain_url(args.pg, args.db), autocommit=True) as conn:
        t0 = time.perf_counter()
        conn.execute(f"VACUUM (ANALYZE) {rollup_tables}")  # as autovacuum would
        print(f"   VACUUM (ANALYZE) {rollup_tables} afterwards: {time.perf_counter() - t0:.1f} s")
    failures += check_rollups(args)
    print("\n| rebuild | seconds | rows written |")
    print("| --- | ---: | --- |")
    for r in results:
        print(f"| {r['label']} | **{r['wall']:.2f}** | "
              + ", ".join(f"{t} {n:,}" for t, n in r["rows"].items()) + " |")
    return results


def stage_requests(args, app, rec, times, failures: list, notes: list) -> list[Case]:
    cases = analytics_cases(app, args)
    print(f"\n== 2. the analytics of {args.days} days in {args.currency}: {args.warmup} warm-up "
          f"+ {args.requests} timed requests per case, interleaved (Flask test client, "
          "in-process)")
    wait_idle(args.wait_idle, " before the requests")
    load0 = os.getloadavg()[0]
    run_cases(cases, rec, times, args.warmup, args.requests)
    app_ms = defaultdict(list)
    for statement, ms, _ in times.rows:
        app_ms[statement].append(ms)
    times.rows.clear()
    times.statements.clear()
    print(f"   load average (1 min) before/after timing: {load0:.2f} / "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print("   " + generic_plans(app))
    print("\n   EXPLAIN (ANALYZE, BUFFERS) of the statements of one request:")
    bad, big = explain_requests(args, cases, rec, app_ms)
    failures += [f"analytics query: {b}" for b in bad]
    notes += [f"analytics query: {b}" for b in dict.fromkeys(big)]
    print(f"\n   no Seq Scan of {' or '.join(sorted(NO_SEQ_SCAN))}: "
          + ("OK" if not bad else "FAIL: " + "; ".join(bad)))
    print("\n| case | n | p50 ms | p95 ms | max ms | SQL p95 ms | queries |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in cases:
        p95 = pct(c.total_ms, 95)
        print(f"| {c.name} | {len(c.total_ms)} | {pct(c.total_ms, 50):.1f} | **{p95:.1f}** | "
              f"{max(c.total_ms):.1f} | {pct(c.sql_ms, 95):.1f} | {c.queries} |")
        if p95 >= args.target_ms:
            failures.append(f"{c.name}: p95 {p95:.1f} ms >= {args.target_ms:g} ms")
    return cases


def stage_settles(args, app, rec, times, failures: list) -> None:
    print(f"\n== 3. payments.services.settle() + commit: {args.settle_warmup} warm-up, then "
          f"{args.settles} per arm, with the rollup calls and with them as no-ops, "
          "interleaved ABBA")
    wait_idle(args.wait_idle, " before the settles")
    load0 = os.getloadavg()[0]
    with_, without, vendors, patched = time_settles(app, args, rec, times)
    print(f"   load average (1 min) before/after: {load0:.2f} / {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs")
    print(f"   rollup calls replaced by no-ops: {', '.join(f'rollups.{n}' for n in patched)}")
    print("   vendors: " + ", ".join(f"{email} ({count:,} items)" for email, count in vendors)
          + f"; currencies {', '.join(SETTLE_CURRENCIES)}; 1-3 items per order")
    print("\n| settle | n | p50 ms | p95 ms | max ms | mean ms | SQL p95 ms | statements |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for a in (with_, without):
        print(f"| {a.name} | {len(a.total_ms)} | {pct(a.total_ms, 50):.2f} | "
              f"**{pct(a.total_ms, 95):.2f}** | {max(a.total_ms):.2f} | "
              f"{statistics.fmean(a.total_ms):.2f} | {pct(a.sql_ms, 95):.2f} | "
              f"{statistics.median(a.queries):.0f} |")
    diff = pct(with_.total_ms, 95) - pct(without.total_ms, 95)
    print(f"\n   p95 difference: **{diff:+.2f} ms** (p50 "
          f"{pct(with_.total_ms, 50) - pct(without.total_ms, 50):+.2f} ms, mean "
          f"{statistics.fmean(with_.total_ms) - statistics.fmean(without.total_ms):+.2f} ms)")
    print(f"   inside the rollup calls (with rollups): p50 {pct(with_.rollup_ms, 50):.2f} / p95 "
          f"{pct(with_.rollup_ms, 95):.2f} ms, of which their "
          f"{statistics.median(with_.rollup_statements):.0f} statements (INSERT ... ON "
          f"CONFLICT) p50 {pct(with_.upsert_ms, 50):.2f} / p95 {pct(with_.upsert_ms, 95):.2f} "
          "ms; the rest is Python (SQLAlchemy building and executing them)")
    if diff > args.target_settle_ms:
        failures.append(f"settle p95 with rollups - without: {diff:+.2f} ms > "
                        f"{args.target_settle_ms:g} ms")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    from portal.extensions import db

    started = time.perf_counter()
    app = make_app(args)
    failures: list[str] = []
    notes: list[str] = []
    try:
        if not args.reuse:
            seed_database(args, app, db.metadata.tables)
            add_ledger(args)
            failures += check_ledger(args)
        else:  # the kept database follows the schema of the code timed
            from flask_migrate import upgrade

            print(f"== database {args.db}, kept: alembic upgrade")
            with app.app_context():
                upgrade()
                db.engine.dispose()
        describe(args)
        with app.app_context():
            times = StatementTimes(db.engine)
            rec = SqlRecorder(db.engine)
        stage_rebuild(args, app, times, failures, notes)
        gc.collect()
        gc.freeze()  # as gunicorn.conf.py's post_worker_init does in each worker
        stage_requests(args, app, rec, times, failures, notes)
        stage_settles(args, app, rec, times, failures)
    finally:
        with app.app_context():
            db.engine.dispose()
        if args.keep:
            print(f"\n(database {args.db} kept)")
        else:
            drop_database(args.pg, args.db)

    print(f"\n== total run time {time.perf_counter() - started:.0f} s")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"PASSED: rebuild of every day < {args.target_rebuild_s:g} s; the page and the API "
          f"({args.days} days, {args.currency}) p95 < {args.target_ms:g} ms with no Seq Scan of "
          f"{' or '.join(sorted(NO_SEQ_SCAN))}; settle p95 with the rollups <= "
          f"{args.target_settle_ms:g} ms over without")
    return 0


if __name__ == "__main__":
    sys.exit(main())
