"""Invoices: issued in the transaction that records a payment's success, once, with the
next number of its year; shown from the facts stored then."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from flask import current_app

from ..auth.models import User
from ..extensions import db
from ..ledger.models import Payment
from ..models_base import utcnow
from ..orders.models import OrderItem
from . import numbering
from .models import Invoice

KIND = "INV"


def facts_of(payment: Payment) -> dict:
    """What the invoice states, as it is now: the platform's details, the customer, each item
    with its vendor, the order's amounts (minor units) and the card (brand, last4)."""
    config = current_app.extensions["portal_config"]
    order = payment.order
    vendors = dict(db.session.execute(
        sa.select(User.id, User.email).join(OrderItem, OrderItem.vendor_id == User.id)
        .where(OrderItem.order_id == order.id)).all())
    paid_at = payment.succeeded_at or utcnow()
    return {
        "seller": {"name": config.INVOICE_COMPANY_NAME,
                   "address": config.INVOICE_COMPANY_ADDRESS,
                   "tax_id": config.INVOICE_TAX_ID},
        "customer": {"email": order.customer.email, "name": order.customer.name or ""},
        "order": order.number,
        "items": [{"description": i.description, "vendor": vendors.get(i.vendor_id, ""),
                   "quantity": i.quantity, "unit_amount": i.unit_amount, "amount": i.amount}
                  for i in order.items],
        "subtotal": order.subtotal, "discount": order.discount, "tax": order.tax,
        "shipping": order.shipping, "total": payment.amount, "currency": payment.currency,
        "card": {"brand": payment.card_brand or "", "last4": payment.card_last4 or ""},
        "paid_at": paid_at.isoformat(),
    }


def issue_invoice(payment: Payment) -> Invoice:
    """The payment's invoice, issued now (once: called on the transition to succeeded, under
    the payment's row lock). The number is taken last: see numbering. The caller commits."""
    facts = facts_of(payment)
    now = utcnow()
    sequence = numbering.next_number(KIND, now.year)
    invoice = Invoice(id=uuid.uuid4(), number=numbering.formatted(KIND, now.year, sequence),
                      year=now.year, sequence=sequence, payment_id=payment.id, issued_at=now,
                      currency=payment.currency, total=payment.amount, facts=facts)
    db.session.add(invoice)
    return invoice


def invoice_of(payment: Payment) -> Invoice | None:
    return invoice_by_payment(payment.id)


def invoice_by_payment(payment_id: uuid.UUID) -> Invoice | None:
    return db.session.scalar(sa.select(Invoice).where(Invoice.payment_id == payment_id))
