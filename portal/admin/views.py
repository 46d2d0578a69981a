"""Every admin page, under /admin: the refund queue (inline and bulk decisions, HTMX), the
audit log, payout runs, the Stripe event log (inspect, replay) and the outbox. Lists are
keyset pages (queries.py); the work is the packages' services (and services.py)."""

from __future__ import annotations

import hmac
import json

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user

from ..auth.access import roles_required
from ..days import RANGE, parse_day
from ..documents import credit_notes, invoices
from ..htmx import is_htmx, render
from ..ledger.models import PAYMENT_STATUSES, PERIODS
from ..models_base import parse_uuid, utcnow
from ..money import SUPPORTED, MoneyError, format_minor, parse_amount
from ..outbox.models import STATUSES as OUTBOX_STATUSES
from ..payouts import reversals
from ..payouts import services as payouts
from ..refunds import services as refunds
from ..refunds.forms import quantities_from, quantity_name
from ..refunds.models import FORM_REASONS, REFUND_STATUSES, RefundRequest
from ..stripe_gateway import API_VERSION
from ..webhooks.models import EVENT_STATUSES
from . import queries, search, services, timeline

bp = Blueprint("admin", __name__, url_prefix="/admin")


# The back office: to anyone but an admin, these pages do not exist (404, not 403).
admin_only = roles_required("admin", hidden=True)


def _pages() -> dict[str, str | None]:
    return {"before": request.args.get("before"), "after": request.args.get("after")}


def _filters(**values: str | None) -> dict[str, str]:
    """What the Newer/Older links keep: the filters as given."""
    return {k: v for k, v in values.items() if v}


# --- Payments -----------------------------------------------------------------------------------

@bp.route("/payments")
@admin_only
def payments():
    """Search payments: the box and filters are the query string; HTMX swaps form and
    results together, so field messages show. A search that cannot be read answers 400
    (marked X-Form-Errors: static/js/portal.js swaps it all the same)."""
    found = search.parse(request.args)
    page = None if found.errors else search.find(found)
    html = render("admin/payments.html", "admin/_payment_search.html", s=found, page=page,
                  summary=search.summary(found), statuses=PAYMENT_STATUSES,
                  currencies=sorted(SUPPORTED), sources=search.SOURCES)
    if found.errors:
        return html, 400, {"X-Form-Errors": "1", "X-Error-Message": "Check the filters."}
    return html


@bp.route("/payments.csv")
@admin_only
def payments_csv():
    """The CSV of every payment the search finds, streamed."""
    found = search.parse(request.args)
    if found.errors:
        return payments()
    return Response(stream_with_context(search.csv_rows(found)),
                    mimetype="text/csv", headers={
                        "Content-Disposition":
                            f'attachment; filename="{search.export_name(utcnow())}"'})


def _timeline_or_404(payment_id: str) -> timeline.Timeline:
    found = timeline.timeline(payment_id)
    if found is None:
        abort(404)
    return found


def _payment_page(t: timeline.Timeline, error: str | None = None, confirm: int | None = None):
    lines = refunds.item_lines(current_user, t.payment)
    return render_template("admin/payment.html", t=t, error=error, reasons=FORM_REASONS,
                           invoice=invoices.invoice_of(t.payment),
                           credit_notes=credit_notes.credit_notes_of(t.payment),
                           refundable=refunds.remaining(t.payment), item_lines=lines,
                           quantity_name=quantity_name, confirm=confirm,
                           typed=request.form), 400 if error else 200


@bp.route("/payments/<payment_id>")
@admin_only
def payment(payment_id: str):
    """Everything that happened to one payment, in time order; refund, resend the receipt."""
    return _payment_page(_timeline_or_404(payment_id))


@bp.route("/payments/<payment_id>/refund", methods=["POST"])
@admin_only
def refund_payment(payment_id: str):
    """Refund now (the admin's request, approved by them and executed at Stripe) items or an
    amount: first the amount to confirm, then, with confirm=yes, the refund."""
    t = _timeline_or_404(payment_id)
    form = request.form
    try:
        text = form.get("amount", "").strip()
        amount = parse_amount(text, t.payment.currency) if text else None
        ids = [line.item.id for line in refunds.item_lines(current_user, t.payment)]
        quantities = quantities_from(form, ids) or None
        if form.get("confirm") != "yes":
            return _payment_page(t, confirm=refunds.preview(
                current_user, t.payment, amount=amount, quantities=quantities))
        expected = form.get("expected", "")
        done = refunds.refund_now(current_user, t.payment, amount=amount,
                                  reason=form.get("reason", ""), notes=form.get("note"),
                                  quantities=quantities,
                                  expected=int(expected) if expected.isdigit() else -1)
    except refunds.Changed as exc:  # confirm again, the new amount
        return _payment_page(t, exc.message, confirm=exc.amount)
    except (MoneyError, refunds.RefundError, ValueError) as exc:
        return _payment_page(t, getattr(exc, "message", None) or str(exc).capitalize())
    flash(f"Refund of {format_minor(done.refund_amount, done.currency)}: {done.status}.", "info")
    return redirect(url_for("admin.payment", payment_id=payment_id))


@bp.route("/payments/<payment_id>/resend-receipt", methods=["POST"])
@admin_only
def resend_receipt(payment_id: str):
    """E-mail the receipt again."""
    status = services.resend_receipt(current_user, payment_id)
    flash(f"Receipt e-mailed again: {(status or 'unknown').replace('_', ' ')}.", "info")
    return redirect(url_for("admin.payment", payment_id=payment_id))


# --- Refund requests ----------------------------------------------------------------------------

@bp.route("/refunds")
@admin_only
def refunds_queue():
    """Refund requests, pending first by default, a page at a time (Older/Newer); filters
    and pages swap the table (HTMX)."""
    args = request.args
    status = args.get("status", "requested")
    status = status if status in REFUND_STATUSES else None
    page = queries.refund_queue(status, *queries.day_range(args.get("from"), args.get("to")),
                                **_pages())
    return render("admin/refunds.html", "admin/_refund_table.html",
                  groups=queries.grouped(page.rows),
                  page=page, outcomes={}, status=status, statuses=REFUND_STATUSES,
                  start=args.get("from", ""), end=args.get("to", ""),
                  filters=_filters(status=status or "all", **{
                      "from": args.get("from"), "to": args.get("to")}))


def _row(refund_request: RefundRequest, *, ok: str | None = None, error: str | None = None):
    [group] = queries.grouped(queries.with_refundable([refund_request]))
    return render_template("admin/_refund_row.html", r=group.rows[0], left=group.left,
                           overlaps=group.overlaps.get(refund_request.id, []), ok=ok,
                           error=error)


def _request_or_404(request_id: str) -> RefundRequest:
    found = queries.refund_request(request_id)
    if found is None:
        abort(404)
    return found


@bp.route("/refunds/<request_id>/approve", methods=["POST"])
@admin_only
def approve_refund(request_id: str):
    """Approve inline (optionally a smaller amount); the row is swapped with the outcome."""
    found = _request_or_404(request_id)
    raw = request.form.get("amount", "").strip()
    try:
        amount = parse_amount(raw, found.currency, minimum=False) if raw else None
        done = refunds.approve(current_user, found.id, amount=amount,
                               note=request.form.get("note"))
    except MoneyError as exc:
        return _row(found, error=str(exc).capitalize() + ".")
    except refunds.RefundError as exc:
        return _row(found, error=exc.message)
    return _row(done, ok=f"Approved {format_minor(done.refund_amount, done.currency)}.")


@bp.route("/refunds/<request_id>/reject", methods=["POST"])
@admin_only
def reject_refund(request_id: str):
    """Reject inline with a note the requester sees."""
    found = _request_or_404(request_id)
    try:
        refunds.reject(current_user, found.id, note=request.form.get("note"))
    except refunds.RefundError as exc:
        return _row(found, error=exc.message)
    return _row(found, ok="Rejected.")


@bp.route("/refunds/bulk", methods=["POST"])
@admin_only
def refunds_bulk():
    """Approve or reject the selected requests; each row reports its own result."""
    action = request.form.get("action")
    if action not in ("approve", "reject"):
        abort(400)
    ids = [rid for rid in map(parse_uuid, request.form.getlist("ids")) if rid]
    if action == "approve" and request.form.get("confirm") != "yes":
        return _confirm_bulk(ids)
    outcomes = {o.request_id: o for o in refunds.decide_many(
        current_user, ids, action, note=request.form.get("note"))}
    done = sum(o.ok for o in outcomes.values())
    summary = f"{done} of {len(outcomes)} {'approved' if action == 'approve' else 'rejected'}."
    if not is_htmx():
        flash(summary, "info")
        return redirect(url_for("admin.refunds_queue"))
    return render_template("admin/_refund_table.html",
                           groups=queries.grouped(queries.refund_requests(ids)),
                           outcomes=outcomes, summary=summary)


def _confirm_bulk(ids: list):
    """Money moves on a second click: the selected requests waiting for a decision, and
    what approving them refunds per currency."""
    chosen = [r for r, _ in queries.refund_requests(ids) if r.status == "requested"]
    totals: dict[str, int] = {}
    for r in chosen:
        totals[r.currency] = totals.get(r.currency, 0) + r.amount
    html = render_template("admin/_refund_confirm.html", chosen=chosen, totals=totals,
                           note=request.form.get("note", ""))
    # None waiting among those selected (decided meanwhile, or not ids): refused, said so.
    return (html, 400, {"X-Form-Errors": "1"}) if not chosen else html


@bp.route("/audit")
@admin_only
def audit_log():
    """Money-moving actions, newest first, a page at a time."""
    return render_template("admin/audit.html", page=queries.audit_log(**_pages()))


# --- Payouts ------------------------------------------------------------------------------------

def _payouts_page():
    return render_template("admin/payouts.html", page=queries.payout_runs(**_pages()),
                           not_connected=payouts.NOT_CONNECTED, now=utcnow(),
                           debts=reversals.vendors_in_debt(),
                           policy=current_app.extensions["portal_config"].REFUND_AFTER_PAYOUT)


@bp.route("/payouts")
@admin_only
def payout_runs():
    """Payout runs with their payouts, a page of runs at a time; run, approve, retry."""
    return _payouts_page()


@bp.route("/payouts/run", methods=["POST"])
@admin_only
def run_payouts():
    """Run payouts now for lines up to now (or up to the given day)."""
    period = request.form.get("period") or payouts.schedule_period()
    until = parse_day(request.form.get("until")) if request.form.get("until") else utcnow()
    if period not in PERIODS or until is None:
        flash(f"The period must be {' or '.join(PERIODS)}, and the day one of the {RANGE}.",
              "error")
        return _payouts_page(), 400
    run = payouts.run_payouts(period=period, until=until, actor=current_user)
    done = f"Created {len(run.payouts)} payouts." if run else "Nothing to pay."
    flash(f"{done} {payouts.waiting_note()}".strip(), "info")
    return redirect(url_for("admin.payout_runs"))


@bp.route("/payouts/runs/<run_id>/approve", methods=["POST"])
@admin_only
def approve_run(run_id: str):
    """Approve a run: its payouts are sent to the vendors' accounts, only once the admin
    confirmed the amounts. Without the confirmation's token, or with one for payouts that
    changed since (409), the confirmation is shown (again) and nothing is sent."""
    run = queries.payout_run(run_id)
    if run is None:
        abort(404)
    if run.approved_at:
        flash("This run was already approved: retry a payout from its row.", "error")
        return redirect(url_for("admin.payout_runs"))
    sending, token = payouts.to_send(run), request.form.get("confirm")
    if token is None or not hmac.compare_digest(token, sending.token):
        return render_template("admin/payout_confirm.html", run=run, sending=sending,
                               changed=token is not None), 409 if token is not None else 200
    sent = payouts.approve_run(current_user, run.id)
    if sent is None:  # another admin confirmed it meanwhile
        flash("This run was already approved: retry a payout from its row.", "error")
    else:
        flash(f"Sending {sent} payout{'' if sent == 1 else 's'}.", "info")
    return redirect(url_for("admin.payout_runs"))


@bp.route("/payouts/<payout_id>/retry", methods=["POST"])
@admin_only
def retry_payout(payout_id: str):
    """Send a failed payout again."""
    found = parse_uuid(payout_id)
    if found is None or not payouts.retry_payout(current_user, found):
        abort(404)
    flash("The payout was queued again.", "info")
    return redirect(url_for("admin.payout_runs"))


# --- Stripe events and the outbox ---------------------------------------------------------------

@bp.route("/events")
@admin_only
def events():
    """Stored Stripe events, newest first; filters by type, status and day swap the table."""
    args = request.args
    kind = (args.get("type") or "").strip()[:100]
    status = args.get("status") if args.get("status") in EVENT_STATUSES else None
    page = queries.events(kind, status, *queries.day_range(args.get("from"), args.get("to")),
                          **_pages())
    return render("admin/events.html", "admin/_event_table.html", page=page, kind=kind,
                  status=status, statuses=EVENT_STATUSES, failed=queries.failed_events(),
                  pinned=API_VERSION, versions=queries.other_api_versions(API_VERSION),
                  start=args.get("from", ""), end=args.get("to", ""),
                  filters=_filters(type=kind, status=status,
                                   **{"from": args.get("from"), "to": args.get("to")}))


@bp.route("/events/<event_id>")
@admin_only
def event(event_id: str):
    """One event: its payload and the last error with its traceback."""
    found = queries.event(event_id)
    if found is None:
        abort(404)
    return render_template("admin/event.html", event=found,
                           payload=json.dumps(found.payload, indent=2, sort_keys=True))


@bp.route("/events/<event_id>/replay", methods=["POST"])
@admin_only
def replay_event(event_id: str):
    """Process one event again."""
    services.replay(current_user, event_id)
    flash(f"Event {event_id} was queued again.", "info")
    return redirect(url_for("admin.event", event_id=event_id))


@bp.route("/events/replay-failed", methods=["POST"])
@admin_only
def replay_failed():
    """Process every failed event again."""
    flash(f"{services.replay_failed(current_user)} failed event(s) queued again.", "info")
    return redirect(url_for("admin.events"))


@bp.route("/outbox")
@admin_only
def outbox():
    """Notifications and receipts: sent, waiting, given up, or kept (no SMTP server)."""
    status = request.args.get("status")
    status = status if status in OUTBOX_STATUSES else None
    return render_template("admin/outbox.html", page=queries.outbox(status, **_pages()),
                           status=status, statuses=OUTBOX_STATUSES,
                           filters=_filters(status=status))


@bp.route("/outbox/<message_id>/retry", methods=["POST"])
@admin_only
def retry_message(message_id: str):
    """Try a given-up message again (another 24 h of attempts), now."""
    status = services.retry_message(current_user, message_id) or ""
    flash(f"Tried again: {status.replace('_', ' ')}.",
          "info" if status in ("sent", "kept") else "error")
    return redirect(url_for("admin.outbox"))
