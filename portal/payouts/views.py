"""The vendor's pages: the dashboard (Connect onboarding, totals, balance, charts, payouts,
the statement form), their sales and each sale's page, a payout's breakdown and the CSV
statement. The admin payouts pages are admin's."""

from __future__ import annotations

import contextlib

from flask import (
    Blueprint,
    Response,
    abort,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from .. import stripe_gateway as gateway
from ..auth.access import roles_required
from ..htmx import is_htmx
from ..models_base import parse_uuid, utcnow
from . import services as payouts
from . import statements

bp = Blueprint("payouts", __name__)


def _dashboard(**override) -> str:
    days = 90 if request.args.get("days") == "90" else 30
    return render_template("payouts/dashboard.html", **{**statements.dashboard(
        current_user, days, utcnow(), request.args.get("page")), **override})


@bp.route("/vendor")
@roles_required("vendor")
def dashboard():
    """Totals, available vs pending, next payout, a daily net chart per currency, payouts,
    Connect status, the statement form."""
    return _dashboard()


@bp.route("/vendor/sales")
@roles_required("vendor")
def sales():
    """A vendor's sales, a page at a time: payments with their items (their items only,
    never card details), their own refunds and net."""
    return render_template("payouts/sales.html",
                           page=statements.sales(current_user, request.args.get("page")))


@bp.route("/vendor/sales/<payment_id>")
@roles_required("vendor")
def sale(payment_id: str):
    """One paid order as its vendor sees it; 404 unless it has items of theirs."""
    found = statements.sale_detail(current_user, parse_uuid(payment_id))
    if found is None:
        abort(404)
    return render_template("payouts/sale.html", sale=found, now=utcnow())


@bp.route("/vendor/connect", methods=["POST"])
@roles_required("vendor")
def connect():
    """Create (once) the vendor's Express account and send them to Stripe's onboarding.
    Answered with HX-Redirect: a script navigation, which CSP's form-action does not cover.
    Stripe unreachable: the error (503) propagates; htmx shows its message."""
    url = payouts.start_onboarding(
        current_user, return_url=url_for("payouts.connect_return", _external=True),
        refresh_url=url_for("payouts.connect_refresh", _external=True))
    if not is_htmx():
        return redirect(url)
    response = make_response("", 204)
    response.headers["HX-Redirect"] = url
    return response


@bp.route("/vendor/connect/return")
@roles_required("vendor")
def connect_return():
    """Back from Stripe's onboarding: read the account's state now, if Stripe answers (the
    account.updated webhook follows either way)."""
    account = payouts.account_of(current_user)
    if account and account.stripe_account_id:
        with contextlib.suppress(gateway.GatewayError):  # read before anything changes
            payouts.sync_account(account.stripe_account_id)
    return redirect(url_for("payouts.dashboard"))


@bp.route("/vendor/connect/refresh")
@roles_required("vendor")
def connect_refresh():
    """Stripe sends the vendor here when the onboarding link expired: make a new one."""
    return render_template("payouts/refresh.html")


@bp.route("/vendor/payouts/<payout_id>")
@roles_required("vendor", "admin")
def payout_detail(payout_id: str):
    """One payout: its breakdown, and the payments and lines inside it."""
    payout = payouts.payout_for(current_user, parse_uuid(payout_id))
    if payout is None:
        abort(404)
    return render_template("payouts/detail.html", payout=payout, lines=payouts.lines_of(payout),
                           reason=payouts.failure_for_vendor if current_user.role == "vendor"
                           else None)


@bp.route("/vendor/statement.csv")
@roles_required("vendor")
def statement_csv():
    """The vendor's lines of a period (default: the last 30 days; a year at most) with
    totals, as CSV; days at fault show the dashboard again with their messages (400)."""
    period = statements.statement_period(request.args.get("from"), request.args.get("to"),
                                         utcnow())
    if period.errors:
        return _dashboard(statement=period), 400
    text, name = statements.statement_csv(current_user, period.start, period.end)
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
