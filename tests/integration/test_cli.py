"""The CLI: users create/token and seed-demo."""

import sqlalchemy as sa

from portal.auth.models import User
from portal.auth.services import user_from_token
from portal.extensions import db
from portal.orders.models import Order


def test_users_create_and_token(app):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["users", "create", "Ops@Example.test", "--role", "admin",
                            "--password", "long-enough-pw", "--name", "Ops"])
    assert r.exit_code == 0, r.output
    assert "created admin ops@example.test" in r.output
    r = runner.invoke(args=["users", "token", "ops@example.test"])
    assert r.exit_code == 0
    assert user_from_token(r.output.strip()).email == "ops@example.test"


def test_users_create_refuses_bad_input(app):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["users", "create", "x@example.test", "--role", "customer",
                            "--password", "short"])
    assert r.exit_code != 0 and "password: password must be at least 8 characters" in r.output
    r = runner.invoke(args=["users", "create", "x@example.test", "--role", "root",
                            "--password", "long-enough-pw"])
    assert r.exit_code != 0 and "root" in r.output
    r = runner.invoke(args=["users", "token", "nobody@example.test"])
    assert r.exit_code != 0 and "no user with e-mail nobody@example.test" in r.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_seed_demo_is_idempotent(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo", "--no-history"])
    assert first.exit_code == 0 and "customer@demo.shopsphere.test" in first.output
    counts = (db.session.scalar(sa.select(sa.func.count()).select_from(User)),
              db.session.scalar(sa.select(sa.func.count()).select_from(Order)))
    assert runner.invoke(args=["seed-demo", "--no-history"]).exit_code == 0
    again = (db.session.scalar(sa.select(sa.func.count()).select_from(User)),
             db.session.scalar(sa.select(sa.func.count()).select_from(Order)))
    assert counts == again == (4, 3)
    currencies = set(db.session.scalars(sa.select(Order.currency)))
    assert currencies == {"USD", "EUR", "JPY"}


def test_seed_demo_makes_a_history_for_the_back_office_in_the_sandbox(app, monkeypatch):
    """Payments over the last 90 days in several currencies, some declined and some
    refunded, made through the sandbox and dated back; the rollups match them."""
    from datetime import timedelta

    from portal import demo
    from portal.ledger.models import Payment
    from portal.models_base import utcnow
    from portal.refunds.models import RefundRequest
    from tests.integration.test_rollups import from_the_rows, maintained

    monkeypatch.setattr(demo, "HISTORY_PAYMENTS", 40)
    r = app.test_cli_runner().invoke(args=["seed-demo"])
    assert r.exit_code == 0, r.output
    assert "40 payments of the last 90 days made in the sandbox." in r.output
    payments = db.session.scalars(sa.select(Payment)).all()
    assert len(payments) == 40 and len({p.currency for p in payments}) >= 3
    assert {p.status for p in payments} == {"succeeded", "failed"}
    assert all(utcnow() - timedelta(days=90) <= p.created_at <= utcnow() for p in payments)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest).where(
        RefundRequest.status == "succeeded")) >= 1
    # A vendor's refund of one item waits for the admin (the demo's refund queue).
    [waiting] = db.session.scalars(sa.select(RefundRequest).where(
        RefundRequest.status == "requested")).all()
    assert waiting.source == "vendor" and waiting.itemized and waiting.decided_at is None
    assert maintained() == from_the_rows()
    again = app.test_cli_runner().invoke(args=["seed-demo"])
    assert again.exit_code == 0 and "payments of the last" not in again.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 40


def test_seed_demo_refuses_production(app, test_app, monkeypatch):
    """Its users' password is published (README): an admin with it must not exist live."""
    # The command runs in the test's app context (test_app's): production there.
    monkeypatch.setitem(test_app.config, "ENV", "production")
    r = app.test_cli_runner().invoke(args=["seed-demo"])
    assert r.exit_code != 0 and "not in production" in r.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
