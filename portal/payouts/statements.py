"""What a vendor's pages show: the dashboard, their sales a page at a time, one sale (how
their share of it was computed, their refunds, the payouts its lines went into), and the CSV
statement of any period up to a year (its lines and its totals per currency)."""

from __future__ import annotations

import csv
import functools
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..auth.models import User
from ..charts import Chart, bar_chart
from ..days import FIRST, LAST, parse_day
from ..extensions import db
from ..ledger.models import Payment, Payout, SplitLine
from ..money import format_minor, to_decimal
from ..orders.models import Order, OrderItem
from . import services as payouts

PAGE_SIZE = 50


# --- Numbered pages -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Numbered:
    """One numbered page of a list, newest first."""

    rows: list
    total: int  # rows in the whole list
    number: int  # 1 for the newest
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def page_number(text: str | None) -> int:
    """The page a link asks for (a bad number: the first; a page beyond the last is empty)."""
    ok = text is not None and text.isascii() and text.isdigit() and len(text) <= 6
    return max(1, int(text)) if ok else 1


# --- The dashboard ------------------------------------------------------------------------------

def dashboard(vendor: User, days: int, now: datetime, page: str | None = None) -> dict:
    """What the dashboard shows: Connect status, totals, the available and pending balance,
    the next payout, a daily net chart per currency over the last ``days`` days, a page of
    payouts and the statement form (the last 30 days by default)."""
    account = payouts.account_of(vendor)
    number = page_number(page)
    items, total = payouts.payouts_of(vendor, page=number, per_page=PAGE_SIZE)
    return {
        "account": account, "missing": payouts.missing(account),
        "totals": payouts.totals(vendor), "balances": payouts.balances(vendor, now),
        "payouts": Numbered(items, total, number, PAGE_SIZE),
        "next_date": payouts.next_payout_date(payouts.schedule_period(), now),
        "charts": net_charts(payouts.daily_net(vendor, days, now.date()), days),
        "days": days, "waiting": payouts.waiting_for_funds(now, vendor),
        "statement": statement_period(None, None, now), "max_days": MAX_DAYS,
        "day_range": DAY_RANGE, "reason": payouts.failure_for_vendor}


def net_charts(series: list[tuple[date, dict[str, int]]], days: int) -> list[Chart]:
    """One daily net chart per currency sold in the period (sorted), every day present."""
    currencies = sorted({c for _, per in series for c in per})
    return [bar_chart(f"net-{currency.lower()}", f"Net sales in {currency}, last {days} days",
                      [(day, per.get(currency, 0)) for day, per in series],
                      functools.partial(_amount, currency=currency))
            for currency in currencies]


def _amount(value: float, currency: str) -> str:
    return format_minor(int(value), currency)


# --- Sales --------------------------------------------------------------------------------------

def payment_status(payment: Payment) -> str:
    """The payment's status in plain words (a vendor's sales are paid payments)."""
    if payment.status != "succeeded":
        return payment.status.replace("_", " ").capitalize()
    return {"refunded": "Paid, then refunded in full",
            "partially_refunded": "Paid, partly refunded"}.get(payment.refund_state or "", "Paid")


@dataclass(frozen=True)
class Sale:
    """A paid order with the vendor's items, as the vendor sees it: their items, their own
    refund lines and their net (sale and refund lines; None before the sale is split)."""

    payment: Payment
    items: list[OrderItem]  # the vendor's items only
    refunded: int  # gross of the vendor's refund lines (<= 0)
    net: int | None

    @property
    def items_total(self) -> int:
        return sum(item.amount for item in self.items)

    @property
    def status(self) -> str:
        return payment_status(self.payment)


def sales(vendor: User, page: str | None = None, per_page: int = PAGE_SIZE) -> Numbered:
    """The vendor's paid sales, newest first, a page of ``Sale`` at a time (never card
    details), in four queries whatever the page's size."""
    mine = (OrderItem.order_id == Payment.order_id, OrderItem.vendor_id == vendor.id,
            Payment.status == "succeeded")
    total = db.session.scalar(sa.select(sa.func.count(sa.distinct(Payment.id)))
                              .join(OrderItem, mine[0]).where(*mine[1:])) or 0
    number = page_number(page)
    found = list(db.session.scalars(
        sa.select(Payment).join(OrderItem, mine[0]).where(*mine[1:])
        .options(selectinload(Payment.order))
        .group_by(Payment.id).order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(per_page).offset((number - 1) * per_page)))
    items: dict[uuid.UUID, list[OrderItem]] = {}
    for item in db.session.scalars(sa.select(OrderItem).where(
            OrderItem.vendor_id == vendor.id,
            OrderItem.order_id.in_([p.order_id for p in found]))
            .order_by(OrderItem.order_id, OrderItem.position, OrderItem.id)):
        items.setdefault(item.order_id, []).append(item)
    sums = _line_sums(vendor, [p.id for p in found])
    rows = [Sale(p, items.get(p.order_id, []), sums.get(p.id, (0, None))[0],
                 sums.get(p.id, (0, None))[1]) for p in found]
    return Numbered(rows, total, number, per_page)


def _line_sums(vendor: User, payment_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
    """payment id -> (gross of the vendor's refund lines, net of their sale and refund
    lines), for the payments whose sale is split."""
    rows = db.session.execute(
        sa.select(SplitLine.payment_id,
                  sa.func.sum(sa.case((SplitLine.kind == "refund", SplitLine.gross), else_=0)),
                  sa.func.sum(SplitLine.net))
        .where(SplitLine.vendor_id == vendor.id, SplitLine.payment_id.in_(payment_ids),
               SplitLine.kind != "reversal")
        .group_by(SplitLine.payment_id)).all()
    return {pid: (int(refunded), int(net)) for pid, refunded, net in rows}


# --- One sale -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Share:
    """How the vendor's share (their sale line's gross) was computed: the payment is split
    in proportion to each vendor's items (ledger.splits), so the share is the vendor's items
    plus that proportion of the tax and shipping, less that proportion of the discount. Each
    part is shown rounded half up; ``rounding`` is what the split's largest-remainder rule
    gave or took besides, so that the parts add up exactly to ``gross``."""

    items: int  # the vendor's items
    order_items: int  # every vendor's items in the order
    tax: int
    shipping: int
    discount: int
    rounding: int
    gross: int
    fee: int
    net: int


def _part(amount: int, mine: int, whole: int) -> int:
    """``amount * mine / whole`` rounded half up (integers; 0 when ``whole`` is 0)."""
    return (2 * amount * mine + whole) // (2 * whole) if whole > 0 else 0


def share_of(payment: Payment, items: int, order_items: int, sale: SplitLine) -> Share:
    """The parts of the vendor's sale line ``sale`` (see Share)."""
    tax, shipping, discount = (_part(v or 0, items, order_items)
                               for v in (payment.tax, payment.shipping, payment.discount))
    rounding = sale.gross - (items + tax + shipping - discount)
    return Share(items, order_items, tax, shipping, discount, rounding, sale.gross, sale.fee,
                 sale.net)


@dataclass(frozen=True)
class LineIn:
    """One of the vendor's lines of a sale and the payout it went into."""

    line: SplitLine
    payout: Payout

    @property
    def paid_out(self) -> bool:
        """In a payout of a run (its page exists); otherwise in the open balance."""
        return self.payout.status != "open"


@dataclass(frozen=True)
class SaleDetail:
    payment: Payment
    items: list[OrderItem]
    share: Share | None  # None: the sale is not split yet
    refunds: list[SplitLine]  # the vendor's refund lines, oldest first
    lines: list[LineIn]  # every line of the vendor's for this payment, oldest first

    @property
    def status(self) -> str:
        return payment_status(self.payment)

    @property
    def net(self) -> int:
        """What the vendor earns from this order: their sale and refund lines' net."""
        return sum(li.line.net for li in self.lines if li.line.kind != "reversal")


def sale_detail(vendor: User, payment_id: uuid.UUID | None) -> SaleDetail | None:
    """One paid order as its vendor sees it; None (a 404) unless it is paid and has items
    of theirs."""
    payment = db.session.get(Payment, payment_id) if payment_id else None
    if payment is None or payment.status != "succeeded":
        return None
    all_items = list(db.session.scalars(sa.select(OrderItem).where(
        OrderItem.order_id == payment.order_id).order_by(OrderItem.position, OrderItem.id)))
    items = [item for item in all_items if item.vendor_id == vendor.id]
    if not items:
        return None
    lines = [LineIn(line, payout) for line, payout in db.session.execute(
        sa.select(SplitLine, Payout).join(Payout, Payout.id == SplitLine.payout_id)
        .where(SplitLine.payment_id == payment.id, SplitLine.vendor_id == vendor.id)
        .order_by(SplitLine.created_at, SplitLine.id))]
    sale = next((li.line for li in lines if li.line.kind == "sale"), None)
    share = sale and share_of(payment, sum(i.amount for i in items),
                              sum(i.amount for i in all_items), sale)
    return SaleDetail(payment, items, share,
                      [li.line for li in lines if li.line.kind == "refund"], lines)


# --- The CSV statement --------------------------------------------------------------------------

MAX_DAYS = 366  # a statement covers a year at most (its lines are read into memory)
DAY_RANGE = f"from {FIRST:%Y-%m-%d} to {LAST:%Y-%m-%d}"


@dataclass(frozen=True)
class Period:
    """The statement form: its days as typed, and [start, end) once they are valid."""

    first: str
    last: str
    start: datetime | None
    end: datetime | None
    errors: dict[str, str]  # field ("from", "to") -> message


def statement_period(first: str | None, last: str | None, now: datetime) -> Period:
    """The statement's [start, end) from its days (YYYY-MM-DD, both included; an empty one:
    the last 30 days up to today), or the message of each field at fault."""
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    first, last = (first or "").strip(), (last or "").strip()
    start = parse_day(first) if first else today - timedelta(days=29)
    end = parse_day(last) if last else today
    errors = {}
    if start is None:
        errors["from"] = f"Enter the first day as YYYY-MM-DD, {DAY_RANGE}."
    if end is None:
        errors["to"] = f"Enter the last day as YYYY-MM-DD, {DAY_RANGE}."
    elif start is not None and end < start:
        errors["to"] = "The last day must be on or after the first day."
    elif start is not None and (end - start).days >= MAX_DAYS:
        errors["to"] = f"A statement covers at most {MAX_DAYS} days: choose a shorter period."
    if errors:
        return Period(first, last, None, None, errors)
    return Period(f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}", start, end + timedelta(days=1), {})


@dataclass(frozen=True)
class StatementLine:
    created_at: datetime
    order_number: str
    payment_id: uuid.UUID
    kind: str
    currency: str
    gross: int
    fee: int
    net: int
    payout_id: uuid.UUID | None  # None: not in a payout yet (its payout is still open)
    payout_status: str  # "unpaid", or the payout's status


def statement_lines(vendor: User, start: datetime, end: datetime) -> Iterator[StatementLine]:
    """The vendor's split lines created in [start, end), oldest first."""
    rows = db.session.execute(
        sa.select(SplitLine, Order, Payout.status)
        .join(Payment, Payment.id == SplitLine.payment_id)
        .join(Order, Order.id == Payment.order_id)
        .outerjoin(Payout, Payout.id == SplitLine.payout_id)
        .where(SplitLine.vendor_id == vendor.id, SplitLine.created_at >= start,
               SplitLine.created_at < end)
        .order_by(SplitLine.created_at, SplitLine.id))
    for line, order, status in rows:
        unpaid = status in (None, "open")
        yield StatementLine(line.created_at, order.number, line.payment_id, line.kind,
                            line.currency, line.gross, line.fee, line.net,
                            None if unpaid else line.payout_id,
                            "unpaid" if unpaid else status)


def totals(lines: list[StatementLine]) -> dict[str, tuple[int, int, int]]:
    """Per currency (sorted): the earnings' gross, fee and net sums (sale and refund lines; a
    reversal line is listed, as money taken back by Stripe, but is not earnings)."""
    sums: dict[str, tuple[int, int, int]] = {}
    for line in (line for line in lines if line.kind != "reversal"):
        gross, fee, net = sums.get(line.currency, (0, 0, 0))
        sums[line.currency] = (gross + line.gross, fee + line.fee, net + line.net)
    return dict(sorted(sums.items()))


HEADER = ["date", "order", "payment_id", "kind", "currency", "gross", "fee", "net",
          "payout_id", "payout_status"]


def statement_csv(vendor: User, start: datetime, end: datetime) -> tuple[str, str]:
    """The statement of [start, end) as CSV (a row per line, then a total row per
    currency), and its file name."""
    lines = list(statement_lines(vendor, start, end))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for line in lines:
        writer.writerow([
            f"{line.created_at:%Y-%m-%d %H:%M:%S}", f"#{line.order_number}", line.payment_id,
            line.kind, line.currency,
            *(to_decimal(v, line.currency) for v in (line.gross, line.fee, line.net)),
            line.payout_id or "", line.payout_status])
    for currency, sums in totals(lines).items():
        writer.writerow(["total", "", "", "", currency,
                         *(to_decimal(v, currency) for v in sums), "", ""])
    name = f"statement-{start:%Y%m%d}-{end - timedelta(days=1):%Y%m%d}.csv"
    return out.getvalue(), name
