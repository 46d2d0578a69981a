"""Refund requests and the audit log of money-moving actions."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models_base import IdMixin, TimestampMixin, UTCDateTime

# The original description's reason, then Stripe's (sent to Stripe as they are), then ours.
# The first two mean the same: forms offer the first only; the API accepts both.
REASONS = {
    "customer_request": "Requested by customer",
    "requested_by_customer": "Requested by customer",
    "duplicate": "Duplicate payment",
    "fraudulent": "Fraudulent payment",
    "not_received": "Item not received",
    "damaged": "Item damaged or not as described",
    "other": "Other",
}
# What the forms offer: the first two of REASONS mean the same, so one of them.
FORM_REASONS = {key: label for key, label in REASONS.items() if key != "requested_by_customer"}
STRIPE_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}
# requested → approved | rejected; approved → processing → succeeded | failed | canceled.
# A succeeded refund may still fail later (Stripe reports it asynchronously).
REFUND_STATUSES = ("requested", "approved", "rejected", "processing", "succeeded", "failed",
                   "canceled")
# What still counts against the refundable remainder of the payment.
IN_FLIGHT = ("approved", "processing")
# What counts against what may still be asked for: waiting for a decision too.
CLAIMED = ("requested", *IN_FLIGHT, "succeeded")
# What an admin's decision has committed.
SETTLED = (*IN_FLIGHT, "succeeded")


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
    items: Mapped[list[RefundItem]] = relationship(
        back_populates="refund_request", cascade="all, delete-orphan",
        order_by="RefundItem.position")

    @property
    def borne(self) -> bool:
        """Borne by named vendors (items, a vendor's goodwill) rather than in proportion."""
        return bool(self.items)

    @property
    def itemized(self) -> bool:
        return any(item.order_item_id is not None for item in self.items)

    @property
    def refund_amount(self) -> int:
        """What is (or would be) refunded: the approved amount once decided."""
        return self.approved_amount if self.approved_amount is not None else self.amount

    @property
    def reason_label(self) -> str:
        return REASONS.get(self.reason, self.reason)


class RefundItem(IdMixin, db.Model):
    """Who bears a refund request: an order item and a quantity of it (borne by the item's
    vendor), or, without an item, a vendor's goodwill amount borne by that vendor. A request
    without rows is an amount shared by the order's vendors in proportion (ledger.splits)."""

    __tablename__ = "refund_items"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("(order_item_id IS NULL) = (quantity IS NULL)",
                           name="quantity_with_item"),
        sa.CheckConstraint("quantity IS NULL OR quantity > 0", name="quantity_positive"),
        # What is claimed of each item, of each vendor (refunds.items).
        sa.Index("ix_refund_items_order_item", "order_item_id"),
    )

    refund_request_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("refund_requests.id", ondelete="CASCADE"), index=True)
    vendor_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    order_item_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("order_items.id"))
    position: Mapped[int] = mapped_column(default=0)
    quantity: Mapped[int | None]
    amount: Mapped[int] = mapped_column(sa.BigInteger)  # minor units, borne by vendor_id

    refund_request: Mapped[RefundRequest] = relationship(back_populates="items")
    order_item = relationship("OrderItem")
    vendor = relationship("User")
