"""Vendors' Connect accounts, payout runs and payouts."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models_base import IdMixin, TimestampMixin, UTCDateTime

# A run turns a vendor's open payout (the balance: every line not paid yet) into a pending
# one; execution moves it on. Lists, filters and the API show the statuses after "open".
PAYOUT_STATUSES = ("pending", "processing", "paid", "failed")
STATUSES = ("open", *PAYOUT_STATUSES)
PERIODS = ("weekly", "monthly")


class VendorAccount(IdMixin, TimestampMixin, db.Model):
    """A vendor's Stripe Express account as Stripe last reported it (account.updated), and
    the vendor's own commission rate when it differs from PLATFORM_FEE_PERCENT."""

    __tablename__ = "vendor_accounts"

    vendor_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    stripe_account_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    charges_enabled: Mapped[bool] = mapped_column(default=False)
    payouts_enabled: Mapped[bool] = mapped_column(default=False)
    # The account's `transfers` capability is active: what Stripe requires to send it a
    # transfer (payouts_enabled is about the account's own payouts to its bank).
    transfers_active: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    details_submitted: Mapped[bool] = mapped_column(default=False)
    requirements_due: Mapped[list] = mapped_column(sa.JSON, default=list)
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(64))
    fee_percent: Mapped[int | None]

    @property
    def ready(self) -> bool:
        """Transfers can be sent to it."""
        return bool(self.stripe_account_id and self.transfers_active)


class PayoutRun(IdMixin, db.Model):
    """One grouping of unpaid split lines into payouts (CLI, schedule or admin)."""

    __tablename__ = "payout_runs"

    period: Mapped[str] = mapped_column(sa.String(16))
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    until: Mapped[datetime] = mapped_column(UTCDateTime)  # lines created before it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id"))

    payouts: Mapped[list[Payout]] = relationship(back_populates="run", order_by="Payout.id")


class Payout(IdMixin, TimestampMixin, db.Model):
    """What one vendor is paid in one currency: the sum of its lines.

    Each vendor has at most one *open* payout per currency, and every split line goes into
    it when the line is written (payouts.services.open_payouts). A run closes the open
    payouts with a positive total (status pending, run_id set, totals filled, created_at =
    the run's time), so it never rewrites the lines themselves (bench/payouts.py)."""

    __tablename__ = "payouts"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "vendor_id", "currency", name="uq_payouts_run_vendor"),
        sa.Index("ix_payouts_vendor_created", "vendor_id", "created_at"),
        sa.Index("uq_payouts_open", "vendor_id", "currency", unique=True,
                 postgresql_where=sa.text("status = 'open'"),
                 sqlite_where=sa.text("status = 'open'")),
    )

    run_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("payout_runs.id"),
                                                     index=True)
    vendor_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(sa.String(3))
    amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # net: what is transferred
    total_sales: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # gross of sale lines
    platform_fee: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # fees, net of refunds
    refunds: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # gross taken back (<= 0)
    payment_count: Mapped[int] = mapped_column(default=0)
    line_count: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(
        sa.Enum(*STATUSES, name="payout_status", native_enum=False,
                create_constraint=True), default="pending", index=True)
    failure_reason: Mapped[str | None] = mapped_column(sa.String(500))
    stripe_transfer_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    # Part of the transfer's idempotency key: Stripe keeps a 500 answer under its key, so
    # after one the next attempt needs a new key (a transfer is first looked up by group).
    transfer_attempt: Mapped[int] = mapped_column(default=0, server_default="0")
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    run: Mapped[PayoutRun | None] = relationship(back_populates="payouts")
    vendor = relationship("User")
