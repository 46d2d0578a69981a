"""Issue 17, item 8: a webhook handler that fails half-way, after some of its writes.

The event's job (portal.webhooks.jobs.process_event) applies a handler and marks the event
processed in one transaction: when the handler raises after it has written split lines,
outbox messages or refund requests, none of that is kept, the event is recorded failed with
its error and left for the retry (RQ's, or Stripe's redelivery), and the retry, without the
fault, applies every effect exactly once. A faulty step is injected after the real one ran.
"""

from __future__ import annotations

import collections
import uuid

import pytest
import sqlalchemy as sa
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import FailedJobRegistry

from portal.audit.models import AuditEntry
from portal.cards.models import CustomerMap
from portal.cards.services import ensure_customer
from portal.extensions import db
from portal.ledger import splits
from portal.ledger.models import Payment, Payout, SplitLine
from portal.orders.models import Order, OrderItem
from portal.outbox import services as outbox
from portal.outbox.models import OutboxMessage
from portal.payments.services import start_checkout
from portal.refunds import services as refunds
from portal.refunds.models import RefundRequest
from portal.webhooks.jobs import dispatch_received
from portal.webhooks.models import StripeEvent
from tests.helpers import committed, event_body, make_order, sign
from tests.integration.api_support import card_pm, pay

SECRET = "whsec_portal_tests"


class HalfWay(RuntimeError):
    """The injected fault: the database connection drops after the handler's first writes."""


def deliver(client, event_id: str, event_type: str, obj: dict) -> None:
    """Stripe delivers a signed event; the intake always answers 200 once it is stored."""
    body = event_body(event_id, event_type, obj)
    r = client.post("/api/payments/webhook", data=body,
                    headers={"Stripe-Signature": sign(body, SECRET),
                             "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def count(model, *where) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def event(event_id: str) -> StripeEvent:
    db.session.expire_all()
    return db.session.get(StripeEvent, event_id)


# --- payment_intent.succeeded, retried by the RQ worker ------------------------------------------

def work(app, conn) -> None:
    """A worker: its dispatcher queues the events the intake stored, then it runs the
    webhooks queue until the queue is empty."""
    with app.app_context():
        dispatch_received()
        SimpleWorker(["webhooks"], connection=conn).work(burst=True)


def retries_come_due(conn) -> list[str]:
    """What RQ's scheduler does once a retry's delay has passed: move it to its queue."""
    queue = Queue("webhooks", connection=conn)
    registry = queue.scheduled_job_registry
    due = registry.get_job_ids()
    for job in Job.fetch_many(due, connection=conn):
        queue._enqueue_job(job)  # noqa: SLF001 - as rq.scheduler.RQScheduler does
    for job_id in due:
        registry.remove(job_id)
    return due


@pytest.fixture
def confirmed(stripe_client, people):
    """An order of two vendors, checked out by a customer who has a Stripe customer, and
    paid at Stripe (Stripe.js): the portal learns of it only from the webhook."""
    order = make_order(people["customer"], people["vendor"], amounts=(6667,), tax=1001,
                       shipping=299)
    db.session.add(OrderItem(order_id=order.id, vendor_id=people["vendor2"].id, position=9,
                             description="Other", quantity=1, unit_amount=3333))
    order.subtotal += 3333
    order.total += 3333
    db.session.commit()
    ensure_customer(people["customer"])
    with committed():
        payment = start_checkout(order, source="api").payment
    pi = stripe_client.v1.payment_intents.confirm(payment.stripe_payment_intent_id, params={
        "payment_method": card_pm(stripe_client)})
    assert pi.status == "succeeded"
    return payment, pi.to_dict()


def test_a_success_handler_failing_after_the_sale_lines_is_rolled_back_and_retried_once(
        app, client, redis, confirmed, people, monkeypatch):
    payment, pi = confirmed
    real = outbox.record_payment_outcome
    inside = []

    def fails_half_way(p):
        """The last step of the sale, after the payment, the order, the customer's spending
        and the vendors' split lines were written: its messages are written and their
        deliveries queued, then the connection drops."""
        real(p)
        db.session.flush()
        inside.append((p.status, count(SplitLine, SplitLine.payment_id == p.id),
                       count(OutboxMessage, OutboxMessage.payment_id == p.id),
                       db.session.scalar(sa.select(CustomerMap.payment_count).where(
                           CustomerMap.user_id == p.user_id))))
        raise HalfWay("server closed the connection unexpectedly")

    monkeypatch.setattr(outbox, "record_payment_outcome", fails_half_way)
    deliver(client, "evt_half", "payment_intent.succeeded", pi)
    work(app, redis)

    assert inside == [("succeeded", 2, 2, 1)]  # the handler really got that far
    # Nothing of the half-done work is kept...
    db.session.expire_all()
    kept = db.session.get(Payment, payment.id)
    assert (kept.status, kept.succeeded_at, kept.receipt_number) == (
        "requires_payment_method", None, None)
    assert db.session.get(Order, payment.order_id).status == "unpaid"
    assert count(SplitLine) == count(OutboxMessage) == count(Payout) == 0
    cmap = db.session.scalar(sa.select(CustomerMap).where(
        CustomerMap.user_id == people["customer"].id))
    assert (cmap.payment_count or 0, cmap.total_spent or {}) == (0, {})
    # ...and no delivery of the rolled-back messages was queued.
    assert Queue("outbox", connection=redis).count == 0
    failed = event("evt_half")
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert "HalfWay: server closed the connection unexpectedly" in failed.last_error
    # The event waits for RQ's retry, delayed (portal.webhooks.jobs.RETRY_DELAYS).
    queue = Queue("webhooks", connection=redis)
    [retry] = queue.scheduled_job_registry.get_job_ids()
    assert queue.count == 0 and Job.fetch(retry, connection=redis).args == (
        "portal.webhooks.jobs.process_event", "evt_half")

    monkeypatch.setattr(outbox, "record_payment_outcome", real)  # the database is back
    assert retries_come_due(redis) == [retry]
    work(app, redis)

    done = event("evt_half")
    assert (done.status, done.attempts, done.last_error) == ("processed", 2, None)
    assert FailedJobRegistry(queue=queue).count == 0
    paid = db.session.get(Payment, payment.id)
    assert paid.status == "succeeded" and paid.order.status == "paid"
    assert paid.receipt_number and paid.receipt_number.startswith("R-")

    def effects() -> tuple:
        db.session.expire_all()
        sales = db.session.execute(sa.select(SplitLine.vendor_id, SplitLine.kind,
                                             SplitLine.gross, SplitLine.fee).where(
            SplitLine.payment_id == payment.id).order_by(SplitLine.vendor_id)).all()
        messages = sorted(db.session.scalars(sa.select(OutboxMessage.kind).where(
            OutboxMessage.payment_id == payment.id)))
        cmap = db.session.scalar(sa.select(CustomerMap).where(
            CustomerMap.user_id == people["customer"].id))
        return (sales, messages, cmap.payment_count, dict(cmap.total_spent),
                Queue("outbox", connection=redis).count)

    once = effects()
    sales, messages, payments_counted, spent, deliveries = once
    # One sale line per vendor, summing exactly to the payment and its platform fee.
    assert sorted(vendor for vendor, *_ in sales) == sorted(
        [people["vendor"].id, people["vendor2"].id])
    assert {kind for _, kind, _, _ in sales} == {"sale"}
    assert sum(gross for *_, gross, _ in sales) == paid.amount
    assert sum(fee for *_, fee in sales) == paid.platform_fee == 667 + 333
    assert messages == ["order_notification", "receipt_email"]
    assert (payments_counted, spent, deliveries) == (1, {"USD": paid.amount}, 2)

    # Stripe delivers the event again, and another event of the same success: no effect twice.
    deliver(client, "evt_half", "payment_intent.succeeded", pi)
    deliver(client, "evt_half_again", "payment_intent.succeeded", pi)
    work(app, redis)
    assert event("evt_half_again").status == "processed"
    assert event("evt_half").attempts == 2
    assert effects() == once


# --- charge.refunded, retried by Stripe's redelivery ---------------------------------------------

def test_a_refund_handler_failing_after_its_lines_is_rolled_back_and_redelivery_applies_it_once(
        client, people, stripe_client, monkeypatch):
    """A refund made in Stripe's dashboard: the handler imports it (a request, its audit
    lines, the payment's refunded total, the vendors' refund lines), then fails. Without
    Redis the job ran in-process and is not retried; Stripe's redelivery of the failed
    event queues it again."""
    payment = pay(stripe_client, people["customer"], people["vendor"], amounts=(6667,),
                  vendor2=people["vendor2"])
    before = collections.Counter(db.session.scalars(sa.select(OutboxMessage.kind).where(
        OutboxMessage.payment_id == payment.id)))
    assert before == {"order_notification": 1, "receipt_email": 1}
    made = stripe_client.v1.refunds.create(params={
        "payment_intent": payment.stripe_payment_intent_id, "amount": 4001})
    charge = {"id": f"ch_{uuid.uuid4().hex[:14]}", "object": "charge",
              "payment_intent": payment.stripe_payment_intent_id, "amount_refunded": 4001}
    real = splits.sync_refund_lines
    inside = []

    def fails_half_way(p, *args, **kwargs):
        real(p, *args, **kwargs)
        db.session.flush()
        inside.append((count(RefundRequest), count(AuditEntry),
                       count(OutboxMessage, OutboxMessage.kind == "refund_email"),
                       count(SplitLine, SplitLine.kind == "refund"), p.amount_refunded))
        raise HalfWay("deadlock detected")

    monkeypatch.setattr(splits, "sync_refund_lines", fails_half_way)
    deliver(client, "evt_refunded", "charge.refunded", charge)

    # Imported, audited, the customer's notice written, the lines written: then the fault.
    assert inside == [(1, 2, 1, 2, 4001)]
    db.session.expire_all()
    kept = db.session.get(Payment, payment.id)
    assert kept.amount_refunded == 0 and refunds.remaining(kept) == kept.amount
    assert count(RefundRequest) == count(AuditEntry) == 0
    assert count(SplitLine, SplitLine.kind == "refund") == 0
    assert count(OutboxMessage, OutboxMessage.kind == "refund_email") == 0
    failed = event("evt_refunded")
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert "HalfWay: deadlock detected" in failed.last_error

    monkeypatch.setattr(splits, "sync_refund_lines", real)
    deliver(client, "evt_refunded", "charge.refunded", charge)  # Stripe tries again

    def effects() -> tuple:
        db.session.expire_all()
        requests = db.session.execute(sa.select(
            RefundRequest.source, RefundRequest.status, RefundRequest.amount,
            RefundRequest.stripe_refund_id)).all()
        audits = sorted(db.session.scalars(sa.select(AuditEntry.action)))
        lines = db.session.execute(sa.select(SplitLine.vendor_id, sa.func.sum(SplitLine.gross))
                                   .where(SplitLine.payment_id == payment.id)
                                   .group_by(SplitLine.vendor_id)).all()
        messages = collections.Counter(db.session.scalars(sa.select(OutboxMessage.kind).where(
            OutboxMessage.payment_id == payment.id)))
        return (requests, audits, sorted(lines), messages,
                db.session.get(Payment, payment.id).amount_refunded)

    done = event("evt_refunded")
    assert (done.status, done.attempts, done.last_error) == ("processed", 2, None)
    once = effects()
    requests, audits, lines, messages, refunded = once
    assert requests == [("stripe", "succeeded", 4001, made.id)]
    assert audits == ["refund.imported", "refund.succeeded"]
    assert refunded == 4001
    # The vendors gave back 4001 between them, once: their lines sum to the payment less it.
    assert sum(total for _, total in lines) == payment.amount - 4001
    assert len(lines) == 2
    assert messages - before == {"refund_email": 1}  # the customer is told once

    # Stripe delivers it once more, and the refund's own event: nothing is applied twice.
    deliver(client, "evt_refunded", "charge.refunded", charge)
    deliver(client, "evt_refund_created", "refund.created",
            stripe_client.v1.refunds.retrieve(made.id).to_dict())
    assert event("evt_refund_created").status == "processed"
    assert event("evt_refunded").attempts == 2
    assert effects() == once
