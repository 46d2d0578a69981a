"""The payment endpoints of the original description: create-intent, confirm, payment, history.

Thin views over payments.services, the same services the pages use.
"""

from __future__ import annotations

from flask import current_app, g, jsonify, url_for

from .. import stripe_gateway as gateway
from ..cards import services as cards
from ..extensions import limiter
from ..money import MoneyError, format_minor, normalize_currency, to_minor
from ..orders.services import order_for
from ..payments import declines
from ..payments.models import Payment
from ..payments.services import (
    AlreadyPaid,
    CheckoutError,
    ProcessorUnavailable,
    confirm_with_card,
    history,
    payment_for,
    payment_of_intent,
    start_checkout,
)
from .errors import api_error, too_many
from .openapi import operation
from .schemas import (
    ConfirmIn,
    ConfirmOut,
    CreateIntentIn,
    CreateIntentOut,
    HistoryOut,
    HistoryQuery,
    PaymentOut,
    RequiresActionOut,
    iso,
)
from .views import bp

PAYMENT_LIMIT = "60 per minute"


def _caller() -> str:
    # Counted per authenticated caller: many customers may share one address (a gateway, NAT).
    return f"user:{g.api_user.id}"


def _method(p: Payment, *, with_id: bool = False) -> dict | None:
    if not p.payment_method_id and not p.card_last4:
        return None
    method = {"type": p.payment_method_type or "card",
              "card": {"brand": p.card_brand, "last4": p.card_last4} if p.card_last4 else None}
    return {"id": p.payment_method_id, **method} if with_id else method


def confirmed_json(p: Payment) -> dict:
    """The `payment` object of POST /confirm."""
    return {"id": str(p.id), "paymentIntentId": p.stripe_payment_intent_id, "status": p.status,
            "amount": p.amount, "currency": p.currency.lower(),
            "paymentMethod": _method(p, with_id=True), "receiptUrl": p.receipt_url,
            "createdAt": iso(p.created_at)}


def payment_json(p: Payment, *, admin: bool = False) -> dict:
    """The `payment` object of GET /payments/<id> (the real decline code for admins only)."""
    return {
        "_id": str(p.id), "userId": str(p.user_id), "orderId": str(p.order_id),
        "paymentIntentId": p.stripe_payment_intent_id, "amount": p.amount,
        "currency": p.currency.lower(), "status": p.status, "paymentMethod": _method(p),
        "breakdown": {"subtotal": p.subtotal, "tax": p.tax, "shipping": p.shipping,
                      "discount": p.discount, "platformFee": p.platform_fee,
                      "vendorAmount": p.vendor_amount},
        "amountRefunded": p.amount_refunded, "refundStatus": p.refund_state,
        "receiptUrl": p.receipt_url,
        "failureCode": p.failure_code if admin else declines.public_code(p.failure_code),
        "failureMessage": p.failure_message, "createdAt": iso(p.created_at),
        "updatedAt": iso(p.updated_at),
    }


@operation(bp, "POST", "/payments/create-intent", body=CreateIntentIn, idempotent=True,
           summary="Create payment intent",
           description="Creates (or returns the existing) Stripe PaymentIntent of an order of "
                       "the caller. The amount and currency must be the order's total.",
           responses={200: CreateIntentOut, 404: None, 409: None, 429: None})
@limiter.limit(PAYMENT_LIMIT, key_func=_caller)
def create_intent(body: CreateIntentIn):
    """Endpoint 1: a PaymentIntent for one of the caller's orders, never two per order."""
    user = g.api_user
    order = order_for(user, body.orderId)
    if order is None or order.customer_id != user.id:
        return api_error(404, "order_not_found", "order not found")
    try:
        currency = normalize_currency(body.currency)
    except MoneyError as exc:
        return api_error(400, "invalid_currency", str(exc), {"currency": str(exc)})
    try:
        amount = to_minor(body.amount, currency)
    except MoneyError as exc:
        return api_error(400, "invalid_amount", str(exc), {"amount": str(exc)})
    expected = format_minor(order.total, order.currency)
    if currency != order.currency:
        message = f"the order is payable in {order.currency} ({expected})"
        return api_error(400, "currency_mismatch", message, {"currency": message})
    if amount != order.total:
        message = f"the order's total is {expected} ({order.total} minor units)"
        return api_error(400, "amount_mismatch", message, {"amount": message})
    card = None
    if body.paymentMethodId is not None:
        try:
            card = cards.card_for(user, body.paymentMethodId)
        except cards.CardNotFound:
            # Another customer's card is indistinguishable from an unknown one.
            message = "paymentMethodId is not one of your saved cards"
            return api_error(404, "payment_method_not_found", message,
                             {"paymentMethodId": message})
    try:
        checkout = start_checkout(order, source="api", card=card)
    except AlreadyPaid:
        return api_error(400, "order_already_paid", "this order is already paid")
    except ProcessorUnavailable as exc:
        return api_error(500, "processor_unavailable", str(exc))
    except CheckoutError as exc:
        return api_error(400, "order_not_payable", str(exc))
    payment, intent = checkout.payment, checkout.intent
    return jsonify(
        success=True,
        paymentIntent={
            "id": intent.id, "clientSecret": intent.client_secret, "amount": intent.amount,
            "currency": intent.currency.lower(), "status": intent.status,
            "metadata": {"orderId": str(payment.order_id), "userId": str(payment.user_id)},
        },
        publishableKey=current_app.config["STRIPE_PUBLISHABLE_KEY"],
    )


@operation(bp, "POST", "/payments/confirm", body=ConfirmIn, idempotent=True,
           summary="Confirm payment",
           description="Confirms the caller's PaymentIntent with a payment method. 402 when "
                       "the card asks for 3-D Secure (finish it with Stripe.js), 400 with "
                       "Stripe's decline code when declined (lost, stolen, fraudulent, "
                       "pick-up and restricted cards: generic_decline). 429 "
                       "too_many_declines after 5 declines of the payment in an hour (10 "
                       "of the caller, 20 from one address).",
           responses={200: ConfirmOut, 402: RequiresActionOut, 404: None, 409: None,
                      429: None})
@limiter.limit(PAYMENT_LIMIT, key_func=_caller)
def confirm(body: ConfirmIn):
    """Endpoint 2: confirm server-side; the same state transition as the pages and webhooks."""
    payment = payment_of_intent(g.api_user, body.paymentIntentId, own=True)
    if payment is None:
        message = "no such payment intent among your payments"
        return api_error(400, "invalid_payment_intent", message, {"paymentIntentId": message})
    if payment.status == "succeeded":
        return jsonify(success=True, payment=confirmed_json(payment))
    if payment.is_final:
        return api_error(400, f"payment_{payment.status}", f"the payment is {payment.status}")
    wait = declines.refused(g.api_user.id, payment.id)
    if wait is not None:
        return too_many("too_many_declines", declines.too_many(wait), wait)
    try:
        payment, intent = confirm_with_card(
            g.api_user, payment, body.paymentMethodId,
            return_url=url_for("payments.complete", order_id=payment.order_id, _external=True))
    except cards.CardNotFound:
        message = "paymentMethodId is not one of your saved cards"
        return api_error(404, "payment_method_not_found", message, {"paymentMethodId": message})
    except gateway.GatewayError as exc:
        if exc.retryable:
            return api_error(500, "processor_unavailable",
                             "the payment processor could not be reached; please retry")
        return api_error(400, exc.code or "invalid_request", exc.message)
    if payment.status == "requires_action":
        resp = jsonify(success=False, requiresAction=True, clientSecret=intent.client_secret,
                       error={"code": "requires_action",
                              "message": "the card asks for authentication (3-D Secure)"})
        return resp, 402
    if payment.status in ("failed", "requires_payment_method", "canceled"):
        if payment.failure_code:
            declines.declined(g.api_user.id, payment.id)
        return api_error(400, declines.public_code(payment.failure_code) or "payment_failed",
                         payment.failure_message or "the payment did not go through")
    return jsonify(success=True, payment=confirmed_json(payment))


@operation(bp, "GET", "/payments/payments/{paymentId}", summary="Get payment by ID",
           responses={200: PaymentOut, 404: None})
def get_payment(paymentId: str):  # noqa: N803 - the documented path parameter
    """Endpoint 7: one payment of the caller (admins: any)."""
    payment = payment_for(g.api_user, paymentId)
    if payment is None:
        return api_error(404, "payment_not_found", "payment not found")
    return jsonify(success=True, payment=payment_json(payment, admin=g.api_user.role == "admin"))


@operation(bp, "GET", "/payments/history", query=HistoryQuery, summary="Get payment history",
           responses={200: HistoryOut})
def payment_history(query: HistoryQuery):
    """Endpoint 8: the caller's payments, newest first, paged and filtered."""
    page = history(g.api_user, status=query.status, page=query.page, per_page=query.limit,
                   start=query.startDate, end=query.endDate)
    items = [{"_id": str(p.id), "orderId": str(p.order_id), "amount": p.amount,
              "currency": p.currency.lower(), "status": p.status,
              "amountRefunded": p.amount_refunded, "refundStatus": p.refund_state,
              "paymentMethod": {"type": p.payment_method_type or "card",
                                "last4": p.card_last4} if p.card_last4 else None,
              "createdAt": iso(p.created_at)} for p in page.items]
    return jsonify(success=True, payments=items, pagination={
        "currentPage": page.page, "totalPages": page.pages, "totalItems": page.total,
        "itemsPerPage": page.per_page})
