"""Vendor split lines: each sale divided exactly between the vendors of the order and the
platform, and refunds taken back from them in proportion.

Rounding rule (integers in the currency's minor unit, never floats):
- a payment's amount is divided between its vendors in proportion to their items' subtotal
  by the largest-remainder method: everyone gets the floor of their exact share, and the units
  left over go one each to the largest fractional remainders (ties: vendor id order). The
  vendors' gross amounts therefore sum exactly to the payment;
- a vendor's platform fee is their own rate (VendorAccount.fee_percent) or else
  PLATFORM_FEE_PERCENT, of their items' subtotal (the merchandise,
  as in the original description's breakdown), rounded half up to the minor unit; net =
  gross - fee. The platform's take is the sum of the fees, by construction;
- refunds: after refunds totalling C of a payment of amount A, each vendor has given back
  exactly allocate(C, gross) of their gross and floor(fee * C / A) of their fee (so a full
  refund returns exactly every line). Each refund (or a refund failing afterwards) adds the
  lines that bring the vendor's refund total to that target, so lines stay exact whatever
  order the refunds arrive in;
- refunds borne by one vendor (their items, their goodwill: refunds.items): of C, B_v is
  borne by vendor v alone; the rest, S = C - sum(B), is shared in proportion to gross as
  above, except that no vendor takes more of it than they kept (gross - B_v): the exact
  share S * gross / sum(gross) of a vendor it would exceed is held to what they kept, and
  the rest is shared by the others the same way (water-filling); the largest remainder then
  rounds the shares of those not held. Vendor v gives back B_v plus their share of S, and
  of their fee floor(fee * (B_v + exact share) / gross): all of it when all of their gross
  is refunded. Without borne refunds this is the rule above exactly;
- three-decimal currencies (KWD, BHD...): Stripe moves only amounts ending in 0, so all of the
  above is done in steps of 10 minor units (money.amount_step), and every line, and so every
  payout's transfer, ends in 0. Amounts that do not (none should) fall back to steps of 1,
  which keeps the sums exact.
"""

from __future__ import annotations

import math
import uuid
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import sqlalchemy as sa

from ..database import insert_or_skip, write_lock
from ..extensions import db
from ..models_base import utcnow
from ..money import amount_step
from ..orders.models import OrderItem
from . import rollups
from .models import Payment, Payout, SplitLine, VendorAccount


def allocate(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder); sums to ``total``."""
    whole = sum(weights)
    if whole <= 0:
        raise ValueError("weights must have a positive sum")
    shares = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares


def fee_of(subtotal: int, percent: int | Decimal, step: int = 1) -> int:
    """``percent`` of ``subtotal``, rounded half up to a multiple of ``step``."""
    exact = Decimal(subtotal) * Decimal(percent) / 100 / step
    return int(exact.quantize(Decimal(1), ROUND_HALF_UP)) * step


def record_sale(payment: Payment, fee_percent: int) -> None:
    """A payment succeeded: one sale line per vendor, and the breakdown's platform fee and
    vendor amount filled from them. ``fee_percent`` applies to vendors without their own rate.
    Called once per payment: only the transition to succeeded (under the payment's row lock,
    and a final state never changes) calls it. The caller commits."""
    rows = db.session.execute(
        sa.select(OrderItem.vendor_id, sa.func.sum(OrderItem.quantity * OrderItem.unit_amount),
                  sa.func.max(VendorAccount.fee_percent))
        .outerjoin(VendorAccount, VendorAccount.vendor_id == OrderItem.vendor_id)
        .where(OrderItem.order_id == payment.order_id)
        .group_by(OrderItem.vendor_id)).all()
    rows = sorted(rows, key=lambda r: str(r[0]))  # vendors in id order (the rounding rule)
    rollups.count_sale(payment)
    if not rows or payment.amount <= 0:
        return
    rates = [own if own is not None else fee_percent for _, _, own in rows]
    shares = sale_shares(payment.amount, [int(subtotal) for _, subtotal, _ in rows], rates,
                         step=amount_step(payment.currency))
    into = open_payouts(payment.currency, [vendor_id for vendor_id, _, _ in rows])
    now = utcnow()
    db.session.execute(sa.insert(SplitLine), [
        {"id": uuid.uuid4(), "payment_id": payment.id, "vendor_id": vendor_id, "kind": "sale",
         "currency": payment.currency, "gross": gross, "fee": fee, "net": gross - fee,
         "created_at": now, "available_at": payment.funds_available_at,
         "payout_id": into[vendor_id]}
        for (vendor_id, _, _), (gross, fee) in zip(rows, shares, strict=True)])
    rollups.count_lines(now, payment.currency, [
        (vendor_id, "sale", gross, fee)
        for (vendor_id, _, _), (gross, fee) in zip(rows, shares, strict=True)])
    payment.platform_fee = sum(fee for _, fee in shares)
    payment.vendor_amount = payment.amount - payment.platform_fee


def sale_shares(amount: int, subtotals: list[int], fee_percent: int | list[int],
                step: int = 1) -> list[tuple[int, int]]:
    """(gross, fee) per vendor for a payment of ``amount`` (the module's rounding rule);
    ``fee_percent``: one rate for all, or each vendor's; ``step``: see the module."""
    step = step if amount % step == 0 else 1
    rates = fee_percent if isinstance(fee_percent, list) else [fee_percent] * len(subtotals)
    weights = [max(v, 0) for v in subtotals]
    grosses = allocate(amount // step, weights if sum(weights) else [1] * len(weights))
    return [(gross * step, min(fee_of(subtotal, rate, step), gross * step))
            for subtotal, gross, rate in zip(weights, grosses, rates, strict=True)]


def refund_targets(sales: list[tuple[int, int]], refunded: int, amount: int,
                   step: int = 1, borne: list[int] | None = None) -> list[tuple[int, int]]:
    """(gross, fee) each vendor has given back once ``refunded`` of ``amount`` is refunded,
    ``borne[i]`` of it by vendor i alone (the module's rule)."""
    borne = borne or [0] * len(sales)
    values = (refunded, amount, *borne, *(v for line in sales for v in line))
    if any(v % step for v in values):
        step = 1
    grosses = [gross // step for gross, _ in sales]
    if not any(borne):
        backs = allocate(refunded // step, grosses) if sum(grosses) else [0] * len(sales)
        return [(back * step, fee // step * (refunded // step) // (amount // step) * step)
                for back, (_, fee) in zip(backs, sales, strict=True)]
    return _borne_targets(sales, grosses, [b // step for b in borne], refunded // step, step)


def _borne_targets(sales: list[tuple[int, int]], grosses: list[int], borne: list[int],
                   refunded: int, step: int) -> list[tuple[int, int]]:
    """refund_targets with refunds borne by vendors (``grosses``, ``borne``, ``refunded``
    in steps)."""
    own = [min(b, g) for b, g in zip(borne, grosses, strict=True)]
    kept = [g - o for g, o in zip(grosses, own, strict=True)]
    shared = min(max(0, refunded - sum(own)), sum(kept))
    exact, capped = _shared_out(shared, grosses, kept)
    parts = [kept[i] if i in capped else 0 for i in range(len(sales))]
    free = [i for i, gross in enumerate(grosses) if gross and i not in capped]
    if free:  # the largest remainder among those not capped: each within what they kept
        for i, part in zip(free, allocate(shared - sum(parts), [grosses[i] for i in free]),
                           strict=True):
            parts[i] = part
    return [((mine + part) * step,
             math.floor(Fraction(fee // step, gross) * (mine + e)) * step if gross else 0)
            for (_, fee), gross, mine, part, e in zip(sales, grosses, own, parts, exact,
                                                      strict=True)]


def _shared_out(shared: int, grosses: list[int], kept: list[int]
                ) -> tuple[list[Fraction], set[int]]:
    """Each vendor's exact part of ``shared``: in proportion to their gross, but never more
    than what they ``kept`` (what is not refunded of theirs), and the vendors held to that;
    what they cannot take is shared by the others the same way (water-filling)."""
    exact, capped = [Fraction(0)] * len(grosses), set()
    active, left = [i for i, g in enumerate(grosses) if g], Fraction(shared)
    while active:
        weight = sum(grosses[i] for i in active)
        over = [i for i in active if left * grosses[i] / weight > kept[i]]
        if not over:
            for i in active:
                exact[i] = left * grosses[i] / weight
            break
        for i in over:
            exact[i] = Fraction(kept[i])
            left -= kept[i]
        capped.update(over)
        active = [i for i in active if i not in over]
    return exact, capped


def sync_refund_lines(payment: Payment, borne: dict[uuid.UUID, int],
                      refund_request_id: uuid.UUID | None = None) -> None:
    """Bring the refund lines of each vendor to the target for ``payment.amount_refunded``,
    of which ``borne[vendor]`` is borne by that vendor alone (see the module's rounding
    rule; refunds.items.borne_by_vendor). Idempotent; the caller holds the payment row."""
    lines = list(db.session.scalars(sa.select(SplitLine).where(
        SplitLine.payment_id == payment.id).order_by(SplitLine.created_at, SplitLine.id)))
    sales = sorted((line for line in lines if line.kind == "sale"),
                   key=lambda line: str(line.vendor_id))
    if not sales:
        return
    refunded = min(payment.amount_refunded, payment.amount)
    targets = refund_targets([(s.gross, s.fee) for s in sales], refunded, payment.amount,
                             amount_step(payment.currency),
                             [borne.get(s.vendor_id, 0) for s in sales])
    new = []
    for sale, (gross_back, fee_back) in zip(sales, targets, strict=True):
        given = [line for line in lines if line.kind == "refund" and
                 line.vendor_id == sale.vendor_id]
        d_gross = -gross_back - sum(line.gross for line in given)
        d_fee = -fee_back - sum(line.fee for line in given)
        if d_gross or d_fee:
            new.append((sale.vendor_id, d_gross, d_fee))
    if not new:
        return
    # Into the vendor's open payout: a refund after a payout is taken from the next one.
    into = open_payouts(payment.currency, [vendor_id for vendor_id, _, _ in new])
    now = utcnow()
    for vendor_id, d_gross, d_fee in new:
        db.session.add(SplitLine(
            payment_id=payment.id, vendor_id=vendor_id, kind="refund",
            refund_request_id=refund_request_id, currency=payment.currency,
            gross=d_gross, fee=d_fee, net=d_gross - d_fee, payout_id=into[vendor_id],
            created_at=now))
    rollups.count_lines(now, payment.currency, [(vendor_id, "refund", d_gross, d_fee)
                                                for vendor_id, d_gross, d_fee in new])


def open_payouts(currency: str, vendor_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """vendor id -> id of the vendor's open payout in ``currency`` (created when missing),
    for new split lines. The rows are held (FOR SHARE) until the caller commits, so a run,
    which takes them FOR UPDATE, waits for the lines being written into them; rows are taken
    in vendor order, as the run takes them, so the two cannot deadlock."""
    wanted = sorted(set(vendor_ids), key=str)
    # SQLite ignores FOR SHARE: without its write lock, the SELECT below could read a payout
    # that a run then closes before the lines go in (database.write_lock).
    write_lock(Payout, Payout.status == "open", Payout.currency == currency,
               Payout.vendor_id.in_(wanted))
    for _ in range(3):
        found = dict(db.session.execute(
            sa.select(Payout.vendor_id, Payout.id)
            .where(Payout.status == "open", Payout.currency == currency,
                   Payout.vendor_id.in_(wanted))
            .order_by(Payout.vendor_id).with_for_update(read=True)).all())
        missing = [v for v in wanted if v not in found]
        if not missing:
            return found
        # A concurrent writer (or a run leaving lines open) may create the same one: the
        # partial unique index keeps one, and the next SELECT finds it.
        now = utcnow()
        db.session.execute(
            insert_or_skip(Payout, ["vendor_id", "currency"], sa.text("status = 'open'")),
            [{"id": uuid.uuid4(), "vendor_id": v, "currency": currency, "status": "open",
              "created_at": now, "updated_at": now} for v in missing])
    raise RuntimeError(f"no open payout for {missing} in {currency}")
