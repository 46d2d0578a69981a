"""Card testing: someone with a list of stolen card numbers tries them one after the other,
and each decline tells them which card is dead. Two defences (issue 15):

- A budget of declines, counted where the portal makes the attempt (a confirmation through
  the API or with a saved card, a card saved through the API): 5 an hour per payment (then
  the payment refuses further attempts for the rest of the hour, with a message saying so),
  10 an hour per customer, 20 an hour per client address. Past any of them, attempts are
  refused (429) before they reach Stripe (portal/budgets.py).
- The decline codes that describe the card rather than the attempt (lost, stolen, fraudulent,
  pick-up, restricted...) are answered to customers and API callers as Stripe's
  generic_decline, as Stripe advises; the payment keeps the real code for admins.
"""

from __future__ import annotations

import uuid

from flask import request
from limits import parse

from .. import budgets

PER_PAYMENT = parse("5 per hour")
PER_CUSTOMER = parse("10 per hour")
PER_ADDRESS = parse("20 per hour")
# Codes that tell a card tester about the card itself.
HIDDEN = frozenset({"lost_card", "stolen_card", "fraudulent", "pickup_card", "restricted_card",
                    "merchant_blacklist", "security_violation"})
TOO_MANY = ("This payment was declined too many times. You can try again in {wait}, or "
            "contact support.")


def public_code(code: str | None) -> str | None:
    """The decline code a customer or an API caller may see."""
    return "generic_decline" if code in HIDDEN else code


def _budgets(user_id: uuid.UUID, payment_id: uuid.UUID | None) -> list[budgets.Budget]:
    found = [(PER_CUSTOMER, ("declines", "user", str(user_id))),
             (PER_ADDRESS, ("declines", "address", request.remote_addr or "-"))]
    if payment_id is not None:
        found.insert(0, (PER_PAYMENT, ("declines", "payment", str(payment_id))))
    return found


def refused(user_id: uuid.UUID, payment_id: uuid.UUID | None = None) -> int | None:
    """Seconds until this customer (on this payment, from this address) may try a card
    again, or None when they may now."""
    return budgets.refused(_budgets(user_id, payment_id))


def declined(user_id: uuid.UUID, payment_id: uuid.UUID | None = None) -> None:
    """Count a decline against the customer, the address (and the payment)."""
    budgets.spend(_budgets(user_id, payment_id))


def too_many(seconds: int) -> str:
    return TOO_MANY.format(wait=budgets.wait_text(seconds))
