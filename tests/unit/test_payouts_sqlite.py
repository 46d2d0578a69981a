"""Payouts on the embedded default, SQLite (the other payout tests run on PostgreSQL): lines
go into open payouts, a run closes them, lines after `until` and negative balances wait."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.config import Config
from portal.extensions import db
from portal.ledger.models import Payment, Payout, SplitLine
from portal.ledger.splits import open_payouts, record_sale, sync_refund_lines
from portal.models_base import utcnow
from portal.orders.models import OrderItem
from portal.payouts.services import run_payouts
from tests.conftest import portal_env
from tests.helpers import committed, make_order, make_user, paid_payment


@pytest.fixture
def sqlite_app(tmp_path):
    app = create_app(Config.from_env(portal_env(f"sqlite:///{tmp_path / 'p.sqlite'}",
                                                "http://127.0.0.1:9")))
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()


def succeeded(customer, vendor, amount: int, vendor2=None) -> Payment:
    order = make_order(customer, vendor, amounts=(amount,))
    if vendor2 is not None:  # a second vendor's item of the same price
        db.session.add(OrderItem(order_id=order.id, vendor_id=vendor2.id, position=9,
                                 description="Other", quantity=1, unit_amount=amount))
        amount *= 2
    payment = Payment(user_id=customer.id, order_id=order.id, amount=amount, currency="USD",
                      status="succeeded", subtotal=amount, succeeded_at=utcnow())
    db.session.add(payment)
    db.session.flush()
    record_sale(payment, 10)
    db.session.commit()
    return payment


def open_lines() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(SplitLine).join(
        Payout, Payout.id == SplitLine.payout_id).where(Payout.status == "open"))


def test_a_run_on_sqlite_pays_open_payouts_and_leaves_the_rest_waiting(sqlite_app):
    customer, vendor = make_user("c@example.com"), make_user("v@example.com", "vendor")
    other = make_user("w@example.com", "vendor")
    first = succeeded(customer, vendor, 10000, vendor2=other)  # net 90.00 each
    db.session.execute(sa.update(SplitLine).values(created_at=utcnow() - timedelta(hours=2)))
    succeeded(customer, vendor, 5000)  # net 45.00, after `until` below
    with committed():
        run = run_payouts(until=utcnow() - timedelta(hours=1))
    assert sorted((p.vendor_id == vendor.id, p.amount, p.line_count) for p in run.payouts) == [
        (False, 9000, 1), (True, 9000, 1)]
    assert open_lines() == 1
    with committed():
        assert run_payouts(until=utcnow() - timedelta(hours=1)) is None  # nothing new

    first.amount_refunded = 10000  # half of it refunded after its payout: 50.00 each
    sync_refund_lines(first, {})
    db.session.commit()
    assert db.session.scalar(sa.select(Payout).where(  # the refund line opened a new payout
        Payout.vendor_id == other.id, Payout.status == "open")) is not None
    assert open_lines() == 3
    first.amount_refunded = 20000  # and the rest
    sync_refund_lines(first, {})
    db.session.commit()
    assert open_lines() == 5
    with committed():
        assert run_payouts(until=utcnow()) is None  # 45.00 - 90.00 < 0, and -90.00: carried over
    succeeded(customer, vendor, 6000)  # + 54.00
    with committed():
        [later] = run_payouts(until=utcnow()).payouts
    assert later.vendor_id == vendor.id
    assert (later.amount, later.refunds, later.line_count) == (4500 - 9000 + 5400, -10000, 4)
    assert open_lines() == 2  # the other vendor's -90.00 waits for its next sales


def test_a_run_on_sqlite_waits_for_a_line_being_written_and_pays_it(sqlite_app):
    """SQLite ignores FOR SHARE: the writer takes SQLite's write lock instead, so a run
    cannot close the payout between the writer finding it and the line going in."""
    customer, vendor = make_user("c@example.com"), make_user("v@example.com", "vendor")
    succeeded(customer, vendor, 1000)  # net 9.00 in the vendor's open payout
    ids = (paid_payment(customer, vendor, 500).id, vendor.id)  # succeeding as the run starts
    stamped = utcnow() - timedelta(seconds=1)  # before the run begins: not a late line
    found, release, ran = threading.Event(), threading.Event(), threading.Event()

    def writer():
        with sqlite_app.app_context():
            into = open_payouts("USD", [ids[1]])
            found.set()
            release.wait(10)
            db.session.add(SplitLine(payment_id=ids[0], vendor_id=ids[1], kind="sale",
                                     currency="USD", gross=500, fee=50, net=450,
                                     payout_id=into[ids[1]], created_at=stamped))
            db.session.commit()
            db.session.remove()

    def runner():
        with sqlite_app.app_context():
            with committed():
                run_payouts(until=utcnow() + timedelta(seconds=5))
            ran.set()
            db.session.remove()

    threads = [threading.Thread(target=writer), threading.Thread(target=runner)]
    threads[0].start()
    assert found.wait(10)
    threads[1].start()
    assert not ran.wait(1)  # the run waits for the writer (SQLite's busy timeout is 5 s)
    release.set()
    for t in threads:
        t.join(10)
    db.session.remove()
    [payout] = db.session.scalars(sa.select(Payout)).all()
    assert (payout.status, payout.amount, payout.line_count) == ("pending", 900 + 450, 2)
