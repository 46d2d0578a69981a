"""Shared fixtures: PostgreSQL, Redis and the Stripe sandbox, required in CI.

Locally a missing service skips the tests that need it; with CI=true it is a failure, so a
green CI run always means the whole suite ran against real services.
"""

from __future__ import annotations

import os

import pytest

CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def need(service: str, problem: Exception | str) -> None:
    """Fail in CI, skip elsewhere, when a service the test needs is missing."""
    message = f"{service} is not available: {problem}"
    if CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test PostgreSQL database, reset and migrated from empty once per session."""
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=3, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
    except psycopg.OperationalError as exc:
        need("PostgreSQL", exc)
    from flask_migrate import upgrade

    from portal import create_app
    from portal.config import Config

    app = create_app(Config.from_env(portal_env(PG_URL, "http://127.0.0.1:9")))
    with app.app_context():
        upgrade()
    return PG_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        Redis.from_url(REDIS_URL, socket_connect_timeout=3).flushdb()
    except RedisError as exc:
        need("Redis", exc)
    return REDIS_URL


@pytest.fixture(scope="session")
def sandbox():
    """A Stripe sandbox process for the session (in-process tests)."""
    from stripe_sandbox.testing import Sandbox

    with Sandbox() as sb:
        yield sb


def portal_env(database_url: str, stripe_base: str, **more) -> dict:
    """Environment for a portal under test: explicit, so a developer's own keys never leak in."""
    return {
        "PORTAL_ENV": "test",
        "DATABASE_URL": database_url,
        "STRIPE_API_BASE": stripe_base,
        "STRIPE_JS_URL": f"{stripe_base}/js.stripe.com/v3/",
        "STRIPE_SECRET_KEY": "sk_test_portal",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_portal",
        "STRIPE_WEBHOOK_SECRET": "whsec_portal_tests",
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123",
        "LOG_LEVEL": "WARNING",
        **more,
    }


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """In-process tests hash with few iterations (as Django's test hasher does); the
    end-to-end server keeps the real scrypt."""
    from functools import partial

    from werkzeug.security import generate_password_hash

    from portal.auth import models

    original = models.generate_password_hash
    models.generate_password_hash = partial(generate_password_hash, method="pbkdf2:sha256:1000")
    yield
    models.generate_password_hash = original
