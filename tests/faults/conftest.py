"""Fault tests (issue 7): each test starts the processes it needs — its own redis-server,
Stripe sandbox, gunicorn (2 workers) and `flask worker` processes — on a PostgreSQL database
of this suite's own (``portal_faults_<pid>``: created and migrated once, emptied before each
test, dropped at the end; the `test` database of the other suites is never touched).

With CI=true a missing PostgreSQL or redis-server fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil

import psycopg
import pytest
from sqlalchemy.engine import make_url

from portal import create_app
from portal.config import Config
from portal.extensions import db
from stripe_sandbox.testing import Sandbox, free_port
from tests.conftest import PG_URL, need, portal_env
from tests.faults.support import (
    CONNECT_SECRET,
    SECRET,
    WEBHOOK_PATH,
    Db,
    OrderService,
    RedisServer,
    Stack,
)


def _url(database: str) -> str:
    return make_url(PG_URL).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def faults_db() -> str:
    """The suite's own database, migrated from empty; dropped when the session ends."""
    name = f"portal_faults_{os.getpid()}"
    admin = _url("postgres")
    try:
        with psycopg.connect(admin, connect_timeout=3, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        need("PostgreSQL", exc)
    url = _url(name)
    from flask_migrate import upgrade

    app = create_app(Config.from_env(portal_env(url, "http://127.0.0.1:9")))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _empty_tables(faults_db):
    """Each test starts from empty tables (the previous test's processes are stopped)."""
    with psycopg.connect(faults_db, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'")]
        conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")


@pytest.fixture
def pg(faults_db):
    """Committed state of the suite's database, read from the test."""
    reader = Db(faults_db)
    yield reader
    reader.close()


@pytest.fixture
def make_stack(faults_db, tmp_path):
    """``make_stack(...)`` starts a test's processes; all are stopped after the test.

    webhooks: the sandbox sends its own signed events to the stack's gunicorn;
    web: start gunicorn (2 workers); workers: how many `flask worker` processes;
    web_env: settings only gunicorn gets (e.g. a DATABASE_URL through a proxy);
    env_more: settings for every process and for ``stack.app``.
    """
    if shutil.which("redis-server") is None:
        need("Redis", "redis-server is not installed (apt-get install -y redis-server)")
    stacks: list[Stack] = []

    def make(*, webhooks: bool = False, web: bool = True, workers: int = 1,
             web_env: dict | None = None, **env_more) -> Stack:
        web_port = free_port()
        workdir = tmp_path / f"stack{len(stacks)}"
        workdir.mkdir()
        sandbox = Sandbox(webhook_url=f"http://127.0.0.1:{web_port}{WEBHOOK_PATH}",
                          webhook_secret=SECRET, connect_webhook_secret=CONNECT_SECRET,
                          ) if webhooks else Sandbox()
        stack = Stack(db_url=faults_db, workdir=workdir, redis=RedisServer(workdir),
                      sandbox=sandbox, env_vars={}, web_port=web_port)
        stacks.append(stack)
        stack.redis.start()
        sandbox.start()
        # Nobody listens at the default order service; no SMTP server (receipts are kept).
        settings = {"REDIS_URL": stack.redis.url, "SMTP_HOST": "", "LOG_LEVEL": "INFO",
                    "ORDER_SERVICE_URL": f"http://127.0.0.1:{free_port()}", **env_more}
        stack.env_vars = portal_env(faults_db, sandbox.url, **settings)
        stack.app = create_app(Config.from_env(stack.env_vars))
        if web:
            stack.start_web(**(web_env or {}))
        for _ in range(workers):
            stack.start_worker()
        return stack

    yield make
    for stack in stacks:
        stack.close()
        if stack.app is not None:
            with stack.app.app_context():
                db.engine.dispose()


@pytest.fixture
def order_service():
    """The order service (a thread): answers 200 unless ``order_service.failures`` > 0."""
    service = OrderService()
    yield service
    service.stop()
