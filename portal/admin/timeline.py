"""One payment's story for admins (/admin/payments/<id>): everything our own records say
happened to it, in time order, with the order, the vendors' lines and payouts, the refunds
and the messages sent; read in a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import joinedload

from ..audit.models import AuditEntry
from ..extensions import db
from ..ledger.models import Payment, Payout, SplitLine
from ..models_base import parse_uuid
from ..money import format_minor
from ..orders.models import Order, OrderItem
from ..outbox.models import OutboxMessage
from ..refunds.models import RefundRequest
from ..webhooks.models import StripeEvent


@dataclass(frozen=True)
class Entry:
    at: datetime
    what: str
    detail: str = ""
    event_id: str | None = None  # a Stripe event: linked to /admin/events/<id>


@dataclass
class Timeline:
    payment: Payment
    entries: list[Entry] = field(default_factory=list)
    lines: list[SplitLine] = field(default_factory=list)
    refunds: list[RefundRequest] = field(default_factory=list)
    messages: list[OutboxMessage] = field(default_factory=list)
    payouts: dict = field(default_factory=dict)  # payout id -> Payout, of the lines
    vendors: dict = field(default_factory=dict)  # vendor id -> e-mail, of the order's items
    other_payments: int = 0  # the customer's other payments
    stripe_url: str | None = None


def dashboard_url(intent_id: str | None) -> str | None:
    """The PaymentIntent in Stripe's Dashboard (its test-mode path with a test key)."""
    if not intent_id:
        return None
    test = current_app.extensions["portal_config"].STRIPE_SECRET_KEY.startswith(
        ("sk_test_", "rk_test_"))
    return f"https://dashboard.stripe.com/{'test/' if test else ''}payments/{intent_id}"


def timeline(payment_id: str) -> Timeline | None:
    """The payment's timeline; None when there is no such payment."""
    pid = parse_uuid(payment_id)
    payment = (db.session.scalar(sa.select(Payment).where(Payment.id == pid).options(
        joinedload(Payment.order).joinedload(Order.customer),
        joinedload(Payment.order).selectinload(Order.items).joinedload(OrderItem.vendor)))
        if pid else None)
    if payment is None:
        return None
    t = Timeline(payment, stripe_url=dashboard_url(payment.stripe_payment_intent_id))
    t.refunds = list(db.session.scalars(sa.select(RefundRequest).where(
        RefundRequest.payment_id == payment.id).order_by(RefundRequest.created_at)))
    t.lines = list(db.session.scalars(sa.select(SplitLine).where(
        SplitLine.payment_id == payment.id).order_by(SplitLine.created_at, SplitLine.id)))
    t.payouts = {p.id: p for p in db.session.scalars(sa.select(Payout).where(
        Payout.id.in_({line.payout_id for line in t.lines})))} if t.lines else {}
    t.vendors = {item.vendor_id: item.vendor.email for item in payment.order.items}
    t.messages = list(db.session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.payment_id == payment.id).order_by(OutboxMessage.created_at)))
    t.other_payments = db.session.scalar(sa.select(sa.func.count()).select_from(Payment).where(
        Payment.user_id == payment.user_id, Payment.id != payment.id)) or 0
    t.entries = sorted([*_payment_entries(payment), *_event_entries(t), *_audit_entries(payment),
                        *_ledger_entries(t)], key=lambda e: e.at)
    return t


def _money(payment: Payment, amount: int) -> str:
    return format_minor(amount, payment.currency)


def _payment_entries(payment: Payment) -> list[Entry]:
    where = f" from {payment.ip_address}" if payment.ip_address else ""
    out = [Entry(payment.created_at, "Payment created",
                 f"{_money(payment, payment.amount)}, {payment.source or 'web'}{where}")]
    if payment.succeeded_at:
        card = (f" with {(payment.card_brand or 'card').capitalize()} •••• "
                f"{payment.card_last4}" if payment.card_last4 else "")
        out.append(Entry(payment.succeeded_at, "Payment succeeded",
                         f"{_money(payment, payment.amount)}{card}"))
    if payment.failure_code or payment.failure_message:
        out.append(Entry(payment.updated_at, f"Payment {payment.status}",
                         payment.failure_message or payment.failure_code or ""))
    return out


def _event_entries(t: Timeline) -> list[Entry]:
    """Stripe's events about the payment's intent, charge and refunds, as received."""
    p = t.payment
    ids = [i for i in (p.stripe_payment_intent_id, p.stripe_charge_id) if i]
    ids += [r.stripe_refund_id for r in t.refunds if r.stripe_refund_id]
    if not ids:
        return []
    return [Entry(e.received_at, f"Stripe event {e.type}", e.status, e.id)
            for e in db.session.scalars(sa.select(StripeEvent).where(
                StripeEvent.object_id.in_(ids)))]


def _audit_entries(payment: Payment) -> list[Entry]:
    """Who did what to its money: refunds requested, decided, executed; intents linked."""
    out = []
    for a in db.session.scalars(sa.select(AuditEntry).where(AuditEntry.payment_id == payment.id)
                                .options(joinedload(AuditEntry.actor))):
        amount = f"{format_minor(a.amount, a.currency)}, " if a.amount is not None else ""
        note = f": {a.note}" if a.note else ""
        out.append(Entry(a.at, a.action,
                         f"{amount}by {a.actor.email if a.actor else 'the portal'}{note}"))
    return out


def _ledger_entries(t: Timeline) -> list[Entry]:
    """The vendors' lines (and the payouts they are in), and the messages sent."""
    out = [Entry(line.created_at, f"{line.kind.capitalize()} line",
                 f"{t.vendors.get(line.vendor_id, 'a vendor')}: net "
                 f"{_money(t.payment, line.net)}, payout {t.payouts[line.payout_id].status}")
           for line in t.lines]
    out += [Entry(m.created_at, m.kind.replace("_", " ").capitalize(),
                  f"{m.status}, {m.attempts} attempt{'' if m.attempts == 1 else 's'}")
            for m in t.messages]
    return out
