"""Refund requests: on the customer's payment page and from the vendor's sales list. The
admin queue is admin's (portal.admin)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth.access import roles_required
from ..extensions import limiter
from ..ledger.models import SETTLED_FOR_NOW, Payment
from ..money import MoneyError, parse_amount, to_decimal
from . import services as refunds
from .forms import RefundRequestForm, quantities_from, quantity_name

bp = Blueprint("refunds", __name__)


def _request_page(payment: Payment, form: RefundRequestForm, status: int = 200,
                  items_error: str | None = None):
    template = "payments/detail.html" if current_user.role == "customer" else (
        "refunds/vendor_request.html")
    return render_template(template, payment=payment, settled=SETTLED_FOR_NOW,
                           **refund_context(payment, form, items_error)), status


def refund_context(payment: Payment, form: RefundRequestForm | None = None,
                   items_error: str | None = None) -> dict:
    """What the payment page shows about refunds (used by payments.detail too): the form,
    the items that may be refunded and the requests made."""
    left = refunds.requestable(current_user, payment)
    lines = refunds.item_lines(current_user, payment) if left else []
    if form is None:
        form = RefundRequestForm(formdata=None)
        form.amount.data = "" if lines else str(to_decimal(left, payment.currency))
    return {"form": form, "refund_requests": refunds.requests_of(payment), "refundable": left,
            "item_lines": lines, "items_error": items_error, "quantity_name": quantity_name,
            "typed": request.form if request.method == "POST" else {}}


def _payment_or_404(payment_id: str) -> Payment:
    payment = refunds.payment_for_refund(current_user, payment_id)
    if payment is None:
        abort(404)
    return payment


# Spam (finding 5): per signed-in user, not per address (customers behind one NAT do not share
# it, a new address does not reset it), and every attempt counts, refused ones too: each
# locks the payment row. A customer or vendor with several orders to refund waits a minute.
REQUEST_LIMIT = "5 per minute; 20 per hour"


def _requester() -> str:
    return f"refund-request:{current_user.id}"


@bp.route("/payments/<payment_id>/refunds", methods=["POST"])
@roles_required("customer", "vendor")  # first: the limit is keyed by the signed-in user
@limiter.limit(REQUEST_LIMIT, key_func=_requester)
def request_refund(payment_id: str):
    """A customer or a vendor asks for a refund; errors re-render the form, nothing changes."""
    payment = _payment_or_404(payment_id)
    form = RefundRequestForm()
    if form.validate_on_submit():
        error = _ask(payment, form)
        if error is None:
            flash("Your refund request was sent. You will see the decision here.", "info")
            if current_user.role == "vendor":
                return redirect(url_for("payouts.sales"))
            return redirect(url_for("payments.detail", payment_id=payment.id))
        return _request_page(payment, form, 400, error or None)
    return _request_page(payment, form, 400)


def _ask(payment: Payment, form: RefundRequestForm) -> str | None:
    """Ask for the form's refund. None when asked; when refused, the message for the items
    ("" when it is under the form's field instead)."""
    try:
        ids = [line.item.id for line in refunds.item_lines(current_user, payment)]
        quantities = quantities_from(request.form, ids)
        text = (form.amount.data or "").strip()
        amount = parse_amount(text, payment.currency, minimum=False) if text else None
        refunds.request_refund(current_user, payment, amount=amount, reason=form.reason.data,
                               notes=form.notes.data, quantities=quantities)
    except MoneyError as exc:
        form.amount.errors.append(str(exc).capitalize() + ".")
    except refunds.RefundError as exc:
        if exc.field == "items":
            return exc.message
        getattr(form, exc.field or "amount").errors.append(exc.message)
    except ValueError as exc:
        return str(exc)
    else:
        return None
    return ""


@bp.route("/vendor/sales/<payment_id>/refund")
@roles_required("vendor")
def vendor_request(payment_id: str):
    """The refund request form for one of the vendor's sales."""
    payment = _payment_or_404(payment_id)
    return render_template("refunds/vendor_request.html", payment=payment,
                           **refund_context(payment))
