"""Writing and reading the audit log."""

from __future__ import annotations

import uuid

from ..auth.models import User
from ..extensions import db
from .models import AuditEntry


def audit(action: str, *, actor: User | None, payment_id: uuid.UUID | None = None,
          refund_request_id: uuid.UUID | None = None, amount: int | None = None,
          currency: str | None = None, note: str | None = None) -> None:
    """One line of the audit log, in the caller's transaction. ``actor`` None: Stripe or
    the system (a webhook, a job)."""
    db.session.add(AuditEntry(
        actor_id=actor.id if actor else None, action=action, payment_id=payment_id,
        refund_request_id=refund_request_id, amount=amount, currency=currency, note=note))
