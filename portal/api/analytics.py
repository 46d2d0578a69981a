"""GET /api/payments/analytics: the admin's analytics figures as JSON, for other services
(portal/analytics/services.py; amounts in minor units of one currency)."""

from __future__ import annotations

from datetime import date, timedelta

from werkzeug.datastructures import MultiDict

from ..analytics import services
from ..errors import DomainError
from .openapi import operation
from .schemas import (
    AnalyticsDay,
    AnalyticsDecline,
    AnalyticsOut,
    AnalyticsPeriod,
    AnalyticsQuery,
    AnalyticsTotals,
    AnalyticsVendor,
)
from .views import bp


@operation(bp, "GET", "/payments/analytics", query=AnalyticsQuery, roles=("admin", "service"),
           tag="analytics", summary="Get payment analytics",
           description="Gross volume, net revenue (platform fees less those given back with "
                       "refunds), payments, average order value, refunds, new and returning paying "
                       "customers, the success rate "
                       "and failed payments by reason, and payouts for a "
                       "period of UTC days and one currency, with the same figures for the "
                       "period of the same length before it, one point a day and the top 10 "
                       "vendors. Read from daily rollups; amounts of different currencies are "
                       "never added.",
           responses={200: AnalyticsOut, 400: None})
def payment_analytics(query: AnalyticsQuery) -> AnalyticsOut:
    given = {"currency": query.currency or ""}
    if query.from_ or query.to:
        given.update({"period": "custom", "from": query.from_ or "", "to": query.to or ""})
    q = services.parse(MultiDict(given))
    if q.errors:
        raise DomainError("the query is invalid", code="validation_error", fields=q.errors)
    f = services.figures(q)
    return AnalyticsOut(
        currency=q.currency.lower(), currencies=[c.lower() for c in f.currencies],
        period=_period(q.start, q.days), previousPeriod=_period(q.start - timedelta(q.days),
                                                                q.days),
        totals=_totals(f.current), previousTotals=_totals(f.previous),
        payoutsPaid=f.payouts_paid, payoutsPending=f.payouts_pending,
        daily=[AnalyticsDay(date=d.day.isoformat(), payments=d.payments, grossVolume=d.volume,
                            netRevenue=d.net_revenue, refunded=d.refunded,
                            successRate=d.success_rate) for d in f.series],
        topVendorsByGrossVolume=[_vendor(v) for v in f.top_by_gross],
        topVendorsByFees=[_vendor(v) for v in f.top_by_fees],
        declines=[AnalyticsDecline(reason=r, payments=n) for r, n in f.declines])


def _period(start: date, days: int) -> AnalyticsPeriod:
    return AnalyticsPeriod(start=start.isoformat(),
                           end=(start + timedelta(days=days - 1)).isoformat(), days=days)


def _totals(t: services.Totals) -> AnalyticsTotals:
    return AnalyticsTotals(payments=t.payments, grossVolume=t.volume, platformFees=t.fees,
                           feesReturned=t.fees_returned, netRevenue=t.net_revenue,
                           refunded=t.refunded, refundRate=t.refund_rate, refunds=t.refunds,
                           averageOrderValue=t.average, succeeded=t.succeeded,
                           failed=t.failed, successRate=t.success_rate, customers=t.customers,
                           newCustomers=t.new_customers,
                           returningCustomers=t.returning_customers)


def _vendor(v: services.VendorRow) -> AnalyticsVendor:
    return AnalyticsVendor(vendorId=str(v.vendor_id), email=v.email, grossVolume=v.gross,
                           fees=v.fees)
