"""Endpoint 11 of the original description: a vendor's payouts with a summary."""

from __future__ import annotations

from datetime import timedelta

from flask import g, jsonify

from ..models_base import utcnow
from ..payouts import services as payouts
from .openapi import operation
from .schemas import VendorPayoutsOut, VendorPayoutsQuery, iso
from .views import bp


@operation(bp, "GET", "/payments/vendor/payouts", query=VendorPayoutsQuery, roles=("vendor",),
           summary="Get vendor payouts",
           description="The caller's payouts, newest first. `summary` sums one currency "
                       "(`currency`, default: the latest payout's): paid, and not yet paid "
                       "(split lines not in a paid payout).",
           responses={200: VendorPayoutsOut})
def vendor_payouts(query: VendorPayoutsQuery):
    """Endpoint 11."""
    vendor = g.api_user
    items, _ = payouts.payouts_of(vendor, status=query.status, page=query.page,
                                  per_page=query.limit)
    totals = {t.currency: t for t in payouts.totals(vendor)}
    latest, _ = payouts.payouts_of(vendor, per_page=1)
    currency = (query.currency or (latest[0].currency if latest else None)
                or next(iter(totals), None))
    currency = currency.upper() if currency else None
    shown = totals.get(currency)
    now = utcnow()
    return jsonify(success=True, payouts=[{
        "_id": str(p.id), "vendorId": str(p.vendor_id),
        "period": {"start": iso(p.run.period_start) if p.run.period_start else None,
                   "end": iso(p.run.until - timedelta(seconds=1))},
        "amount": p.amount, "currency": p.currency.lower(), "status": p.status,
        "breakdown": {"totalSales": p.total_sales, "platformFee": p.platform_fee,
                      "netAmount": p.amount, "refunds": p.refunds},
        "paymentCount": p.payment_count, "paidAt": iso(p.paid_at) if p.paid_at else None,
    } for p in items], summary={
        "totalPaid": shown.paid if shown else 0, "totalPending": shown.pending if shown else 0,
        "nextPayoutDate": iso(payouts.next_payout_date(payouts.schedule_period(), now)),
        "currency": currency.lower() if currency else None})
