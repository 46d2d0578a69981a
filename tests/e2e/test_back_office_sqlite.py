"""The back office's browser flow (test_back_office_flow.py) on the embedded default, as
`make run` serves it: SQLite, no Redis (jobs and webhook events run in the web process after
the request), gunicorn with 2 workers of 4 threads, the Stripe sandbox."""

from __future__ import annotations

import os
import subprocess

import pytest

from portal import create_app
from portal.config import ROOT, Config
from stripe_sandbox.testing import Sandbox, free_port
from tests.conftest import portal_env
from tests.e2e.conftest import Live, _wait_http
from tests.e2e.test_back_office_flow import (  # noqa: F401 - the fixture and the flow, here
    orders,
    test_an_admin_finds_a_payment_reads_its_timeline_exports_and_reads_analytics,
)


@pytest.fixture(scope="module")
def browser_context_args(live):
    """The browser goes to this module's server (the session's base_url is the other's)."""
    return {"base_url": live.url}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The portal on a SQLite file of its own, migrated as `make run` migrates it."""
    logs = tmp_path_factory.mktemp("live-sqlite")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env_vars = portal_env(f"sqlite:///{logs / 'portal.sqlite'}", "http://placeholder",
                          LOG_LEVEL="INFO")
    with Sandbox(webhook_url=f"{url}/api/payments/webhook",
                 webhook_secret=env_vars["STRIPE_WEBHOOK_SECRET"],
                 connect_webhook_secret=env_vars["STRIPE_CONNECT_WEBHOOK_SECRET"]) as sandbox:
        env_vars.update(STRIPE_API_BASE=sandbox.url, STRIPE_JS_URL=sandbox.js_url)
        env = {**{k: v for k, v in os.environ.items() if k != "REDIS_URL"}, **env_vars}
        subprocess.run([".venv/bin/flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                       env=env, check=True, capture_output=True)
        web_log = logs / "web.log"
        web = subprocess.Popen(
            [".venv/bin/gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
             "--threads", "4", "wsgi:app"],
            cwd=ROOT, env=env, stdout=web_log.open("w"), stderr=subprocess.STDOUT)
        try:
            _wait_http(f"{url}/healthz", web, web_log)
            yield Live(url=url, sandbox=sandbox, app=create_app(Config.from_env(env_vars)),
                       logs=logs)
        finally:
            web.terminate()
            try:
                web.wait(timeout=10)
            except subprocess.TimeoutExpired:
                web.kill()
