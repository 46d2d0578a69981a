"""Refunds of charges, with Stripe's checks and events.

- POST /v1/refunds: `payment_intent` and/or `charge`, `amount` (default: what is left),
  `reason`, `metadata`; `refund_application_fee`/`reverse_transfer` are taken and have nothing
  to reverse here; refunds to a customer balance (`origin`, `customer`, `currency`) are
  refused by name. Stripe's errors: amount_too_large ("Refund amount (€30.00) is greater than
  charge amount (€25.99)", or "... than unrefunded amount on charge (€15.99)" once partly
  refunded; param amount), charge_already_refunded ("Charge ch_... has already been
  refunded."), "This PaymentIntent (pi_...) does not have a successful charge to refund." (not
  succeeded, requires_capture included), the uncaptured charge of a PaymentIntent ("... You
  must cancel the PaymentIntent ..."), a partial refund of an uncaptured charge, unknown
  objects (resource_missing).
- Refunds have the pinned version's fields (destination_details with a pending acquirer
  reference, failure_reason, pending_reason...). A captured charge's refund takes its amount
  from the balance (balance.py); refunding an uncaptured charge only releases it.
- GET /v1/refunds (payment_intent, charge, created; newest first), GET /v1/refunds/{id},
  POST /v1/refunds/{id} (metadata only), POST /v1/refunds/{id}/cancel (only `requires_action`
  refunds, which card refunds never are), GET /v1/charges/{id}/refunds.
- Events: `charge.refunded` (the Charge, previous_attributes amount_refunded/refunded) and
  `refund.created` on creation; `refund.updated` + `charge.refund.updated` (previous
  attributes) on every change; `refund.failed`.
- Later (REFUND_DELAY, 1 s; `--refund-delay`): refunds of 4000000000007726 begin `pending`
  and then succeed; refunds of 4000000000005126 begin `succeeded` and then fail with
  expired_or_canceled_card: the money comes back to the balance (failure balance
  transaction) and the charge stops counting it. The test hook `POST /_sandbox/refunds/{id}/
  fail` (optional failure_reason) fails any pending or succeeded refund that way.
"""

from __future__ import annotations

from . import balance, cards, core, events
from .core import Page, Resource, invalid_param, invalid_request, newest_first
from .payment_intents import Charge, PaymentIntent, retrieve_charge, retrieve_payment_intent

# Refund.failure_reason values of the pinned version.
FAILURE_REASONS = ("lost_or_stolen_card", "expired_or_canceled_card",
                   "charge_for_pending_refund_disputed", "insufficient_funds", "declined",
                   "merchant_request", "unknown")
REFUND_DELAY = 1.0  # seconds ("later", `python -m stripe_sandbox --refund-delay`)
UNCAPTURED_PI_CHARGE = (
    "This uncaptured Charge was created by a PaymentIntent ({}). You must cancel the "
    "PaymentIntent to reverse the authorization instead of refunding the Charge directly. "
    "For more information, see "
    "https://stripe.com/docs/payments/payment-intents/creating-payment-intents"
    "#separate-auth-capture"
)
PARTIAL_UNCAPTURED = (
    "You cannot partially refund an uncaptured charge. Instead, capture the charge for an "
    "amount less than the original amount"
)


class Refund(Resource):
    object = "refund"
    prefix = "re_"

    def __init__(self, charge: Charge, amount: int, metadata=None, reason=None,
                 status="succeeded", pending_reason=None):
        super().__init__()
        self.amount = amount
        self.charge = charge.id
        self.currency = charge.currency
        self.metadata = core.merge_metadata({}, metadata)
        self.payment_intent = charge.payment_intent
        self.pending_reason = pending_reason
        self.reason = reason
        self.status = status
        self.failure_reason = None
        self.failure_balance_transaction = None
        self.balance_transaction = None
        charge.record_funds()  # captured asynchronously a moment ago: its funds first
        if charge.captured:  # refunding an uncaptured charge only releases it
            self.balance_transaction = balance.debit(
                amount, self.currency, "refund", "refund", self.id,
                description="REFUND FOR CHARGE").id
        charge.refunds.append(self)

    def to_dict(self) -> dict:
        return {
            "id": self.id, "object": "refund", "amount": self.amount,
            "balance_transaction": self.balance_transaction, "charge": self.charge,
            "created": self.created, "currency": self.currency,
            "destination_details": {"card": {
                # The acquirer reference number comes from the network later; never here.
                "reference": None, "reference_status": "pending",
                "reference_type": "acquirer_reference_number", "type": "refund"},
                "type": "card"},
            "failure_balance_transaction": self.failure_balance_transaction,
            "failure_reason": self.failure_reason, "metadata": self.metadata,
            "payment_intent": self.payment_intent, "pending_reason": self.pending_reason,
            "reason": self.reason, "receipt_number": None, "source_transfer_reversal": None,
            "status": self.status, "transfer_reversal": None,
        }


def refund_charge(charge, payment_intent) -> Charge:
    """The charge POST /v1/refunds refunds, checked like Stripe."""
    if charge is not None:
        charge = retrieve_charge(charge)
        if payment_intent is not None and charge.payment_intent != payment_intent.id:
            raise invalid_request(
                f"Charge {charge.id} does not belong to PaymentIntent {payment_intent.id}.",
                param="charge")
        if charge.payment_intent:
            payment_intent = PaymentIntent.get(charge.payment_intent)
    if payment_intent is not None and payment_intent.status != "succeeded":
        if charge is not None and payment_intent.status == "requires_capture":
            raise invalid_request(UNCAPTURED_PI_CHARGE.format(payment_intent.id))
        raise invalid_request(f"This PaymentIntent ({payment_intent.id}) does not have a "
                              "successful charge to refund.")
    charge = charge or payment_intent.latest_charge
    if charge.status != "succeeded":
        raise invalid_request(f"Charge {charge.id} has not succeeded and cannot be refunded.")
    return charge


def create_refund(amount=None, charge=None, payment_intent=None, metadata=None, reason=None,
                  refund_application_fee=None, reverse_transfer=None, instructions_email=None,
                  origin=None, customer=None, currency=None):
    """POST /v1/refunds."""
    for param, value in (("currency", currency), ("customer", customer), ("origin", origin)):
        if value is not None:
            raise invalid_request(
                f"The Stripe sandbox does not refund to customer balances: `{param}` is not "
                "supported.", param=param)
    if amount is not None:
        core.positive(amount)
    if charge is None and payment_intent is None:
        raise invalid_param("One of the following params should be provided for this "
                              "request: payment_intent or charge.")
    if payment_intent is not None:
        payment_intent = retrieve_payment_intent(payment_intent)
    charge = refund_charge(charge, payment_intent)

    total = charge.amount_captured if charge.captured else charge.amount
    remaining = total - charge.amount_refunded
    if remaining <= 0:
        raise invalid_request(f"Charge {charge.id} has already been refunded.",
                              code="charge_already_refunded")
    amount = remaining if amount is None else amount
    if amount > remaining:
        if charge.amount_refunded:
            limit = "unrefunded amount on charge"
            limit += f" ({core.format_amount(remaining, charge.currency)})"
        else:
            limit = f"charge amount ({core.format_amount(total, charge.currency)})"
        raise invalid_request(
            f"Refund amount ({core.format_amount(amount, charge.currency)}) is greater than "
            f"{limit}", code="amount_too_large", param="amount")
    if not charge.captured and amount != charge.amount:
        raise invalid_request(PARTIAL_UNCAPTURED, param="amount")

    pending = charge.number == cards.REFUND_PENDING and charge.captured
    before = {"amount_refunded": charge.amount_refunded, "refunded": charge.refunded}
    refund = Refund(charge, amount, metadata, reason,
                    status="pending" if pending else "succeeded",
                    pending_reason="processing" if pending else None)
    events.emit("charge.refunded", charge, previous_attributes={
        k: v for k, v in before.items() if getattr(charge, k) != v})
    events.emit("refund.created", refund)
    if pending:
        core.later(REFUND_DELAY, refund_processed, refund.id)
    elif charge.number == cards.REFUND_FAILS and charge.captured:
        core.later(REFUND_DELAY, refund_failed, refund.id, "expired_or_canceled_card")
    return refund


def refund_updated(refund: Refund, changes: dict) -> None:
    """Apply `changes` and send `refund.updated` and the legacy `charge.refund.updated` with
    what they changed."""
    previous = core.previous_attributes(refund, changes)
    vars(refund).update(changes)
    events.emit("refund.updated", refund, previous_attributes=previous)
    events.emit("charge.refund.updated", refund, previous_attributes=previous)


def refund_processed(id) -> None:
    """A pending refund succeeds (test card 4000000000007726)."""
    refund = Refund.get(id)
    if refund.status == "pending":  # it may have failed meanwhile
        refund_updated(refund, {"status": "succeeded", "pending_reason": None})


def refund_failed(id, failure_reason) -> Refund:
    """A pending or succeeded refund fails: the money is back in the balance
    (failure_balance_transaction) and the charge no longer counts it in amount_refunded.
    Sends refund.updated, charge.refund.updated and refund.failed."""
    refund = Refund.get(id)
    if refund.status not in ("pending", "succeeded"):
        return refund
    changes = {"status": "failed", "failure_reason": failure_reason, "pending_reason": None}
    if refund.balance_transaction is not None:
        # The money comes back where the refund took it from (pending funds stay pending).
        taken = balance.BalanceTransaction.get(refund.balance_transaction)
        changes["failure_balance_transaction"] = balance.record(
            refund.amount, refund.currency, "refund_failure", "refund_failure", refund.id,
            available_on=max(taken.available_on, core.now()),
            description="REFUND FAILURE").id
    refund_updated(refund, changes)
    events.emit("refund.failed", refund)
    return refund


def fail_refund(id, failure_reason=None):
    """POST /_sandbox/refunds/{id}/fail (sandbox only): what Stripe does when the bank
    returns a refund, to any pending or succeeded refund."""
    refund = Refund.retrieve(id)
    failure_reason = "expired_or_canceled_card" if failure_reason is None else failure_reason
    if failure_reason not in FAILURE_REASONS:
        raise core.invalid_value("failure_reason", failure_reason, FAILURE_REASONS)
    if refund.status not in ("pending", "succeeded"):
        raise invalid_request(
            f"Only a pending or succeeded refund can fail; this one is {refund.status}.")
    return refund_failed(refund.id, failure_reason)


def update_refund(refund, metadata=None):
    """POST /v1/refunds/{id}: only metadata, like Stripe."""
    obj = Refund.retrieve(refund)
    if metadata is not None:
        new = core.merge_metadata(obj.metadata, metadata)
        previous = core.previous_attributes(obj, {"metadata": new})
        if previous:
            obj.metadata = new
            events.emit("refund.updated", obj, previous_attributes=previous)
            events.emit("charge.refund.updated", obj, previous_attributes=previous)
    return obj


def cancel_refund(refund):
    """POST /v1/refunds/{id}/cancel: Stripe cancels only refunds in `requires_action`,
    which card refunds never are."""
    obj = Refund.retrieve(refund)
    if obj.status != "requires_action":
        raise invalid_request(
            f"You cannot cancel this refund because it has a status of {obj.status}. "
            "Only a refund with a status of requires_action may be canceled.")
    refund_updated(obj, {"status": "canceled", "failure_reason": "merchant_request"})
    return obj


def get_refund(refund):
    return Refund.retrieve(refund)


def list_refunds(charge=None, payment_intent=None, created=None, limit=None,
                 starting_after=None, ending_before=None):
    """GET /v1/refunds (charge, payment_intent, created): newest first."""
    if charge is not None:
        charge = retrieve_charge(charge).id
    if payment_intent is not None:
        payment_intent = retrieve_payment_intent(payment_intent).id
    in_period = core.created_filter(created)
    items = newest_first(Refund, lambda r: charge in (None, r.charge)
                         and payment_intent in (None, r.payment_intent)
                         and in_period(r.created))
    return Page("/v1/refunds", items, limit, starting_after, ending_before)


def list_charge_refunds(charge, limit=None, starting_after=None, ending_before=None):
    """GET /v1/charges/{id}/refunds: newest first."""
    obj = retrieve_charge(charge, "id")
    return Page(f"/v1/charges/{obj.id}/refunds", list(reversed(obj.refunds)), limit,
                starting_after, ending_before)


ROUTES = [
    ("POST", "/v1/refunds", create_refund),
    ("GET", "/v1/refunds", list_refunds),
    ("GET", "/v1/refunds/{refund}", get_refund),
    ("POST", "/v1/refunds/{refund}", update_refund),
    ("POST", "/v1/refunds/{refund}/cancel", cancel_refund),
    ("GET", "/v1/charges/{charge}/refunds", list_charge_refunds),
]
HOOKS = [
    ("POST", "/_sandbox/refunds/{id}/fail", fail_refund),
]
