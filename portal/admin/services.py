"""What admins do on the event log and the outbox (refund and payout decisions are the
refunds' and payouts' services): replay Stripe events, try a given-up message again."""

from __future__ import annotations

import sqlalchemy as sa

from ..audit.services import audit
from ..auth.models import User
from ..database import any_of, phase
from ..errors import Conflict, NotFound
from ..extensions import db
from ..models_base import parse_uuid, utcnow
from ..outbox.models import OutboxMessage
from ..outbox.services import deliver, retry_given_up
from ..webhooks.jobs import enqueue_processing
from ..webhooks.models import StripeEvent


def replay(admin: User, event_id: str) -> None:
    """Process one stored event again, after the commit. NotFound for an unknown id."""
    event = db.session.get(StripeEvent, event_id[:255])
    if event is None:
        raise NotFound("No such event.")
    _replay(admin, [event.id])


def replay_failed(admin: User) -> int:
    """Process every failed event again, after the commit; returns how many."""
    ids = list(db.session.scalars(sa.select(StripeEvent.id)
                                  .where(StripeEvent.status == "failed")))
    if ids:
        _replay(admin, ids)
    return len(ids)


def _replay(admin: User, ids: list[str]) -> None:
    db.session.execute(sa.update(StripeEvent)
                       .where(any_of(StripeEvent.id, ids, sa.String))
                       .values(status="queued")
                       .execution_options(synchronize_session=False))
    audit("events.replayed", actor=admin, note=f"{len(ids)} event(s): {', '.join(ids[:20])}")
    # Processing twice is a no-op: handlers re-read Stripe and states only move forward.
    for event_id in ids:
        enqueue_processing(event_id)


GIVEN_UP_ONLY = ("Only a message that was given up can be tried again; this one was not "
                 "sent again.")


def retry_message(admin: User, message_id: str) -> str | None:
    """Give a given-up message another 24 h of attempts and send it now; returns its status.
    NotFound for an unknown id; Conflict when it is not given up (sent, or tried again from
    another tab meanwhile): nothing is sent again.

    Phases, as every workflow that calls out: the retry is committed (with its audit line)
    before the message is sent, and outbox.services.deliver takes, sends and records the
    outcome in phases of its own, so the admin sees the outcome at once."""
    pid = parse_uuid(message_id)
    msg = db.session.get(OutboxMessage, pid) if pid else None
    if msg is None:
        raise NotFound("No such message.")
    with phase():
        if not retry_given_up(pid):
            raise Conflict(GIVEN_UP_ONLY)
        audit("outbox.retried", actor=admin, payment_id=msg.payment_id,
              note=f"{msg.kind} {msg.id}")
    return deliver(str(pid))


def resend_receipt(admin: User, payment_id: str) -> str | None:
    """E-mail a payment's receipt again (the customer lost it), now; returns its status.
    NotFound when the payment has no receipt (it was never paid). Committed with its audit
    line before the message is sent (phases, as ``retry_message``)."""
    pid = parse_uuid(payment_id)
    msg = db.session.scalar(sa.select(OutboxMessage).where(
        OutboxMessage.payment_id == pid, OutboxMessage.kind == "receipt_email")) if pid else None
    if msg is None:
        raise NotFound("This payment has no receipt: it was never paid.")
    with phase():
        now = utcnow()
        db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == msg.id)
                           .values(status="pending", retried_at=now, next_attempt_at=now))
        audit("outbox.resent", actor=admin, payment_id=pid, note=f"receipt_email {msg.id}")
    return deliver(str(msg.id), force=True)
