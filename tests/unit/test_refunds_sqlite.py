"""Refund decisions on the embedded default, SQLite, where FOR UPDATE is ignored: two admins
approving 60.00 and 60.00 of a 100.00 payment at the same moment approve one; the other
waits for the first's commit and then finds 40.00 left."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from portal.auth.models import User
from portal.database import unit_of_work
from portal.extensions import db
from portal.refunds import services as refunds
from portal.refunds.models import RefundRequest
from tests.helpers import make_user
from tests.unit.test_payouts_sqlite import sqlite_app, succeeded  # noqa: F401 - the fixture


def test_two_approvals_at_once_on_sqlite_approve_one(sqlite_app):  # noqa: F811
    customer, vendor = make_user("c@example.com"), make_user("v@example.com", "vendor")
    admins = [make_user("a1@example.com", "admin").id, make_user("a2@example.com", "admin").id]
    payment = succeeded(customer, vendor, 10000)
    with unit_of_work():  # an admin's request does not wait for the customer's decision
        ids = [refunds.request_refund(who, payment, amount=6000, reason="other").id
               for who in (customer, db.session.get(User, admins[1]))]
    approved, release, outcomes = threading.Event(), threading.Event(), {}

    def approve(n: int, hold: bool) -> None:
        with sqlite_app.app_context():
            try:
                with unit_of_work():
                    refunds.approve(db.session.get(User, admins[n]), ids[n], execute=False)
                    if hold:  # approved, not committed yet: the other admin clicks now
                        approved.set()
                        release.wait(10)
                outcomes[n] = "approved"
            except refunds.RefundError as exc:
                outcomes[n] = exc.message
            finally:
                approved.set()
                db.session.remove()

    first = threading.Thread(target=approve, args=(0, True))
    first.start()
    assert approved.wait(10)
    second = threading.Thread(target=approve, args=(1, False))
    second.start()
    second.join(1)  # SQLite's busy timeout is 5 s: it waits for the first's commit
    assert second.is_alive(), "the second approval did not wait for the first"
    release.set()
    first.join(10), second.join(10)
    assert outcomes == {0: "approved",
                        1: "Only $40.00 of this payment can still be refunded."}
    db.session.remove()
    assert sorted(db.session.scalars(sa.select(RefundRequest.status))) == [
        "approved", "requested"]
