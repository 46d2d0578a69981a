"""Refunds made at Stripe whose webhook never came (issue 17, item 1): reconciliation compares
the refunds of recently paid payments with Stripe's, in turns, and imports the missing ones
with the webhook's effects, before the vendor's next payout can pay them out."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from portal.audit.models import AuditEntry
from portal.extensions import db
from portal.ledger.models import Payment, SplitLine
from portal.models_base import utcnow
from portal.reconciliation import services as reconciliation
from portal.reconciliation.services import LEFT_ALONE, reconcile
from portal.refunds import services as refunds
from portal.refunds.models import RefundRequest
from tests.helpers import committed
from tests.integration.api_support import pay


def refunded_in_stripes_dashboard(stripe_client, payment, amount: int) -> None:
    """A refund made at Stripe, whose webhook is lost (none is sent to the portal here)."""
    stripe_client.v1.refunds.create(params={
        "payment_intent": payment.stripe_payment_intent_id, "amount": amount,
        "reason": "requested_by_customer"})


def run() -> reconciliation.Reconciled:
    with committed():
        return reconcile(older_than_minutes=10)


def test_a_refund_made_at_stripe_without_its_webhook_is_imported(people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])  # 100.00
    refunded_in_stripes_dashboard(stripe_client, payment, 2500)
    assert refunds.remaining(payment) == 10000  # unknown to the portal so far
    result = run()
    assert (result.refunds_compared, result.refunds_imported) == (1, 1)
    db.session.expire_all()
    [imported] = db.session.scalars(sa.select(RefundRequest)).all()
    assert (imported.source, imported.status, imported.amount) == ("stripe", "succeeded", 2500)
    payment = db.session.get(Payment, payment.id)
    assert (payment.amount_refunded, refunds.remaining(payment)) == (2500, 7500)
    # The vendor gives back their share at once: the next payout cannot pay it.
    taken = db.session.scalars(sa.select(SplitLine.gross).where(
        SplitLine.payment_id == payment.id, SplitLine.kind == "refund")).all()
    assert sum(taken) == -2500
    assert db.session.scalars(sa.select(AuditEntry.action).where(
        AuditEntry.action == "refund.imported")).all() == ["refund.imported"]
    assert payment.refunds_checked_at is not None
    assert run().refunds_compared == 0  # compared at most once an hour


def test_a_later_comparison_imports_nothing_twice(people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    refunded_in_stripes_dashboard(stripe_client, payment, 1000)
    assert run().refunds_imported == 1
    with committed():  # an hour later
        db.session.execute(sa.update(Payment).values(
            refunds_checked_at=utcnow() - timedelta(hours=2)))
    refunded_in_stripes_dashboard(stripe_client, payment, 500)
    result = run()
    assert (result.refunds_compared, result.refunds_imported) == (1, 1)
    db.session.expire_all()
    assert sorted(db.session.scalars(sa.select(RefundRequest.amount))) == [500, 1000]
    assert db.session.get(Payment, payment.id).amount_refunded == 1500


def test_payments_take_turns_never_compared_first(people, stripe_client, monkeypatch):
    monkeypatch.setattr(reconciliation, "REFUND_CHECKS", 1)
    first = pay(stripe_client, people["customer"], people["vendor"])
    second = pay(stripe_client, people["customer"], people["vendor"])
    with committed():  # the first was compared two hours ago, the second never
        db.session.execute(sa.update(Payment).where(Payment.id == first.id).values(
            refunds_checked_at=utcnow() - timedelta(hours=2)))
    refunded_in_stripes_dashboard(stripe_client, first, 100)

    def compared() -> set:
        db.session.expire_all()
        return {p.id for p in (first, second) if db.session.get(
            Payment, p.id).refunds_checked_at > utcnow() - timedelta(minutes=1)}

    assert run().refunds_compared == 1 and compared() == {second.id}  # never compared
    assert run().refunds_compared == 1 and compared() == {first.id, second.id}
    assert run().refunds_compared == 0  # nobody's turn within the hour
    assert db.session.get(Payment, first.id).amount_refunded == 100


def test_payments_paid_before_the_window_leave_the_line_without_a_stripe_call(
        people, stripe_client, monkeypatch):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    with committed():
        db.session.execute(sa.update(Payment).values(
            succeeded_at=utcnow() - reconciliation.REFUND_WINDOW - timedelta(days=1)))
    asked = []
    monkeypatch.setattr(reconciliation, "sync_refunds", asked.append)
    assert run().refunds_compared == 0 and asked == []
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).refunds_checked_at == LEFT_ALONE


def test_stripe_unreachable_counts_unread_and_the_payment_keeps_its_turn_later(
        people, stripe_client, monkeypatch):
    from portal import stripe_gateway

    pay(stripe_client, people["customer"], people["vendor"])

    def down(_intent):
        raise stripe_gateway.GatewayError("timed out", retryable=True)

    monkeypatch.setattr(stripe_gateway, "refunds_of", down)
    result = run()
    assert (result.refunds_compared, result.refunds_unread) == (0, 1)
