"""The job that processes one stored webhook event."""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

import sqlalchemy as sa

from .. import jobs
from .. import stripe_gateway as gateway
from ..database import any_of, phase
from ..extensions import db
from ..models_base import utcnow
from .handlers import HANDLERS
from .models import StripeEvent

log = logging.getLogger(__name__)

# A failing event (Stripe unreachable, a deadlock...) is tried again after these delays;
# after the last one it stays "failed" for an admin to replay.
RETRY_DELAYS = (10, 60, 300, 900, 3600)


def enqueue_processing(event_id: str) -> None:
    """Queue ``process_event`` for a stored event, with retries, after the commit."""
    jobs.enqueue(process_event, event_id, queue="webhooks", retry=RETRY_DELAYS)


# Core statements, built once, not an ORM StripeEvent: the row is taken and marked with one
# UPDATE ... RETURNING and written again only if its handler says the event was not ours.
# An ORM object would add a unit of work to every event (and one already in the session,
# for in-process jobs, would not be refreshed), and building the statements anew costs more
# than running them on a warm connection.
_EVENTS = StripeEvent.__table__
# Takes the row lock (as SELECT ... FOR UPDATE would) only if the event still waits: a
# concurrent job for the same event blocks on the lock, then finds it done and changes
# nothing. The status it sets is provisional: the handler runs in the same transaction, and
# a failure rolls everything back. processed_at is when the worker took the event, in the
# transaction that applied it.
_TAKE = (sa.update(_EVENTS)
         .where(_EVENTS.c.id == sa.bindparam("event_id"),
                _EVENTS.c.status.in_(("received", "queued", "failed")))
         .values(status=sa.case((_EVENTS.c.type.in_(sorted(HANDLERS)), "processed"),
                                else_="ignored"),
                 attempts=_EVENTS.c.attempts + 1,
                 processed_at=sa.bindparam("taken_at", type_=_EVENTS.c.processed_at.type),
                 last_error=None)
         .returning(_EVENTS.c.type, _EVENTS.c.payload))
_NOT_OURS = (sa.update(_EVENTS).where(_EVENTS.c.id == sa.bindparam("event_id"))
             .values(status="ignored"))
_FAILED = (sa.update(_EVENTS).where(_EVENTS.c.id == sa.bindparam("event_id"))
           .values(status="failed", attempts=_EVENTS.c.attempts + 1,
                   last_error=sa.bindparam("error", type_=_EVENTS.c.last_error.type)))


def process_event(event_id: str) -> None:
    """Apply one event exactly once: take it, dispatch, commit both in one transaction.

    A failure (of the handler or of its writes) rolls the handler's changes back, records
    the event as failed and raises, so RQ tries again later; a request Stripe refused (see
    ``_refused``) leaves the event failed at once, for an admin to replay.

    One phase, not database.in_phases: a handler (payments, refunds, cards, payouts) reads
    Stripe before it takes any lock of its own, then applies what it read, and the event
    must be marked done in the transaction that applies it. The one lock held while Stripe
    answers is the event's own row: a duplicate job for the same event waits for it, then
    finds the event done and calls nothing.
    """
    try:
        with phase():
            row = db.session.execute(_TAKE, {"event_id": event_id,
                                             "taken_at": utcnow()}).first()
            if row is None:  # unknown, or processed (or ignored) already
                return
            handler = HANDLERS.get(row.type)
            if handler is not None and not handler(row.payload):
                # e.g. a PaymentIntent that is not one of ours
                db.session.execute(_NOT_OURS, {"event_id": event_id})
            db.session.flush()  # a write that fails, fails here: rolled back with the phase
    except Exception as exc:
        with phase():
            _record_failure(event_id, traceback.format_exc())
        if _refused(exc):
            return
        raise


def _refused(exc: Exception) -> bool:
    """Stripe refused the request itself (e.g. 404, no such object): asking again gets the
    same answer. Not 401/403, which a fixed key or permission cures, nor an error without
    a status."""
    return (isinstance(exc, gateway.GatewayError) and not exc.retryable
            and exc.stripe_status is not None and 400 <= exc.stripe_status < 500
            and exc.stripe_status not in (401, 403))


def _record_failure(event_id: str, error: str) -> None:
    db.session.execute(_FAILED, {"event_id": event_id, "error": error[-4000:]})
    log.error("webhook event %s failed", event_id)


# The intake stores an event and leaves it "received"; with Redis, a worker's dispatcher
# (``flask worker``, portal.worker) hands the stored events to RQ in batches, in one round
# trip to Redis per batch rather than one per delivery: that round trip and RQ's job record
# were a third of the intake's CPU per delivery (issue 17, item 9; bench/webhook_isolation.py).
DISPATCH_BATCH = 500
SWEEP_LIMIT = 1000


def dispatch_received(batch: int = DISPATCH_BATCH) -> int:
    """Queue every stored event still ``received``, oldest first, a batch per transaction;
    returns how many, or -1 if Redis refused the first batch (logged). Several dispatchers
    (one per worker) share the work: each batch's rows are locked, and a row another
    dispatcher has locked is skipped (PostgreSQL)."""
    total = 0
    while True:
        queued = _queue_batch((StripeEvent.status == "received",), batch)
        if queued < 0:
            return total or -1
        total += queued
        if queued < batch:
            return total


def sweep_received(older_than_seconds: int = 60) -> int:
    """Queue again (up to SWEEP_LIMIT, oldest first) the events ``received`` or ``queued``
    for longer than ``older_than_seconds``: their job was lost (Redis down, restarted empty,
    a worker killed mid-job) or no dispatcher runs; returns how many.

    Safe to run at any time: processing an event twice is a no-op. An event merely waiting
    its turn in the queue is queued twice: a duplicate job that costs time, changes nothing.
    """
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    return max(_queue_batch((StripeEvent.status.in_(("received", "queued")),
                             StripeEvent.received_at < cutoff), SWEEP_LIMIT), 0)


def _queue_batch(where: tuple, batch: int) -> int:
    """Up to ``batch`` events matching ``where``, oldest first: their jobs sent to Redis now
    (or, without Redis, run in-process after the commit), then marked ``queued``, in one
    transaction. Returns how many, or -1 if Redis refused them (logged; they stay as they
    were, for the next try).

    The rows are locked (FOR UPDATE SKIP LOCKED) until the commit: a job that starts before
    it waits on the lock, then takes the event as ``queued`` (``_TAKE``). The jobs go before
    the commit: a dispatcher that dies in between leaves the events ``received`` and queued,
    and the second job for each changes nothing.
    """
    with phase():
        ids = db.session.scalars(
            sa.select(StripeEvent.id).where(*where)
            .order_by(StripeEvent.received_at, StripeEvent.id).limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        if not ids:
            return 0
        if not jobs.enqueue_now(process_event, [(event_id,) for event_id in ids],
                                queue="webhooks", retry=RETRY_DELAYS):
            return -1
        db.session.execute(sa.update(_EVENTS)
                           .where(any_of(_EVENTS.c.id, ids, sa.String),
                                  _EVENTS.c.status == "received")
                           .values(status="queued"))
    return len(ids)
