"""The daily rollups on the embedded default, SQLite: kept as money moves, equal to a rebuild
and to the rows (the same random scenario as tests/integration/test_rollups.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from portal.extensions import db
from portal.ledger import rollups
from tests.integration.test_rollups import Clock, from_the_rows, maintained, scenario
from tests.unit.test_payouts_sqlite import sqlite_app  # noqa: F401 - the fixture


def test_the_rollups_kept_equal_a_rebuild_and_the_rows_on_sqlite(sqlite_app, monkeypatch):  # noqa: F811
    clock = Clock(datetime(2026, 3, 1, 9, tzinfo=UTC))
    monkeypatch.setattr("portal.ledger.splits.utcnow", clock)
    monkeypatch.setattr("portal.payments.services.utcnow", clock)
    monkeypatch.setattr("portal.payouts.services.utcnow", clock)
    scenario(7, 40, clock)
    expected = from_the_rows()
    assert maintained() == expected
    rollups.rebuild(date(2026, 3, 10))
    db.session.commit()
    assert maintained() == expected
