"""Benchmark: a payout run over 1,000,000 split lines for 1,000 vendors on PostgreSQL.

Acceptance item (issue 6): "Payout run over 1,000,000 split lines for 1,000 vendors on
PostgreSQL: time and peak memory; target < 10 s and memory that does not grow with the line
count (set-based SQL, not Python loops over rows)."

What it does (see bench/README.md, section "payouts.py"):

1. drops and creates its own database (default ``portal_bench_payouts``) and builds the schema
   with the project's Alembic migrations (``flask_migrate.upgrade()``);
2. generates deterministic data (fixed seed) and loads it with COPY, the column lists taken
   from the SQLAlchemy core tables, the FK triggers off (then every foreign key checked by an
   anti-join): 1,000 vendors, 25,000 customers, ~590,000 succeeded payments with their orders,
   the refund requests, one earlier (paid) payout run, and the 1,000,000 unpaid split lines
   (3 % refund lines), which go to an unlogged staging table ``bench_lines``;
3. for 250,000, 500,000 and 1,000,000 lines: fills ``split_lines`` afresh from the staging
   table (in creation order), checks its foreign keys, ``VACUUM (ANALYZE)``, ``CHECKPOINT``,
   then runs ``portal.payouts.services.run_payouts`` in a fresh process (as ``flask payouts
   run`` and the rq job do) and records its wall time, tracemalloc peak, RSS high-water-mark
   delta and every SQL statement with its time;
4. after the 1,000,000-line run checks the result in SQL (every line of a (vendor, currency)
   group with a positive total in that group's one payout, payout totals equal to the sums of
   their lines, groups with a total <= 0 left unpaid) and that a second run creates nothing;
5. fills ``split_lines`` again and replays the run's captured SQL in one transaction with
   ``EXPLAIN (ANALYZE, BUFFERS, WAL)``, rolled back, to show where the time goes;
6. exits 1 when the 1,000,000-line run takes --target-s (10 s) or more, when memory grows with
   the line count (the rule is printed), or when a check fails; drops the database unless
   ``--keep``.

Run: ``.venv/bin/python bench/payouts.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import bisect
import gc
import math
import multiprocessing
import os
import platform
import random
import re
import resource
import sys
import time
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from operator import itemgetter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from benchdb import (  # noqa: E402
    check_foreign_keys,
    copy_rows,
    drop_database,
    plain_url,
    recreate_database,
)

# The run pays lines created before ANCHOR: a Monday 00:00 UTC, the end of the last complete
# week (run_payouts clamps ``until`` to the real clock, so ANCHOR must be in the past).
ANCHOR = datetime(2026, 11, 23, tzinfo=UTC)
WINDOW = timedelta(days=60)  # the unpaid lines were created in [ANCHOR - WINDOW, ANCHOR)
PENDING = timedelta(days=2)  # sales of [ANCHOR - PENDING, ANCHOR): funds pending at the run
CURRENCIES = {"USD": 80, "EUR": 14, "JPY": 6}
# Vendors in one order: most carts are from one shop, a few from several (mean 1.65).
VENDORS_PER_PAYMENT = {1: 58, 2: 25, 3: 11, 4: 6}
REFUND_SHARE = 0.03
FEE_PERCENT = 10
# Payment i (in time order) is in tier i % 4, with all its lines; a size takes the tiers < k,
# so the smaller sizes span the same 60 days with the same mix.
TIERS = 4
SIZES = (1, 2, 4)
# Vendors whose unpaid total is <= 0 and who must get no payout (see build_dataset).
N_ZERO, N_DORMANT, N_NEGATIVE_CURRENCY = 3, 12, 20
# Memory rule: the 1,000,000-line run's tracemalloc peak is at most 1.5 x the smallest size's
# and at most MAX_TRACEMALLOC_MB, and its RSS high-water growth at most 1.5 x the smallest
# size's + RSS_SLACK_MB (the allocator takes memory from the OS in steps of a few MB). The peak
# is the bulk INSERT of the payouts (~2.8 KB each, ~8 MiB for ~2,900 payouts): it follows the
# number of (vendor, currency) groups, not the lines. 16 MiB is twice that; keeping even
# 100,000 lines in Python (a row of a few values is ~170 bytes at the least) would exceed it.
GROWTH = 1.5
MAX_TRACEMALLOC_MB = 16.0
RSS_SLACK_MB = 4.0
PASSWORD = "bench-pass-123"
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)


def app_env(db_url: str) -> dict:
    """The app's whole environment: nothing comes from the shell. PAYOUT_AUTO_EXECUTE stays
    false, and Stripe points at a closed port, so a transfer could not even be attempted."""
    return {"PORTAL_ENV": "test", "DATABASE_URL": db_url, "LOG_LEVEL": "WARNING",
            "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123",
            "STRIPE_SECRET_KEY": "sk_test_bench", "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
            "STRIPE_WEBHOOK_SECRET": "whsec_bench", "STRIPE_API_BASE": "http://127.0.0.1:9",
            "PAYOUT_AUTO_EXECUTE": "false", "REDIS_URL": ""}


# --------------------------------------------------------------------------------------------
# Data


@dataclass(slots=True)
class Pay:
    """A succeeded payment and its vendors' sale shares (vendor_id, gross, fee)."""
    id: str
    at: datetime | None  # set once the payments are sorted in time
    currency: str
    subtotal: int
    tax: int
    shipping: int
    discount: int
    amount: int
    customer: str
    sales: list[tuple[str, int, int]]
    tier: int = 0
    refunded: int = 0
    paid_by: str | None = None  # the earlier run's payout that paid its sale lines


class Rows:
    """One table's rows for COPY, as tuples. The columns are those of the SQLAlchemy core
    table that the first row gives, in the table's order (plus ``extra`` ones at the end); a
    column not given must have a server default or be nullable, so a column added to the
    schema later does not break the benchmark."""

    def __init__(self, table, extra: tuple[str, ...] = ()):
        self.table, self.extra = table, extra
        self.columns: list[str] = []
        self.rows: list[tuple] = []
        self._get = None

    def add(self, values: dict) -> None:
        if self._get is None:
            known = {c.name for c in self.table.columns} | set(self.extra)
            assert values.keys() <= known, f"{self.table.name}: no {values.keys() - known}"
            self.columns = [c.name for c in self.table.columns if c.name in values]
            missing = [c.name for c in self.table.columns if c.name not in values
                       and not c.nullable and c.server_default is None]
            assert not missing, f"{self.table.name}: no value for {missing}"
            self._get = itemgetter(*self.columns, *self.extra)
        self.rows.append(self._get(values))


class Dataset:
    def __init__(self, tables):
        self.tables = {name: Rows(tables[name]) for name in (
            "users", "orders", "payments", "refund_requests", "payout_runs", "payouts")}
        self.lines = Rows(tables["split_lines"], extra=("tier",))
        self.facts: dict = {}


class Builder:
    """Deterministic rows for COPY, as tuples in the column order of the core tables."""

    def __init__(self, tables, seed: int):
        from portal.ledger.splits import refund_targets, sale_shares

        self.sale_shares, self.refund_targets = sale_shares, refund_targets
        self.rng = random.Random(seed)
        self.data = Dataset(tables)
        self.row = {name: rows.add for name, rows in self.data.tables.items()}
        self.pays: list[Pay] = []
        self.unpaid: list[dict] = []  # split line dicts (+ "tier")
        self.paid: list[dict] = []

    def new_id(self) -> str:
        # A version-4 UUID as 32 hex digits (PostgreSQL's uuid input accepts them undashed).
        return f"{self.rng.getrandbits(128) & _UUID_CLEAR | _UUID_V4:032x}"

    def price(self, currency: str) -> int:
        """One vendor's part of a cart in minor units: log-normal, median ~30 (yen x 150)."""
        major = min(max(self.rng.lognormvariate(math.log(30), 0.9), 2.0), 3000.0)
        return round(major * (150 if currency == "JPY" else 100))

    def payment(self, at, currency, customer, subtotals: list[tuple[str, int]],
                tier=0) -> Pay:
        rng = self.rng
        subtotal = sum(s for _, s in subtotals)
        tax = subtotal * rng.choice((0, 0, 5, 8, 10, 20)) // 100
        shipping = self.price(currency) // 6 if rng.random() < 0.4 else 0
        discount = subtotal // 10 if rng.random() < 0.1 else 0
        amount = subtotal + tax + shipping - discount
        shares = self.sale_shares(amount, [s for _, s in subtotals], FEE_PERCENT)
        pay = Pay(self.new_id(), at, currency, subtotal, tax, shipping, discount, amount,
                  customer, [(v, g, f) for (v, _), (g, f) in zip(subtotals, shares, strict=True)],
                  tier)
        self.pays.append(pay)
        return pay

    def refund(self, pay: Pay, at: datetime, amount: int, requested_by: str, admin: str) -> int:
        """A succeeded refund of ``amount``: its request and one line per vendor given back
        something (the portal's own rounding). Returns the number of lines."""
        request_id = self.new_id()
        pay.refunded = amount
        self.row["refund_requests"]({
            "id": request_id, "payment_id": pay.id, "requested_by_id": requested_by,
            "source": "customer", "amount": amount, "approved_amount": amount,
            "currency": pay.currency, "reason": self.rng.choice(
                ("requested_by_customer", "damaged", "not_received", "duplicate")),
            "notes": None, "status": "succeeded", "decided_by_id": admin,
            "decided_at": at - timedelta(minutes=5), "decision_note": None,
            "stripe_refund_id": f"re_{request_id[:24]}", "failure_message": None,
            "created_at": at - timedelta(hours=6), "updated_at": at})
        targets = self.refund_targets([(g, f) for _, g, f in pay.sales], amount, pay.amount)
        n = 0
        for (vendor, _, _), (gross_back, fee_back) in zip(pay.sales, targets, strict=True):
            if gross_back or fee_back:
                self.unpaid.append({
                    "id": self.new_id(), "payment_id": pay.id, "vendor_id": vendor,
                    "kind": "refund", "refund_request_id": request_id,
                    "currency": pay.currency, "gross": -gross_back, "fee": -fee_back,
                    "net": fee_back - gross_back, "created_at": at, "payout_id": None,
                    "tier": pay.tier})
                n += 1
        return n


def _weighted(rng: random.Random, items: list, weights: list[float]):
    """A draw function over items: one bisect per draw (cheap for a million draws)."""
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    return lambda: items[bisect.bisect(cum, rng.random() * total)]


def build_dataset(tables, *, lines: int, vendors: int, customers: int, seed: int) -> Dataset:
    """Exactly ``lines`` unpaid split lines (3 % refunds) created in the 60 days before ANCHOR.

    - Vendors sell with a log-normal popularity; an order has 1-4 vendors (mean 1.65), so there
      are ~590,000 payments for 1,000,000 lines. Payments are in USD (80 %), EUR (14 %) and
      JPY (6 %); the sale lines are the portal's own split (``sale_shares``, 10 % fee).
    - Refunds: random payments refunded fully (60 %) or partly, hours to weeks later; each
      refund's lines come from the portal's ``refund_targets`` (negative gross, fee and net).
    - Vendors whose unpaid total is <= 0 (no payout; their lines must stay unpaid):
      N_ZERO vendors whose two sales were both refunded in full (total exactly 0);
      N_DORMANT vendors without sales in the window whose older sales, paid by an earlier run,
      were refunded in it; N_NEGATIVE_CURRENCY selling vendors with a positive USD total whose
      EUR or JPY total is negative (an older, paid sale refunded). The earlier run, its
      payouts and those older (paid) lines are loaded too.
    """
    b = Builder(tables, seed)
    rng, data = b.rng, b.data
    password_hash = _password_hash()
    vendor_ids = [b.new_id() for _ in range(vendors)]
    customer_ids = [b.new_id() for _ in range(customers)]
    admin_id = b.new_id()
    for n, uid in enumerate(vendor_ids):
        _user(b, uid, f"vendor{n:04d}", f"Vendor {n:04d}", "vendor", password_hash)
    for n, uid in enumerate(customer_ids):
        _user(b, uid, f"customer{n:05d}", f"Customer {n:05d}", "customer", password_hash)
    _user(b, admin_id, "admin", "Bench Admin", "admin", password_hash)

    zero = vendor_ids[:N_ZERO]
    dormant = vendor_ids[N_ZERO:N_ZERO + N_DORMANT]
    active = vendor_ids[N_ZERO + N_DORMANT:]
    draw_vendor = _weighted(rng, active, [rng.lognormvariate(0, 1.2) for _ in active])
    draw_customer = _weighted(rng, customer_ids, [rng.lognormvariate(0, 1) for _ in customer_ids])
    draw_currency = _weighted(rng, list(CURRENCIES), list(CURRENCIES.values()))
    draw_width = _weighted(rng, list(VENDORS_PER_PAYMENT), list(VENDORS_PER_PAYMENT.values()))
    window_start, last = ANCHOR - WINDOW, ANCHOR - timedelta(minutes=1)

    # Count the special vendors' lines first, so the regular ones fill exactly up to ``lines``.
    dormant_sales = [(v, 1 + rng.randrange(3)) for v in dormant]
    special_sales = 2 * N_ZERO
    special_refunds = 2 * N_ZERO + sum(n for _, n in dormant_sales) + N_NEGATIVE_CURRENCY
    refund_lines = round(lines * REFUND_SHARE) - special_refunds
    sale_lines = lines - special_sales - special_refunds - refund_lines
    assert refund_lines > 0 and sale_lines > 0, "--lines is too small"

    # 1. Regular payments, one sale line per vendor, until exactly sale_lines.
    regular: list[Pay] = []
    made = 0
    while made < sale_lines:
        currency = draw_currency()
        width = min(draw_width(), sale_lines - made)
        chosen: list[str] = []
        while len(chosen) < width:
            v = draw_vendor()
            if v not in chosen:
                chosen.append(v)
        chosen.sort()  # the portal orders a payment's vendors by id
        pay = b.payment(None, currency, draw_customer(),
                        [(v, b.price(currency)) for v in chosen])
        regular.append(pay)
        made += width
    span = (last - window_start).total_seconds() - 3600
    times = sorted(rng.random() * span for _ in regular)
    for i, (pay, t) in enumerate(zip(regular, times, strict=True)):
        pay.at, pay.tier = window_start + timedelta(seconds=t), i % TIERS

    # 2. Regular refunds, hours to weeks after the payment, until exactly refund_lines.
    todo, refunded = refund_lines, set()
    while todo:
        i = rng.randrange(len(regular))
        pay = regular[i]
        at = pay.at + timedelta(hours=rng.lognormvariate(math.log(72), 1.0))
        if i in refunded or at > last or len(pay.sales) > todo:
            continue
        refunded.add(i)
        amount = pay.amount if rng.random() < 0.6 or pay.amount < 2 else \
            rng.randint(1, pay.amount - 1)
        todo -= b.refund(pay, at, amount, pay.customer, admin_id)

    # 3. Groups with a total <= 0 (tier 0: they are in every size).
    net = defaultdict(int)  # (vendor, currency) -> net of the regular lines, every tier
    for pay in regular:
        for v, g, f in pay.sales:
            net[v, pay.currency] += g - f
    for line in b.unpaid:
        net[line["vendor_id"], line["currency"]] += line["net"]
    history: list[Pay] = []

    def old_payment(vendor: str, currency: str, subtotal: int) -> Pay:
        at = ANCHOR - timedelta(days=rng.uniform(61, 120))
        pay = b.payment(at, currency, draw_customer(), [(vendor, subtotal)])
        history.append(pay)
        return pay

    def in_window(after: datetime) -> datetime:
        lo = max(after, window_start)
        return lo + timedelta(seconds=rng.random() * (last - lo).total_seconds() * 0.9)

    for v in zero:  # two sales, both refunded in full: total exactly 0
        for _ in range(2):
            at = window_start + timedelta(days=rng.uniform(0, 50))
            pay = b.payment(at, "USD", draw_customer(), [(v, b.price("USD"))])
            b.refund(pay, in_window(at), pay.amount, pay.customer, admin_id)
    for v, n in dormant_sales:  # no sales in the window, refunds of older paid sales
        for _ in range(n):
            pay = old_payment(v, "EUR" if rng.random() < 0.25 else "USD", b.price("USD"))
            amount = pay.amount if rng.random() < 0.5 else max(1, pay.amount // 2)
            b.refund(pay, in_window(pay.at), amount, pay.customer, admin_id)
    selling = [v for v in active if net[v, "USD"] > 0]
    for n in range(N_NEGATIVE_CURRENCY):  # one currency negative, USD positive
        v = selling[n * len(selling) // N_NEGATIVE_CURRENCY]
        currency = ("EUR", "JPY")[n % 2]
        # An older sale big enough that its refund outweighs the window's net in that
        # currency (a refund gives back >= 80 % of the subtotal: 10 % fee, <= 10 % discount).
        subtotal = math.ceil(net[v, currency] * 100 / 80) + b.price(currency)
        pay = old_payment(v, currency, subtotal)
        b.refund(pay, in_window(pay.at), pay.amount, pay.customer, admin_id)
        assert net[v, currency] + b.unpaid[-1]["net"] < 0, v

    # 4. The earlier run that paid the older sale lines, one payout per vendor and currency.
    run_id, until = b.new_id(), ANCHOR - WINDOW
    b.row["payout_runs"]({
        "id": run_id, "period": "weekly", "period_start": until - timedelta(days=7),
        "until": until, "created_at": until + timedelta(hours=1), "created_by_id": None,
        "approved_at": until + timedelta(hours=3), "approved_by_id": admin_id})
    by_group: dict[tuple[str, str], list[Pay]] = defaultdict(list)
    for pay in history:
        by_group[pay.sales[0][0], pay.currency].append(pay)
    for (vendor, currency), pays in sorted(by_group.items()):
        payout_id = b.new_id()
        b.row["payouts"]({
            "id": payout_id, "run_id": run_id, "vendor_id": vendor, "currency": currency,
            "amount": sum(p.sales[0][1] - p.sales[0][2] for p in pays),
            "total_sales": sum(p.sales[0][1] for p in pays),
            "platform_fee": sum(p.sales[0][2] for p in pays), "refunds": 0,
            "payment_count": len(pays), "line_count": len(pays), "status": "paid",
            "failure_reason": None, "stripe_transfer_id": f"tr_{payout_id[:24]}",
            "paid_at": until + timedelta(hours=4), "created_at": until + timedelta(hours=1),
            "updated_at": until + timedelta(hours=4)})
        for p in pays:
            p.paid_by = payout_id

    # 5. Orders, payments and the sale lines.
    for pay in b.pays:
        order_id, done = b.new_id(), pay.at + timedelta(seconds=3)
        b.row["orders"]({
            "id": order_id, "customer_id": pay.customer, "currency": pay.currency,
            "subtotal": pay.subtotal, "tax": pay.tax, "shipping": pay.shipping,
            "discount": pay.discount, "total": pay.amount, "status": "paid", "paid_at": done,
            "created_at": pay.at - timedelta(seconds=40), "updated_at": done})
        fee = sum(f for _, _, f in pay.sales)
        bits = rng.getrandbits(32)
        b.row["payments"]({
            "id": pay.id, "user_id": pay.customer, "order_id": order_id,
            "stripe_payment_intent_id": f"pi_{pay.id[:24]}",
            "stripe_customer_id": f"cus_{pay.customer[:14]}", "amount": pay.amount,
            "currency": pay.currency, "status": "succeeded",
            "payment_method_id": f"pm_{pay.id[8:32]}", "payment_method_type": "card",
            "card_brand": ("visa", "mastercard", "amex")[bits % 3],
            "card_last4": f"{bits % 10000:04d}", "card_exp_month": 1 + bits % 12,
            "card_exp_year": 2027 + bits % 6, "card_funding": "credit", "card_country": "US",
            "billing_details": None, "subtotal": pay.subtotal, "tax": pay.tax,
            "shipping": pay.shipping, "discount": pay.discount, "platform_fee": fee,
            "vendor_amount": pay.amount - fee,
            "receipt_url": f"https://pay.stripe.com/receipts/{pay.id}",
            "receipt_number": f"R-{pay.at:%Y%m%d}-{pay.id[:12].upper()}",
            "failure_code": None, "failure_message": None, "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (bench)", "source": "web",
            "succeeded_at": done, "amount_refunded": pay.refunded,
            "created_at": pay.at, "updated_at": done})
        for vendor, gross, fee in pay.sales:
            line = {"id": b.new_id(), "payment_id": pay.id, "vendor_id": vendor,
                    "kind": "sale", "refund_request_id": None, "currency": pay.currency,
                    "gross": gross, "fee": fee, "net": gross - fee, "created_at": done,
                    "payout_id": pay.paid_by, "tier": pay.tier}
            (b.paid if pay.paid_by else b.unpaid).append(line)

    # Lines in creation order, as a live table fills.
    for line in sorted(b.paid + b.unpaid, key=itemgetter("created_at")):
        data.lines.add(line)
    assert len(b.unpaid) == lines, (len(b.unpaid), lines)
    data.facts = {
        "users": len(data.tables["users"].rows),
        "payments": len(b.pays), "window payments": len(b.pays) - len(history),
        "refunds": len(data.tables["refund_requests"].rows),
        "refund lines": sum(1 for x in b.unpaid if x["kind"] == "refund"),
        "paid history lines": len(b.paid), "customers": customers, "vendors": vendors}
    return data


def _password_hash() -> str:
    from werkzeug.security import generate_password_hash

    return generate_password_hash(PASSWORD)  # one hash for everyone: hashing is slow


def _user(b: Builder, uid, handle, name, role, password_hash) -> None:
    b.row["users"]({
        "id": uid, "email": f"{handle}@bench.shopsphere.test", "name": name, "role": role,
        "password_hash": password_hash, "session_token": f"{b.rng.getrandbits(128):032x}",
        "created_at": ANCHOR - timedelta(days=400)})


def load(url: str, tables, data: Dataset) -> dict[str, float]:
    """COPY everything in (FK triggers off, then one anti-join per foreign key); the split
    lines go to the unlogged staging table ``bench_lines`` (the split_lines columns we fill,
    and the tier)."""
    took = {}
    lines = data.lines
    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE UNLOGGED TABLE bench_lines AS SELECT {', '.join(lines.columns)} "
                     "FROM split_lines WITH NO DATA")
        conn.execute("ALTER TABLE bench_lines ADD COLUMN tier smallint NOT NULL")
        conn.execute("SET session_replication_role = replica")
        for name, rows in data.tables.items():
            t0 = time.perf_counter()
            copy_rows(conn, tables[name], rows.rows, rows.columns)
            took[name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        copy_rows(conn, "bench_lines", lines.rows, [*lines.columns, *lines.extra])
        took["bench_lines"] = time.perf_counter() - t0
        conn.execute("SET session_replication_role = DEFAULT")
        t0 = time.perf_counter()
        check_foreign_keys(conn, tables, ("orders", "payments", "refund_requests",
                                          "payout_runs", "payouts"))
        took["foreign-key check"] = time.perf_counter() - t0
        conn.commit()
    return took


def fill_lines(url: str, tables, tiers: int) -> tuple[int, dict[str, float]]:
    """split_lines afresh: the lines of tiers < ``tiers`` in creation order, each unpaid one
    in its vendor's open payout, no payout of ours left (the earlier run's stay), FKs checked,
    VACUUM (ANALYZE) and CHECKPOINT (so the run starts as after a checkpoint on a table
    autovacuum keeps: each page it first touches costs a full-page image in the WAL).
    Returns the number of unpaid lines."""
    took = {}
    with psycopg.connect(url) as conn:
        cur = conn.execute("SELECT * FROM bench_lines LIMIT 0")
        cols = ", ".join(d.name for d in cur.description if d.name != "tier")
        t0 = time.perf_counter()
        conn.execute("TRUNCATE split_lines")
        conn.execute("DELETE FROM payouts WHERE id NOT IN "
                     "(SELECT payout_id FROM bench_lines WHERE payout_id IS NOT NULL)")
        conn.execute("DELETE FROM payout_runs r WHERE NOT EXISTS "
                     "(SELECT 1 FROM payouts p WHERE p.run_id = r.id)")
        conn.execute("DELETE FROM audit_log WHERE action = 'payout.run'")
        # The portal writes each line into its vendor's open payout in its currency (one
        # per vendor and currency, opened by the group's first line): unpaid lines are those.
        conn.execute("""
            INSERT INTO payouts (id, vendor_id, currency, status, amount, total_sales,
                                 platform_fee, refunds, payment_count, line_count,
                                 transfer_attempt, created_at, updated_at)
            SELECT gen_random_uuid(), vendor_id, currency, 'open', 0, 0, 0, 0, 0, 0, 0,
                   min(created_at), min(created_at)
            FROM bench_lines WHERE payout_id IS NULL AND tier < %s
            GROUP BY vendor_id, currency""", (tiers,))
        picked = ", ".join("coalesce(b.payout_id, o.id)" if c == "payout_id" else f"b.{c}"
                           for c in cols.split(", "))
        conn.execute("SET session_replication_role = replica")
        # A sale's funds become available two days after it (Stripe's US schedule); those of
        # the last two days before ANCHOR are still pending when the run comes (a day on).
        available = (f"CASE WHEN b.kind <> 'sale' THEN NULL WHEN b.created_at >= "
                     f"'{ANCHOR - PENDING:%Y-%m-%d %H:%M:%S+00}' THEN now() + interval '1 day' "
                     "ELSE b.created_at + interval '2 days' END")
        conn.execute(f"INSERT INTO split_lines ({cols}, available_at) "
                     f"SELECT {picked}, {available} FROM bench_lines b "
                     "LEFT JOIN payouts o ON o.status = 'open' AND o.vendor_id = b.vendor_id "
                     "AND o.currency = b.currency AND b.payout_id IS NULL "
                     "WHERE b.tier < %s ORDER BY b.created_at", (tiers,))
        conn.execute("SET session_replication_role = DEFAULT")
        took["insert"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        check_foreign_keys(conn, tables, ("split_lines",))
        took["fk check"] = time.perf_counter() - t0
        unpaid = conn.execute("SELECT count(*) FROM split_lines l JOIN payouts p "
                              "ON p.id = l.payout_id WHERE p.status = 'open'").fetchone()[0]
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
        took["vacuum analyze + checkpoint"] = time.perf_counter() - t0
    return unpaid, took


# --------------------------------------------------------------------------------------------
# The measured run (in a fresh process)


def _vm_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1))


class SqlLog:
    """Every statement the run sends (with its parameters, for the replay under EXPLAIN) and
    its time: cursor.execute through SQLAlchemy's events, COMMIT/ROLLBACK through psycopg."""

    def __init__(self, engine):
        from sqlalchemy import event

        self.statements: list[dict] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        for name in ("commit", "rollback"):
            setattr(psycopg.Connection, name, self._timed(name, getattr(psycopg.Connection,
                                                                        name)))

    def _timed(self, name, method):
        def wrapper(conn, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(conn, *args, **kwargs)
            finally:
                self.statements.append({"sql": name.upper(), "params": None,
                                        "many": False, "rows": None,
                                        "ms": (time.perf_counter() - t0) * 1000})
        return wrapper

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append({
            "sql": statement, "params": parameters, "many": executemany,
            "rows": cursor.rowcount, "ms": (time.perf_counter() - conn.info.pop("bench_t0"))
            * 1000})


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a local PostgreSQL backend; None when it cannot be read
    (a remote server, or a pid that is not a postgres process here)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != "postgres":
                return None
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured_run(db_url: str, until: datetime, out) -> None:
    """One ``run_payouts()`` in this (fresh) process: wall time, tracemalloc peak, growth of
    the RSS high-water mark, the SQL, and the CPU time of this process and of its PostgreSQL
    backend (on a shared machine, wall time alone mixes in waiting for a CPU). Sent back
    through the pipe ``out``."""
    import sqlalchemy as sa

    from portal import create_app
    from portal.config import Config
    from portal.database import unit_of_work
    from portal.extensions import db
    from portal.payouts.services import run_payouts

    app = create_app(Config.from_env(app_env(db_url)))
    with app.app_context():
        assert not app.extensions["portal_config"].PAYOUT_AUTO_EXECUTE
        # Connect (the pool keeps the connection for the run) and find the server process.
        backend = db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        db.session.rollback()
        log = SqlLog(db.engine)
        gc.collect()
        rss0 = _vm_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS, so VmHWM after the run is the run's own peak
        maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        cpu0, server0 = _own_cpu_s(), _cpu_s(backend)
        t0 = time.perf_counter()
        with unit_of_work():  # as `flask payouts run` commits it
            run = run_payouts(period="weekly", until=until)
        wall = time.perf_counter() - t0
        cpu1, server1 = _own_cpu_s(), _cpu_s(backend)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        hwm = _vm_kb("VmHWM")
        maxrss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        statements = list(log.statements)
        run_id = run.id if run else None
        same = db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar() == backend
        db.session.rollback()
    out.send({"wall_s": wall, "tracemalloc_peak": peak, "rss_before_kb": rss0,
              "hwm_delta_kb": hwm - rss0, "maxrss_delta_kb": maxrss1 - maxrss0,
              "python_cpu_s": cpu1 - cpu0,
              "server_cpu_s": server1 - server0 if same and None not in (server0, server1)
              else None,
              "run_id": run_id, "statements": statements})
    out.close()


def run_in_fresh_process(db_url: str, until: datetime) -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=measured_run, args=(db_url, until, child))
    proc.start()
    child.close()
    result = parent.recv()
    proc.join()
    assert proc.exitcode == 0, f"measured run exited with {proc.exitcode}"
    return result


def label(st: dict) -> str:
    """A short name for a statement of run_payouts."""
    s = " ".join(st["sql"].split())
    if s.startswith("SELECT payouts.id") and "FOR UPDATE" in s:
        return "lock: SELECT the open payouts FOR UPDATE"
    if s.startswith("UPDATE payouts"):
        return "close: UPDATE payouts ... FROM (aggregate of the lines, HAVING sum(net) > 0)"
    if s.startswith("SELECT DISTINCT split_lines.currency"):
        return "late: SELECT the vendors with lines created at or after until"
    if s.startswith("UPDATE split_lines"):
        return "late: UPDATE split_lines SET payout_id = the new open payout"
    if s.startswith("INSERT INTO payouts"):
        n = len(st["params"]) if st["many"] else st["rows"]
        return f"INSERT INTO payouts ({n} rows{', executemany' if st['many'] else ''})"
    if s.startswith("DELETE FROM payouts"):
        return "DELETE FROM payouts (empty ones)"
    m = re.match(r"(SELECT count\(\*\)|INSERT INTO \w+|COMMIT|ROLLBACK)", s)
    return m.group(1) if m else s[:60]


# --------------------------------------------------------------------------------------------
# Checks and plans


def check_run(conn: psycopg.Connection, run_id) -> list[str]:
    """The 1,000,000-line run's result, checked against the lines (problems; empty when fine).
    The run's universe is every line that was unpaid: in an open payout (still unpaid: its
    payout_id counts as NULL here) or in one of the run's payouts."""
    problems = []
    at = conn.execute("SELECT created_at FROM payout_runs WHERE id = %s", (run_id,)).fetchone()[0]
    pending, paid_early = conn.execute("""
        SELECT count(*), count(*) FILTER (WHERE p.status <> 'open')
        FROM split_lines l JOIN payouts p ON p.id = l.payout_id
        WHERE l.available_at > %s""", (at,)).fetchone()
    print(f"   sale lines whose funds were pending at the run: {pending:,} (left open: "
          f"{pending - paid_early:,})")
    if not pending or paid_early:
        problems.append(f"{paid_early} of {pending} lines with pending funds were paid")
    # The run's universe: every line that was payable, in an open payout or in one of the run's.
    g = conn.execute("""
        WITH u AS (
            SELECT l.vendor_id, l.currency, l.net,
                   CASE WHEN p.status = 'open' THEN NULL ELSE l.payout_id END AS payout_id,
                   p.vendor_id AS p_vendor, p.currency AS p_currency
            FROM split_lines l JOIN payouts p ON p.id = l.payout_id
            WHERE (p.status = 'open' OR p.run_id = %(run)s)
              AND NOT coalesce(l.available_at > %(at)s, false)),
        g AS (
            SELECT vendor_id, currency, sum(net) AS total, count(*) AS lines,
                   count(*) FILTER (WHERE payout_id IS NULL) AS unassigned,
                   count(DISTINCT payout_id) AS payouts,
                   bool_and(payout_id IS NULL
                            OR (p_vendor = vendor_id AND p_currency = currency)) AS same_group
            FROM u GROUP BY vendor_id, currency)
        SELECT count(*) FILTER (WHERE total > 0),
               count(*) FILTER (WHERE total > 0 AND (unassigned > 0 OR payouts <> 1
                                                     OR NOT same_group)),
               coalesce(sum(lines) FILTER (WHERE total > 0), 0),
               count(*) FILTER (WHERE total <= 0),
               count(*) FILTER (WHERE total <= 0 AND unassigned <> lines),
               coalesce(sum(lines) FILTER (WHERE total <= 0), 0),
               count(DISTINCT vendor_id) FILTER (WHERE total <= 0)
        FROM g""", {"run": run_id, "at": at}).fetchone()
    positive, bad_positive, positive_lines, nonpositive, bad_nonpositive, nonpositive_lines, \
        nonpositive_vendors = g
    print(f"   (vendor, currency) groups with a positive total: {positive:,} "
          f"({positive_lines:,} lines); with a total <= 0: {nonpositive} ({nonpositive_lines} "
          f"lines, {nonpositive_vendors} vendors)")
    if bad_positive:
        problems.append(f"{bad_positive} positive groups not wholly in exactly one payout of "
                        "their own vendor and currency")
    if bad_nonpositive:
        problems.append(f"{bad_nonpositive} groups with a total <= 0 have assigned lines")
    if nonpositive < N_ZERO + N_DORMANT + N_NEGATIVE_CURRENCY:
        problems.append(f"only {nonpositive} groups with a total <= 0 (the data has more)")
    payouts, mismatched, nonpositive_payouts, amount = conn.execute("""
        WITH s AS MATERIALIZED (
            SELECT payout_id AS pid, sum(net) AS net,
                   coalesce(sum(gross) FILTER (WHERE kind = 'sale'), 0) AS sales,
                   sum(fee) AS fee,
                   coalesce(sum(gross) FILTER (WHERE kind = 'refund'), 0) AS refunds,
                   count(DISTINCT payment_id) AS payments, count(*) AS lines
            FROM split_lines GROUP BY payout_id)
        SELECT count(*),
               count(*) FILTER (WHERE s.pid IS NULL OR p.amount <> s.net
                   OR p.total_sales <> s.sales OR p.platform_fee <> s.fee
                   OR p.refunds <> s.refunds OR p.payment_count <> s.payments
                   OR p.line_count <> s.lines OR p.status <> 'pending'),
               count(*) FILTER (WHERE p.amount <= 0),
               sum(p.amount)
        FROM payouts p LEFT JOIN s ON s.pid = p.id
        WHERE p.run_id = %(run)s""", {"run": run_id}).fetchone()
    print(f"   payouts of the run: {payouts:,}; amounts, sales, fees, refunds, payment and line "
          f"counts that differ from their lines: {mismatched}")
    if payouts != positive:
        problems.append(f"{payouts} payouts for {positive} positive groups")
    if mismatched or nonpositive_payouts:
        problems.append(f"{mismatched} payouts differ from the sums of their lines, "
                        f"{nonpositive_payouts} have an amount <= 0")
    return problems


def explain_replay(url: str, statements: list[dict]) -> list[tuple[str, float, str]]:
    """The run's own SQL, replayed in order in one transaction with every statement under
    EXPLAIN (ANALYZE, BUFFERS, WAL) (the executemany INSERT runs as it is), rolled back."""
    plans = []
    with psycopg.connect(url) as conn:
        conn.execute("SET track_io_timing = on")
        for st in statements:
            if st["sql"] in ("COMMIT", "ROLLBACK"):
                continue
            if st["many"]:
                with conn.cursor() as cur:
                    cur.executemany(st["sql"], st["params"])
                continue
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, WAL) " + st["sql"],
                                st["params"]).fetchall()
            text = "\n".join(r[0] for r in rows)
            ms = float(re.search(r"Execution Time: ([\d.]+) ms", text).group(1))
            plans.append((label(st), ms, text))
        conn.rollback()
    return plans


# --------------------------------------------------------------------------------------------


def _fmt_s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f} s"


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M).group(1)
    except (OSError, AttributeError):
        cpu = platform.processor() or "?"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}, SQLAlchemy "
            f"{version('sqlalchemy')}, psycopg {version('psycopg')}, Flask {version('flask')}")


def wal_lsn(url: str) -> tuple[int, int]:
    """(WAL position in bytes, checkpoints so far)."""
    with psycopg.connect(url, autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]
        cps = conn.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
                           ).fetchone()[0]
    return int(lsn), cps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg", default=os.environ.get("BENCH_PG_URL",
                                                   "postgresql://postgres@127.0.0.1:5432"),
                    help="server URL without database (env BENCH_PG_URL)")
    ap.add_argument("--db", default="portal_bench_payouts", help="database to (re)create")
    ap.add_argument("--keep", action="store_true", help="keep the database at the end")
    ap.add_argument("--reuse", action="store_true",
                    help="skip drop/create/generate/load: reuse a database kept with --keep")
    ap.add_argument("--lines", type=int, default=1_000_000, help="unpaid split lines (largest "
                    "size; the others are about 1/4 and 1/2 of it)")
    ap.add_argument("--vendors", type=int, default=1000)
    ap.add_argument("--customers", type=int, default=25_000)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--target-s", type=float, default=10.0,
                    help="the largest run must take less than this")
    ap.add_argument("--no-explain", action="store_true",
                    help="skip the EXPLAIN replay (saves a refill of split_lines)")
    args = ap.parse_args(argv)

    from flask_migrate import upgrade

    from portal import create_app
    from portal.config import Config
    from portal.extensions import db

    started = time.perf_counter()
    url = plain_url(args.pg, args.db)
    assert datetime.now(UTC) > ANCHOR, "the clock is before ANCHOR: run_payouts would clamp"
    app = create_app(Config.from_env(app_env(url)))
    tables = db.metadata.tables
    failures: list[str] = []
    print(f"== machine: {machine()}")
    try:
        if not args.reuse:
            print(f"== database {args.db}: drop, create, alembic upgrade")
            recreate_database(args.pg, args.db)
            with app.app_context():
                upgrade()
                db.engine.dispose()
            t0 = time.perf_counter()
            gc.disable()  # millions of new objects: the cyclic GC would only slow this down
            data = build_dataset(tables, lines=args.lines, vendors=args.vendors,
                                 customers=args.customers, seed=args.seed)
            t1 = time.perf_counter()
            took = load(url, tables, data)
            facts = data.facts
            print(f"   generated in {t1 - t0:.1f} s: {facts['users']:,} users "
                  f"({facts['vendors']:,} vendors), {facts['payments']:,} payments and orders "
                  f"({facts['window payments']:,} in the window), {facts['refunds']:,} refunds, "
                  f"{args.lines:,} unpaid lines ({facts['refund lines']:,} refund lines), "
                  f"{facts['paid history lines']} lines paid by an earlier run")
            print("   COPY: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
            del data
            gc.enable()
            gc.collect()
        with psycopg.connect(url, autocommit=True) as conn:
            settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in (
                "server_version", "shared_buffers", "work_mem", "max_wal_size",
                "synchronous_commit", "full_page_writes", "max_parallel_workers_per_gather")}
            mix = conn.execute(
                "SELECT tier, count(*), count(*) FILTER (WHERE kind = 'refund'), "
                "count(DISTINCT payment_id) FROM bench_lines WHERE payout_id IS NULL "
                "GROUP BY tier ORDER BY tier").fetchall()
            currencies = conn.execute(
                "SELECT currency, count(*) FROM bench_lines WHERE payout_id IS NULL "
                "GROUP BY 1 ORDER BY 2 DESC").fetchall()
        print("   PostgreSQL " + ", ".join(f"{k} {v}" for k, v in settings.items()))
        total = sum(n for _, n, _, _ in mix)
        print(f"   unpaid lines: {total:,} in {len(mix)} tiers; refunds "
              f"{sum(r for _, _, r, _ in mix) / total:.1%}; "
              + ", ".join(f"{c} {n / total:.1%}" for c, n in currencies))

        results = []
        for k in SIZES:
            lines, took = fill_lines(url, tables, k)
            with psycopg.connect(url, autocommit=True) as conn:
                size = conn.execute(
                    "SELECT pg_size_pretty(pg_table_size('split_lines')), "
                    "pg_size_pretty(pg_indexes_size('split_lines'))").fetchone()
            print(f"\n== {lines:,} unpaid lines (tiers < {k}): split_lines {size[0]} + indexes "
                  f"{size[1]}; " + ", ".join(f"{n} {s:.1f} s" for n, s in took.items()))
            load0 = os.getloadavg()[0]
            wal0, cp0 = wal_lsn(url)
            r = run_in_fresh_process(url, ANCHOR)
            wal1, cp1 = wal_lsn(url)
            load1 = os.getloadavg()[0]
            r.update(lines=lines, load=(load0, load1), wal=wal1 - wal0, checkpoints=cp1 - cp0)
            with psycopg.connect(url, autocommit=True) as conn:
                r["payouts"] = conn.execute("SELECT count(*) FROM payouts WHERE run_id = %s",
                                            (r["run_id"],)).fetchone()[0]
            sql_ms = sum(st["ms"] for st in r["statements"])
            print(f"   run_payouts: {r['wall_s']:.2f} s ({sql_ms / 1000:.2f} s in SQL; CPU: "
                  f"PostgreSQL backend {_fmt_s(r['server_cpu_s'])}, Python "
                  f"{r['python_cpu_s']:.2f} s), {r['payouts']:,} payouts; tracemalloc peak "
                  f"{r['tracemalloc_peak'] / 2**20:.2f} MiB; RSS high-water +"
                  f"{r['hwm_delta_kb'] / 1024:.1f} MiB (ru_maxrss +"
                  f"{r['maxrss_delta_kb'] / 1024:.1f} MiB; RSS before "
                  f"{r['rss_before_kb'] / 1024:.0f} MiB); WAL {r['wal'] / 2**20:.0f} MiB, "
                  f"{r['checkpoints']} checkpoint(s) during the run; load average "
                  f"{load0:.2f} -> {load1:.2f}")
            for st in r["statements"]:
                print(f"   {st['ms']:10.1f} ms  {label(st)}")
            results.append(r)

        big = results[-1]
        print(f"\n== checks after the {big['lines']:,}-line run")
        with psycopg.connect(url, autocommit=True) as conn:
            problems = check_run(conn, big["run_id"])
            runs_before = conn.execute("SELECT count(*) FROM payout_runs").fetchone()[0]
        again = run_in_fresh_process(url, ANCHOR)
        with psycopg.connect(url, autocommit=True) as conn:
            runs_after = conn.execute("SELECT count(*) FROM payout_runs").fetchone()[0]
        print(f"   second run: returned {again['run_id']}, payout_runs {runs_before} -> "
              f"{runs_after}, {again['wall_s']:.2f} s")
        if again["run_id"] is not None or runs_after != runs_before:
            problems.append("a second run created a run")
        failures += problems
        print("   " + ("OK" if not problems else "FAIL: " + "; ".join(problems)))

        if not args.no_explain:
            lines, _ = fill_lines(url, tables, SIZES[-1])
            print(f"\n== EXPLAIN (ANALYZE, BUFFERS, WAL) of the {lines:,}-line run's SQL, "
                  "replayed in one transaction on a fresh split_lines, rolled back")
            for name, ms, text in explain_replay(url, big["statements"]):
                if ms < 100:
                    print(f"\n-- {name}: {ms:.1f} ms")
                    continue
                print(f"\n-- {name}: {ms:.1f} ms")
                print("\n".join("   " + line for line in text.splitlines()))

        print("\n== summary (each run in a fresh process, after VACUUM (ANALYZE) and CHECKPOINT)")
        print("| unpaid lines | run_payouts | SQL | close UPDATE | backend CPU | "
              "tracemalloc peak | RSS high-water delta | payouts | WAL | load average |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in results:
            sql_ms = sum(st["ms"] for st in r["statements"])
            close_ms = sum(st["ms"] for st in r["statements"]
                           if label(st).startswith("close"))
            print(f"| {r['lines']:,} | {r['wall_s']:.2f} s | {sql_ms / 1000:.2f} s | "
                  f"{close_ms / 1000:.2f} s | {_fmt_s(r['server_cpu_s'])} | "
                  f"{r['tracemalloc_peak'] / 2**20:.2f} MiB | {r['hwm_delta_kb'] / 1024:.1f} MiB "
                  f"| {r['payouts']:,} | {r['wal'] / 2**20:.0f} MiB | "
                  f"{r['load'][0]:.2f} -> {r['load'][1]:.2f} |")
        small = results[0]
        tm_small, tm_big = small["tracemalloc_peak"] / 2**20, big["tracemalloc_peak"] / 2**20
        rss_small, rss_big = small["hwm_delta_kb"] / 1024, big["hwm_delta_kb"] / 1024
        rule = (f"memory rule: tracemalloc peak at {big['lines']:,} lines <= {GROWTH} x the "
                f"{small['lines']:,}-line one ({GROWTH * tm_small:.2f} MiB) and <= "
                f"{MAX_TRACEMALLOC_MB:g} MiB; RSS high-water delta <= {GROWTH} x the "
                f"{small['lines']:,}-line one + {RSS_SLACK_MB:g} MiB "
                f"({GROWTH * rss_small + RSS_SLACK_MB:.1f} MiB)")
        print("   " + rule)
        if not (tm_big <= GROWTH * tm_small and tm_big <= MAX_TRACEMALLOC_MB):
            failures.append(f"tracemalloc peak {tm_big:.2f} MiB breaks the rule")
        if rss_big > GROWTH * rss_small + RSS_SLACK_MB:
            failures.append(f"RSS high-water delta {rss_big:.1f} MiB breaks the rule")
        if big["wall_s"] >= args.target_s:
            failures.append(f"{big['lines']:,}-line run took {big['wall_s']:.2f} s >= "
                            f"{args.target_s:g} s")
        cpus = os.cpu_count() or 1
        if max(big["load"]) > cpus:
            print(f"   load average above {cpus} CPUs: the times include waiting for a CPU")
    finally:
        if args.keep:
            print(f"\n(database {args.db} kept)")
        else:
            drop_database(args.pg, args.db)

    print(f"\n== total run time {time.perf_counter() - started:.0f} s")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"PASSED: {big['lines']:,} lines paid out in {big['wall_s']:.2f} s < "
          f"{args.target_s:g} s; memory does not grow with the line count; checks OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
