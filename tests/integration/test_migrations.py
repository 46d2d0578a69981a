"""`flask db upgrade` from empty and `flask db check` on SQLite and PostgreSQL."""

import os
import sqlite3
import subprocess
import sys

from portal.config import ROOT


def flask(*args, database_url: str):
    env = {**os.environ, "DATABASE_URL": database_url, "PORTAL_ENV": "test"}
    env.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_sqlite_upgrade_from_empty_then_no_drift(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    up = flask("db", "upgrade", database_url=url)
    assert up.returncode == 0, up.stderr
    check = flask("db", "check", database_url=url)
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_postgresql_schema_from_migrations_has_no_drift(pg_url):
    # pg_url was built by `upgrade()` from an empty schema at the start of the session.
    check = flask("db", "check", database_url=pg_url)
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_sqlite_upgrade_stops_on_two_sale_lines_for_a_vendor_of_a_payment(tmp_path):
    """Revision 04aaab5b431f makes one sale line per vendor of a payment unique; a database
    already holding two is not changed behind the operator's back: the upgrade stops and
    names the payment."""
    db_file = tmp_path / "doubled.sqlite"
    url = f"sqlite:///{db_file}"
    assert flask("db", "upgrade", "594d8f59ae22", database_url=url).returncode == 0
    with sqlite3.connect(db_file) as conn:
        conn.executemany(
            "INSERT INTO split_lines (id, payment_id, vendor_id, kind, currency, gross, fee, "
            "net, created_at, payout_id) VALUES (?, 'pay1', 'ven1', ?, 'USD', 1, 0, 1, "
            "'2026-01-01', 'po1')", [("l1", "sale"), ("l2", "sale"), ("l3", "refund")])
    up = flask("db", "upgrade", database_url=url)
    assert up.returncode != 0
    assert "more than one sale line" in up.stderr and "pay1" in up.stderr
    with sqlite3.connect(db_file) as conn:
        conn.execute("DELETE FROM split_lines WHERE id = 'l2'")
    assert flask("db", "upgrade", database_url=url).returncode == 0
