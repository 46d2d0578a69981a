"""The job that processes one stored webhook event."""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

import sqlalchemy as sa

from .. import jobs
from ..extensions import db
from ..models_base import utcnow
from .handlers import HANDLERS
from .models import StripeEvent

log = logging.getLogger(__name__)

# A failing event (Stripe unreachable, a deadlock...) is tried again after these delays;
# after the last one it stays "failed" for an admin to replay.
RETRY_DELAYS = (10, 60, 300, 900, 3600)


def enqueue_processing(event_id: str) -> bool:
    """Queue ``process_event`` for a stored event, with retries."""
    return jobs.enqueue(process_event, event_id, queue="webhooks", retry=RETRY_DELAYS)


def process_event(event_id: str) -> None:
    """Apply one event exactly once: lock it, dispatch, mark it done in the same transaction."""
    event = db.session.scalar(
        sa.select(StripeEvent).where(StripeEvent.id == event_id).with_for_update()
    )
    if event is None or event.status in ("processed", "ignored"):
        db.session.rollback()
        return
    handler = HANDLERS.get(event.type)
    try:
        handled = handler(event.payload) if handler else False
    except Exception:
        db.session.rollback()
        _record_failure(event_id, traceback.format_exc())
        raise
    event.status = "processed" if handled else "ignored"
    event.attempts += 1
    event.processed_at = utcnow()
    event.last_error = None
    db.session.commit()


def _record_failure(event_id: str, error: str) -> None:
    event = db.session.get(StripeEvent, event_id)
    if event is not None:
        event.status = "failed"
        event.attempts += 1
        event.last_error = error[-4000:]
        db.session.commit()
    log.error("webhook event %s failed", event_id)


def sweep_received(older_than_seconds: int = 60) -> int:
    """Enqueue events still ``received`` (Redis was down at intake); returns how many.

    Safe to run at any time: processing an event twice is a no-op.
    """
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    ids = db.session.scalars(
        sa.select(StripeEvent.id)
        .where(StripeEvent.status == "received", StripeEvent.received_at < cutoff)
        .order_by(StripeEvent.received_at)
        .limit(1000)
    ).all()
    db.session.rollback()
    return sum(enqueue_processing(event_id) for event_id in ids)
