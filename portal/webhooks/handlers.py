"""One small handler per Stripe event type, registered in one table.

A handler receives the stored event's payload, changes the session and returns True if the
event concerned us (False: stored and marked ignored). The job commits.
"""

from __future__ import annotations

from collections.abc import Callable

from ..payments.services import sync_intent


def payment_intent_changed(event: dict) -> bool:
    """Any payment_intent.* event: settle our Payment from the intent as Stripe holds it now."""
    return sync_intent(event["data"]["object"]["id"])


HANDLERS: dict[str, Callable[[dict], bool]] = {
    "payment_intent.succeeded": payment_intent_changed,
    "payment_intent.payment_failed": payment_intent_changed,
    "payment_intent.processing": payment_intent_changed,
    "payment_intent.canceled": payment_intent_changed,
    "payment_intent.requires_action": payment_intent_changed,
}
