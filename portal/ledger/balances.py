"""What a vendor's balance is, read from the ledger: totals per currency (paid and not yet
paid) and the net per day, for the vendor dashboard and the API's vendor payouts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from ..auth.models import User
from ..extensions import db
from .models import Payout, SplitLine


@dataclass(frozen=True)
class Totals:
    currency: str
    sales: int
    fees: int
    refunds: int
    net: int
    paid: int
    pending: int  # net not in a paid payout yet


def totals(vendor: User) -> list[Totals]:
    """Per currency: sales, fees, refunds and net from the lines; paid vs not yet paid.
    Paid is what the vendor kept: their paid payouts' transfers less what transfer reversals
    took back (reversal lines, which are not earnings: net leaves them out)."""
    paid_line = sa.and_(SplitLine.payout_id == Payout.id, Payout.status == "paid")
    reversal = SplitLine.kind == "reversal"
    rows = db.session.execute(
        sa.select(SplitLine.currency,
                  sa.func.sum(sa.case((SplitLine.kind == "sale", SplitLine.gross), else_=0)),
                  sa.func.sum(SplitLine.fee),
                  sa.func.sum(sa.case((SplitLine.kind == "refund", SplitLine.gross), else_=0)),
                  sa.func.sum(sa.case((reversal, 0), else_=SplitLine.net)),
                  sa.func.sum(sa.case((Payout.status == "paid", SplitLine.net), else_=0))
                  - sa.func.sum(sa.case((reversal, SplitLine.net), else_=0)))
        .outerjoin(Payout, paid_line)
        .where(SplitLine.vendor_id == vendor.id)
        .group_by(SplitLine.currency).order_by(SplitLine.currency)).all()
    return [Totals(c, int(s), int(f), int(r), int(n), int(p), int(n) - int(p))
            for c, s, f, r, n, p in rows]


def daily_net(vendor: User, days: int, today: date) -> list[tuple[date, dict[str, int]]]:
    """Net per day (per currency) over the last ``days`` days, oldest first, every day
    present (zero when there were no lines)."""
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    day = sa.func.date(SplitLine.created_at)
    rows = db.session.execute(
        sa.select(day, SplitLine.currency, sa.func.sum(SplitLine.net))
        .where(SplitLine.vendor_id == vendor.id, SplitLine.created_at >= start,
               SplitLine.kind != "reversal")
        .group_by(day, SplitLine.currency)).all()
    by_day: dict[str, dict[str, int]] = {}
    for d, currency, net in rows:
        by_day.setdefault(str(d), {})[currency] = int(net)
    return [(first + timedelta(days=i), by_day.get(str(first + timedelta(days=i)), {}))
            for i in range(days)]
