"""The back office's figures for a period and one currency, read from the daily rollups
(portal/ledger/rollups.py) and the payouts, never from the payments: amounts of different
currencies are never added.

A period is a range of whole UTC days, ``start`` included, ``end`` excluded. Each figure
comes with the same figure for the period of the same length just before (``previous``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from ..auth.models import User
from ..days import RANGE, parse_day
from ..extensions import db
from ..ledger.models import (
    CustomerDays,
    DailyAttempts,
    DailyPayments,
    DailySales,
    FirstPayments,
    Payout,
)
from ..models_base import utcnow
from ..money import SUPPORTED
from ..refunds.models import RefundRequest

# Stripe's decline codes, grouped as a support person reads them (others show their code).
DECLINES = {
    "insufficient_funds": "Insufficient funds",
    "card_declined": "Declined by the bank", "generic_decline": "Declined by the bank",
    "do_not_honor": "Declined by the bank",
    "expired_card": "Card expired", "incorrect_cvc": "Wrong CVC",
    "incorrect_number": "Wrong card number", "invalid_expiry_year": "Wrong expiry",
    "lost_card": "Lost or stolen card", "stolen_card": "Lost or stolen card",
    "fraudulent": "Suspected fraud", "pickup_card": "Suspected fraud",
    "authentication_required": "3-D Secure not completed",
    "payment_intent_authentication_failure": "3-D Secure not completed",
    "processing_error": "Processing error", "": "No reason given",
}
PERIODS = {"7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days",
           "mtd": "Month to date", "custom": "Custom range"}
MAX_DAYS = 731  # two years: a chart of more days says nothing more


@dataclass
class Query:
    """What was asked (``given``, for the form and the links), or why it cannot be read."""

    period: str = "30d"
    currency: str | None = None
    start: date | None = None
    end: date | None = None  # excluded
    given: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def last(self) -> date:
        """The period's last day (included)."""
        return self.end - timedelta(days=1)


@dataclass
class Totals:
    payments: int = 0  # payments that succeeded
    volume: int = 0  # their amount (gross volume)
    fees: int = 0  # platform fees on the sales
    fees_returned: int = 0  # fees given back with refunds
    refunded: int = 0  # what refunds gave back
    succeeded: int = 0  # payments made in the period that succeeded (so far)
    failed: int = 0  # ... that failed, and were not paid since
    customers: int = 0  # customers who paid in the period
    new_customers: int = 0  # ... of whom this was the first time (in this currency)
    refunds: int = 0  # refunds asked for in the period that succeeded

    @property
    def returning_customers(self) -> int:
        return self.customers - self.new_customers

    @property
    def success_rate(self) -> float | None:
        """Succeeded / attempted, each payment once; None without attempts."""
        attempted = self.succeeded + self.failed
        return self.succeeded / attempted if attempted else None

    @property
    def net_revenue(self) -> int:
        return self.fees - self.fees_returned

    @property
    def average(self) -> int | None:
        """Average order value, rounded half up; None without payments."""
        return (self.volume * 2 + self.payments) // (self.payments * 2) if self.payments \
            else None

    @property
    def refund_rate(self) -> float | None:
        """Refunded as a share of the volume; None without volume."""
        return self.refunded / self.volume if self.volume else None


@dataclass
class Day:
    day: date
    volume: int = 0
    net_revenue: int = 0
    refunded: int = 0
    payments: int = 0
    succeeded: int = 0  # of the payments made that day
    failed: int = 0

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / (self.succeeded + self.failed) \
            if self.succeeded + self.failed else None


@dataclass
class VendorRow:
    vendor_id: uuid.UUID
    email: str
    gross: int
    fees: int


@dataclass
class Figures:
    query: Query
    current: Totals
    previous: Totals
    series: list[Day]
    top_by_gross: list[VendorRow]
    top_by_fees: list[VendorRow]
    payouts_paid: int
    payouts_pending: int
    currencies: list[str]
    declines: list[tuple[str, int]] = field(default_factory=list)  # (reason, payments)


def today() -> date:
    return utcnow().date()


def parse(args: MultiDict, *, now: date | None = None) -> Query:
    """The period and currency of the query string, or an error per field. Unknown
    parameters are ignored; no currency given: the one with most activity (set by
    ``figures``)."""
    now = now or today()
    q = Query()
    period = (args.get("period") or "30d").strip()
    if period not in PERIODS:
        q.errors["period"] = f"Choose one of: {', '.join(PERIODS.values())}."
        return q
    q.period = q.given["period"] = period
    if period == "custom":
        _custom(q, args, now)
    elif period == "mtd":
        q.start, q.end = now.replace(day=1), now + timedelta(days=1)
    else:
        q.end = now + timedelta(days=1)
        q.start = q.end - timedelta(days=int(period[:-1]))
    currency = (args.get("currency") or "").strip().upper()
    if currency and currency not in SUPPORTED:
        q.errors["currency"] = f"Unknown currency: {currency[:12]}."
    elif currency:
        q.currency = q.given["currency"] = currency
    return q


def _custom(q: Query, args: MultiDict, now: date) -> None:
    texts = {name: (args.get(name) or "").strip() for name in ("from", "to")}
    if not any(texts.values()):  # just chosen: the last 30 days, to be changed
        texts = {"from": (now - timedelta(days=29)).isoformat(), "to": now.isoformat()}
    days = {name: parse_day(text) for name, text in texts.items()}
    for name, text in texts.items():
        if days[name] is None:
            q.errors[name] = f"Enter a date: {RANGE}." if text else "Enter a date."
        else:
            q.given[name] = text
    if q.errors:
        return
    q.start, last = days["from"].date(), days["to"].date()
    if last < q.start:
        q.errors["to"] = "The end must not be before the start."
    elif (last - q.start).days >= MAX_DAYS:
        q.errors["to"] = f"Choose at most {MAX_DAYS} days."
    q.end = last + timedelta(days=1)


def currencies() -> list[str]:
    """The currencies with any payment or sale, most volume first."""
    volume = sa.func.sum(DailyPayments.volume)
    return list(db.session.scalars(sa.select(DailyPayments.currency)
                                   .group_by(DailyPayments.currency)
                                   .order_by(volume.desc(), DailyPayments.currency)))


def figures(q: Query) -> Figures:
    """Every figure of the page for a query that parsed (``q.errors`` empty)."""
    found = currencies()
    if q.currency is None:
        q.currency = found[0] if found else "USD"
    current = _totals(q.currency, q.start, q.end)
    before = q.start - timedelta(days=q.days)
    return Figures(q, current, _totals(q.currency, before, q.start),
                   _series(q), _top(q, DailySales.gross), _top(q, DailySales.fees),
                   *_payouts(q), found if q.currency in found else sorted({*found, q.currency}),
                   _declines(q))


def _totals(currency: str, start: date, end: date) -> Totals:
    paid = db.session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(DailyPayments.succeeded), 0),
                  sa.func.coalesce(sa.func.sum(DailyPayments.volume), 0))
        .where(DailyPayments.currency == currency, DailyPayments.day >= start,
               DailyPayments.day < end)).one()
    sales = db.session.execute(
        sa.select(*(sa.func.coalesce(sa.func.sum(c), 0) for c in (
            DailySales.fees, DailySales.fees_returned, DailySales.refunded)))
        .where(DailySales.currency == currency, DailySales.day >= start,
               DailySales.day < end)).one()
    outcomes = dict(db.session.execute(
        sa.select(DailyAttempts.outcome, sa.func.sum(DailyAttempts.payments))
        .where(DailyAttempts.currency == currency, DailyAttempts.day >= start,
               DailyAttempts.day < end)
        .group_by(DailyAttempts.outcome)).all())
    customers = db.session.scalar(
        sa.select(sa.func.count(sa.distinct(CustomerDays.user_id)))
        .where(CustomerDays.currency == currency, CustomerDays.day >= start,
               CustomerDays.day < end))
    new = db.session.scalar(
        sa.select(sa.func.count()).select_from(FirstPayments)
        .where(FirstPayments.currency == currency, FirstPayments.day >= start,
               FirstPayments.day < end))
    # Refunds are few (a few in a hundred payments): counted from their own table, by the
    # status and time index.
    refunds = db.session.scalar(
        sa.select(sa.func.count()).select_from(RefundRequest)
        .where(RefundRequest.status == "succeeded", RefundRequest.currency == currency,
               RefundRequest.created_at >= _midnight(start),
               RefundRequest.created_at < _midnight(end)))
    return Totals(int(paid[0]), int(paid[1]), *(int(v) for v in sales),
                  int(outcomes.get("succeeded") or 0), int(outcomes.get("failed") or 0),
                  int(customers), int(new), int(refunds))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=utcnow().tzinfo)


def _declines(q: Query) -> list[tuple[str, int]]:
    """Failed payments of the period by reason, most first."""
    by_reason: dict[str, int] = {}
    for code, n in db.session.execute(
            sa.select(DailyAttempts.code, sa.func.sum(DailyAttempts.payments))
            .where(DailyAttempts.currency == q.currency, DailyAttempts.outcome == "failed",
                   DailyAttempts.day >= q.start, DailyAttempts.day < q.end)
            .group_by(DailyAttempts.code)):
        reason = DECLINES.get(code, code.replace("_", " ").capitalize())
        by_reason[reason] = by_reason.get(reason, 0) + int(n)
    return sorted(((r, n) for r, n in by_reason.items() if n), key=lambda item: (-item[1],
                                                                                  item[0]))


def _series(q: Query) -> list[Day]:
    """One point a day, days without activity included (a chart must not skip them)."""
    days = {q.start + timedelta(days=i): Day(q.start + timedelta(days=i))
            for i in range(q.days)}
    for day, count, volume in db.session.execute(
            sa.select(DailyPayments.day, DailyPayments.succeeded, DailyPayments.volume)
            .where(DailyPayments.currency == q.currency, DailyPayments.day >= q.start,
                   DailyPayments.day < q.end)):
        days[day].payments, days[day].volume = count, volume
    for day, net, refunded in db.session.execute(
            sa.select(DailySales.day,
                      sa.func.sum(DailySales.fees - DailySales.fees_returned),
                      sa.func.sum(DailySales.refunded))
            .where(DailySales.currency == q.currency, DailySales.day >= q.start,
                   DailySales.day < q.end)
            .group_by(DailySales.day)):
        days[day].net_revenue, days[day].refunded = int(net), int(refunded)
    for day, outcome, n in db.session.execute(
            sa.select(DailyAttempts.day, DailyAttempts.outcome, sa.func.sum(DailyAttempts.payments))
            .where(DailyAttempts.currency == q.currency, DailyAttempts.day >= q.start,
                   DailyAttempts.day < q.end)
            .group_by(DailyAttempts.day, DailyAttempts.outcome)):
        setattr(days[day], outcome, int(n))
    return list(days.values())


def _top(q: Query, by, limit: int = 10) -> list[VendorRow]:
    gross, fees = sa.func.sum(DailySales.gross), sa.func.sum(DailySales.fees)
    top = (sa.select(DailySales.vendor_id, gross.label("gross"), fees.label("fees"))
           .where(DailySales.currency == q.currency, DailySales.day >= q.start,
                  DailySales.day < q.end)
           .group_by(DailySales.vendor_id)
           .order_by(sa.func.sum(by).desc(), DailySales.vendor_id).limit(limit).subquery())
    rows = db.session.execute(
        sa.select(top.c.vendor_id, User.email, top.c.gross, top.c.fees)
        .join(User, User.id == top.c.vendor_id)
        .order_by(sa.desc(top.c.gross if by is DailySales.gross else top.c.fees),
                  top.c.vendor_id))
    return [VendorRow(vendor_id, email, int(g), int(f)) for vendor_id, email, g, f in rows]


def _payouts(q: Query) -> tuple[int, int]:
    """Paid in the period; pending now (approved or on their way, not yet paid)."""
    start, end = _midnight(q.start), _midnight(q.end)
    paid = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Payout.amount), 0)).where(
        Payout.currency == q.currency, Payout.status == "paid", Payout.paid_at >= start,
        Payout.paid_at < end))
    pending = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Payout.amount), 0))
                                .where(Payout.currency == q.currency,
                                       Payout.status.in_(("pending", "processing"))))
    return int(paid), int(pending)


def change(now: int | float | None, before: int | float | None) -> float | None:
    """The relative change from the previous period; None when it cannot be said (nothing
    before)."""
    if now is None or not before:
        return None
    return (now - before) / abs(before)
