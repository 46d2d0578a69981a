"""The payment endpoints of the original description: create-intent, confirm, payment, history.

Thin views over payments.checkout_rules and payments.services, the services the pages use.
"""

from __future__ import annotations

from flask import current_app, g

from ..errors import NotFound
from ..extensions import limiter
from ..ledger.models import Payment
from ..payments import checkout_rules, declines
from ..payments.services import Checkout, history, payment_for, start_checkout
from .openapi import operation
from .schemas import (
    ActionRequired,
    Breakdown,
    CardBrief,
    ConfirmedPayment,
    ConfirmIn,
    ConfirmMethod,
    ConfirmOut,
    CreateIntentIn,
    CreateIntentOut,
    HistoryItem,
    HistoryMethod,
    HistoryOut,
    HistoryQuery,
    IntentMetadata,
    IntentOut,
    MethodOut,
    Pagination,
    PaymentDetail,
    PaymentOut,
    RequiresActionOut,
    iso,
)
from .views import bp

PAYMENT_LIMIT = "60 per minute"


def _caller() -> str:
    # Counted per authenticated caller: many customers may share one address (a gateway, NAT).
    return f"user:{g.api_user.id}"


# --- what the endpoints show of a payment -----------------------------------------------------

def _card(p: Payment) -> CardBrief | None:
    return CardBrief(brand=p.card_brand, last4=p.card_last4) if p.card_last4 else None


def _has_method(p: Payment) -> bool:
    return bool(p.payment_method_id or p.card_last4)


def intent_out(checkout: Checkout) -> IntentOut:
    """The `paymentIntent` object of POST /create-intent."""
    payment, intent = checkout.payment, checkout.intent
    return IntentOut(id=intent.id, clientSecret=intent.client_secret, amount=intent.amount,
                     currency=intent.currency.lower(), status=intent.status,
                     metadata=IntentMetadata(orderId=str(payment.order_id),
                                             userId=str(payment.user_id)))


def confirmed(p: Payment) -> ConfirmedPayment:
    """The `payment` object of POST /confirm."""
    method = ConfirmMethod(id=p.payment_method_id, type=p.payment_method_type or "card",
                           card=_card(p)) if _has_method(p) else None
    return ConfirmedPayment(
        id=str(p.id), paymentIntentId=p.stripe_payment_intent_id, status=p.status,
        amount=p.amount, currency=p.currency.lower(), paymentMethod=method,
        receiptUrl=p.receipt_url, createdAt=iso(p.created_at))


def payment_detail(p: Payment, *, admin: bool = False) -> PaymentDetail:
    """The `payment` object of GET /payments/<id> (the real decline code for admins only)."""
    method = MethodOut(type=p.payment_method_type or "card",
                       card=_card(p)) if _has_method(p) else None
    return PaymentDetail(
        id=str(p.id), userId=str(p.user_id), orderId=str(p.order_id),
        paymentIntentId=p.stripe_payment_intent_id, amount=p.amount,
        currency=p.currency.lower(), status=p.status, paymentMethod=method,
        breakdown=Breakdown(subtotal=p.subtotal, tax=p.tax, shipping=p.shipping,
                            discount=p.discount, platformFee=p.platform_fee,
                            vendorAmount=p.vendor_amount),
        amountRefunded=p.amount_refunded, refundStatus=p.refund_state,
        receiptUrl=p.receipt_url,
        failureCode=p.failure_code if admin else declines.public_code(p.failure_code),
        failureMessage=p.failure_message, createdAt=iso(p.created_at),
        updatedAt=iso(p.updated_at))


def history_item(p: Payment) -> HistoryItem:
    """A payment as GET /history lists it."""
    method = HistoryMethod(type=p.payment_method_type or "card",
                           last4=p.card_last4) if p.card_last4 else None
    return HistoryItem(id=str(p.id), orderId=str(p.order_id), amount=p.amount,
                       currency=p.currency.lower(), status=p.status,
                       amountRefunded=p.amount_refunded, refundStatus=p.refund_state,
                       paymentMethod=method, createdAt=iso(p.created_at))


# --- the endpoints ----------------------------------------------------------------------------

@operation(bp, "POST", "/payments/create-intent", body=CreateIntentIn, idempotent=True,
           summary="Create payment intent",
           description="Creates (or returns the existing) Stripe PaymentIntent of an order of "
                       "the caller. The amount and currency must be the order's total.",
           responses={200: CreateIntentOut, 404: None, 409: None, 429: None, 503: None})
@limiter.limit(PAYMENT_LIMIT, key_func=_caller)
def create_intent(body: CreateIntentIn) -> CreateIntentOut:
    """Endpoint 1: a PaymentIntent for one of the caller's orders, never two per order
    (refusals: checkout_rules.check_payable, then start_checkout's CheckoutErrors)."""
    order, card = checkout_rules.check_payable(g.api_user, body.orderId, body.amount,
                                               body.currency, body.paymentMethodId)
    checkout = start_checkout(order, source="api", card=card)
    return CreateIntentOut(paymentIntent=intent_out(checkout),
                           publishableKey=current_app.config["STRIPE_PUBLISHABLE_KEY"])


@operation(bp, "POST", "/payments/confirm", body=ConfirmIn, idempotent=True,
           summary="Confirm payment",
           description="Confirms the caller's PaymentIntent with a payment method. 402 when "
                       "the card asks for 3-D Secure (finish it with Stripe.js), 400 with "
                       "Stripe's decline code when declined (lost, stolen, fraudulent, "
                       "pick-up and restricted cards: generic_decline). 429 "
                       "too_many_declines after 5 declines of the payment in an hour (10 "
                       "of the caller, 20 from one address).",
           responses={200: ConfirmOut, 402: RequiresActionOut, 404: None, 409: None,
                      429: None, 503: None})
@limiter.limit(PAYMENT_LIMIT, key_func=_caller)
def confirm(body: ConfirmIn) -> ConfirmOut | RequiresActionOut:
    """Endpoint 2: confirm server-side; the same state transition as the pages and webhooks."""
    payment, intent = checkout_rules.confirm(g.api_user, body.paymentIntentId,
                                             body.paymentMethodId)
    if payment.status == "requires_action":
        return RequiresActionOut(clientSecret=intent.client_secret, error=ActionRequired(
            message="the card asks for authentication (3-D Secure)"))
    return ConfirmOut(payment=confirmed(payment))


@operation(bp, "GET", "/payments/payments/{paymentId}", summary="Get payment by ID",
           responses={200: PaymentOut, 404: None})
def get_payment(paymentId: str) -> PaymentOut:  # noqa: N803 - the documented path parameter
    """Endpoint 7: one payment of the caller (admins: any)."""
    payment = payment_for(g.api_user, paymentId)
    if payment is None:
        raise NotFound("payment not found", code="payment_not_found")
    return PaymentOut(payment=payment_detail(payment, admin=g.api_user.role == "admin"))


@operation(bp, "GET", "/payments/history", query=HistoryQuery, summary="Get payment history",
           responses={200: HistoryOut})
def payment_history(query: HistoryQuery) -> HistoryOut:
    """Endpoint 8: the caller's payments, newest first, paged and filtered."""
    page = history(g.api_user, status=query.status, page=query.page, per_page=query.limit,
                   start=query.startDate, end=query.endDate)
    return HistoryOut(payments=[history_item(p) for p in page.items], pagination=Pagination(
        currentPage=page.page, totalPages=page.pages, totalItems=page.total,
        itemsPerPage=page.per_page))
