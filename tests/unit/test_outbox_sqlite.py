"""The outbox on the embedded default, SQLite: a payment's outcome is written once."""

from __future__ import annotations

import sqlalchemy as sa

from portal.extensions import db
from portal.outbox import services as outbox
from portal.outbox.models import OutboxMessage
from tests.helpers import make_user
from tests.unit.test_payouts_sqlite import sqlite_app, succeeded  # noqa: F401 - the fixture


def test_an_outcome_written_twice_on_sqlite_gives_one_message_of_each_kind(sqlite_app):  # noqa: F811
    payment = succeeded(make_user("c@example.com"), make_user("v@example.com", "vendor"), 2500)
    first = outbox.record_payment_outcome(payment)
    # The same outcome again: skipped, nothing queued.
    assert outbox.record_payment_outcome(payment) == [] and len(first) == 2
    db.session.commit()
    rows = db.session.execute(sa.select(OutboxMessage.kind, OutboxMessage.id)).all()
    assert sorted(kind for kind, _ in rows) == ["order_notification", "receipt_email"]
    assert sorted(str(i) for _, i in rows) == sorted(first)
