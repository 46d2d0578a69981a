"""Daily rollups of the ledger: what the back office's figures read instead of the payments.

Five tables (ledger.models): DailySales, per day, currency and vendor, from the split lines
(sales, their fees, what refunds gave back); DailyPayments, per day and currency, the payments
that succeeded; DailyAttempts, per day, currency, outcome and decline code, each payment where
it stands (succeeded, or failed and why); CustomerDays, who paid on which day; FirstPayments,
each customer's first paid day. A day is the UTC date of the row's own time: a split line's
``created_at``, a payment's ``succeeded_at`` (``created_at`` for DailyAttempts).

**Maintained** in the transaction that writes the source rows: ``count_sale``,
``count_lines`` and ``count_outcome`` add their deltas with INSERT ... ON CONFLICT statements
built once (rows in key order, vendors as ``splits.open_payouts`` locks payouts, so two
writers cannot deadlock). A rollback takes the deltas back with the rows.

**Rebuilt** by ``rebuild`` (``flask --app wsgi analytics rebuild``, and nightly for yesterday
and today): the days from ``since`` are deleted and summed again from the source rows, in one
transaction. On PostgreSQL it first locks the tables against writers (SHARE ROW EXCLUSIVE),
so a payment settling meanwhile waits for the rebuild instead of adding its delta to a row the
rebuild then replaces; SQLite has one writer at a time anyway.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..database import dialect
from ..extensions import db
from .models import (
    CustomerDays,
    DailyAttempts,
    DailyPayments,
    DailySales,
    FirstPayments,
    Payment,
    SplitLine,
)

SALES = DailySales.__table__
PAYMENTS = DailyPayments.__table__
ATTEMPTS = DailyAttempts.__table__
CUSTOMER_DAYS, FIRST = CustomerDays.__table__, FirstPayments.__table__
OUTCOMES = ("succeeded", "failed")
_SALES_SUMS = ("sales", "gross", "fees", "refunded", "fees_returned")


# The statements are built once per table and dialect: building an INSERT ... ON CONFLICT
# anew cost more than sending it (bench/analytics.py: about 0.15 ms per `excluded` column).
@functools.cache
def _adding(table_name: str, dialect_name: str):
    """INSERT a row, or add its values to the row already there for its primary key."""
    table = db.metadata.tables[table_name]
    insert = (postgresql.insert if dialect_name == "postgresql" else sqlite.insert)(table)
    keys = [c.name for c in table.primary_key.columns]
    return insert.on_conflict_do_update(
        index_elements=keys,
        set_={c.name: c + insert.excluded[c.name] for c in table.c if c.name not in keys})


@functools.cache
def _paying(dialect_name: str) -> tuple:
    """That a customer paid on a day (once), and their first day (the earlier one stays:
    a late webhook may settle an older payment after a newer one)."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    first = insert(FIRST)
    return (insert(CUSTOMER_DAYS).on_conflict_do_nothing(),
            first.on_conflict_do_update(
                index_elements=["user_id", "currency"],
                set_={"day": sa.case((first.excluded.day < FIRST.c.day, first.excluded.day),
                                     else_=FIRST.c.day)}))


def _add(table: sa.Table, rows: list[dict]) -> None:
    db.session.execute(_adding(table.name, dialect()), rows)


def count_sale(payment: Payment) -> None:
    """``payment`` succeeded (once: the caller holds its row and it is final): its day's
    count and volume, that its customer paid that day, and maybe for the first time."""
    day = payment.succeeded_at.astimezone(UTC).date()
    _add(PAYMENTS, [{"day": day, "currency": payment.currency, "succeeded": 1,
                     "volume": payment.amount}])
    paid = {"currency": payment.currency, "day": day, "user_id": payment.user_id}
    for statement in _paying(dialect()):
        db.session.execute(statement, paid)


def outcome(status: str | None, code: str | None) -> tuple[str, str] | None:
    """The attempt key of a payment in ``status`` (None: not an outcome yet)."""
    if status not in OUTCOMES:
        return None
    return status, (code or "")[:64] if status == "failed" else ""


def count_outcome(payment: Payment, was: tuple[str, str] | None) -> None:
    """``payment``'s outcome moved from ``was`` (``outcome`` of its former status and code)
    to what it is now: one payment, counted where it stands."""
    now = outcome(payment.status, payment.failure_code)
    if now == was:
        return
    rows = [(key, n) for key, n in ((was, -1), (now, 1)) if key is not None]
    _add(ATTEMPTS, [
        {"day": payment.created_at.astimezone(UTC).date(), "currency": payment.currency,
         "outcome": key[0], "code": key[1], "payments": n} for key, n in sorted(rows)])


def count_lines(at: datetime, currency: str,
                lines: list[tuple[uuid.UUID, str, int, int]]) -> None:
    """Split lines written at ``at``: (vendor id, kind, gross, fee) each. Sales add to the
    vendor's sales, gross and fees; refund lines (negative, or positive when a refund failed
    after it succeeded) to what was given back. Reversal lines move money between a vendor's
    transfers, not sales: they count nowhere here."""
    totals: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_SALES_SUMS, 0))
    for vendor_id, kind, gross, fee in lines:
        t = totals[vendor_id]
        if kind == "sale":
            t["sales"] += 1
            t["gross"] += gross
            t["fees"] += fee
        elif kind == "refund":
            t["refunded"] -= gross
            t["fees_returned"] -= fee
    if totals:
        _add(SALES, [
            {"day": at.date(), "currency": currency, "vendor_id": vendor_id, **t}
            for vendor_id, t in sorted(totals.items(), key=lambda item: str(item[0]))])


def utc_day(column) -> sa.ColumnElement[date]:
    """The UTC date of a timestamp column, in SQL."""
    if dialect() == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)
    return sa.func.date(column)  # SQLite keeps UTC times as text


def rebuild(since: date | None = None) -> tuple[int, int, int]:
    """Sum the rollups again from the source rows, for the days from ``since`` (every day
    when None); the caller commits. Returns the rows written (daily_sales, daily_payments,
    daily_attempts)."""
    if dialect() == "postgresql":
        db.session.execute(sa.text("LOCK TABLE daily_sales, daily_payments, daily_attempts, "
                                   "customer_days, first_payments IN SHARE ROW EXCLUSIVE MODE"))
    cutoff = datetime.combine(since, datetime.min.time()).replace(tzinfo=UTC) if since else None
    for table in (SALES, PAYMENTS, ATTEMPTS, CUSTOMER_DAYS, FIRST):
        db.session.execute(sa.delete(table).where(table.c.day >= since) if since
                           else sa.delete(table))
    lines = SplitLine.__table__.c
    day = utc_day(lines.created_at)
    sale, refund = lines.kind == "sale", lines.kind == "refund"

    def total(value, when):
        return sa.func.coalesce(sa.func.sum(sa.case((when, value), else_=0)), 0)

    sales = (sa.select(day, lines.currency, lines.vendor_id,
                       total(1, sale), total(lines.gross, sale), total(lines.fee, sale),
                       total(-lines.gross, refund), total(-lines.fee, refund))
             .where(lines.kind.in_(("sale", "refund")))
             .group_by(day, lines.currency, lines.vendor_id))
    paid = Payment.__table__.c
    paid_day = utc_day(paid.succeeded_at)
    payments = (sa.select(paid_day, paid.currency, sa.func.count(), sa.func.sum(paid.amount))
                .where(paid.status == "succeeded", paid.succeeded_at.is_not(None))
                .group_by(paid_day, paid.currency))
    made_day = utc_day(paid.created_at)
    code = sa.case((paid.status == "failed",
                    sa.func.coalesce(sa.func.substr(paid.failure_code, 1, 64), "")), else_="")
    attempts = (sa.select(made_day, paid.currency, paid.status, code, sa.func.count())
                .where(paid.status.in_(OUTCOMES))
                .group_by(made_day, paid.currency, paid.status, code))
    customer_days = (sa.select(paid.currency, paid_day, paid.user_id)
                     .where(paid.status == "succeeded", paid.succeeded_at.is_not(None))
                     .distinct())
    first_day = sa.func.min(paid_day)
    firsts = (sa.select(paid.user_id, paid.currency, first_day)
              .where(paid.status == "succeeded", paid.succeeded_at.is_not(None))
              .group_by(paid.user_id, paid.currency))
    if cutoff is not None:
        sales = sales.where(lines.created_at >= cutoff)
        payments = payments.where(paid.succeeded_at >= cutoff)
        attempts = attempts.where(paid.created_at >= cutoff)
        customer_days = customer_days.where(paid.succeeded_at >= cutoff)
        # Firsts from the cutoff: customers whose first payment is not before it.
        firsts = firsts.having(first_day >= since)
    written = []
    for table, select in ((SALES, sales), (PAYMENTS, payments), (ATTEMPTS, attempts),
                          (CUSTOMER_DAYS, customer_days), (FIRST, firsts)):
        columns = [c.name for c in table.c]
        written.append(db.session.execute(
            sa.insert(table).from_select(columns, select)
            .execution_options(preserve_rowcount=True)).rowcount)
    return written[0], written[1], written[2]  # the customers' tables are not counted
