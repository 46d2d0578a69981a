"""Refund requests and the audit log of money-moving actions."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models_base import IdMixin, TimestampMixin, UTCDateTime

# The original description's reason, then Stripe's (sent to Stripe as they are), then ours.
REASONS = {
    "customer_request": "Customer request",
    "requested_by_customer": "Requested by customer",
    "duplicate": "Duplicate payment",
    "fraudulent": "Fraudulent payment",
    "not_received": "Item not received",
    "damaged": "Item damaged or not as described",
    "other": "Other",
}
STRIPE_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}
# requested → approved | rejected; approved → processing → succeeded | failed | canceled.
# A succeeded refund may still fail later (Stripe reports it asynchronously).
REFUND_STATUSES = ("requested", "approved", "rejected", "processing", "succeeded", "failed",
                   "canceled")
# What still counts against the refundable remainder of the payment.
IN_FLIGHT = ("approved", "processing")


class RefundRequest(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "refund_requests"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.Index("ix_refund_requests_status_created", "status", "created_at"),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("payments.id"), index=True)
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id"))
    # customer, vendor, admin, api, or stripe (made outside the portal, e.g. the dashboard)
    source: Mapped[str] = mapped_column(sa.String(16))
    amount: Mapped[int] = mapped_column(sa.BigInteger)  # requested, minor units
    approved_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    reason: Mapped[str] = mapped_column(sa.String(32))
    notes: Mapped[str | None] = mapped_column(sa.String(1000))
    status: Mapped[str] = mapped_column(
        sa.Enum(*REFUND_STATUSES, name="refund_status", native_enum=False,
                create_constraint=True), default="requested")
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(sa.String(1000))
    stripe_refund_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    # Part of the refund's idempotency key: Stripe keeps a 500 answer under its key, so after
    # one the next attempt needs a new key (a refund is first looked up by its metadata).
    stripe_attempt: Mapped[int] = mapped_column(default=0, server_default="0")
    failure_message: Mapped[str | None] = mapped_column(sa.String(500))

    payment = relationship("Payment")
    requested_by = relationship("User", foreign_keys=[requested_by_id])
    decided_by = relationship("User", foreign_keys=[decided_by_id])

    @property
    def refund_amount(self) -> int:
        """What is (or would be) refunded: the approved amount once decided."""
        return self.approved_amount if self.approved_amount is not None else self.amount

    @property
    def reason_label(self) -> str:
        return REASONS.get(self.reason, self.reason)
