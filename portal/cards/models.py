"""The Customer Map of the original description and the saved cards it lists."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import IdMixin, TimestampMixin, UTCDateTime


class CustomerMap(IdMixin, TimestampMixin, db.Model):
    """One Stripe customer per user (unique both ways), with the customer's default card,
    contact details and spending, kept current as payments succeed."""

    __tablename__ = "customer_maps"

    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    stripe_customer_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    default_payment_method_id: Mapped[str | None] = mapped_column(sa.String(255))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    name: Mapped[str | None] = mapped_column(sa.String(120))
    phone: Mapped[str | None] = mapped_column(sa.String(32))
    address: Mapped[dict | None] = mapped_column(sa.JSON)
    # Spending, per currency in minor units ({"USD": 12345}): sums of different currencies
    # mean nothing, so there is no single "total spent".
    total_spent: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    payment_count: Mapped[int] = mapped_column(default=0)
    last_payment_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SavedCard(IdMixin, TimestampMixin, db.Model):
    """A card on file: the Stripe PaymentMethod id and what may be shown (brand, last4,
    expiry). Never the number or CVC. ``created_at`` is when it was added."""

    __tablename__ = "saved_cards"
    # The same card (Stripe's fingerprint of the number) is saved once per customer.
    # (Also the index of a user's cards.)
    __table_args__ = (sa.UniqueConstraint("user_id", "fingerprint",
                                          name="uq_saved_cards_user_id_fingerprint"),)

    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    stripe_payment_method_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    type: Mapped[str] = mapped_column(sa.String(32), default="card")
    brand: Mapped[str | None] = mapped_column(sa.String(32))
    last4: Mapped[str | None] = mapped_column(sa.String(4))
    exp_month: Mapped[int | None]
    exp_year: Mapped[int | None]
    funding: Mapped[str | None] = mapped_column(sa.String(16))
    country: Mapped[str | None] = mapped_column(sa.String(2))
    fingerprint: Mapped[str | None] = mapped_column(sa.String(64))

    def expiry_state(self, today: date) -> str | None:
        """"expired", "expires_soon" (this month or the next) or None."""
        if not (self.exp_month and self.exp_year):
            return None
        months_left = (self.exp_year - today.year) * 12 + self.exp_month - today.month
        if months_left < 0:
            return "expired"
        return "expires_soon" if months_left <= 1 else None
