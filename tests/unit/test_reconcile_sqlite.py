"""Reconciliation's turns, and reconciliation on the embedded default, SQLite (its other
tests run on PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger.models import Payment
from portal.models_base import utcnow
from portal.reconciliation.services import LEFT_ALONE, next_check, reconcile
from tests.helpers import committed, make_order, make_user
from tests.unit.test_payouts_sqlite import sqlite_app  # noqa: F401 - the fixture


def test_reconciliation_on_sqlite_takes_its_turns(sqlite_app, monkeypatch):  # noqa: F811
    """Each payment is checked once, then waits its turn (a quarter of the 4 hours since it
    last changed); one Stripe cannot be read for comes back in 5 minutes."""
    from portal import stripe_gateway

    customer, vendor = make_user("c@example.com"), make_user("v@example.com", "vendor")
    old = utcnow() - timedelta(hours=4)
    for n in range(3):
        order = make_order(customer, vendor, amounts=(1000 + n,))
        db.session.add(Payment(user_id=customer.id, order_id=order.id, amount=1000 + n,
                               currency="USD", status="requires_payment_method",
                               stripe_payment_intent_id=f"pi_{n}", created_at=old,
                               updated_at=old + timedelta(minutes=n)))
    db.session.commit()

    def read(intent_id):
        if intent_id == "pi_2":
            raise stripe_gateway.GatewayError("timed out", retryable=True)
        return stripe_gateway.Intent(id=intent_id, status="requires_payment_method",
                                     amount=0, currency="USD", client_secret=None,
                                     created=1, metadata={})

    monkeypatch.setattr(stripe_gateway, "retrieve_payment_intent", read)
    with committed():
        runs = [reconcile(older_than_minutes=10, limit=2) for _ in range(3)]
    assert [(r.payments_checked, r.payments_unread) for r in runs] == [(2, 0), (0, 1), (0, 0)]
    due = {pi: d - utcnow() for pi, d in db.session.execute(
        sa.select(Payment.stripe_payment_intent_id, Payment.reconcile_due_at))}
    assert all(timedelta(minutes=55) < due[pi] <= timedelta(hours=1) for pi in ("pi_0", "pi_1"))
    assert timedelta(minutes=4) < due["pi_2"] <= timedelta(minutes=5), due
    assert all(p.updated_at < utcnow() - timedelta(hours=3)  # "last changed" kept
               for p in db.session.scalars(sa.select(Payment)))


@pytest.mark.parametrize(("unchanged_for", "next_turn"), [
    (timedelta(minutes=11), timedelta(minutes=5)),  # at least 5 minutes apart
    (timedelta(hours=8), timedelta(hours=2)),  # a quarter of the time since it changed
    (timedelta(days=10), timedelta(days=1)),  # at most a day
    (timedelta(days=29, hours=12), None),  # then past 30 days unchanged: left alone
])
def test_the_next_turn_of_a_payment_not_final(unchanged_for, next_turn):
    now = utcnow()
    due = next_check(now, now - unchanged_for)
    assert due == (now + next_turn if next_turn else LEFT_ALONE)


def test_a_payment_failing_on_our_side_does_not_stop_the_others(sqlite_app, monkeypatch):  # noqa: F811
    from portal import stripe_gateway

    customer, vendor = make_user("c@example.com"), make_user("v@example.com", "vendor")
    old = utcnow() - timedelta(hours=1)
    for n in range(2):
        order = make_order(customer, vendor, amounts=(1000,))
        db.session.add(Payment(user_id=customer.id, order_id=order.id, amount=1000,
                               currency="USD", status="requires_payment_method",
                               stripe_payment_intent_id=f"pi_{n}", created_at=old,
                               updated_at=old + timedelta(minutes=n)))
    db.session.commit()

    def read(intent_id):
        if intent_id == "pi_0":  # the older one: checked first
            raise RuntimeError("a bug of ours")
        return stripe_gateway.Intent(id=intent_id, status="processing", amount=1000,
                                     currency="USD", client_secret=None, created=1,
                                     metadata={})

    monkeypatch.setattr(stripe_gateway, "retrieve_payment_intent", read)
    with committed():
        result = reconcile(older_than_minutes=10)
    assert (result.payments_checked, result.payments_changed, result.payments_failed) == (
        1, 1, 1)
    assert dict(db.session.execute(sa.select(Payment.stripe_payment_intent_id,
                                             Payment.status)).all()) == {
        "pi_0": "requires_payment_method", "pi_1": "processing"}
