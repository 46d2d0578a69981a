"""Checkout, completion with live status, payment detail and history pages."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from .. import stripe_gateway as gateway
from ..cards import services as cards
from ..documents import credit_notes, invoices, pdf
from ..extensions import limiter
from ..htmx import render
from ..ledger.models import SETTLED_FOR_NOW
from ..orders.services import order_for
from ..refunds.views import refund_context
from . import declines, filters
from .completion import completion
from .services import (
    AlreadyPaid,
    CheckoutError,
    ProcessorUnavailable,
    confirm_with_card,
    history,
    offer_to_save_card,
    payment_for,
    payment_of_order,
    refresh_payment,
    start_checkout,
)

bp = Blueprint("payments", __name__)

UNREACHABLE = "We could not reach the payment processor; please try again in a moment."


def _own_order(order_id: str):
    order = order_for(current_user, order_id)
    if order is None or order.customer_id != current_user.id:
        abort(404)  # another customer's order is indistinguishable from a missing one
    return order


def _cannot_pay(order, exc: CheckoutError):
    """The order's page saying why it cannot be paid now: 503 with Retry-After while Stripe
    is unreachable (try again: nothing is charged twice), 409 when it can no longer be
    paid."""
    page = render_template("payments/unavailable.html", order=order, message=exc.message)
    if isinstance(exc, ProcessorUnavailable):
        return page, exc.status, {"Retry-After": str(exc.retry_after)}
    return page, 409


@bp.route("/checkout/<order_id>")
@login_required
@limiter.limit("30 per minute")
def checkout(order_id: str):
    """The payment page of an order: Payment Element, one PaymentIntent per order."""
    order = _own_order(order_id)
    try:
        result = start_checkout(order, ip=request.remote_addr,
                                user_agent=request.user_agent.string)
    except AlreadyPaid as paid:
        return redirect(url_for("payments.detail", payment_id=paid.payment.id))
    except CheckoutError as exc:
        return _cannot_pay(order, exc)
    return render_template(
        "payments/checkout.html", order=order, payment=result.payment, intent=result.intent,
        return_url=url_for("payments.complete", order_id=order.id, _external=True),
        cards=cards.cards_of(current_user), default_id=cards.default_card_id(current_user))


def _unpaid_payment(order_id: str):
    order = _own_order(order_id)
    payment = payment_of_order(order)
    if payment is None or payment.stripe_payment_intent_id is None:
        abort(404)
    if payment.is_final:
        abort(409)
    return payment


def _stripe_failed(exc: gateway.GatewayError, **fields):
    """The JSON checkout.js shows in ``error``: Stripe refused (400, its message), or could
    not be reached (503 with Retry-After)."""
    if exc.retryable:
        return jsonify(error=UNREACHABLE, **fields), exc.status, {
            "Retry-After": str(exc.retry_after)}
    return jsonify(error=exc.message, **fields), exc.status


def _outcome(payment, intent, order_id: str):
    """A confirmation's JSON: where to go next, 3-D Secure for Stripe.js, or the decline
    (counted against the card-testing budgets)."""
    complete_url = url_for("payments.complete", order_id=order_id)
    if payment.status == "requires_action":
        return jsonify(status="requires_action", clientSecret=intent.client_secret,
                       next=complete_url)
    if payment.status in ("failed", "requires_payment_method"):
        if payment.failure_code:
            declines.declined(current_user.id, payment.id)
        return jsonify(status="failed",
                       error=payment.failure_message or "The payment did not go through.")
    return jsonify(status=payment.status, next=complete_url)


@bp.route("/checkout/<order_id>/pay", methods=["POST"])
@login_required
@limiter.limit("30 per minute")
def pay_with_saved_card(order_id: str):
    """One-click payment with a saved card (checkout.js): confirmed by the server; JSON says
    where to go next, or hands 3-D Secure to Stripe.js. Another's card is 404."""
    payment = _unpaid_payment(order_id)
    wait = declines.refused(current_user.id, payment.id)
    if wait is not None:
        return jsonify(status="error", error=declines.too_many(wait)), 429, {
            "Retry-After": str(wait)}
    card = cards.card_for(current_user, request.form.get("payment_method", ""))
    try:
        payment, intent = confirm_with_card(current_user, payment, card.stripe_payment_method_id)
    except gateway.GatewayError as exc:
        return _stripe_failed(exc, status="error")
    return _outcome(payment, intent, order_id)


@bp.route("/checkout/<order_id>/save-card", methods=["POST"])
@login_required
@limiter.limit("30 per minute")
def save_card_choice(order_id: str):
    """"Save this card" ticked or not, just before Stripe.js confirms with a new card."""
    payment = _unpaid_payment(order_id)
    try:
        offer_to_save_card(current_user, payment, request.form.get("save") == "true")
    except gateway.GatewayError as exc:
        return _stripe_failed(exc, ok=False)
    return jsonify(ok=True)


@bp.route("/checkout/<order_id>/complete")
@login_required
def complete(order_id: str):
    """Where Stripe.js returns after confirming: shows the live status of the payment."""
    order = _own_order(order_id)
    payment = payment_of_order(order)
    if payment is None:
        abort(404)
    payment = refresh_payment(payment)
    return render_template("payments/complete.html", order=order, payment=payment,
                           settled=SETTLED_FOR_NOW, done=completion(payment))


MAX_POLLS = 60  # about 8 minutes with the delays below; then the page asks for a reload


def poll_delay(poll: int) -> int:
    """Seconds before the next status poll: quick at first, then backing off."""
    return 1 if poll < 10 else 3 if poll < 30 else 10


@bp.route("/payments/<payment_id>/status")
@login_required
@limiter.limit("120 per minute")
def status(payment_id: str):
    """The status partial; it polls itself (HTMX), backing off, until the state is settled."""
    payment = payment_for(current_user, payment_id)
    if payment is None:
        abort(404)
    payment = refresh_payment(payment)
    poll = request.args.get("poll", "0")
    poll = min(int(poll), MAX_POLLS) if poll.isdigit() else 0
    return render_template("payments/_status.html", payment=payment, settled=SETTLED_FOR_NOW,
                           poll=poll, delay=poll_delay(poll), max_polls=MAX_POLLS,
                           done=completion(payment))


@bp.route("/orders/<order_id>/payment")
@login_required
def order_payment(order_id: str):
    """An order's payment page: where the orders page links a paid order (the orders
    package, below the ledger, does not know payments)."""
    payment = payment_of_order(_own_order(order_id))
    if payment is None:
        abort(404)
    return redirect(url_for("payments.detail", payment_id=payment.id))


@bp.route("/payments/<payment_id>")
@login_required
def detail(payment_id: str):
    """One payment: amount, card, breakdown, receipt."""
    payment = payment_for(current_user, payment_id)
    if payment is None:
        abort(404)
    return render_template("payments/detail.html", payment=payment, settled=SETTLED_FOR_NOW,
                           invoice=invoices.invoice_of(payment),
                           credit_notes=credit_notes.credit_notes_of(payment),
                           **refund_context(payment))


@bp.route("/payments/<payment_id>/invoice")
@bp.route("/payments/<payment_id>/invoice.pdf", endpoint="invoice_pdf")
@login_required
def invoice(payment_id: str):
    """The payment's invoice, as issued, as a page or a PDF: its customer's or an admin's
    (404 otherwise)."""
    payment = payment_for(current_user, payment_id)
    found = invoices.invoice_of(payment) if payment is not None else None
    if found is None:
        abort(404)
    return _document("documents/invoice.html", "documents/_invoice.html",
                     f"Invoice {found.number}", found.number,
                     url_for("payments.invoice_pdf", payment_id=payment.id),
                     invoice=found, f=found.facts)


@bp.route("/payments/<payment_id>/credit-notes/<number>")
@bp.route("/payments/<payment_id>/credit-notes/<number>/pdf", endpoint="credit_note_pdf")
@login_required
def credit_note(payment_id: str, number: str):
    """One credit note of the payment, as issued, as a page or a PDF: its customer's or an
    admin's."""
    payment = payment_for(current_user, payment_id)
    found = next((n for n in credit_notes.credit_notes_of(payment) if n.number == number),
                 None) if payment is not None else None
    if found is None:
        abort(404)
    return _document("documents/credit_note.html", "documents/_credit_note.html",
                     f"Credit note {found.number}", found.number,
                     url_for("payments.credit_note_pdf", payment_id=payment.id,
                             number=found.number),
                     note=found, f=found.facts)


def _document(page: str, body: str, title: str, number: str, pdf_url: str, **facts):
    """A document's page, or (its PDF endpoint) its PDF, from the same body template."""
    if request.endpoint.endswith("_pdf"):
        return Response(pdf.render(body, title, **facts), mimetype="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{number}.pdf"'})
    return render_template(page, pdf_url=pdf_url, **facts)


@bp.route("/payments")
@login_required
def index():
    """Payment history, 20 a page, filtered by a status in plain words and by days (UTC).
    The filters and the table are one HTMX partial; a filter that cannot be read answers
    400 with its field's message (X-Form-Errors: htmx swaps it all the same)."""
    f = filters.parse(request.args)
    page = request.args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1
    result = None if f.errors else history(current_user, state=f.state, start=f.start,
                                           end=f.end, page=page)
    html = render("payments/history.html", "payments/_history_table.html", page=result, f=f,
                  states=filters.STATES, state_of=filters.of)
    if f.errors:
        return html, 400, {"X-Form-Errors": "1", "X-Error-Message": "Check the filters."}
    return html
