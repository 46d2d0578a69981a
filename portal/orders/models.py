"""An order belongs to a customer and holds items from one or more vendors."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models_base import IdMixin, TimestampMixin, UTCDateTime

ORDER_STATUSES = ("unpaid", "paid", "canceled")


def order_number(order_id: uuid.UUID) -> str:
    """An order's short human reference: its id's first 8 hex digits, in capitals."""
    return order_id.hex[:8].upper()


def order_number_of(id_text: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``order_number`` in SQL, from an order id's text (``database.uuid_text``)."""
    return sa.func.upper(sa.func.substr(id_text, 1, 8), type_=sa.String)


class Order(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "orders"
    __table_args__ = (
        sa.CheckConstraint("total >= 0", name="total_not_negative"),
        sa.Index("ix_orders_customer_created", "customer_id", "created_at"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(sa.String(3))
    subtotal: Mapped[int] = mapped_column(sa.BigInteger)
    tax: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    shipping: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    discount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    total: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(
        sa.Enum(*ORDER_STATUSES, name="order_status", native_enum=False, create_constraint=True),
        default="unpaid",
    )
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    customer = relationship("User")
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderItem.position"
    )

    @property
    def number(self) -> str:
        """Short human reference shown on pages and receipts."""
        return order_number(self.id)


class OrderItem(IdMixin, db.Model):
    __tablename__ = "order_items"
    __table_args__ = (
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        # An order's items, and which vendors sold them without reading the rows: the admin
        # search by vendor tests each payment's order, and its CSV lists every order's vendors.
        sa.Index("ix_order_items_order_vendor", "order_id", "vendor_id"),
        # A vendor's items, and their orders without reading the rows: the admin search by
        # vendor counts them, hashes them or tests one (admin/search.py, _sold_by).
        sa.Index("ix_order_items_vendor_order", "vendor_id", "order_id"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("orders.id", ondelete="CASCADE"))
    vendor_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    position: Mapped[int] = mapped_column(default=0)
    description: Mapped[str] = mapped_column(sa.String(200))
    quantity: Mapped[int]
    unit_amount: Mapped[int] = mapped_column(sa.BigInteger)

    order: Mapped[Order] = relationship(back_populates="items")
    vendor = relationship("User")

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_amount
