"""Invoices and the counters that number them, gap-free per kind and calendar year."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models_base import IdMixin, UTCDateTime


class DocumentCounter(db.Model):
    """The next number of a kind of document in a year. A row, not a database sequence: a
    sequence gives a rolled-back transaction's value to no one (a gap); this row is updated
    in the transaction that issues the document, so a rollback takes the number back."""

    __tablename__ = "document_counters"

    kind: Mapped[str] = mapped_column(sa.String(8), primary_key=True)  # INV, CN
    year: Mapped[int] = mapped_column(primary_key=True)
    next_value: Mapped[int] = mapped_column(sa.BigInteger, default=1)


class Numbered(IdMixin):
    """What every document has: its number (INV-2026-000123: kind, year, sequence), when it
    was issued, its currency and the facts it states, stored as issued."""

    number: Mapped[str] = mapped_column(sa.String(20), unique=True)
    year: Mapped[int]
    sequence: Mapped[int] = mapped_column(sa.BigInteger)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    currency: Mapped[str] = mapped_column(sa.String(3))
    facts: Mapped[dict] = mapped_column(sa.JSON)


class Invoice(Numbered, db.Model):
    """A paid order's invoice: its number and the facts it states, stored as issued (a
    setting or a record changed later changes only new invoices)."""

    __tablename__ = "invoices"
    __table_args__ = (
        sa.UniqueConstraint("year", "sequence", name="uq_invoices_year_sequence"),
        sa.CheckConstraint("sequence > 0", name="sequence_positive"),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("payments.id"), unique=True)
    total: Mapped[int] = mapped_column(sa.BigInteger)

    payment = relationship("Payment")


class CreditNote(Numbered, db.Model):
    """A succeeded refund's credit note: its number, the invoice it credits, and what it
    states (the amount, the reason, what each vendor bears), stored as issued."""

    __tablename__ = "credit_notes"
    __table_args__ = (
        sa.UniqueConstraint("year", "sequence", name="uq_credit_notes_year_sequence"),
        sa.CheckConstraint("sequence > 0", name="sequence_positive"),
    )

    refund_request_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("refund_requests.id"), unique=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("payments.id"), index=True)
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("invoices.id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)

    invoice = relationship("Invoice")
