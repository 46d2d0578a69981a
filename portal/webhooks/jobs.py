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


# Core statements, built once, not an ORM StripeEvent: the row is read once under its lock
# and written once. An ORM object would add a unit of work to every event (and one already
# in the session, for in-process jobs, would not be refreshed by the locking SELECT), and
# building the statements anew costs more than running them on a warm connection.
_EVENTS = StripeEvent.__table__
_LOCK = (sa.select(_EVENTS.c.type, _EVENTS.c.status, _EVENTS.c.payload)
         .where(_EVENTS.c.id == sa.bindparam("event_id")).with_for_update())
_DONE = (sa.update(_EVENTS).where(_EVENTS.c.id == sa.bindparam("event_id"))
         .values(status=sa.bindparam("new_status", type_=_EVENTS.c.status.type),
                 attempts=_EVENTS.c.attempts + 1,
                 processed_at=sa.bindparam("done_at", type_=_EVENTS.c.processed_at.type),
                 last_error=None))
_FAILED = (sa.update(_EVENTS).where(_EVENTS.c.id == sa.bindparam("event_id"))
           .values(status="failed", attempts=_EVENTS.c.attempts + 1,
                   last_error=sa.bindparam("error", type_=_EVENTS.c.last_error.type)))


def process_event(event_id: str) -> None:
    """Apply one event exactly once: lock it, dispatch, mark it done in the same transaction."""
    row = db.session.execute(_LOCK, {"event_id": event_id}).first()
    if row is None or row.status in ("processed", "ignored"):
        db.session.rollback()
        return
    handler = HANDLERS.get(row.type)
    try:
        handled = handler(row.payload) if handler else False
    except Exception:
        db.session.rollback()
        _record_failure(event_id, traceback.format_exc())
        raise
    db.session.execute(_DONE, {"event_id": event_id, "done_at": utcnow(),
                               "new_status": "processed" if handled else "ignored"})
    db.session.commit()


def _record_failure(event_id: str, error: str) -> None:
    db.session.execute(_FAILED, {"event_id": event_id, "error": error[-4000:]})
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
