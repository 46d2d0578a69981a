"""Refund pages: a request on the customer's payment page or the vendor's sales list, the
admin queue (inline and bulk decisions, HTMX), and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, time

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..extensions import db, limiter
from ..htmx import is_htmx, render
from ..models_base import parse_uuid
from ..money import MoneyError, format_minor, parse_amount, to_decimal
from ..orders.models import OrderItem
from ..payments.models import SETTLED_FOR_NOW, Payment
from . import services as refunds
from .forms import RefundRequestForm
from .models import REFUND_STATUSES, AuditEntry, RefundRequest

bp = Blueprint("refunds", __name__)


def _role(*roles: str) -> None:
    if current_user.role not in roles:
        abort(403)


# --- Requests: customers (payment page) and vendors (sales list) ------------------------------

def _request_page(payment: Payment, form: RefundRequestForm, status: int = 200):
    template = "payments/detail.html" if current_user.role == "customer" else (
        "refunds/vendor_request.html")
    return render_template(template, payment=payment, settled=SETTLED_FOR_NOW, form=form,
                           refund_requests=refunds.requests_of(payment),
                           refundable=refunds.requestable(current_user, payment)), status


def refund_context(payment: Payment) -> dict:
    """What the payment page shows about refunds (used by payments.detail too)."""
    left = refunds.requestable(current_user, payment)
    form = RefundRequestForm(formdata=None)
    form.amount.data = str(to_decimal(left, payment.currency)) if left else ""
    return {"form": form, "refund_requests": refunds.requests_of(payment), "refundable": left}


# Spam (finding 5): per signed-in user, not per address (customers behind one NAT do not share
# it, a new address does not reset it), and every attempt counts, refused ones too: each
# locks the payment row. A customer or vendor with several orders to refund waits a minute.
REQUEST_LIMIT = "5 per minute; 20 per hour"


def _requester() -> str:
    return f"refund-request:{current_user.id}"


@bp.route("/payments/<payment_id>/refunds", methods=["POST"])
@login_required  # first: the limit is keyed by the signed-in user
@limiter.limit(REQUEST_LIMIT, key_func=_requester)
def request_refund(payment_id: str):
    """A customer or a vendor asks for a refund; errors re-render the form, nothing changes."""
    _role("customer", "vendor")
    payment = refunds.payment_for_refund(current_user, payment_id)
    if payment is None:
        abort(404)
    form = RefundRequestForm()
    if not form.validate_on_submit():
        return _request_page(payment, form, 400)
    try:
        amount = parse_amount(form.amount.data, payment.currency, minimum=False)
        refunds.request_refund(current_user, payment, amount=amount, reason=form.reason.data,
                               notes=form.notes.data)
    except MoneyError as exc:
        form.amount.errors.append(str(exc).capitalize() + ".")
        return _request_page(payment, form, 400)
    except refunds.RefundError as exc:
        getattr(form, exc.field or "amount").errors.append(exc.message)
        return _request_page(payment, form, 400)
    flash("Your refund request was sent. You will see the decision here.", "info")
    if current_user.role == "vendor":
        return redirect(url_for("refunds.vendor_sales"))
    return redirect(url_for("payments.detail", payment_id=payment.id))


@bp.route("/vendor/sales")
@login_required
def vendor_sales():
    """A vendor's sales: payments with their items (their items only, never card details)."""
    _role("vendor")
    rows = db.session.execute(
        sa.select(Payment, sa.func.sum(OrderItem.quantity * OrderItem.unit_amount))
        .join(OrderItem, OrderItem.order_id == Payment.order_id)
        .where(OrderItem.vendor_id == current_user.id, Payment.status == "succeeded")
        .group_by(Payment.id).order_by(Payment.created_at.desc()).limit(200)).all()
    return render_template("refunds/vendor_sales.html", rows=rows)


@bp.route("/vendor/sales/<payment_id>/refund")
@login_required
def vendor_request(payment_id: str):
    """The refund request form for one of the vendor's sales."""
    _role("vendor")
    payment = refunds.payment_for_refund(current_user, payment_id)
    if payment is None:
        abort(404)
    return render_template("refunds/vendor_request.html", payment=payment,
                           **refund_context(payment))


# --- The admin queue --------------------------------------------------------------------------

def _day(value: str | None, end: bool = False) -> datetime | None:
    try:
        day = datetime.strptime(value or "", "%Y-%m-%d")
    except ValueError:
        return None
    return datetime.combine(day.date(), time.max if end else time.min, tzinfo=UTC)


@bp.route("/admin/refunds")
@login_required
def queue():
    """Refund requests, pending first by default, a page at a time (Older/Newer); filters
    and pages swap the table (HTMX)."""
    _role("admin")
    status = request.args.get("status", "requested")
    status = status if status in REFUND_STATUSES else None
    start, end = _day(request.args.get("from")), _day(request.args.get("to"), end=True)
    page = refunds.queue_page(status, start, end, before=request.args.get("before"),
                              after=request.args.get("after"))
    # What the page links keep: the filters, as given.
    filters = {"status": status or "all", "from": request.args.get("from", ""),
               "to": request.args.get("to", "")}
    return render("refunds/queue.html", "refunds/_queue_table.html",
                  rows=page.rows, page=page, filters={k: v for k, v in filters.items() if v},
                  status=status, statuses=REFUND_STATUSES, start=filters["from"],
                  end=filters["to"], outcomes={})


def _row(refund_request: RefundRequest, *, ok: str | None = None, error: str | None = None):
    return render_template("refunds/_queue_row.html", r=refund_request,
                           left=refunds.remaining(refund_request.payment), ok=ok, error=error)


def _request_or_404(request_id: str) -> RefundRequest:
    rid = parse_uuid(request_id)
    found = db.session.get(RefundRequest, rid) if rid else None
    if found is None:
        abort(404)
    return found


@bp.route("/admin/refunds/<request_id>/approve", methods=["POST"])
@login_required
def approve(request_id: str):
    """Approve inline (optionally a smaller amount); the row is swapped with the outcome."""
    _role("admin")
    found = _request_or_404(request_id)
    raw = request.form.get("amount", "").strip()
    try:
        amount = parse_amount(raw, found.currency, minimum=False) if raw else None
        done = refunds.approve(current_user, found.id, amount=amount,
                               note=request.form.get("note"))
    except MoneyError as exc:
        return _row(found, error=str(exc).capitalize() + ".")
    except refunds.RefundError as exc:
        db.session.expire_all()
        return _row(_request_or_404(request_id), error=exc.message)
    db.session.expire_all()
    done = _request_or_404(request_id)
    return _row(done, ok=f"Approved {format_minor(done.refund_amount, done.currency)}.")


@bp.route("/admin/refunds/<request_id>/reject", methods=["POST"])
@login_required
def reject(request_id: str):
    """Reject inline with a note the requester sees."""
    _role("admin")
    found = _request_or_404(request_id)
    try:
        refunds.reject(current_user, found.id, note=request.form.get("note"))
    except refunds.RefundError as exc:
        return _row(_request_or_404(request_id), error=exc.message)
    db.session.expire_all()
    return _row(_request_or_404(request_id), ok="Rejected.")


@bp.route("/admin/refunds/bulk", methods=["POST"])
@login_required
def bulk():
    """Approve or reject the selected requests; each row reports its own result."""
    _role("admin")
    action = request.form.get("action")
    if action not in ("approve", "reject"):
        abort(400)
    ids = [rid for rid in map(parse_uuid, request.form.getlist("ids")) if rid]
    outcomes = {o.request_id: o for o in refunds.decide_many(
        current_user, ids, action, note=request.form.get("note"))}
    db.session.expire_all()
    rows = [(r, refunds.remaining(r.payment)) for r in db.session.scalars(
        sa.select(RefundRequest).where(RefundRequest.id.in_(ids))
        .order_by(RefundRequest.created_at.desc()))]
    done = sum(o.ok for o in outcomes.values())
    summary = f"{done} of {len(outcomes)} {'approved' if action == 'approve' else 'rejected'}."
    if is_htmx():
        return render_template("refunds/_queue_table.html", rows=rows, outcomes=outcomes,
                               summary=summary)
    flash(summary, "info")
    return redirect(url_for("refunds.queue"))


@bp.route("/admin/audit")
@login_required
def audit_log():
    """Money-moving actions, newest first."""
    _role("admin")
    entries = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.at.desc())
                                 .limit(500))
    return render_template("refunds/audit.html", entries=list(entries))


