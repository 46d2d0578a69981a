"""Shared fixtures: PostgreSQL, Redis and the Stripe sandbox, required in CI.

Locally a missing service skips the tests that need it; with CI=true it is a failure, so a
green CI run always means the whole suite ran against real services.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

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


# --- The Stripe contract (tests/stripe_contract.py) ----------------------------------------------

def pytest_configure(config):
    """One directory for the session's contract findings, inherited by every process the
    tests start (sandboxes, servers, workers); the check installed in this process."""
    from tests import stripe_contract

    directory = tempfile.mkdtemp(prefix="stripe-contract-")
    os.environ["STRIPE_CONTRACT_DIR"] = directory
    config.stash[_CONTRACT_DIR] = Path(directory)
    stripe_contract.install(raise_violations=True)


_CONTRACT_DIR = pytest.StashKey[Path]()


def _violations(directory: Path) -> list[str]:
    found = []
    for path in sorted(directory.glob("violations-*.jsonl")):
        found += [json.loads(line)["message"] for line in path.read_text().splitlines()]
    return found


def _checked(item):
    """Run a phase of a test; a contract violation any process wrote meanwhile fails it."""
    directory = item.config.stash[_CONTRACT_DIR]
    before = len(_violations(directory))
    try:
        return (yield)
    finally:
        new = _violations(directory)[before:]
        if new:
            from tests.stripe_contract import ContractViolation

            raise ContractViolation("\n".join(dict.fromkeys(new)))


# Setup, call and teardown: a fixture's requests (a sandbox seeded, a server started) count.
pytest_runtest_setup = pytest.hookimpl(wrapper=True)(_checked)
pytest_runtest_call = pytest.hookimpl(wrapper=True)(_checked)
pytest_runtest_teardown = pytest.hookimpl(wrapper=True)(_checked)


def pytest_terminal_summary(terminalreporter, config):
    """How many distinct requests and response objects the contract checked."""
    directory = config.stash.get(_CONTRACT_DIR, None)
    if directory is None:
        return
    from stripe_sandbox.contract import API_VERSION

    def records(kind):
        rows = []
        for path in directory.glob(f"{kind}-*.jsonl"):
            rows += [json.loads(line) for line in path.read_text().splitlines()]
        return rows

    requests = records("requests")
    portal = {tuple(map(str, r["signature"])) for r in requests if r.get("caller")}
    received = {tuple(map(str, r["signature"])) for r in requests if not r.get("caller")}
    objects = {(r["object"], r["shape"]) for r in records("objects")}
    endpoints = {s[:2] for s in portal | received}
    violations = _violations(directory)
    terminalreporter.write_sep("-", f"Stripe contract (API {API_VERSION})")
    terminalreporter.write_line(
        f"{len(portal)} distinct requests of the portal's gateway and {len(received)} received "
        f"by the sandboxes, over {len(endpoints)} endpoints, checked against their parameter "
        f"classes; {len(objects)} distinct response objects of "
        f"{len({o for o, _ in objects})} types checked against their resource classes; "
        f"{len(violations)} violations")
    for message in dict.fromkeys(violations):
        terminalreporter.write_line(f"  {message}")


def pytest_sessionfinish(session, exitstatus):
    directory = session.config.stash.get(_CONTRACT_DIR, None)
    if directory is not None and _violations(directory) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    directory = config.stash.get(_CONTRACT_DIR, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


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
        "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_portal_tests_connect",
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
