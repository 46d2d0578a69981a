"""Credit notes: one per succeeded refund, issued in the transaction that records the
success, with the next CN number of its year; it credits the payment's invoice and states
what each vendor bears of the refund (ledger.splits' rule, as their refund lines)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from ..auth.models import User
from ..extensions import db
from ..ledger.models import Payment
from ..models_base import utcnow
from . import numbering
from .invoices import invoice_of
from .models import CreditNote

KIND = "CN"


def issue_credit_note(payment: Payment, refund_request_id: uuid.UUID, amount: int,
                      reason: str, borne: dict[uuid.UUID, int]) -> CreditNote:
    """The refund's credit note, issued now (once: on its transition to succeeded, under
    the payment's row lock; the number last, see numbering). ``borne``: vendor id -> what
    they bear of it. The caller commits."""
    invoice = invoice_of(payment)
    emails = dict(db.session.execute(sa.select(User.id, User.email).where(
        User.id.in_(list(borne)))).all()) if borne else {}
    now = utcnow()
    facts = {
        "invoice": invoice.number if invoice else None,
        "order": payment.order.number,
        "customer": {"email": payment.order.customer.email,
                     "name": payment.order.customer.name or ""},
        "seller": invoice.facts["seller"] if invoice else None,
        "amount": amount, "currency": payment.currency, "reason": reason,
        "vendors": [{"vendor": emails.get(v, ""), "amount": a}
                    for v, a in sorted(borne.items(), key=lambda kv: emails.get(kv[0], ""))
                    if a],
        "card": {"brand": payment.card_brand or "", "last4": payment.card_last4 or ""},
    }
    sequence = numbering.next_number(KIND, now.year)
    note = CreditNote(id=uuid.uuid4(), number=numbering.formatted(KIND, now.year, sequence),
                      year=now.year, sequence=sequence, refund_request_id=refund_request_id,
                      payment_id=payment.id, invoice_id=invoice.id if invoice else None,
                      issued_at=now, currency=payment.currency, amount=amount, facts=facts)
    db.session.add(note)
    return note


def credit_notes_of(payment: Payment) -> list[CreditNote]:
    return list(db.session.scalars(sa.select(CreditNote).where(
        CreditNote.payment_id == payment.id).order_by(CreditNote.sequence)))
