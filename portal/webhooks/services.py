"""Webhook intake: store a verified event once, then hand it to a job."""

from __future__ import annotations

import functools

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models_base import utcnow
from ..stripe_gateway import Event
from .jobs import enqueue_processing
from .models import StripeEvent

_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@functools.cache
def _insert_once(dialect: str):
    """INSERT INTO stripe_events ... ON CONFLICT (id) DO NOTHING, built once per dialect."""
    table = StripeEvent.__table__
    return (_INSERT[dialect](table).on_conflict_do_nothing(index_elements=[table.c.id])
            .execution_options(preserve_rowcount=True))


def receive_event(event: Event) -> bool:
    """Store the event (commit) and enqueue its processing; False if it was already stored."""
    # One Core INSERT ... ON CONFLICT (id) DO NOTHING: no ORM unit of work for a row that is
    # written once and never read back here, and a redelivery is a row count of 0 rather
    # than an IntegrityError and a rolled-back transaction.
    stored = db.session.execute(
        _insert_once(db.session.get_bind().dialect.name),
        {"id": event.id, "type": event.type, "object_id": event.object_id,
         "api_version": event.api_version, "stripe_created": event.created,
         "payload": event.payload, "status": "received", "attempts": 0,
         "received_at": utcnow()},
    ).rowcount == 1
    db.session.commit()
    if not stored:
        # A redelivery: the first copy is processed already, or waits to be: queue it again
        # in case its job was lost (processing twice is a no-op).
        status = db.session.scalar(sa.select(StripeEvent.status).where(StripeEvent.id == event.id))
        db.session.rollback()
        if status in ("received", "failed"):
            enqueue_processing(event.id)
        return False
    # After the commit, so the worker finds the row. If Redis is down the row stays
    # "received" for the sweeper; Stripe still gets its 200.
    enqueue_processing(event.id)
    return True
