"""Benchmark: the payment history page on PostgreSQL with a large table.

Acceptance item: "History page for a customer with 10,000 payments, 200,000 payments in the
table, PostgreSQL: p50/p95 server time; target p95 < 50 ms. Show the query plan uses an index."

What it does (see bench/README.md):

1. drops and creates its own database (default ``portal_bench``) and builds the schema with the
   project's Alembic migrations (``flask_migrate.upgrade()``), exactly as a deployment would;
2. bulk-loads users, orders (+ items) and payments with COPY, column lists taken from the
   SQLAlchemy core tables; rows are inserted in creation order, like a live system fills them;
   then ``VACUUM (ANALYZE)`` (the steady state autovacuum keeps a real table in);
3. signs the target customer in through the real login form and times ``GET /payments``
   (full page and HTMX partial: page 1, page 400, last page, status filter) through Flask's
   test client: warm-up, then N requests per case, the cases interleaved round-robin;
4. captures the SQL that ``payments.services.history()`` issues during a real request and prints
   ``EXPLAIN (ANALYZE, BUFFERS)`` of it, both as the custom plan PostgreSQL makes for the bound
   values and as the generic plan a server-side prepared statement may switch to; checks that
   payments are read through ix_payments_user_created / ix_payments_user_status_created and
   that neither payments nor orders is read by a Seq Scan;
5. exits 1 when a case has p95 >= the target or a plan check fails; drops the database unless
   ``--keep``.

Run: ``.venv/bin/python bench/history.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import json
import math
import os
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy import text as sa_text  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

TARGET_EMAIL = "bench-target@bench.shopsphere.test"
TARGET_PASSWORD = "bench-pass-123"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SPAN = timedelta(days=730)

# Status mix of a marketplace's payments; a payment still in flight is recent by nature, so the
# in-flight statuses only occur in the last 14 days (older ones were canceled or abandoned).
STATUS_WEIGHTS = {
    "succeeded": 80.0, "failed": 7.0, "canceled": 4.5, "requires_payment_method": 4.0,
    "pending": 2.0, "processing": 1.2, "requires_action": 1.0, "requires_confirmation": 0.3,
}
IN_FLIGHT = {"pending", "processing", "requires_action", "requires_confirmation"}
CURRENCY_WEIGHTS = {"USD": 45, "EUR": 24, "GBP": 12, "JPY": 6, "CAD": 5, "AUD": 4, "CHF": 3,
                    "KWD": 1}
EXPONENT = {"JPY": 0, "KWD": 3}
BRANDS = {"visa": 55, "mastercard": 30, "amex": 10, "discover": 5}
COUNTRIES = ["US", "US", "US", "DE", "FR", "GB", "GB", "JP", "CA", "AU", "CH", "KW", "NL"]
FAILURES = [("card_declined", "Your card was declined."),
            ("insufficient_funds", "Your card has insufficient funds."),
            ("expired_card", "Your card has expired."),
            ("incorrect_cvc", "Your card's security code is incorrect."),
            ("authentication_required", "Your card was declined. This transaction requires "
                                        "authentication.")]
PRODUCTS = ["Walnut desk lamp", "Linen cushion cover", "Ceramic mug set", "Beeswax candles",
            "Hinoki bath mat", "Tenugui towel", "Wool throw", "Oak cutting board",
            "Copper kettle", "Cotton apron", "Glass carafe", "Leather notebook"]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.0 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
]
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)
# Indexes the history queries are meant to use, and tables that must never be read whole.
HISTORY_INDEXES = {"ix_payments_user_created", "ix_payments_user_status_created"}
NO_SEQ_SCAN = {"payments", "orders"}


# --------------------------------------------------------------------------------------------
# Database lifecycle


from benchdb import database_args, drop_database, plain_url, recreate_database  # noqa: E402

# --------------------------------------------------------------------------------------------
# Data


def _draw(rng: random.Random, table: dict, k: int) -> list:
    """k weighted draws at once (far cheaper than k calls)."""
    return rng.choices(list(table), list(table.values()), k=k)


def _minor(rng: random.Random, currency: str, lo: float, hi: float) -> int:
    """A price between lo and hi major units, in minor units (KWD's last digit is 0)."""
    exp = EXPONENT.get(currency, 2)
    if currency == "JPY":
        lo, hi = lo * 100, hi * 100  # yen prices are ~100x the dollar ones
    value = int(rng.uniform(lo, hi) * 100) * 10 ** exp // 100
    return value - value % 10 if exp == 3 else value


@dataclass
class Dataset:
    users: list[tuple] = field(default_factory=list)
    orders: list[tuple] = field(default_factory=list)
    items: list[tuple] = field(default_factory=list)
    payments: list[tuple] = field(default_factory=list)


def build_dataset(tables, *, customers: int, vendors: int, payments: int, target_payments: int,
                  seed: int, refund_share: float = 0.0, vendor_skew: float = 0.0) -> Dataset:
    """Rows for COPY, as tuples in the column order of the SQLAlchemy core tables.

    ``refund_share``: that share of the succeeded payments refunded (60 % of them in full,
    the others in part). ``vendor_skew``: the exponent of a Zipf law over the vendors (a few
    large shops, a long tail), 0 for every vendor alike. Both draw from a random generator of
    their own, so that at 0 (history.py's defaults) the data is the same as without them.
    """
    rng = random.Random(seed)
    getrandbits = rng.getrandbits
    extra = random.Random(seed + 1)  # refunds and the vendors' skew

    def new_id() -> str:
        # A version-4 UUID as 32 hex digits (PostgreSQL's uuid input accepts them undashed);
        # strings instead of uuid.UUID objects keep generating 750,000 ids cheap.
        return f"{getrandbits(128) & _UUID_CLEAR | _UUID_V4:032x}"

    # One password hash for everyone: hashing 1,000 passwords would dominate the load time.
    password_hash = generate_password_hash(TARGET_PASSWORD)
    data = Dataset()

    ucols = [c.name for c in tables["users"].columns]
    users: list[dict] = [{"id": new_id(), "email": TARGET_EMAIL,
                          "name": "Bench Target Customer", "role": "customer"}]
    users += [{"id": new_id(), "email": f"customer{n:04d}@bench.shopsphere.test",
               "name": f"Customer {n:04d}", "role": "customer"} for n in range(customers - 1)]
    vendor_ids = [new_id() for _ in range(vendors)]
    users += [{"id": vid, "email": f"vendor{n:03d}@bench.shopsphere.test",
               "name": f"Vendor {n:03d}", "role": "vendor"} for n, vid in enumerate(vendor_ids)]
    for u in users:
        u.update(password_hash=password_hash, session_token=f"{getrandbits(128):032x}",
                 created_at=NOW - SPAN - timedelta(days=rng.uniform(1, 400)))
        # A customer pays with a handful of addresses; Stripe's billing_details as JSON text.
        u["billing"] = [json.dumps({"name": u["name"], "email": u["email"], "address": {
            "country": rng.choice(COUNTRIES), "postal_code": f"{rng.randrange(100000):05d}"}})
            for _ in range(3)]
        u["stripe_customer"] = f"cus_{u['id'][:14]}"
        data.users.append(tuple(u[c] for c in ucols))
    target = users[0]

    # Who pays: the target gets exactly target_payments, the rest is spread over the other
    # customers with a skewed (log-normal) weight, as real purchase counts are. Rows are made
    # in creation order (so the heap is in time order, as on a live system) with owners shuffled.
    others = users[1:customers]
    weights = [rng.lognormvariate(0, 1) for _ in others]
    owners = [target] * target_payments + rng.choices(others, weights, k=payments - target_payments)
    rng.shuffle(owners)
    span_s = SPAN.total_seconds()
    created = sorted(NOW - timedelta(seconds=rng.random() * span_s) for _ in range(payments))
    statuses = _draw(rng, STATUS_WEIGHTS, payments)
    settled = {k: v for k, v in STATUS_WEIGHTS.items() if k not in IN_FLIGHT}
    recent = NOW - timedelta(days=14)
    for i, (st, at) in enumerate(zip(statuses, created, strict=True)):
        if st in IN_FLIGHT and at < recent:
            statuses[i] = _draw(rng, settled, 1)[0]
    currencies = _draw(rng, CURRENCY_WEIGHTS, payments)
    brands = _draw(rng, BRANDS, payments)
    n_items = rng.choices((1, 2, 3, 4), (55, 25, 12, 8), k=payments)
    quantities = rng.choices((1, 2, 3, 5), (70, 18, 8, 4), k=sum(n_items))
    sources = rng.choices(("web", "api"), (85, 15), k=payments)
    fundings = rng.choices(("credit", "debit", "prepaid"), (60, 35, 5), k=payments)

    order_row = itemgetter(*[c.name for c in tables["orders"].columns])
    item_row = itemgetter(*[c.name for c in tables["order_items"].columns])
    payment_row = itemgetter(*[c.name for c in tables["payments"].columns])
    card_statuses = {"succeeded", "failed", "processing", "requires_action",
                     "requires_payment_method", "canceled"}
    charged = {"succeeded", "failed"}  # a charge was attempted: Stripe has its ch_ id
    if vendor_skew:  # the vendor of rank r (vendor000 first) sells in proportion to 1/r^skew
        cum = list(itertools.accumulate((r + 1) ** -vendor_skew for r in range(vendors)))

        def vendor_of(pick: int) -> str:
            return vendor_ids[min(bisect.bisect(cum, extra.random() * cum[-1]), vendors - 1)]
    else:
        def vendor_of(pick: int) -> str:
            return vendor_ids[pick % vendors]
    qi = 0
    for i in range(payments):
        owner, at, status, currency = owners[i], created[i], statuses[i], currencies[i]
        order_id = new_id()
        payment_id = new_id()
        subtotal = 0
        for pos in range(n_items[i]):
            qty = quantities[qi]
            qi += 1
            unit = _minor(rng, currency, 4, 180)
            subtotal += qty * unit
            pick = getrandbits(32)
            data.items.append(item_row({
                "id": new_id(), "order_id": order_id,
                "vendor_id": vendor_of(pick), "position": pos,
                "description": PRODUCTS[(pick >> 16) % len(PRODUCTS)], "quantity": qty,
                "unit_amount": unit,
            }))
        exp3 = EXPONENT.get(currency) == 3
        tax = subtotal * rng.choice((0, 0, 5, 8, 10, 20)) // 100
        tax -= tax % 10 if exp3 else 0
        shipping = _minor(rng, currency, 3, 15) if rng.random() < 0.4 else 0
        discount = subtotal // 10 if rng.random() < 0.1 else 0
        discount -= discount % 10 if exp3 else 0
        total = subtotal + tax + shipping - discount
        succeeded = status == "succeeded"
        done = at + timedelta(seconds=3)
        order = {
            "id": order_id, "customer_id": owner["id"], "currency": currency,
            "subtotal": subtotal, "tax": tax, "shipping": shipping, "discount": discount,
            "total": total,
            "status": "paid" if succeeded else "canceled" if status == "canceled" else "unpaid",
            "paid_at": done if succeeded else None,
            "created_at": at - timedelta(seconds=30 + i % 570), "updated_at": done,
        }
        data.orders.append(order_row(order))

        card = status in card_statuses and i % 37 != 0  # a few had no payment method yet
        bits = getrandbits(32)
        failure = FAILURES[bits % len(FAILURES)] if status == "failed" else (None, None)
        platform_fee = subtotal // 10 if succeeded else None
        hexid = payment_id
        refunded = 0
        if succeeded and refund_share and extra.random() < refund_share:
            refunded = total  # in full, or in part (an item sent back)
            if extra.random() >= 0.6:
                refunded = total * extra.randrange(10, 90) // 100
                refunded -= refunded % 10 if exp3 else 0
        payment = {
            "id": payment_id, "user_id": owner["id"], "order_id": order_id,
            "stripe_payment_intent_id": f"pi_{hexid[:24]}",
            "stripe_customer_id": owner["stripe_customer"],
            "stripe_charge_id": f"ch_{hexid[4:28]}" if status in charged else None,
            "amount": total, "currency": currency, "status": status,
            "payment_method_id": f"pm_{hexid[8:32]}" if card else None,
            "payment_method_type": "card" if card else None,
            "card_brand": brands[i] if card else None,
            "card_last4": f"{bits % 10000:04d}" if card else None,
            "card_exp_month": 1 + bits % 12 if card else None,
            "card_exp_year": 2026 + bits % 7 if card else None,
            "card_funding": fundings[i] if card else None,
            "card_country": COUNTRIES[bits % len(COUNTRIES)] if card else None,
            "billing_details": owner["billing"][bits % 3] if card else None,
            "subtotal": subtotal, "tax": tax, "shipping": shipping, "discount": discount,
            "platform_fee": platform_fee,
            "vendor_amount": total - platform_fee if succeeded else None,
            "receipt_url": f"https://pay.stripe.com/receipts/{hexid}" if succeeded else None,
            "receipt_number": f"R-{at.year}{at.month:02d}{at.day:02d}-{hexid[:12].upper()}"
            if succeeded else None,
            "failure_code": failure[0], "failure_message": failure[1],
            "ip_address": f"203.0.{bits >> 24}.{1 + (bits >> 16) % 254}",
            "user_agent": USER_AGENTS[(bits >> 8) % len(USER_AGENTS)],
            "source": sources[i],
            "succeeded_at": done if succeeded else None,
            "funds_available_at": done if succeeded else None, "amount_refunded": refunded,
            "reconcile_due_at": None, "refunds_checked_at": None, "created_at": at,
            "updated_at": done,
        }
        data.payments.append(payment_row(payment))
    return data


def copy_rows(conn: psycopg.Connection, table, rows: list[tuple]) -> None:
    cols = [c.name for c in table.columns]
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, cols)))
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in rows:
            copy.write_row(row)


def load(base: str, dbname: str, tables, data: Dataset) -> dict[str, float]:
    """COPY the rows in, then VACUUM (ANALYZE); returns seconds per step."""
    took = {}
    with psycopg.connect(plain_url(base, dbname)) as conn:
        # The rows are consistent by construction, so skip the per-row foreign-key triggers
        # (they double the load time) and check every reference with one query per key below.
        # The indexes stay, so they grow by random inserts like a live table's do.
        conn.execute("SET session_replication_role = replica")
        for name, rows in (("users", data.users), ("orders", data.orders),
                           ("order_items", data.items), ("payments", data.payments)):
            t0 = time.perf_counter()
            copy_rows(conn, tables[name], rows)
            took[name] = time.perf_counter() - t0
        conn.execute("SET session_replication_role = DEFAULT")
        t0 = time.perf_counter()
        for table in ("orders", "order_items", "payments"):
            for fk in tables[table].foreign_keys:
                col, ref = fk.parent.name, fk.column
                broken = conn.execute(sql.SQL(
                    "SELECT count(*) FROM {t} x WHERE NOT EXISTS "
                    "(SELECT 1 FROM {r} y WHERE y.{rc} = x.{c})").format(
                    t=sql.Identifier(table), r=sql.Identifier(ref.table.name),
                    rc=sql.Identifier(ref.name), c=sql.Identifier(col))).fetchone()[0]
                assert broken == 0, f"{table}.{col}: {broken} rows without {ref}"
        took["foreign-key check"] = time.perf_counter() - t0
        conn.commit()
    with psycopg.connect(plain_url(base, dbname), autocommit=True) as conn:
        # VACUUM as well as ANALYZE: a live table is kept vacuumed by autovacuum, and the
        # visibility map is what lets COUNT(*) be an index-only scan.
        t0 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        took["vacuum analyze"] = time.perf_counter() - t0
    return took


# --------------------------------------------------------------------------------------------
# Timing


@dataclass
class Case:
    name: str
    path: str
    htmx: bool = False
    status: str | None = None  # the status filter, for the plan check
    expect: str = ""  # text the page must contain (checks we measured the right thing)


@dataclass
class Result:
    case: Case
    total_ms: list[float]
    sql_ms: list[float]
    queries: int
    size: int

    def pct(self, values: list[float], p: float) -> float:
        s = sorted(values)
        return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


class SqlRecorder:
    """Counts and times the SQL of a request; optionally keeps the statements."""

    def __init__(self, engine):
        self.ms = 0.0
        self.count = 0
        self.keep = False
        self.statements: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute", self.before)
        event.listen(engine, "after_cursor_execute", self.after)

    def before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_t0"] = time.perf_counter()
        if self.keep:
            self.statements.append((statement, parameters))

    def after(self, conn, cursor, statement, parameters, context, executemany):
        self.ms += (time.perf_counter() - conn.info.pop("bench_t0")) * 1000
        self.count += 1

    def reset(self):
        self.ms, self.count = 0.0, 0


def run_cases(client, rec: SqlRecorder, cases: list[Case], warmup: int, n: int,
              budget_s: float) -> list[Result]:
    """Warm each case up, then time n requests per case, interleaved round-robin.

    Interleaving spreads any burst of load from other processes over all cases instead of
    letting it land on one. A case that has used up budget_s seconds stops after 20 requests
    (enough to show that it is slow, and the run stays short).
    """
    headers = {c.name: {"HX-Request": "true"} if c.htmx else {} for c in cases}
    for case in cases:
        for _ in range(warmup):
            resp = client.get(case.path, headers=headers[case.name])
            assert resp.status_code == 200, (case.path, resp.status_code)
        body = resp.get_data(as_text=True)
        assert case.expect in body, f"{case.name}: expected {case.expect!r} in the page"
        assert ("<html" in body.lower()) != case.htmx, f"{case.name}: wrong template (htmx)"
    results = {c.name: Result(c, [], [], 0, 0) for c in cases}
    for i in range(n):
        for case in cases:
            r = results[case.name]
            if i >= 20 and sum(r.total_ms) > budget_s * 1000:
                continue
            rec.reset()
            t0 = time.perf_counter()
            resp = client.get(case.path, headers=headers[case.name])
            r.total_ms.append((time.perf_counter() - t0) * 1000)
            r.sql_ms.append(rec.ms)
            r.queries, r.size = rec.count, len(resp.get_data())
            assert resp.status_code == 200
    return list(results.values())


def history_cases(counts: dict[str, int]) -> list[Case]:
    """The timed cases of ``GET /payments``, for a customer with ``counts`` payments by
    status: pages 1, 400 (or the middle of fewer) and the last, a status filter, and the
    HTMX partials."""
    target_total = sum(counts.values())
    pages = math.ceil(target_total / 20)
    deep = min(400, max(pages // 2, 1))  # 400 at the real size; the middle of a small one
    failed = counts.get("failed", 0)
    return [
        Case("page 1", "/payments", expect=f"Page 1 of {pages} ({target_total} payments)"),
        Case(f"page {deep} (deep)", f"/payments?page={deep}",
             expect=f"Page {deep} of {pages} ({target_total} payments)"),
        Case(f"page {pages} (last)", f"/payments?page={pages}",
             expect=f"Page {pages} of {pages} ({target_total} payments)"),
        Case("status=failed", "/payments?status=failed", status="failed",
             expect=f"Page 1 of {math.ceil(failed / 20)} ({failed} payments)"),
        Case("htmx partial page 1", "/payments", htmx=True,
             expect=f"Page 1 of {pages} ({target_total} payments)"),
        Case("htmx partial status=failed p2", "/payments?status=failed&page=2", htmx=True,
             status="failed",
             expect=f"Page 2 of {math.ceil(failed / 20)} ({failed} payments)"),
    ]


def _walk(node: dict):
    yield node
    for child in node.get("Plans", ()):
        yield from _walk(child)


def check_plan(plan_json: list, *, status: str | None) -> list[str]:
    """Problems with a plan (empty when fine): seq scans, payments not read by our indexes."""
    problems = []
    nodes = list(_walk(plan_json[0]["Plan"]))
    payments_access = [n for n in nodes if n.get("Relation Name") == "payments"
                       or n.get("Index Name", "").startswith("ix_payments")]
    for n in nodes:
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in NO_SEQ_SCAN:
            problems.append(f"Seq Scan on {n['Relation Name']}")
    used = {n.get("Index Name") for n in payments_access if n.get("Index Name")}
    if not used & HISTORY_INDEXES:
        problems.append(f"payments not read through {sorted(HISTORY_INDEXES)} (used: {used})")
    if status and "ix_payments_user_status_created" not in used:
        problems.append(f"status filter not served by ix_payments_user_status_created ({used})")
    return problems


def plan_summary(plan_json: list) -> str:
    nodes = list(_walk(plan_json[0]["Plan"]))
    parts = []
    for n in nodes:
        if "Scan" in n["Node Type"] or "Join" in n["Node Type"] or n["Node Type"] == "Nested Loop":
            label = n["Node Type"]
            if n.get("Index Name"):
                label += f" using {n['Index Name']}"
            if n.get("Relation Name"):
                label += f" on {n['Relation Name']}"
            parts.append(label)
    return "; ".join(parts)


def _pyformat_to_dollar(statement: str, params: dict) -> tuple[str, list]:
    """``%(name)s`` placeholders to ``$n`` for PREPARE, with the values in order."""
    order: list[str] = []

    def repl(m):
        if m.group(1) not in order:
            order.append(m.group(1))
        return f"${order.index(m.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", repl, statement), [params[k] for k in order]


def explain(base: str, dbname: str, statement: str, params, *, generic: bool,
            setup: tuple[str, ...] = ()):
    """EXPLAIN (ANALYZE, BUFFERS) as text and JSON, custom plan or forced generic plan;
    ``setup``: statements to run first (settings the application's transaction has)."""
    with psycopg.connect(plain_url(base, dbname), autocommit=True) as conn:
        for stmt in setup:
            conn.execute(stmt)
        opts = "ANALYZE, BUFFERS"
        if not generic:
            # psycopg binds the values server-side, as it does for the application's query.
            run = lambda fmt: conn.execute(  # noqa: E731
                f"EXPLAIN ({opts}, FORMAT {fmt}) {statement}", params).fetchall()
        else:
            text, values = _pyformat_to_dollar(statement, params)
            conn.execute(f"PREPARE bench_q AS {text}")
            conn.execute("SET plan_cache_mode = force_generic_plan")
            args = sql.SQL(", ").join(sql.Literal(v) for v in values).as_string(conn)
            run = lambda fmt: conn.execute(  # noqa: E731
                f"EXPLAIN ({opts}, FORMAT {fmt}) EXECUTE bench_q({args})").fetchall()
        run("TEXT")  # once to warm the caches, like the timed requests are warm
        text = "\n".join(r[0] for r in run("TEXT"))
        plan = run("JSON")[0][0]
    return text, plan


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    database_args(ap, "portal_bench")
    ap.add_argument("--requests", type=int, default=200, help="timed requests per case")
    ap.add_argument("--warmup", type=int, default=20, help="untimed requests per case")
    ap.add_argument("--case-seconds", type=float, default=20.0,
                    help="stop timing a case after this long (at least 20 requests)")
    ap.add_argument("--payments", type=int, default=200_000)
    ap.add_argument("--target-payments", type=int, default=10_000)
    ap.add_argument("--customers", type=int, default=950)
    ap.add_argument("--vendors", type=int, default=50)
    ap.add_argument("--target-ms", type=float, default=50.0, help="p95 target")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--sql", action="append", default=[], metavar="STATEMENT",
                    help="run this SQL in the bench database before timing (experiments, "
                         "e.g. --sql 'CREATE INDEX ...'); repeatable")
    args = ap.parse_args(argv)
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    from flask_migrate import upgrade

    from portal import create_app
    from portal.extensions import db

    started = time.perf_counter()
    app = create_app(
        DATABASE_URL=plain_url(args.pg, args.db), PORTAL_ENV="test",
        # The login form is posted without a CSRF token; nothing else differs from the app.
        extra={"WTF_CSRF_ENABLED": False},
    )
    tables = db.metadata.tables
    failures: list[str] = []
    try:
        if not args.reuse:
            print(f"== database {args.db}: drop, create, alembic upgrade")
            recreate_database(args.pg, args.db)
            with app.app_context():
                upgrade()
                db.engine.dispose()
            t0 = time.perf_counter()
            gc.disable()  # millions of new tuples: the cyclic GC would only slow this down
            data = build_dataset(tables, customers=args.customers, vendors=args.vendors,
                                 payments=args.payments, target_payments=args.target_payments,
                                 seed=args.seed)
            t1 = time.perf_counter()
            took = load(args.pg, args.db, tables, data)
            print(f"   generated {len(data.users)} users, {len(data.orders)} orders, "
                  f"{len(data.items)} order items, {len(data.payments)} payments "
                  f"in {t1 - t0:.1f} s; " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
            del data  # the timed requests must not pay for GC passes over these rows
            gc.enable()
            gc.collect()
        with psycopg.connect(plain_url(args.pg, args.db), autocommit=True) as conn:
            for stmt in args.sql:
                print(f"   experiment: {stmt}")
                conn.execute(stmt)
            if args.sql:
                conn.execute("ANALYZE")
            target_id = conn.execute("SELECT id FROM users WHERE email = %s",
                                     (TARGET_EMAIL,)).fetchone()[0]
            counts = dict(conn.execute(
                "SELECT status, count(*) FROM payments WHERE user_id = %s GROUP BY status",
                (target_id,)).fetchall())
            total_rows = conn.execute("SELECT count(*) FROM payments").fetchone()[0]
            sizes = conn.execute(
                "SELECT c.relname, pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c"
                " WHERE c.relname IN ('payments', 'orders') ORDER BY 1").fetchall()
            server = conn.execute("SHOW server_version").fetchone()[0]
            shared = conn.execute("SHOW shared_buffers").fetchone()[0]
        target_total = sum(counts.values())
        mix = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"   payments in table: {total_rows}; target customer: {target_total} ({mix})")
        print(f"   sizes: {', '.join(f'{n} {s}' for n, s in sizes)}; PostgreSQL {server}, "
              f"shared_buffers {shared}")

        cases = history_cases(counts)

        with app.app_context():
            rec = SqlRecorder(db.engine)
        client = app.test_client()
        resp = client.post("/login", data={"email": TARGET_EMAIL, "password": TARGET_PASSWORD})
        assert resp.status_code == 302, f"login failed: {resp.status_code}"

        print(f"\n== GET /payments as the target customer: {args.warmup} warm-up + "
              f"{args.requests} timed requests per case, cases interleaved (Flask test client, "
              "in-process)")
        load_before = os.getloadavg()[0]
        results = run_cases(client, rec, cases, args.warmup, args.requests, args.case_seconds)
        load_after = os.getloadavg()[0]
        head = (f"{'case':<32}{'n':>5}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'mean':>8}"
                f"{'SQL p50':>9}{'SQL p95':>9}{'queries':>8}{'bytes':>8}")
        print(head)
        print("-" * len(head))
        for r in results:
            p95 = r.pct(r.total_ms, 95)
            flag = "" if p95 < args.target_ms else "  << p95 over target"
            print(f"{r.case.name:<32}{len(r.total_ms):5d}{r.pct(r.total_ms, 50):8.2f}{p95:8.2f}"
                  f"{max(r.total_ms):8.2f}{statistics.fmean(r.total_ms):8.2f}"
                  f"{r.pct(r.sql_ms, 50):9.2f}{r.pct(r.sql_ms, 95):9.2f}{r.queries:8d}"
                  f"{r.size:8d}{flag}")
            if p95 >= args.target_ms:
                failures.append(f"{r.case.name}: p95 {p95:.2f} ms >= {args.target_ms} ms")
        cpus = os.cpu_count() or 1
        print(f"   load average (1 min) before/after timing: {load_before:.2f} / {load_after:.2f}"
              f" on {cpus} CPUs" + ("  << machine busy: times include waiting for a CPU"
                                    if max(load_before, load_after) > cpus else ""))

        # Which plans did the application's own connection use? psycopg prepares a statement
        # server-side after 5 executions; PostgreSQL may then switch it to a generic plan.
        with app.app_context():
            prepared = db.session.execute(sa_text(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%FROM payments%'")).all()
            db.session.rollback()
        print("\n   server-side prepared history statements on the app's connection: "
              + (", ".join(f"{'count' if 'count(' in st else 'page'} query generic_plans={g} "
                           f"custom_plans={c}" for st, g, c in prepared) or
                 "none (psycopg drops its prepared statements at each ROLLBACK, which ends "
                 "every request; so every request gets the custom plan)"))

        print("\n== EXPLAIN (ANALYZE, BUFFERS) of the SQL history() issues")
        for case in (cases[0], cases[1], cases[2], cases[3]):
            rec.statements.clear()
            rec.keep = True
            client.get(case.path)
            rec.keep = False
            history_sql = [(s, p) for s, p in rec.statements if "FROM payments" in s]
            assert len(history_sql) == 2, f"expected count + page query, got {len(history_sql)}"
            for statement, params in history_sql:
                kind = "count" if "count(" in statement else "page"
                for generic in (False, True):
                    text, plan = explain(args.pg, args.db, statement, params, generic=generic)
                    problems = check_plan(plan, status=case.status)
                    label = (f"{case.name} / {kind} query / "
                             f"{'generic' if generic else 'custom'} plan")
                    verdict = "OK" if not problems else "FAIL: " + "; ".join(problems)
                    if not generic or problems:
                        print(f"\n-- {label}: {verdict}")
                        if case is cases[0] and kind == "page" and not generic:
                            print("   SQL: " + " ".join(statement.split()))
                            print(f"   params: {params}")
                        print("\n".join("   " + line for line in text.splitlines()))
                    else:
                        print(f"\n-- {label}: {verdict} ({plan_summary(plan)}; "
                              f"{plan[0]['Execution Time']:.3f} ms)")
                    failures += [f"{label}: {p}" for p in problems]
    finally:
        with app.app_context():
            db.engine.dispose()
        if args.keep:
            print(f"\n(database {args.db} kept)")
        else:
            drop_database(args.pg, args.db)

    print(f"\n== total run time {time.perf_counter() - started:.0f} s")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"PASSED: every case p95 < {args.target_ms:g} ms; history queries use "
          f"{' / '.join(sorted(HISTORY_INDEXES))}, no Seq Scan on {', '.join(sorted(NO_SEQ_SCAN))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
