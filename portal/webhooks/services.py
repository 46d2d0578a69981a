"""Webhook intake: store a verified event once, for its processing.

The caller commits (the intake: the request's edge, before Stripe gets its 200). With Redis,
a worker's dispatcher then queues the stored events (webhooks.jobs.dispatch_received);
without, the event's job runs in this process after the commit.
"""

from __future__ import annotations

import functools
import logging

import sqlalchemy as sa
from flask import current_app

from ..database import dialect, insert_or_skip
from ..extensions import db
from ..models_base import utcnow
from ..stripe_gateway import API_VERSION, Event
from .jobs import enqueue_processing
from .models import StripeEvent

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # the other API versions this process has warned about


def _check_version(event: Event) -> None:
    """An event of another API version than the portal's (a webhook endpoint left on an old
    version, an account's default): warned once per version and process, shown and counted
    on the admin's events page, and processed all the same: every handler re-reads the
    object from Stripe, in the portal's version, and takes only its id from the payload."""
    version = event.api_version
    if version and version != API_VERSION and version not in _WARNED:
        _WARNED.add(version)
        log.warning("Stripe event %s is of API version %s; the portal uses %s. Set the "
                    "webhook endpoint's version to %s in Stripe's dashboard", event.id,
                    version, API_VERSION, API_VERSION)


_COLUMNS = ("id", "type", "object_id", "api_version", "stripe_created", "payload", "status",
            "attempts", "received_at")


@functools.cache
def _insert_once(dialect_name: str):
    """INSERT INTO stripe_events ... SELECT :values WHERE NOT EXISTS (the id) ON CONFLICT (id)
    DO NOTHING, built once per dialect (the session's, which ``insert_or_skip`` reads).

    A redelivery must not wait for the event's job: the job holds the row, as updated, while
    it asks Stripe (webhooks.jobs.process_event), and ON CONFLICT alone waits for an
    uncommitted version of the conflicting row to commit or roll back (a redelivery took as
    long as the job's Stripe call: bench/webhook_isolation.py). NOT EXISTS reads the committed
    row without waiting, and then nothing is inserted; ON CONFLICT remains for two first
    deliveries at once, each waiting only for the other's INSERT."""
    events = StripeEvent.__table__
    values = sa.select(*(sa.bindparam(c, type_=events.c[c].type) for c in _COLUMNS)).where(
        ~sa.exists().where(events.c.id == sa.bindparam("id", type_=events.c.id.type)))
    return (insert_or_skip(events, ["id"]).from_select(_COLUMNS, values)
            .execution_options(preserve_rowcount=True))


def receive_event(event: Event) -> bool:
    """Store the event (and, without Redis, queue its processing); False if it was already
    stored."""
    _check_version(event)
    # One Core INSERT: no ORM unit of work for a row that is written once and never read
    # back here, and a redelivery is a row count of 0 rather than an IntegrityError and a
    # rolled-back transaction.
    stored = db.session.execute(
        _insert_once(dialect()),
        {"id": event.id, "type": event.type, "object_id": event.object_id,
         "api_version": event.api_version, "stripe_created": event.created,
         "payload": event.payload, "status": "received", "attempts": 0,
         "received_at": utcnow()},
    ).rowcount == 1
    in_process = not current_app.config.get("REDIS_URL")
    if not stored:
        # A redelivery. A failed event is tried again now; one still "received" without
        # Redis had its in-process job lost (the process stopped): run it. With Redis, one
        # "received" or "queued" is a worker's dispatcher's to queue, or in the queue already.
        status = db.session.scalar(sa.select(StripeEvent.status).where(StripeEvent.id == event.id))
        if status == "failed" or (status == "received" and in_process):
            enqueue_processing(event.id)
        return False
    # Without Redis the job runs in this process once the request has ended. With Redis the
    # intake stops here: a worker's dispatcher queues the events it stored, in batches
    # (webhooks.jobs.dispatch_received), so that a delivery costs no round trip to Redis.
    if in_process:
        enqueue_processing(event.id)
    return True
