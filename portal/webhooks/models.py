"""Every verified Stripe event, keyed by Stripe's event id (a redelivery is a no-op)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import UTCDateTime, utcnow

EVENT_STATUSES = ("received", "queued", "processed", "ignored", "failed")


class StripeEvent(db.Model):
    __tablename__ = "stripe_events"
    __table_args__ = (sa.Index("ix_stripe_events_status_received", "status", "received_at"),)

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)  # Stripe's evt_...
    type: Mapped[str] = mapped_column(sa.String(100), index=True)
    object_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    api_version: Mapped[str | None] = mapped_column(sa.String(64))
    stripe_created: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    payload: Mapped[dict] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(
        sa.Enum(*EVENT_STATUSES, name="event_status", native_enum=False, create_constraint=True),
        default="received",
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
