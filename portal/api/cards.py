"""The payment-method endpoints of the original description (3-6): the caller's saved cards.

Thin views over cards.services, the same services the cards page uses.
"""

from __future__ import annotations

from flask import g, jsonify

from .. import stripe_gateway as gateway
from ..cards import services as cards
from ..cards.models import SavedCard
from ..extensions import limiter
from ..payments import declines
from .errors import api_error, too_many
from .openapi import operation
from .payments import PAYMENT_LIMIT, _caller
from .schemas import AddMethodIn, AddMethodOut, MessageOut, MethodsOut, iso
from .views import bp

# Saved cards are a customer's (as the /cards pages): a vendor, an admin or a service user gets
# 403 and no Stripe customer.
CUSTOMERS = ("customer",)


def method_json(card: SavedCard, default_id: str | None) -> dict:
    """A saved card as endpoints 3 and 4 show it."""
    return {"id": card.stripe_payment_method_id, "type": card.type,
            "card": {"brand": card.brand, "last4": card.last4, "expMonth": card.exp_month,
                     "expYear": card.exp_year},
            "isDefault": card.stripe_payment_method_id == default_id}


def _failed(exc: Exception):
    if isinstance(exc, cards.CardError):
        return api_error(exc.status, exc.code, str(exc))
    if not exc.retryable:  # Stripe refused it, e.g. the card was declined when attached
        return api_error(400, exc.code or "invalid_payment_method", exc.message)
    return api_error(500, "processor_unavailable",
                     "the payment processor could not be reached; please retry")


@operation(bp, "GET", "/payments/methods", roles=CUSTOMERS, summary="Get payment methods",
           description="The caller's saved cards, in the order they were added.",
           responses={200: MethodsOut})
def list_methods():
    """Endpoint 3."""
    default = cards.default_card_id(g.api_user)
    return jsonify(success=True, paymentMethods=[
        {**method_json(c, default), "createdAt": iso(c.created_at)}
        for c in cards.cards_of(g.api_user)])


@operation(bp, "POST", "/payments/methods", body=AddMethodIn, roles=CUSTOMERS,
           summary="Add payment method",
           description="Saves a card PaymentMethod (created with Stripe.js) for the caller. "
                       "404 when Stripe does not know it or it is another customer's, 409 "
                       "when the same card is saved already, 429 too_many_declines after 10 "
                       "declined cards of the caller in an hour (20 from one address).",
           responses={201: AddMethodOut, 404: None, 409: None, 429: None})
@limiter.limit(PAYMENT_LIMIT, key_func=_caller)  # saving cards is a way to test stolen ones
def add_method(body: AddMethodIn):
    """Endpoint 4. A card declined when attached counts against the decline budget."""
    wait = declines.refused(g.api_user.id)
    if wait is not None:
        return too_many("too_many_declines", declines.too_many(wait), wait)
    try:
        card = cards.save_card(g.api_user, body.paymentMethodId, make_default=body.setAsDefault)
    except (cards.CardError, gateway.GatewayError) as exc:
        if isinstance(exc, cards.CardDeclined):
            declines.declined(g.api_user.id)
        return _failed(exc)
    return jsonify(success=True, message="Payment method added successfully",
                   paymentMethod=method_json(card, cards.default_card_id(g.api_user))), 201


def _change(action, payment_method_id: str, message: str):
    try:
        action(g.api_user, payment_method_id)
    except (cards.CardError, gateway.GatewayError) as exc:
        return _failed(exc)
    return jsonify(success=True, message=message)


@operation(bp, "DELETE", "/payments/methods/{paymentMethodId}", roles=CUSTOMERS,
           summary="Remove payment method", responses={200: MessageOut, 404: None})
def remove_method(paymentMethodId: str):  # noqa: N803 - the documented path parameter
    """Endpoint 5."""
    return _change(cards.remove_card, paymentMethodId, "Payment method removed successfully")


@operation(bp, "PUT", "/payments/methods/{paymentMethodId}/default", roles=CUSTOMERS,
           summary="Set default payment method", responses={200: MessageOut, 404: None})
def default_method(paymentMethodId: str):  # noqa: N803 - the documented path parameter
    """Endpoint 6."""
    return _change(cards.set_default, paymentMethodId, "Default payment method updated")
