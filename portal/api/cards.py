"""The payment-method endpoints of the original description (3-6): the caller's saved cards.

Thin views over cards.services, the same services the cards page uses (saving through the
card-testing budget of payments.checkout_rules).
"""

from __future__ import annotations

from flask import g

from ..cards import services as cards
from ..cards.models import SavedCard
from ..extensions import limiter
from ..payments import checkout_rules
from .openapi import operation
from .payments import PAYMENT_LIMIT, _caller
from .schemas import (
    AddMethodIn,
    AddMethodOut,
    ListedMethod,
    MessageOut,
    MethodsOut,
    SavedCardDetails,
    SavedMethod,
    iso,
)
from .views import bp

# Saved cards are a customer's (as the /cards pages): a vendor, an admin or a service user gets
# 403 and no Stripe customer.
CUSTOMERS = ("customer",)


def saved_method(card: SavedCard, default_id: str | None, model=SavedMethod, **more):
    """A saved card as endpoints 3 and 4 show it."""
    return model(id=card.stripe_payment_method_id, type=card.type,
                 card=SavedCardDetails(brand=card.brand, last4=card.last4,
                                       expMonth=card.exp_month, expYear=card.exp_year),
                 isDefault=card.stripe_payment_method_id == default_id, **more)


@operation(bp, "GET", "/payments/methods", roles=CUSTOMERS, summary="Get payment methods",
           description="The caller's saved cards, in the order they were added.",
           responses={200: MethodsOut})
def list_methods() -> MethodsOut:
    """Endpoint 3."""
    default = cards.default_card_id(g.api_user)
    return MethodsOut(paymentMethods=[
        saved_method(c, default, ListedMethod, createdAt=iso(c.created_at))
        for c in cards.cards_of(g.api_user)])


@operation(bp, "POST", "/payments/methods", body=AddMethodIn, roles=CUSTOMERS,
           summary="Add payment method",
           description="Saves a card PaymentMethod (created with Stripe.js) for the caller. "
                       "404 when Stripe does not know it or it is another customer's, 409 "
                       "when the same card is saved already, 429 too_many_declines after 10 "
                       "declined cards of the caller in an hour (20 from one address).",
           responses={201: AddMethodOut, 404: None, 409: None, 429: None, 503: None})
@limiter.limit(PAYMENT_LIMIT, key_func=_caller)  # saving cards is a way to test stolen ones
def add_method(body: AddMethodIn) -> AddMethodOut:
    """Endpoint 4. A card declined when attached counts against the decline budget."""
    card = checkout_rules.save_card(g.api_user, body.paymentMethodId,
                                    make_default=body.setAsDefault)
    return AddMethodOut(message="Payment method added successfully",
                        paymentMethod=saved_method(card, cards.default_card_id(g.api_user)))


@operation(bp, "DELETE", "/payments/methods/{paymentMethodId}", roles=CUSTOMERS,
           summary="Remove payment method", responses={200: MessageOut, 404: None, 503: None})
def remove_method(paymentMethodId: str):  # noqa: N803 - the documented path parameter
    """Endpoint 5."""
    cards.remove_card(g.api_user, paymentMethodId)
    return MessageOut(message="Payment method removed successfully")


@operation(bp, "PUT", "/payments/methods/{paymentMethodId}/default", roles=CUSTOMERS,
           summary="Set default payment method",
           responses={200: MessageOut, 404: None, 503: None})
def default_method(paymentMethodId: str):  # noqa: N803 - the documented path parameter
    """Endpoint 6."""
    cards.set_default(g.api_user, paymentMethodId)
    return MessageOut(message="Default payment method updated")
