"""Refunds after a payout: the vendor was paid for a sale that is then refunded.

A refund always adds refund lines (negative) to the vendors' open payouts
(ledger.splits.sync_refund_lines): the next payouts take them back, and until then the vendor
owes the platform (``vendors_in_debt``, shown to admins with its age). That is all with
REFUND_AFTER_PAYOUT=carry (the default), and a vendor who stops selling keeps the money.

With REFUND_AFTER_PAYOUT=reverse, each refund line whose vendor's sale was already paid out is
also taken back at once from the transfer that paid it: a Stripe transfer reversal of the
line's net (partial: at most what the transfer still holds), idempotency key
``reversal-<line id>``, in three phases (database.in_phases); a reversal an earlier attempt
made is found by its metadata and adopted. A reversal line (positive, in the vendor's open
payout; one per refund line at most) then settles the refund line, so the next payout does
not take it again. What the transfer cannot give back stays owed, as with carry.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import aliased

from .. import jobs
from .. import stripe_gateway as gateway
from ..audit.services import audit
from ..auth.models import User
from ..database import in_phases, insert_or_skip
from ..extensions import db
from ..ledger.models import Payout, SplitLine
from ..ledger.splits import open_payouts
from ..models_base import utcnow
from .services import RETRY_DELAYS

log = logging.getLogger(__name__)


def _unsettled(payment_id: uuid.UUID | None = None, line_id: uuid.UUID | None = None):
    """(refund line, the transfer that paid its vendor's sale): refund lines taking money
    back (net < 0) with no reversal line yet, whose sale line is in a paid payout."""
    sale, paid, reversal = aliased(SplitLine), aliased(Payout), aliased(SplitLine)
    query = (sa.select(SplitLine, paid.stripe_transfer_id)
             .join(sale, sa.and_(sale.payment_id == SplitLine.payment_id,
                                 sale.vendor_id == SplitLine.vendor_id, sale.kind == "sale"))
             .join(paid, sa.and_(paid.id == sale.payout_id, paid.status == "paid",
                                 paid.stripe_transfer_id.is_not(None)))
             .where(SplitLine.kind == "refund", SplitLine.net < 0,
                    ~sa.exists().where(reversal.reverses_line_id == SplitLine.id)))
    if payment_id is not None:
        query = query.where(SplitLine.payment_id == payment_id)
    if line_id is not None:
        query = query.where(SplitLine.id == line_id)
    return query


def queue_reversals(payment_id: uuid.UUID) -> int:
    """The payment's refund lines changed (the caller holds its row and commits): with
    REFUND_AFTER_PAYOUT=reverse, queue a reversal for each of them whose sale was paid out.
    Returns how many were queued."""
    if current_app.extensions["portal_config"].REFUND_AFTER_PAYOUT != "reverse":
        return 0
    lines = [(str(line.id),) for line, _ in db.session.execute(_unsettled(payment_id))]
    jobs.enqueue_each(reverse_refund_line, lines, queue="payouts", retry=RETRY_DELAYS)
    return len(lines)


@dataclass(frozen=True)
class _Reversing:
    line_id: uuid.UUID
    transfer_id: str
    wanted: int  # the refund line's net, as a positive amount
    currency: str


def reverse_refund_line(line_id: str) -> None:
    """The job: take a refund line's net back from the vendor's transfer (see the module).
    Timeouts and 5xx raise for RQ's retry; a refusal is logged and audited, and the line
    stays owed (carried to the next payouts)."""
    def reserve() -> _Reversing | None:
        found = db.session.execute(_unsettled(line_id=uuid.UUID(line_id))).first()
        if found is None:  # settled already, or its sale is not paid out
            return None
        line, transfer_id = found
        return _Reversing(line.id, transfer_id, -line.net, line.currency)

    def call(r: _Reversing) -> gateway.Reversal | None:
        made = [x for x in gateway.reversals_of(r.transfer_id)
                if x.metadata.get("splitLineId") == line_id]
        if made:
            return made[0]
        transfer = gateway.retrieve_transfer(r.transfer_id)
        amount = min(r.wanted, transfer.amount - transfer.amount_reversed)
        if amount <= 0:
            return None
        return gateway.reverse_transfer(
            r.transfer_id, amount=amount, idempotency_key=f"reversal-{line_id}",
            metadata={"splitLineId": line_id})

    def apply(r: _Reversing, reversal: gateway.Reversal | None) -> None:
        if reversal is None:
            log.warning("refund line %s: transfer %s has nothing left to reverse; carried",
                        line_id, r.transfer_id)
            return
        line = db.session.get(SplitLine, r.line_id)
        into = open_payouts(line.currency, [line.vendor_id])[line.vendor_id]
        added = db.session.execute(insert_or_skip(SplitLine, ["reverses_line_id"]).values(
            id=uuid.uuid4(), payment_id=line.payment_id, vendor_id=line.vendor_id,
            kind="reversal", refund_request_id=line.refund_request_id, currency=line.currency,
            gross=reversal.amount, fee=0, net=reversal.amount, reverses_line_id=line.id,
            stripe_reversal_id=reversal.id, payout_id=into, created_at=utcnow())).rowcount
        if added:
            audit("payout.reversed", actor=None, payment_id=line.payment_id,
                  refund_request_id=line.refund_request_id, amount=reversal.amount,
                  currency=line.currency,
                  note=f"{reversal.id} of {r.transfer_id} for refund line {line_id}")

    def failed(r: _Reversing, exc: gateway.GatewayError) -> gateway.GatewayError | None:
        if exc.retryable:
            return exc
        log.warning("refund line %s: Stripe refused the reversal of %s: %s; carried",
                    line_id, r.transfer_id, exc.message)
        audit("payout.reversal_failed", actor=None, amount=r.wanted, currency=r.currency,
              note=f"{r.transfer_id} for refund line {line_id}: {exc.message}")
        return None

    error = in_phases(reserve, call, apply, failed=failed, failures=(gateway.GatewayError,))
    if error is not None:
        raise error


# --- What admins see --------------------------------------------------------------------------

@dataclass(frozen=True)
class Debt:
    """A vendor whose unpaid lines sum to less than zero: what they owe, since when."""

    vendor_id: uuid.UUID
    email: str
    currency: str
    owed: int  # > 0, minor units
    since: datetime  # the oldest refund line not paid (taken back) yet

    def days(self, now: datetime) -> int:
        return (now - self.since).days


def vendors_in_debt() -> list[Debt]:
    """Vendors owing money (refunds after their payouts, not taken back yet), oldest first."""
    rows = db.session.execute(
        sa.select(Payout.vendor_id, User.email, Payout.currency, sa.func.sum(SplitLine.net),
                  sa.func.min(sa.case((SplitLine.kind == "refund", SplitLine.created_at))))
        .join(SplitLine, SplitLine.payout_id == Payout.id)
        .join(User, User.id == Payout.vendor_id)
        .where(Payout.status == "open")
        .group_by(Payout.vendor_id, User.email, Payout.currency)
        .having(sa.func.sum(SplitLine.net) < 0)).all()
    debts = [Debt(v, email, c, -int(net), since) for v, email, c, net, since in rows]
    return sorted(debts, key=lambda d: (d.since, d.email, d.currency))
