"""Webhook intake: store a verified event once, then hand it to a job."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..stripe_gateway import Event
from .jobs import enqueue_processing
from .models import StripeEvent


def receive_event(event: Event) -> bool:
    """Store the event (commit) and enqueue its processing; False if it was already stored."""
    db.session.add(StripeEvent(
        id=event.id, type=event.type, object_id=event.object_id, api_version=event.api_version,
        stripe_created=event.created, payload=event.payload, status="received",
    ))
    try:
        db.session.commit()
    except IntegrityError:
        # A redelivery: the first copy is processed already, or waits to be: queue it again
        # in case its job was lost (processing twice is a no-op).
        db.session.rollback()
        stored = db.session.get(StripeEvent, event.id)
        if stored is not None and stored.status in ("received", "failed"):
            enqueue_processing(event.id)
        return False
    # After the commit, so the worker finds the row. If Redis is down the row stays
    # "received" for the sweeper; Stripe still gets its 200.
    enqueue_processing(event.id)
    return True
