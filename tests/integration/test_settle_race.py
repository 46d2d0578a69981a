"""Issue 17, item 8: the customer's return page and the webhook job settling the same success
at the same moment on PostgreSQL (tests/unit/test_settle_sqlite.py does it on SQLite): the
second waits for the first's row lock, then finds the payment final; the sale is recorded
once (one sale line, one set of outbox messages)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from portal.database import unit_of_work
from portal.extensions import db
from portal.ledger.models import Payment, SplitLine
from portal.outbox.models import OutboxMessage
from portal.payments.services import settle
from portal.stripe_gateway import Intent
from tests.helpers import make_order, make_user


def intent(status: str) -> Intent:
    return Intent(id="pi_race", status=status, amount=2500, currency="USD",
                  client_secret=None, created=1, metadata={})


@pytest.mark.commits
def test_the_return_page_and_the_webhook_settle_one_success_once(test_app):
    customer, vendor = make_user("c@example.test"), make_user("v@example.test", "vendor")
    order = make_order(customer, vendor, amounts=(2500,))
    payment = Payment(user_id=customer.id, order_id=order.id, amount=2500, currency="USD",
                      status="processing", subtotal=2500, stripe_payment_intent_id="pi_race")
    db.session.add(payment)
    db.session.commit()
    payment_id = payment.id
    held, release, errors = threading.Event(), threading.Event(), []

    def settle_as(hold: bool) -> None:
        with test_app.app_context():
            try:
                with unit_of_work():
                    settle(payment_id, intent("succeeded"))
                    if hold:  # settled, not committed: the other one arrives now
                        held.set()
                        release.wait(10)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                held.set()
                db.session.remove()

    webhook = threading.Thread(target=settle_as, args=(True,))
    webhook.start()
    assert held.wait(10)
    return_page = threading.Thread(target=settle_as, args=(False,))
    return_page.start()
    return_page.join(1)
    assert return_page.is_alive(), "the return page did not wait for the webhook's lock"
    release.set()
    webhook.join(10), return_page.join(10)
    assert errors == []
    db.session.expire_all()
    assert db.session.get(Payment, payment_id).status == "succeeded"
    assert db.session.scalars(sa.select(SplitLine.kind).where(
        SplitLine.payment_id == payment_id)).all() == ["sale"]
    assert sorted(db.session.scalars(sa.select(OutboxMessage.kind).where(
        OutboxMessage.payment_id == payment_id))) == ["order_notification", "receipt_email"]
