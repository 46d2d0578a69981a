"""Reconciliation on the embedded default, SQLite (its other tests run on PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from portal.extensions import db
from portal.models_base import utcnow
from portal.payments.models import Payment
from portal.webhooks.reconcile import reconcile
from tests.helpers import make_order, make_user
from tests.unit.test_payouts_sqlite import sqlite_app  # noqa: F401 - the fixture


def test_reconciliation_on_sqlite_takes_its_turns(sqlite_app):  # noqa: F811
    """Stripe cannot be reached here (the app points at a closed port): each payment is
    still checked, once, and then waits its turn."""
    customer, vendor = make_user("c@example.com"), make_user("v@example.com", "vendor")
    old = utcnow() - timedelta(hours=4)
    for n in range(3):
        order = make_order(customer, vendor, amounts=(1000 + n,))
        db.session.add(Payment(user_id=customer.id, order_id=order.id, amount=1000 + n,
                               currency="USD", status="requires_payment_method",
                               stripe_payment_intent_id=f"pi_{n}", created_at=old,
                               updated_at=old + timedelta(minutes=n)))
    db.session.commit()
    assert reconcile(older_than_minutes=10, limit=2).payments_checked == 2
    assert reconcile(older_than_minutes=10, limit=2).payments_checked == 1
    assert reconcile(older_than_minutes=10, limit=2).payments_checked == 0
    due = dict(db.session.execute(sa.select(Payment.stripe_payment_intent_id,
                                            Payment.reconcile_due_at)).all())
    # A quarter of their 4 hours: each is looked at again in about an hour.
    assert all(timedelta(minutes=55) < d - utcnow() <= timedelta(hours=1)
               for d in due.values()), due
    assert all(p.updated_at < utcnow() - timedelta(hours=3)  # "last changed" kept
               for p in db.session.scalars(sa.select(Payment)))
