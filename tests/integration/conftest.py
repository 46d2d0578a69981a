"""In-process integration tests: the app on PostgreSQL and the Stripe sandbox.

Each test runs inside a transaction that is rolled back, so tests never see each other's
rows; code under test that commits only releases a savepoint.
"""

from __future__ import annotations

import pytest
from flask_sqlalchemy.session import _app_ctx_id
from sqlalchemy.orm import scoped_session, sessionmaker

from portal import create_app
from portal.config import Config
from portal.extensions import db, limiter
from tests.conftest import portal_env
from tests.helpers import make_order, make_user, truncate_all
from tests.integration.api_support import Api


def _config(pg_url, sandbox) -> Config:
    return Config.from_env(
        portal_env(pg_url, sandbox.url),
        extra={"WTF_CSRF_ENABLED": False},
    )


@pytest.fixture(scope="session")
def app(pg_url, sandbox):
    """The app the test client talks to."""
    return create_app(_config(pg_url, sandbox))


@pytest.fixture(scope="session")
def test_app(pg_url, sandbox):
    """A second instance whose context the test body runs in: requests then get their own
    app context (and `g`), as they do in production, instead of sharing the test's."""
    return create_app(_config(pg_url, sandbox))


@pytest.fixture(autouse=True)
def _transaction(test_app, request):
    """Roll back everything a test did; tests marked `commits` really commit, then truncate."""
    limiter.reset()  # every test starts with fresh rate-limit counters
    if request.node.get_closest_marker("commits"):
        with test_app.app_context():
            try:
                yield
            finally:
                db.session.remove()
                truncate_all()
        return
    with test_app.app_context():
        conn = db.engine.connect()
        outer = conn.begin()
        original = db.session
        # A plain SQLAlchemy session honours `bind` (Flask-SQLAlchemy's picks engines by key).
        db.session = scoped_session(
            sessionmaker(bind=conn, join_transaction_mode="create_savepoint"),
            scopefunc=_app_ctx_id,
        )
        try:
            yield
        finally:
            db.session.remove()
            db.session = original
            outer.rollback()
            conn.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def no_rate_limits():
    """For tests that send hundreds of requests a minute as a few users (fuzzers, the attack
    suite): they would only see 429s."""
    enabled = limiter.enabled
    limiter.enabled = False
    try:
        yield
    finally:
        limiter.enabled = enabled


@pytest.fixture(scope="session")
def stripe_client(sandbox):
    """Stripe's own SDK pointed at the sandbox: what a test does 'directly in Stripe'."""
    import stripe

    return stripe.StripeClient("sk_test_portal", base_addresses={"api": sandbox.url})


# --- the JSON API tests' fixtures ------------------------------------------------------------

@pytest.fixture(scope="module")
def spec(app):
    r = app.test_client().get("/api/payments/openapi.json")
    assert r.status_code == 200
    return r.json


@pytest.fixture
def api(client, spec):
    return Api(client, spec)


@pytest.fixture
def shop():
    return {
        "customer": make_user("buyer@example.test"),
        "other": make_user("mallory@example.test"),
        "vendor": make_user("maker@example.test", "vendor"),
        "admin": make_user("root@example.test", "admin"),
    }


@pytest.fixture
def customer(shop):
    return shop["customer"]


@pytest.fixture
def order(shop):
    """299.99 USD: 269.99 of goods, 27.00 tax, 3.00 shipping (the original description's)."""
    return make_order(shop["customer"], shop["vendor"], amounts=(26999,), tax=2700,
                      shipping=300)


@pytest.fixture
def people():
    return {"customer": make_user("carol@example.test"),
            "other": make_user("oscar@example.test"),
            "vendor": make_user("vera@example.test", "vendor"),
            "vendor2": make_user("victor@example.test", "vendor"),
            "outsider": make_user("otto@example.test", "vendor"),
            "admin": make_user("ada@example.test", "admin"),
            "admin2": make_user("alan@example.test", "admin")}


@pytest.fixture
def redis(app, redis_url, monkeypatch):
    """The app queues its jobs on Redis (as in production); the tests' Redis database starts
    and ends empty."""
    from redis import Redis

    monkeypatch.setitem(app.config, "REDIS_URL", redis_url)
    monkeypatch.delitem(app.extensions, "redis", raising=False)
    monkeypatch.delitem(app.extensions, "rq_queues", raising=False)
    conn = Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()
