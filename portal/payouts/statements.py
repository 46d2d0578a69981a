"""What a vendor's pages show: the dashboard, their sales a page at a time, and the CSV
statement of a period (its lines and its totals per currency)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..auth.models import User
from ..days import RANGE, parse_day
from ..errors import DomainError
from ..extensions import db
from ..ledger.models import Payment, Payout, SplitLine
from ..money import to_decimal
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
    """What the dashboard shows: Connect status, totals, paid vs pending, the next payout,
    the daily net chart of the last ``days`` days, and a page of payouts."""
    account = payouts.account_of(vendor)
    number = page_number(page)
    items, total = payouts.payouts_of(vendor, page=number, per_page=PAGE_SIZE)
    series = payouts.daily_net(vendor, days, now.date())
    currencies = sorted({c for _, per in series for c in per})
    chart_currency = currencies[0] if currencies else None
    return {
        "account": account, "missing": payouts.missing(account),
        "totals": payouts.totals(vendor), "payouts": Numbered(items, total, number, PAGE_SIZE),
        "next_date": payouts.next_payout_date(payouts.schedule_period(), now),
        "series": series, "days": days, "chart_currency": chart_currency,
        "waiting": payouts.waiting_for_funds(now, vendor),
        "peak": max([abs(per.get(chart_currency, 0)) for _, per in series] + [1]),
        "not_connected": payouts.NOT_CONNECTED}


# --- Sales --------------------------------------------------------------------------------------

def sales(vendor: User, page: str | None = None, per_page: int = PAGE_SIZE) -> Numbered:
    """The vendor's paid sales, newest first: rows of (payment, the vendor's items' total),
    with each payment's order loaded (never card details)."""
    mine = (OrderItem.order_id == Payment.order_id, OrderItem.vendor_id == vendor.id,
            Payment.status == "succeeded")
    total = db.session.scalar(sa.select(sa.func.count(sa.distinct(Payment.id)))
                              .join(OrderItem, mine[0]).where(*mine[1:])) or 0
    number = page_number(page)
    rows = db.session.execute(
        sa.select(Payment, sa.func.sum(OrderItem.quantity * OrderItem.unit_amount))
        .join(OrderItem, mine[0]).where(*mine[1:])
        .options(selectinload(Payment.order))
        .group_by(Payment.id).order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(per_page).offset((number - 1) * per_page)).all()
    return Numbered([tuple(r) for r in rows], total, number, per_page)


# --- The CSV statement --------------------------------------------------------------------------

def period(first: str | None, last: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The statement's [start, end) from its days (YYYY-MM-DD, both included); by default the
    last 30 days up to today. DomainError for a day the portal does not accept."""
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    start = parse_day(first) if first else today - timedelta(days=29)
    end = parse_day(last) if last else today
    if start is None or end is None or start > end:
        raise DomainError(f"from and to must be {RANGE}, from before to.")
    return start, end + timedelta(days=1)


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
