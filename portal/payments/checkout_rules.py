"""The API's rules for paying an order (create-intent, confirm) and saving a card, around the
workflows of payments.services (start_checkout, confirm_with_card) and cards.services.

Each rule refuses with a ``DomainError`` carrying the code, message and fields of the API's
documentation (errors.handle_domain_error answers it), before anything is changed or Stripe
is called; but a declined confirmation is answered as an error after its outcome was recorded
(confirm_with_card commits it in its apply phase, so the request's rollback keeps it). The
card-testing budget (payments.declines) is checked before a card is tried and spent by each
decline.
"""

from __future__ import annotations

from decimal import Decimal

from flask import url_for

from .. import stripe_gateway as gateway
from ..auth.models import User
from ..cards import services as cards
from ..cards.models import SavedCard
from ..errors import DomainError, NotFound, TooMany
from ..ledger.models import Payment
from ..money import MoneyError, format_minor, normalize_currency, to_minor
from ..orders.models import Order
from ..orders.services import order_for
from . import declines
from .services import confirm_with_card, payment_of_intent

NOT_SAVED = "paymentMethodId is not one of your saved cards"
FAILED = ("failed", "requires_payment_method", "canceled")  # a confirmation that did not pay


# --- create-intent ----------------------------------------------------------------------------

def check_payable(user: User, order_id: str, amount: Decimal, currency: str,
                  payment_method_id: str | None) -> tuple[Order, SavedCard | None]:
    """The caller's order that ``amount`` ``currency`` pays, and their saved card to pay it
    with (None when no ``payment_method_id``).

    NotFound ``order_not_found`` (also another customer's order, which an admin or a service
    may read but not pay) and ``payment_method_not_found``; DomainError ``invalid_currency``,
    ``invalid_amount``, ``currency_mismatch`` and ``amount_mismatch`` (the order's total in
    the message)."""
    order = order_for(user, order_id)
    if order is None or order.customer_id != user.id:
        raise NotFound("order not found", code="order_not_found")
    currency, amount = _money(amount, currency)
    expected = format_minor(order.total, order.currency)
    if currency != order.currency:
        message = f"the order is payable in {order.currency} ({expected})"
        raise DomainError(message, code="currency_mismatch", field="currency")
    if amount != order.total:
        message = f"the order's total is {expected} ({order.total} minor units)"
        raise DomainError(message, code="amount_mismatch", field="amount")
    card = _saved_card(user, payment_method_id) if payment_method_id is not None else None
    return order, card


def _money(amount: Decimal, currency: str) -> tuple[str, int]:
    """(ISO currency, amount in its minor units)."""
    try:
        currency = normalize_currency(currency)
    except MoneyError as exc:
        raise DomainError(str(exc), code="invalid_currency", field="currency") from exc
    try:
        return currency, to_minor(amount, currency)
    except MoneyError as exc:
        raise DomainError(str(exc), code="invalid_amount", field="amount") from exc


def _saved_card(user: User, payment_method_id: str) -> SavedCard:
    try:
        return cards.card_for(user, payment_method_id)
    except cards.CardNotFound as exc:
        # Another customer's card is indistinguishable from an unknown one.
        raise _not_saved() from exc


def _not_saved() -> NotFound:
    return NotFound(NOT_SAVED, code="payment_method_not_found", field="paymentMethodId")


# --- confirm ----------------------------------------------------------------------------------

def payment_to_confirm(user: User, payment_intent_id: str) -> Payment:
    """The caller's own payment of this PaymentIntent (an admin's reading rights do not let
    them pay); DomainError ``invalid_payment_intent`` when there is none, ``payment_canceled``
    when it was canceled. A succeeded payment is returned as it is."""
    payment = payment_of_intent(user, payment_intent_id, own=True)
    if payment is None:
        message = "no such payment intent among your payments"
        raise DomainError(message, code="invalid_payment_intent", field="paymentIntentId")
    if payment.is_final and payment.status != "succeeded":
        raise DomainError(f"the payment is {payment.status}", code=f"payment_{payment.status}")
    return payment


def confirm(user: User, payment_intent_id: str,
            payment_method_id: str) -> tuple[Payment, gateway.Intent | None]:
    """confirm: the payment after Stripe confirmed its intent with the card (a saved card of
    the caller or a new PaymentMethod), and the intent; a succeeded payment is returned at
    once (intent None), charged once only. Status requires_action: the card asks for 3-D
    Secure.

    Refusals: those of ``payment_to_confirm``; TooMany ``too_many_declines`` when the decline
    budget is spent; NotFound ``payment_method_not_found`` for another customer's saved card;
    a decline as DomainError with Stripe's decline code (generic_decline for the codes that
    describe the card, payments.declines), counted; GatewayError when Stripe refuses the
    request (400) or cannot be reached (503)."""
    payment = payment_to_confirm(user, payment_intent_id)
    if payment.status == "succeeded":
        return payment, None
    within_decline_budget(user, payment)
    return_url = url_for("payments.complete", order_id=payment.order_id, _external=True)
    try:
        payment, intent = confirm_with_card(user, payment, payment_method_id,
                                            return_url=return_url)
    except cards.CardNotFound as exc:
        raise _not_saved() from exc
    if payment.status in FAILED:
        if payment.failure_code:
            declines.declined(user.id, payment.id)
        raise DomainError(payment.failure_message or "the payment did not go through",
                          code=declines.public_code(payment.failure_code) or "payment_failed")
    return payment, intent


def within_decline_budget(user: User, payment: Payment | None = None) -> None:
    """TooMany ``too_many_declines`` when the customer (this payment, this address) may not
    try a card now."""
    wait = declines.refused(user.id, payment.id if payment is not None else None)
    if wait is not None:
        raise TooMany(declines.too_many(wait), retry_after=wait, code="too_many_declines")


# --- saving a card ----------------------------------------------------------------------------

def save_card(user: User, payment_method_id: str, *, make_default: bool) -> SavedCard:
    """cards.save_card within the decline budget: a card declined when it is attached is a
    card tester's signal, counted (and refused, as CardDeclined)."""
    within_decline_budget(user)
    try:
        return cards.save_card(user, payment_method_id, make_default=make_default)
    except cards.CardDeclined:
        declines.declined(user.id)
        raise
