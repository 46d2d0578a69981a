"""End-to-end: a real gunicorn server, an RQ worker on Redis, the Stripe sandbox sending
signed webhooks, PostgreSQL that really commits, and Debian's Chromium driven by Playwright.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.config import ROOT, Config
from portal.extensions import db
from stripe_sandbox.testing import Sandbox, free_port
from tests.conftest import need, portal_env
from tests.helpers import truncate_all
from tests.stripe_contract import command as contract_command

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@dataclass
class Live:
    url: str
    sandbox: Sandbox
    app: object  # an app instance in this process, for seeding and checking the database
    logs: Path


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback only
                return
        except OSError:
            time.sleep(0.1)  # polling interval while the server boots
    raise RuntimeError(f"{url} did not answer:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def live(pg_url, redis_url, tmp_path_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env_vars = portal_env(pg_url, "http://placeholder", REDIS_URL=redis_url, LOG_LEVEL="INFO")
    with Sandbox(webhook_url=f"{url}/api/payments/webhook",
                 webhook_secret=env_vars["STRIPE_WEBHOOK_SECRET"],
                 connect_webhook_secret=env_vars["STRIPE_CONNECT_WEBHOOK_SECRET"]) as sandbox:
        env_vars.update(STRIPE_API_BASE=sandbox.url, STRIPE_JS_URL=sandbox.js_url)
        env = {**os.environ, **env_vars}
        logs = tmp_path_factory.mktemp("live")
        web_log, worker_log = logs / "web.log", logs / "worker.log"
        # Both check every request they send to Stripe against the contract.
        web = subprocess.Popen(
            contract_command("gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                             "--threads", "4", "wsgi:app"),
            cwd=ROOT, env=env, stdout=web_log.open("w"), stderr=subprocess.STDOUT,
        )
        worker = subprocess.Popen(
            contract_command("flask", "--app", "wsgi", "worker"),
            cwd=ROOT, env=env, stdout=worker_log.open("w"), stderr=subprocess.STDOUT,
        )
        try:
            _wait_http(f"{url}/healthz", web, web_log)
            app = create_app(Config.from_env(env_vars))
            yield Live(url=url, sandbox=sandbox, app=app, logs=logs)
        finally:
            for proc in (web, worker):
                proc.terminate()
            for proc in (web, worker):
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture(autouse=True)
def _clean(live, redis_url):
    """Each test starts from empty tables and fresh rate-limit counters, and leaves none."""
    from redis import Redis

    with live.app.app_context():
        truncate_all()
        r = Redis.from_url(redis_url)
        for key in r.scan_iter("LIMIT*"):
            r.delete(key)
        yield
        db.session.remove()
        truncate_all()


@pytest.fixture
def app_ctx(live):
    with live.app.app_context():
        yield
        db.session.remove()


@pytest.fixture(scope="session")
def base_url(live):
    return live.url


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        need("Chromium", f"{CHROMIUM} not found (apt-get install -y chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"],
    }


def wait_for(predicate, timeout: float = 20, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy (and return it) or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def scalar(query):
    """Run a query in a fresh session (what is committed right now)."""
    db.session.remove()
    return db.session.scalar(query)


__all__ = ["sa", "wait_for", "scalar"]
