"""One small handler per Stripe event type, registered in one table.

A handler receives the stored event's payload, changes the session and returns True if the
event concerned us (False: stored and marked ignored). The job commits.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import jobs
from ..cards.services import sync_default, sync_method
from ..payments.services import sync_intent
from ..payouts.services import resume_waiting, sync_account
from ..refunds.services import sync_refunds


def payment_intent_changed(event: dict) -> bool:
    """Any payment_intent.* event: settle our Payment from the intent as Stripe holds it now."""
    return sync_intent(event["data"]["object"]["id"])


def payment_method_changed(event: dict) -> bool:
    """payment_method.*: mirror the card as Stripe holds it now (saved, updated or gone)."""
    return sync_method(event["data"]["object"]["id"])


def setup_intent_succeeded(event: dict) -> bool:
    """A card was saved through a SetupIntent (perhaps in a tab closed right after)."""
    payment_method = event["data"]["object"].get("payment_method")
    if isinstance(payment_method, dict):
        payment_method = payment_method.get("id")
    return bool(payment_method) and sync_method(payment_method)


def customer_updated(event: dict) -> bool:
    """The default card may have been changed at Stripe."""
    return sync_default(event["data"]["object"]["id"])


def refund_changed(event: dict) -> bool:
    """refund.* and charge.refunded: mirror every refund of the payment as Stripe has them
    (refunds made in Stripe's dashboard are imported and count toward the remainder)."""
    obj = event["data"]["object"]
    intent = obj.get("payment_intent")
    return sync_refunds(intent.get("id") if isinstance(intent, dict) else intent)


def account_updated(event: dict) -> bool:
    """A vendor's Connect account changed (onboarding finished, requirements due...)."""
    return sync_account(event["data"]["object"]["id"])


def balance_available(_event: dict) -> bool:
    """Funds became available: payouts waiting for them are tried again (a job that reads
    the balance as Stripe holds it now)."""
    jobs.enqueue(resume_waiting, queue="payouts")
    return True


HANDLERS: dict[str, Callable[[dict], bool]] = {
    "payment_intent.succeeded": payment_intent_changed,
    "payment_intent.payment_failed": payment_intent_changed,
    "payment_intent.processing": payment_intent_changed,
    "payment_intent.canceled": payment_intent_changed,
    "payment_intent.requires_action": payment_intent_changed,
    "payment_method.attached": payment_method_changed,
    "payment_method.detached": payment_method_changed,
    "payment_method.updated": payment_method_changed,
    "payment_method.automatically_updated": payment_method_changed,
    "setup_intent.succeeded": setup_intent_succeeded,
    "customer.updated": customer_updated,
    "refund.created": refund_changed,
    "refund.updated": refund_changed,
    "refund.failed": refund_changed,
    "charge.refunded": refund_changed,
    "charge.refund.updated": refund_changed,
    "account.updated": account_updated,
    "balance.available": balance_available,
}
