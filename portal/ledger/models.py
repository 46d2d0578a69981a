"""The ledger's records: payments (one per order, with the original service's Payment model
fields), their vendor split lines, vendors' Connect accounts, payout runs and payouts."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models_base import IdMixin, TimestampMixin, UTCDateTime, utcnow

# The original description's statuses. "failed" is an attempt that was declined or not
# authenticated: the customer may try again on the same PaymentIntent.
PAYMENT_STATUSES = (
    "pending",
    "processing",
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "canceled",
    "succeeded",
    "failed",
)
FINAL_STATUSES = frozenset({"succeeded", "canceled"})
# Statuses where the customer has to act (enter another card); the status page stops polling.
SETTLED_FOR_NOW = FINAL_STATUSES | {"failed", "requires_payment_method"}
NOT_FINAL = sa.text("status NOT IN ('succeeded', 'canceled')")
SUCCEEDED = sa.text("status = 'succeeded'")


class Payment(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "payments"
    __table_args__ = (
        sa.CheckConstraint("amount >= 0", name="amount_not_negative"),
        # History: a user's payments newest first, optionally by status (keyset-friendly).
        sa.Index("ix_payments_user_created", "user_id", "created_at", "id"),
        sa.Index("ix_payments_user_status_created", "user_id", "status", "created_at", "id"),
        # Reconciliation: the payments not final, next due first (never checked: NULL).
        sa.Index("ix_payments_reconcile_due", "reconcile_due_at", "updated_at",
                 postgresql_where=NOT_FINAL, sqlite_where=NOT_FINAL),
        # Admin search: a card's last four digits, newest first.
        sa.Index("ix_payments_last4_created", "card_last4", "created_at"),
        # Admin search and its CSV export: every payment newest first, a keyset page starting
        # at its cursor; any filter that keeps more than a few in a thousand is read on the
        # way (bench/admin_search.py).
        sa.Index("ix_payments_created", "created_at", "id"),
        # Admin search: an amount, or a narrow range, in a currency (the issue's "a customer
        # says they paid 587.52 EUR").
        sa.Index("ix_payments_currency_amount_created", "currency", "amount", "created_at"),
        # Reconciliation of refunds: succeeded payments, never checked (NULL) or longest ago.
        sa.Index("ix_payments_refunds_checked", "refunds_checked_at",
                 postgresql_where=SUCCEEDED, sqlite_where=SUCCEEDED),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    order_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("orders.id"), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    # The charge that paid it (support looks payments up by it: /admin/payments).
    stripe_charge_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(
        sa.Enum(*PAYMENT_STATUSES, name="payment_status", native_enum=False,
                create_constraint=True),
        default="pending",
        index=True,
    )
    # Snapshot of the payment method: Stripe ids, brand, last4 and expiry only; no card data.
    payment_method_id: Mapped[str | None] = mapped_column(sa.String(255))
    payment_method_type: Mapped[str | None] = mapped_column(sa.String(32))
    card_brand: Mapped[str | None] = mapped_column(sa.String(32))
    card_last4: Mapped[str | None] = mapped_column(sa.String(4))
    card_exp_month: Mapped[int | None]
    card_exp_year: Mapped[int | None]
    card_funding: Mapped[str | None] = mapped_column(sa.String(16))
    card_country: Mapped[str | None] = mapped_column(sa.String(2))
    billing_details: Mapped[dict | None] = mapped_column(sa.JSON)
    # Breakdown, minor units (platform fee and vendor amount are filled by the split lines).
    subtotal: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    tax: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    shipping: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    discount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    platform_fee: Mapped[int | None] = mapped_column(sa.BigInteger)
    vendor_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    receipt_url: Mapped[str | None] = mapped_column(sa.String(500))
    receipt_number: Mapped[str | None] = mapped_column(sa.String(32), unique=True)
    failure_code: Mapped[str | None] = mapped_column(sa.String(64))
    failure_message: Mapped[str | None] = mapped_column(sa.String(500))
    # Request metadata of the checkout that created it.
    ip_address: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))
    source: Mapped[str | None] = mapped_column(sa.String(16))
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When Stripe makes the charge's funds available (its balance transaction's available_on):
    # until then the vendors' shares cannot be transferred.
    funds_available_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Sum of the refunds Stripe reports as succeeded (mirrored by refunds.services).
    amount_refunded: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    # When reconciliation next re-reads a payment that is not final (NULL: not checked yet).
    reconcile_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When reconciliation last compared its refunds at Stripe with ours (None: never).
    refunds_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    order = relationship("Order")

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def refund_state(self) -> str | None:
        """"refunded", "partially_refunded" or None."""
        if not self.amount_refunded:
            return None
        return "refunded" if self.amount_refunded >= self.amount else "partially_refunded"


# sale: the vendor's share of a payment; refund: what a refund took back from it (negative);
# reversal: what a Stripe transfer reversal took back from the vendor for a refund line whose
# sale was already paid out (positive: it settles that refund line, so the next payout does
# not take it again; not earnings, so the vendor's totals leave it out of their net).
SPLIT_KINDS = ("sale", "refund", "reversal")
SALE = sa.text("kind = 'sale'")


class SplitLine(IdMixin, db.Model):
    """A vendor's share of a payment (kind "sale"), what a refund took back from it (kind
    "refund", negative), or what a transfer reversal recovered of such a refund line (kind
    "reversal"). Lines are never changed, only added (payouts group them)."""

    __tablename__ = "split_lines"
    __table_args__ = (
        sa.Index("ix_split_lines_vendor_created", "vendor_id", "created_at"),
        # A payout's lines (drill-down, the run's totals, the lines a run leaves open).
        sa.Index("ix_split_lines_payout_created", "payout_id", "created_at"),
        # The lines a run leaves open because their funds are still pending at Stripe.
        sa.Index("ix_split_lines_payout_available", "payout_id", "available_at"),
        # One sale line per vendor of a payment, whatever races the code may have missed.
        sa.Index("uq_split_lines_sale", "payment_id", "vendor_id", unique=True,
                 postgresql_where=SALE, sqlite_where=SALE),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("payments.id"), index=True)
    vendor_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(
        sa.Enum(*SPLIT_KINDS, name="split_kind", native_enum=False, create_constraint=True))
    refund_request_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("refund_requests.id"))
    currency: Mapped[str] = mapped_column(sa.String(3))
    gross: Mapped[int] = mapped_column(sa.BigInteger)
    fee: Mapped[int] = mapped_column(sa.BigInteger)
    net: Mapped[int] = mapped_column(sa.BigInteger)
    # A reversal line: the refund line it settles (one reversal per refund line at most) and
    # the Stripe transfer reversal (trr_...) that recovered the money.
    reverses_line_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("split_lines.id"), unique=True)
    stripe_reversal_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A sale line: when Stripe makes the payment's funds available (payouts wait for it: a
    # transfer needs available balance). None: a refund line, or a line from before this
    # was recorded; both can be paid at once.
    available_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The payout that pays (or takes back) this line: set when the line is written, to the
    # vendor's open payout in its currency; a line is in exactly one payout.
    payout_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("payouts.id"))

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
    it when the line is written (ledger.splits.open_payouts). A run closes the open
    payouts with a positive total (status pending, run_id set, totals filled, created_at =
    the run's time), so it never rewrites the lines themselves (bench/payouts.py)."""

    __tablename__ = "payouts"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "vendor_id", "currency", name="uq_payouts_run_vendor"),
        sa.Index("ix_payouts_vendor_created", "vendor_id", "created_at"),
        sa.Index("uq_payouts_open", "vendor_id", "currency", unique=True,
                 postgresql_where=sa.text("status = 'open'"),
                 sqlite_where=sa.text("status = 'open'")),
        # Analytics: a currency's payouts paid in a period, and those pending now.
        sa.Index("ix_payouts_currency_status_paid", "currency", "status", "paid_at",
                 postgresql_include=["amount"]),
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
    # Stripe refused the transfer for lack of available balance (a pending payout; the
    # reason says so): since when it waits. payouts.resume_waiting queues it again, once,
    # when Stripe's available balance covers it (balance.available, and every 10 minutes).
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stripe_transfer_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    # Part of the transfer's idempotency key: Stripe keeps a 500 answer under its key, so
    # after one the next attempt needs a new key (a transfer is first looked up by group).
    transfer_attempt: Mapped[int] = mapped_column(default=0, server_default="0")
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    run: Mapped[PayoutRun | None] = relationship(back_populates="payouts")
    vendor = relationship("User")


class DailySales(db.Model):
    """One vendor's sales in one currency on one UTC day, as its split lines say (the day of
    each line's ``created_at``): what the back office's figures read instead of the payments.

    Kept up to date in the transaction that writes the lines (ledger.rollups), and rebuilt
    from the lines by ``flask analytics rebuild``: the two always agree, to the minor unit.
    """

    __tablename__ = "daily_sales"
    # Analytics reads one currency's days (the key starts with the day: every currency's).
    __table_args__ = (sa.Index("ix_daily_sales_currency_day", "currency", "day",
                               postgresql_include=["vendor_id", "gross", "fees",
                                                   "fees_returned", "refunded"]),)

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    vendor_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    sales: Mapped[int] = mapped_column(default=0)  # sale lines: payments with its items
    gross: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # its share of them
    fees: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # the platform's fee on it
    refunded: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # given back (positive)
    fees_returned: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # fee given back


class DailyPayments(db.Model):
    """The payments that succeeded in one currency on one UTC day (``succeeded_at``): how
    many, and their amount. Kept and rebuilt as DailySales is."""

    __tablename__ = "daily_payments"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    succeeded: Mapped[int] = mapped_column(default=0)
    volume: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class DailyAttempts(db.Model):
    """Payments by the UTC day they were made (``created_at``), currency and outcome so far:
    ``succeeded``, or ``failed`` with Stripe's decline code ("" when Stripe gave none).
    A payment counts once, where it stands now: declined and then paid, it moves from
    failed to succeeded. The success rate and the declines of the back office read these;
    kept and rebuilt as DailySales is."""

    __tablename__ = "daily_attempts"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    outcome: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    payments: Mapped[int] = mapped_column(default=0)


class CustomerDays(db.Model):
    """That a customer paid in a currency on a UTC day (``succeeded_at``): the paying
    customers of a period are the distinct users of its days. Kept and rebuilt as DailySales
    is."""

    __tablename__ = "customer_days"

    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)


class FirstPayments(db.Model):
    """The UTC day of each customer's first successful payment in a currency: the new
    paying customers of a period are those whose day falls in it. Kept and rebuilt as
    DailySales is."""

    __tablename__ = "first_payments"
    __table_args__ = (sa.Index("ix_first_payments_currency_day", "currency", "day"),)

    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date)
