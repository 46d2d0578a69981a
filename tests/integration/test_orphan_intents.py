"""A PaymentIntent whose id was lost (issue 17, item 7): the process died between Stripe's
answer and the checkout's third phase, so the payment is pending without an intent id, and
the webhook of an intent no payment names is ignored. Reconciliation finds the intents Stripe
made for it (their metadata names the payment) and links the one it keeps, with the webhook's
effects, or cancels it at Stripe when the order can no longer be paid; with none at Stripe it
leaves the payment for its customer's next try.

The crash is real as far as Stripe can tell: the checkout creates the intent at the sandbox,
and only the step that stores its id fails. Time passes for reconciliation only (its clock is
moved on): the sandbox dates the intents it makes with its own, real, clock.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal import models_base
from portal.audit.models import AuditEntry
from portal.cards import services as cards
from portal.extensions import db
from portal.ledger.models import Payment, SplitLine
from portal.orders.models import Order
from portal.outbox.models import OutboxMessage
from portal.payments import services as payments
from portal.payments.services import start_checkout, sync_intent
from portal.reconciliation import services as reconciliation
from portal.reconciliation.services import LEFT_ALONE, reconcile
from tests.helpers import committed, make_order
from tests.integration.api_support import card_pm, intents_for


class Died(Exception):
    """The process died here (what a killed worker leaves is what a rollback leaves)."""


def checkout_dying(monkeypatch, order, *, before_stripe: bool = False) -> Payment:
    """A checkout whose process dies after Stripe made the intent (or, ``before_stripe``,
    before asking Stripe): the payment stays pending without an intent id."""
    def die(*_args):
        raise Died()

    with monkeypatch.context() as m:
        m.setattr(payments, "_intent_for_checkout" if before_stripe else "_apply_checkout", die)
        with pytest.raises(Died):
            start_checkout(order, source="web")
    db.session.expire_all()
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))
    assert (payment.status, payment.stripe_payment_intent_id) == ("pending", None)
    return payment


def run(monkeypatch, minutes_later: int = 20, **kw) -> reconciliation.Reconciled:
    """A reconciliation run ``minutes_later`` (its clock only)."""
    with monkeypatch.context() as m:
        m.setattr(reconciliation, "utcnow",
                  lambda: models_base.utcnow() + timedelta(minutes=minutes_later))
        with committed():
            return reconcile(**{"older_than_minutes": 10, **kw})


def intents(stripe_client, order) -> list[dict]:
    return [pi.to_dict() for pi in intents_for(stripe_client, order.id)]


def fresh(payment_id) -> Payment:
    db.session.expire_all()
    return db.session.get(Payment, payment_id)


def effects(payment_id) -> dict:
    """What settling a payment wrote, comparable between two payments."""
    payment = fresh(payment_id)
    return {
        "status": payment.status, "order": payment.order.status,
        "receipt": bool(payment.receipt_number and payment.receipt_url),
        "card": (payment.card_brand, payment.card_last4),
        "funds_known": payment.funds_available_at is not None,
        "fees": (payment.platform_fee, payment.vendor_amount),
        "lines": sorted(db.session.execute(sa.select(
            SplitLine.kind, SplitLine.gross, SplitLine.fee, SplitLine.net).where(
            SplitLine.payment_id == payment_id)).all()),
        "outbox": sorted(db.session.scalars(sa.select(OutboxMessage.kind).where(
            OutboxMessage.payment_id == payment_id))),
    }


def audited(payment_id) -> list[str]:
    return sorted(db.session.scalars(sa.select(AuditEntry.action).where(
        AuditEntry.payment_id == payment_id)))


def counts(r: reconciliation.Reconciled) -> tuple[int, int, int]:
    return r.intents_linked, r.intents_canceled, r.intents_missing


def test_an_intent_paid_after_the_crash_is_linked_and_settles_as_the_webhook_would(
        people, stripe_client, monkeypatch):
    """The customer paid the intent whose id we lost (their page held it: a database restored
    to just before, say); its webhook names no payment of ours, so only reconciliation can
    record the sale."""
    order = make_order(people["customer"], people["vendor"], amounts=(2500,))
    payment = checkout_dying(monkeypatch, order)
    [pi] = intents(stripe_client, order)
    assert pi["metadata"]["paymentId"] == str(payment.id)
    stripe_client.v1.payment_intents.confirm(pi["id"], params={
        "payment_method": card_pm(stripe_client)})
    with committed():
        assert sync_intent(pi["id"]) is False  # the webhook's handler: not one of ours

    result = run(monkeypatch)
    assert counts(result) == (1, 0, 0)
    assert (result.payments_checked, result.payments_changed) == (1, 1)
    linked = fresh(payment.id)
    assert (linked.stripe_payment_intent_id, linked.status) == (pi["id"], "succeeded")
    assert audited(payment.id) == ["payment.intent_linked"]

    # The same effects, once each, as a payment the webhook settles.
    twin = make_order(people["customer"], people["vendor"], amounts=(2500,))
    with committed():
        twin_payment = start_checkout(twin, source="web").payment
    stripe_client.v1.payment_intents.confirm(twin_payment.stripe_payment_intent_id, params={
        "payment_method": card_pm(stripe_client)})
    with committed():
        assert sync_intent(twin_payment.stripe_payment_intent_id) is True
    mine = effects(payment.id)
    assert mine == effects(twin_payment.id)
    assert mine["outbox"] == ["order_notification", "receipt_email"]
    assert [kind for kind, *_ in mine["lines"]] == ["sale"]

    again = run(monkeypatch, minutes_later=40)  # a later run: nothing to do, nothing twice
    assert counts(again) == (0, 0, 0) and again.payments_checked == 0
    assert effects(payment.id) == mine
    assert audited(payment.id) == ["payment.intent_linked"]


def test_an_unpaid_intent_is_linked_and_the_customers_next_checkout_pays_with_it(
        people, stripe_client, monkeypatch):
    order = make_order(people["customer"], people["vendor"], amounts=(1800,))
    payment = checkout_dying(monkeypatch, order)
    [pi] = intents(stripe_client, order)
    result = run(monkeypatch)
    assert counts(result) == (1, 0, 0) and result.payments_changed == 1
    linked = fresh(payment.id)
    assert (linked.stripe_payment_intent_id, linked.status) == (
        pi["id"], "requires_payment_method")
    with committed():
        checkout = start_checkout(db.session.get(Order, order.id), source="web")
    assert checkout.intent.id == pi["id"]
    assert [p["id"] for p in intents(stripe_client, order)] == [pi["id"]]  # no second one
    assert counts(run(monkeypatch, minutes_later=40)) == (0, 0, 0)


def test_the_intent_of_an_order_no_longer_payable_is_canceled_at_stripe(
        people, stripe_client, monkeypatch):
    order = make_order(people["customer"], people["vendor"], amounts=(4200,))
    payment = checkout_dying(monkeypatch, order)
    with committed():  # the order service canceled the order meanwhile
        db.session.get(Order, order.id).status = "canceled"
    result = run(monkeypatch)
    assert counts(result) == (1, 1, 0)
    [pi] = intents(stripe_client, order)
    assert (pi["status"], pi["cancellation_reason"]) == ("canceled", "abandoned")
    settled = fresh(payment.id)
    assert (settled.stripe_payment_intent_id, settled.status) == (pi["id"], "canceled")
    assert settled.order.status == "canceled"
    assert effects(payment.id)["outbox"] == ["order_notification"]  # as a webhook's cancel
    assert audited(payment.id) == ["payment.intent_canceled", "payment.intent_linked"]
    again = run(monkeypatch, minutes_later=40)
    assert counts(again) == (0, 0, 0) and again.payments_checked == 0
    assert audited(payment.id) == ["payment.intent_canceled", "payment.intent_linked"]


@pytest.mark.parametrize("older_paid", [False, True])
def test_of_two_intents_made_with_other_parameters_one_is_kept_the_other_canceled(
        people, stripe_client, monkeypatch, older_paid):
    """Two tries, both dying after Stripe answered; the customer got a Stripe customer in
    between (saving a card), so the second try's parameters, hence its key, differ: Stripe
    made two intents for one payment. The newest is kept (the customer's next try would get
    it back), unless the other took the money; the other is canceled at Stripe."""
    order = make_order(people["customer"], people["vendor"], amounts=(3100,))
    payment = checkout_dying(monkeypatch, order)
    with committed():
        cards.ensure_customer(people["customer"])
    checkout_dying(monkeypatch, order)
    newest, older = intents(stripe_client, order)  # the sandbox lists newest first
    assert newest["customer"] and not older["customer"]
    if older_paid:
        stripe_client.v1.payment_intents.confirm(older["id"], params={
            "payment_method": card_pm(stripe_client)})
    kept, dropped = (older, newest) if older_paid else (newest, older)
    result = run(monkeypatch)
    assert counts(result) == (1, 1, 0)
    linked = fresh(payment.id)
    assert (linked.stripe_payment_intent_id, linked.status) == (
        kept["id"], "succeeded" if older_paid else "requires_payment_method")
    by_id = {pi["id"]: pi for pi in intents(stripe_client, order)}
    assert (by_id[dropped["id"]]["status"], by_id[dropped["id"]]["cancellation_reason"]) == (
        "canceled", "duplicate")
    assert by_id[kept["id"]]["status"] != "canceled"
    assert audited(payment.id) == ["payment.intent_canceled", "payment.intent_linked"]
    assert effects(payment.id)["outbox"] == (
        ["order_notification", "receipt_email"] if older_paid else [])
    assert counts(run(monkeypatch, minutes_later=40)) == (0, 0, 0)


def test_a_payment_stripe_made_no_intent_for_waits_for_its_customer(
        people, stripe_client, monkeypatch):
    """The process died before asking Stripe: nothing to link. Looked up once, then left
    alone (not listed again every run), until its customer's next try creates the intent
    and puts the payment back in the line."""
    order = make_order(people["customer"], people["vendor"], amounts=(990,))
    payment = checkout_dying(monkeypatch, order, before_stripe=True)
    assert intents(stripe_client, order) == []
    result = run(monkeypatch)
    assert counts(result) == (0, 0, 1)
    assert (result.payments_checked, result.payments_changed) == (1, 0)
    left = fresh(payment.id)
    assert (left.status, left.stripe_payment_intent_id, left.reconcile_due_at) == (
        "pending", None, LEFT_ALONE)
    again = run(monkeypatch, minutes_later=60 * 24)
    assert counts(again) == (0, 0, 0) and again.payments_checked == 0

    # The customer comes back; this try dies after Stripe answered: found in the next run.
    checkout_dying(monkeypatch, db.session.get(Order, order.id))
    assert fresh(payment.id).reconcile_due_at is None  # back in the line
    [pi] = intents(stripe_client, order)
    assert counts(run(monkeypatch)) == (1, 0, 0)
    assert fresh(payment.id).stripe_payment_intent_id == pi["id"]


@pytest.mark.parametrize(("minutes_later", "older_than"), [
    (0, 10),  # a scheduled run: its checkout may be under way
    (3, 0),  # `reconcile --minutes 0`: still not before ORPHAN_AFTER
])
def test_a_fresh_payment_without_intent_is_left_alone_until_its_checkout_is_surely_over(
        people, stripe_client, monkeypatch, minutes_later, older_than):
    order = make_order(people["customer"], people["vendor"], amounts=(700,))
    payment = checkout_dying(monkeypatch, order)
    listed = []
    real = reconciliation.gateway.payment_intents_with
    monkeypatch.setattr(reconciliation.gateway, "payment_intents_with",
                        lambda *a, **kw: listed.append(a) or real(*a, **kw))
    result = run(monkeypatch, minutes_later, older_than_minutes=older_than)
    assert counts(result) == (0, 0, 0) and result.payments_checked == 0 and listed == []
    left = fresh(payment.id)
    assert (left.stripe_payment_intent_id, left.reconcile_due_at) == (None, None)
    [pi] = intents(stripe_client, order)
    assert pi["status"] == "requires_payment_method"  # untouched at Stripe
    assert counts(run(monkeypatch, 20)) == (1, 0, 0)  # once it is old enough
    assert fresh(payment.id).stripe_payment_intent_id == pi["id"]


def test_stripe_unreachable_tries_the_lookup_again_in_five_minutes(
        people, stripe_client, monkeypatch):
    from portal import stripe_gateway

    order = make_order(people["customer"], people["vendor"], amounts=(1500,))
    payment = checkout_dying(monkeypatch, order)

    def down(*_a, **_kw):
        raise stripe_gateway.GatewayError("timed out", retryable=True)

    with monkeypatch.context() as m:
        m.setattr(stripe_gateway, "payment_intents_with", down)
        result = run(monkeypatch, minutes_later=120)  # its turn would be in 30 minutes
    assert (result.payments_unread, counts(result)) == (1, (0, 0, 0))
    due = fresh(payment.id).reconcile_due_at - (models_base.utcnow() + timedelta(minutes=120))
    assert timedelta(minutes=4) < due <= timedelta(minutes=5)
    assert counts(run(monkeypatch, minutes_later=126)) == (1, 0, 0)
