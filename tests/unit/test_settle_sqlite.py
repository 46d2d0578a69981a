"""Settling a payment on the embedded default, SQLite, where FOR UPDATE is ignored: the
status poll and the webhook job applying the same success at the same moment record the
sale once (the other settle waits, then finds the payment final)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from portal.cards.models import CustomerMap
from portal.extensions import db
from portal.ledger.models import Payment, SplitLine
from portal.outbox.models import OutboxMessage
from portal.payments.services import settle
from portal.stripe_gateway import Intent
from tests.helpers import make_order, make_user
from tests.unit.test_payouts_sqlite import sqlite_app, succeeded  # noqa: F401 - the fixture


def payment_awaiting_action(with_customer: bool = False):
    """A $25.00 payment of one vendor's order, its intent pi_1 waiting for 3-D Secure."""
    customer, vendor = make_user("c@example.com"), make_user("v@example.com", "vendor")
    order = make_order(customer, vendor, amounts=(2500,))
    payment = Payment(user_id=customer.id, order_id=order.id, amount=2500, currency="USD",
                      status="requires_action", subtotal=2500, stripe_payment_intent_id="pi_1")
    db.session.add(payment)
    if with_customer:
        db.session.add(CustomerMap(user_id=customer.id, stripe_customer_id="cus_1"))
    db.session.commit()
    return payment.id


def intent(status: str) -> Intent:
    return Intent(id="pi_1", status=status, amount=2500, currency="USD", client_secret=None,
                  created=1, metadata={})


def settle_twice(app, payment_id, held: Intent, then: Intent) -> bool:
    """Settle ``held`` and keep it uncommitted while a second session settles ``then`` and
    commits; then commit the first. True when the second finished while the first was held
    (it did not wait for it). Either session's error fails the test."""
    applied, release, second_done = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def settle_in_session(intent_, after_settle=None):
        with app.app_context():
            try:
                settle(payment_id, intent_)
                if after_settle:
                    after_settle()
                db.session.commit()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                db.session.remove()

    def first():
        settle_in_session(held, lambda: (applied.set(), release.wait(10)))
        applied.set()  # also when it failed before

    def second():
        settle_in_session(then)
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert applied.wait(10)
    threads[1].start()
    unheld = second_done.wait(1)  # SQLite's busy timeout is 5 s
    release.set()
    for t in threads:
        t.join(10)
    assert errors == []
    db.session.remove()
    return unheld


def test_two_settles_of_one_success_on_sqlite_record_the_sale_once(sqlite_app):  # noqa: F811
    """The webhook job settled the success and has not committed yet; the customer's status
    poll settles it too: it waits, then finds the payment final."""
    payment_id = payment_awaiting_action(with_customer=True)
    assert not settle_twice(sqlite_app, payment_id, intent("succeeded"), intent("succeeded"))
    assert db.session.get(Payment, payment_id).status == "succeeded"
    assert db.session.scalars(sa.select(SplitLine.net)).all() == [2250]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 2
    spending = db.session.scalar(sa.select(CustomerMap))
    assert (spending.total_spent, spending.payment_count) == ({"USD": 2500}, 1)


def test_a_stale_poll_on_sqlite_cannot_undo_a_success_committed_meanwhile(sqlite_app):  # noqa: F811
    """The status poll read the intent still processing; before it commits, the webhook
    settles the success. The poll's write must not put the payment back to processing."""
    payment_id = payment_awaiting_action()
    assert not settle_twice(sqlite_app, payment_id, intent("processing"), intent("succeeded"))
    settled = db.session.get(Payment, payment_id)
    assert (settled.status, settled.order.status) == ("succeeded", "paid")
    assert db.session.scalars(sa.select(SplitLine.net)).all() == [2250]


def test_the_database_refuses_a_second_sale_line_for_a_vendor_of_a_payment(sqlite_app):  # noqa: F811
    customer, vendor = make_user("c@example.com"), make_user("v@example.com", "vendor")
    payment = succeeded(customer, vendor, 1000)  # its sale line recorded
    [line] = db.session.scalars(sa.select(SplitLine)).all()
    copy = {c: getattr(line, c) for c in ("payment_id", "vendor_id", "currency", "gross",
                                          "fee", "net", "payout_id")}
    db.session.add(SplitLine(kind="sale", **copy))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    db.session.add(SplitLine(kind="refund", **{**copy, "gross": -500, "net": -450}))
    db.session.add(SplitLine(kind="refund", **{**copy, "gross": -500, "net": -450}))
    db.session.commit()  # refunds: one line per refund, as many as there are
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SplitLine).where(
        SplitLine.payment_id == payment.id)) == 3


def test_the_intake_stores_an_event_once_on_sqlite(sqlite_app):  # noqa: F811
    """The embedded default: the same one-statement store (INSERT ... SELECT ... WHERE NOT
    EXISTS ... ON CONFLICT DO NOTHING) as on PostgreSQL."""
    from portal.stripe_gateway import Event
    from portal.webhooks.models import StripeEvent
    from portal.webhooks.services import receive_event

    event = Event(id="evt_sqlite", type="customer.created", api_version="2026-10-28.endive",
                  created=7, object_id="cus_1",
                  payload={"id": "evt_sqlite", "data": {"object": {"id": "cus_1"}}})
    assert receive_event(event) is True
    db.session.commit()
    assert receive_event(event) is False
    db.session.commit()
    stored = db.session.scalars(sa.select(StripeEvent)).all()
    assert [(e.id, e.type, e.object_id, e.stripe_created, e.payload, e.status) for e in stored] \
        == [("evt_sqlite", "customer.created", "cus_1", 7, event.payload, "received")]
