"""Outbox messages: one row per side effect, unique per (kind, what it is about)."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models_base import IdMixin, UTCDateTime, utcnow

# refund_email: the customer is told a refund succeeded or failed; admin_alert: admins are
# e-mailed about what needs a person (a refund that failed after it had succeeded).
KINDS = ("order_notification", "receipt_email", "refund_email", "admin_alert")
# pending → sent; or given_up (24 h of failures; flagged to admins); or kept (a receipt with
# no SMTP server configured: it stays in the local outbox for admins to see).
STATUSES = ("pending", "sent", "given_up", "kept")


class OutboxMessage(IdMixin, db.Model):
    __tablename__ = "outbox_messages"
    __table_args__ = (sa.Index("ix_outbox_messages_status_next", "status", "next_attempt_at"),)

    kind: Mapped[str] = mapped_column(
        sa.Enum(*KINDS, name="outbox_kind", native_enum=False, create_constraint=True))
    # What makes it unique, e.g. "order_notification:<payment id>:succeeded": however often a
    # state change is applied (webhook, completion page, replay), it is written once.
    dedupe_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("payments.id"),
                                                         index=True)
    payload: Mapped[dict] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(
        sa.Enum(*STATUSES, name="outbox_status", native_enum=False, create_constraint=True),
        default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    errors: Mapped[list] = mapped_column(sa.JSON, default=list)  # one line per failed attempt
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # An admin's last "Try again" of a given-up message: its 24 h of attempts run from here
    # (from created_at when never tried again).
    retried_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    payment = relationship("Payment")
