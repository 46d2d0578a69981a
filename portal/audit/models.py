"""The audit log: who did what to money, when and why."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models_base import IdMixin, UTCDateTime, utcnow


class AuditEntry(IdMixin, db.Model):
    """Who did what to money, when and why. Rows are only ever added."""

    __tablename__ = "audit_log"

    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # None: Stripe or the system (a webhook, a job).
    actor_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(sa.String(48))  # e.g. refund.approved
    payment_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("payments.id"), index=True)
    refund_request_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("refund_requests.id"), index=True)
    amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    note: Mapped[str | None] = mapped_column(sa.String(1000))

    actor = relationship("User")
