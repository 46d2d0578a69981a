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
from portal.outbox.models import OutboxMessage
from portal.payments.models import Payment, SplitLine
from portal.payments.services import settle
from portal.stripe_gateway import Intent
from tests.helpers import make_order, make_user
from tests.unit.test_payouts_sqlite import sqlite_app, succeeded  # noqa: F401 - the fixture


def test_two_settles_of_one_success_on_sqlite_record_the_sale_once(sqlite_app):  # noqa: F811
    customer, vendor = make_user("c@example.com"), make_user("v@example.com", "vendor")
    order = make_order(customer, vendor, amounts=(2500,))
    payment = Payment(user_id=customer.id, order_id=order.id, amount=2500, currency="USD",
                      status="requires_action", subtotal=2500, stripe_payment_intent_id="pi_1")
    db.session.add_all([payment, CustomerMap(user_id=customer.id,
                                             stripe_customer_id="cus_1")])
    db.session.commit()
    payment_id = payment.id
    paid = Intent(id="pi_1", status="succeeded", amount=2500, currency="USD",
                  client_secret=None, created=1, metadata={})
    applied, release, second_done = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def first():  # e.g. the webhook job: settled, not committed yet
        with sqlite_app.app_context():
            try:
                settle(payment_id, paid)
                applied.set()
                release.wait(10)
                db.session.commit()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
                applied.set()
            finally:
                db.session.remove()

    def second():  # e.g. the customer's status poll, a moment later
        with sqlite_app.app_context():
            try:
                settle(payment_id, paid)
                db.session.commit()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                second_done.set()
                db.session.remove()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert applied.wait(10)
    threads[1].start()
    assert not second_done.wait(1), errors  # it waits for the first to commit (busy timeout 5 s)
    release.set()
    for t in threads:
        t.join(10)
    assert errors == []
    db.session.remove()
    assert db.session.get(Payment, payment_id).status == "succeeded"
    assert db.session.scalars(sa.select(SplitLine.net)).all() == [2250]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 2
    spending = db.session.scalar(sa.select(CustomerMap))
    assert (spending.total_spent, spending.payment_count) == ({"USD": 2500}, 1)


def test_a_stale_poll_on_sqlite_cannot_undo_a_success_committed_meanwhile(sqlite_app):  # noqa: F811
    """The status poll read the intent still processing; before it commits, the webhook
    settles the success. The poll's write must not put the payment back to processing."""
    customer, vendor = make_user("c@example.com"), make_user("v@example.com", "vendor")
    order = make_order(customer, vendor, amounts=(2500,))
    payment = Payment(user_id=customer.id, order_id=order.id, amount=2500, currency="USD",
                      status="requires_action", subtotal=2500, stripe_payment_intent_id="pi_1")
    db.session.add(payment)
    db.session.commit()
    payment_id = payment.id
    intent = {status: Intent(id="pi_1", status=status, amount=2500, currency="USD",
                             client_secret=None, created=1, metadata={})
              for status in ("processing", "succeeded")}
    polled, release, webhook_done = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def poll():
        with sqlite_app.app_context():
            try:
                settle(payment_id, intent["processing"])
                polled.set()
                release.wait(10)
                db.session.commit()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
                polled.set()
            finally:
                db.session.remove()

    def webhook():
        with sqlite_app.app_context():
            try:
                settle(payment_id, intent["succeeded"])
                db.session.commit()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                webhook_done.set()
                db.session.remove()

    threads = [threading.Thread(target=poll), threading.Thread(target=webhook)]
    threads[0].start()
    assert polled.wait(10)
    threads[1].start()
    webhook_done.wait(1)  # it waits for the poll's commit (or, unlocked, commits first)
    release.set()
    for t in threads:
        t.join(10)
    assert errors == []
    db.session.remove()
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
