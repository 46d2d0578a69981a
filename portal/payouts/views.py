"""The vendor dashboard (Connect onboarding, totals, chart, payouts, statement CSV) and the
admin payouts pages."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from .. import stripe_gateway as gateway
from ..days import RANGE, parse_day
from ..extensions import db
from ..htmx import is_htmx
from ..models_base import parse_uuid, utcnow
from ..money import to_decimal
from . import services as payouts
from .models import PAYOUT_STATUSES, PERIODS, PayoutRun

bp = Blueprint("payouts", __name__)


def _role(role: str) -> None:
    if current_user.role != role:
        abort(403)


# --- Vendors --------------------------------------------------------------------------------

@bp.route("/vendor")
@login_required
def dashboard():
    """Totals, paid vs pending, next payout, daily net chart, payouts, Connect status."""
    _role("vendor")
    days = 90 if request.args.get("days") == "90" else 30
    now = utcnow()
    account = payouts.account_of(current_user)
    items, total = payouts.payouts_of(current_user, per_page=50)
    series = payouts.daily_net(current_user, days, now.date())
    currencies = sorted({c for _, per in series for c in per})
    chart_currency = currencies[0] if currencies else None
    return render_template(
        "payouts/dashboard.html", account=account, missing=payouts.missing(account),
        totals=payouts.totals(current_user), payouts=items, payout_total=total,
        next_date=payouts.next_payout_date(payouts.schedule_period(), now),
        series=series, days=days, chart_currency=chart_currency,
        waiting=payouts.waiting_for_funds(now, current_user),
        peak=max([abs(per.get(chart_currency, 0)) for _, per in series] + [1]),
        not_connected=payouts.NOT_CONNECTED)


@bp.route("/vendor/connect", methods=["POST"])
@login_required
def connect():
    """Create (once) the vendor's Express account and send them to Stripe's onboarding.
    Answered with HX-Redirect: a script navigation, which CSP's form-action does not cover."""
    _role("vendor")
    try:
        url = payouts.start_onboarding(
            current_user, return_url=url_for("payouts.connect_return", _external=True),
            refresh_url=url_for("payouts.connect_refresh", _external=True))
    except gateway.GatewayError:
        db.session.rollback()
        flash("We could not reach Stripe; please try again in a moment.", "error")
        url = url_for("payouts.dashboard")
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url)


@bp.route("/vendor/connect/return")
@login_required
def connect_return():
    """Back from Stripe's onboarding: read the account's state now (the webhook follows)."""
    _role("vendor")
    account = payouts.account_of(current_user)
    if account and account.stripe_account_id:
        try:
            payouts.sync_account(account.stripe_account_id)
            db.session.commit()
        except gateway.GatewayError:
            db.session.rollback()
    return redirect(url_for("payouts.dashboard"))


@bp.route("/vendor/connect/refresh")
@login_required
def connect_refresh():
    """Stripe sends the vendor here when the onboarding link expired: make a new one."""
    _role("vendor")
    return render_template("payouts/refresh.html")


@bp.route("/vendor/payouts/<payout_id>")
@login_required
def payout_detail(payout_id: str):
    """One payout: its breakdown, and the payments and lines inside it."""
    if current_user.role not in ("vendor", "admin"):
        abort(403)
    payout = payouts.payout_for(current_user, parse_uuid(payout_id))
    if payout is None:
        abort(404)
    return render_template("payouts/detail.html", payout=payout,
                           lines=payouts.lines_of(payout), not_connected=payouts.NOT_CONNECTED)


def _day(value: str | None, fallback: datetime) -> datetime | None:
    """A day at 00:00 UTC; ``fallback`` when not given; None when it is not a day the portal
    accepts (a bad link or a typo: a 400, not an overflow)."""
    return parse_day(value) if value else fallback


@bp.route("/vendor/statement.csv")
@login_required
def statement_csv():
    """The vendor's lines of a period (default: the last 30 days) with totals, as CSV."""
    _role("vendor")
    today = utcnow().date()
    end_default = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    start = _day(request.args.get("from"), end_default - timedelta(days=30))
    last = _day(request.args.get("to"), end_default - timedelta(days=1))
    if start is None or last is None or start > last:
        return render_template("error.html", status=400,
                               message=f"from and to must be {RANGE}, from before to."), 400
    end = last + timedelta(days=1)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date", "order", "payment_id", "kind", "currency", "gross", "fee", "net",
                     "payout_id", "payout_status"])
    sums: dict[str, list[int]] = {}
    for line, order_id, payout_status in payouts.statement(current_user, start, end):
        writer.writerow([
            line.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "#" + str(order_id).split("-")[0].upper(), line.payment_id,
            line.kind, line.currency,
            *(to_decimal(v, line.currency) for v in (line.gross, line.fee, line.net)),
            "" if payout_status == "open" else line.payout_id,
            "unpaid" if payout_status == "open" else payout_status])
        total = sums.setdefault(line.currency, [0, 0, 0])
        for i, v in enumerate((line.gross, line.fee, line.net)):
            total[i] += v
    for currency, (gross, fee, net) in sorted(sums.items()):
        writer.writerow(["total", "", "", "", currency, to_decimal(gross, currency),
                         to_decimal(fee, currency), to_decimal(net, currency), "", ""])
    name = f"statement-{start:%Y%m%d}-{end - timedelta(days=1):%Y%m%d}.csv"
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- Admins ---------------------------------------------------------------------------------

@bp.route("/admin/payouts")
@login_required
def admin_index():
    """Payout runs with their payouts; run, approve, retry."""
    _role("admin")
    status = request.args.get("status")
    runs = list(db.session.scalars(sa.select(PayoutRun).order_by(PayoutRun.created_at.desc())
                                   .limit(20)))
    return render_template("payouts/admin.html", runs=runs, status=status,
                           statuses=PAYOUT_STATUSES, not_connected=payouts.NOT_CONNECTED)


@bp.route("/admin/payouts/run", methods=["POST"])
@login_required
def admin_run():
    """Run payouts now for lines up to now (or up to the given day)."""
    _role("admin")
    period = request.form.get("period") or payouts.schedule_period()
    until = _day(request.form.get("until"), utcnow())
    if period not in PERIODS or until is None:
        flash(f"The period must be {' or '.join(PERIODS)}, and the day one of the {RANGE}.",
              "error")
        return admin_index(), 400
    run = payouts.run_payouts(period=period, until=until, actor=current_user)
    done = f"Created {len(run.payouts)} payouts." if run else "Nothing to pay."
    flash(f"{done} {payouts.waiting_note()}".strip(), "info")
    return redirect(url_for("payouts.admin_index"))


@bp.route("/admin/payouts/runs/<run_id>/approve", methods=["POST"])
@login_required
def admin_approve(run_id: str):
    """Approve a run: its payouts are sent to the vendors' accounts."""
    _role("admin")
    run = db.session.get(PayoutRun, parse_uuid(run_id)) if parse_uuid(run_id) else None
    if run is None:
        abort(404)
    flash(f"Sending {payouts.approve_run(current_user, run.id)} payouts.", "info")
    return redirect(url_for("payouts.admin_index"))


@bp.route("/admin/payouts/<payout_id>/retry", methods=["POST"])
@login_required
def admin_retry(payout_id: str):
    """Send a failed payout again."""
    _role("admin")
    found = parse_uuid(payout_id)
    if found is None or not payouts.retry_payout(current_user, found):
        abort(404)
    flash("The payout was queued again.", "info")
    return redirect(url_for("payouts.admin_index"))
