"""Endpoint 11 of the original description: a vendor's payouts with a summary."""

from __future__ import annotations

from datetime import timedelta

from flask import g

from ..auth.models import User
from ..ledger.models import Payout
from ..models_base import utcnow
from ..payouts import services as payouts
from .openapi import operation
from .schemas import (
    PayoutBreakdown,
    PayoutItem,
    PayoutPeriod,
    PayoutSummary,
    VendorPayoutsOut,
    VendorPayoutsQuery,
    iso,
)
from .views import bp


def payout_item(p: Payout) -> PayoutItem:
    """A payout as endpoint 11 lists it: its run's period (the last second included)."""
    return PayoutItem(
        id=str(p.id), vendorId=str(p.vendor_id),
        period=PayoutPeriod(start=iso(p.run.period_start) if p.run.period_start else None,
                            end=iso(p.run.until - timedelta(seconds=1))),
        amount=p.amount, currency=p.currency.lower(), status=p.status,
        breakdown=PayoutBreakdown(totalSales=p.total_sales, platformFee=p.platform_fee,
                                  netAmount=p.amount, refunds=p.refunds),
        paymentCount=p.payment_count, paidAt=iso(p.paid_at) if p.paid_at else None)


def summary(vendor: User, currency: str | None) -> PayoutSummary:
    """The vendor's paid and not yet paid totals in one currency: ``currency``, else the
    latest payout's, else any the vendor has lines in."""
    totals = {t.currency: t for t in payouts.totals(vendor)}
    latest, _ = payouts.payouts_of(vendor, per_page=1)
    currency = currency or (latest[0].currency if latest else None) or next(iter(totals), None)
    currency = currency.upper() if currency else None
    shown = totals.get(currency)
    return PayoutSummary(
        totalPaid=shown.paid if shown else 0, totalPending=shown.pending if shown else 0,
        nextPayoutDate=iso(payouts.next_payout_date(payouts.schedule_period(), utcnow())),
        currency=currency.lower() if currency else None)


@operation(bp, "GET", "/payments/vendor/payouts", query=VendorPayoutsQuery, roles=("vendor",),
           summary="Get vendor payouts",
           description="The caller's payouts, newest first. `summary` sums one currency "
                       "(`currency`, default: the latest payout's): paid, and not yet paid "
                       "(split lines not in a paid payout).",
           responses={200: VendorPayoutsOut})
def vendor_payouts(query: VendorPayoutsQuery) -> VendorPayoutsOut:
    """Endpoint 11."""
    items, _ = payouts.payouts_of(g.api_user, status=query.status, page=query.page,
                                  per_page=query.limit)
    return VendorPayoutsOut(payouts=[payout_item(p) for p in items],
                            summary=summary(g.api_user, query.currency))
