"""The admin's analytics page: a period, one currency, the figures, their change against the
period before, and daily charts (portal/analytics/services.py)."""

from __future__ import annotations

from flask import Blueprint, request

from ..auth.access import roles_required
from ..charts import bar_chart
from ..htmx import render
from ..money import format_minor
from . import services

bp = Blueprint("analytics", __name__, url_prefix="/admin")
admin_only = roles_required("admin", hidden=True)


@bp.route("/analytics")
@admin_only
def page():
    """Figures for the period and currency of the query string; a value that cannot be read
    shows the form again with its message (400)."""
    q = services.parse(request.args)
    figures = None if q.errors else services.figures(q)
    return render("analytics/page.html", "analytics/_figures.html", q=q, f=figures,
                  periods=services.PERIODS, change=services.change,
                  charts=_charts(figures) if figures else []), (400 if q.errors else 200)


def _charts(f: services.Figures) -> list:
    currency = f.query.currency

    def amount(value: int) -> str:
        return format_minor(value, currency)

    return [bar_chart("volume", "Gross volume", [(d.day, d.volume) for d in f.series], amount),
            bar_chart("revenue", "Net revenue", [(d.day, d.net_revenue) for d in f.series],
                      amount),
            bar_chart("success", "Success rate",
                      [(d.day, d.success_rate * 100 if d.success_rate is not None else None)
                       for d in f.series], lambda v: f"{v:.1f} %"),
            bar_chart("refunds", "Refunded", [(d.day, d.refunded) for d in f.series], amount),
            bar_chart("payments", "Payments", [(d.day, d.payments) for d in f.series], str)]
