"""What the completion page says about a payment that succeeded, beyond its status: whether
this checkout saved the card, and where the receipt e-mail went. Only what the portal's own
records show (the saved cards, the outbox): Stripe sends no receipt of its own, since the
portal never gives it a ``receipt_email``."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from ..cards.models import SavedCard
from ..extensions import db
from ..ledger.models import Payment
from ..outbox.models import OutboxMessage


@dataclass(frozen=True)
class Completion:
    card_saved: bool  # the card paid with was saved by this checkout ("Save this card")
    receipt_to: str | None  # the address of the receipt e-mail, when there is one
    # "sent", "sending" (queued or being retried, with a mail server), "not_sent" (no mail
    # server: it stays in the admins' outbox) or "failed" (given up after 24 h).
    receipt: str | None


def completion(payment: Payment) -> Completion | None:
    """For a succeeded payment (None otherwise): the saved card and the receipt e-mail."""
    if payment.status != "succeeded":
        return None
    saved = payment.payment_method_id is not None and db.session.scalar(
        sa.select(SavedCard.id).where(
            SavedCard.stripe_payment_method_id == payment.payment_method_id,
            SavedCard.user_id == payment.user_id,
            # Saved by this payment (Stripe attaches the card when it succeeds), not a card
            # on file it paid with. A card mirrored before the payment was settled here is
            # not claimed: under-saying is the safe side.
            SavedCard.created_at >= payment.succeeded_at)) is not None
    mail = db.session.execute(sa.select(OutboxMessage.status, OutboxMessage.payload).where(
        OutboxMessage.payment_id == payment.id, OutboxMessage.kind == "receipt_email")).first()
    if mail is None:
        return Completion(saved, None, None)
    return Completion(saved, mail.payload.get("to"), _receipt_state(mail.status))


def _receipt_state(status: str) -> str:
    if status == "sent":
        return "sent"
    if status == "given_up":
        return "failed"
    mail_server = current_app.extensions["portal_config"].SMTP_HOST
    return "sending" if status == "pending" and mail_server else "not_sent"
