"""`make run` as a newcomer meets it (scripts/run-dev.sh, which the target runs): a short
output that ends with the URL, the logins and the three test cards; an outbox of delivered
notifications (the built-in order-service stand-in), not "connection refused"; Ctrl-C stops
everything and the script exits 0, so make has no "Error 130" to report.

The script runs as `make run` runs it, on free ports, with a SQLite file of its own (the
developer's instance/sandbox-demo.sqlite is left alone): the sandbox, the stand-in, the
demo's seeding (its 240 payments of history) and gunicorn, about 20 s.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import sqlite3
import subprocess  # nosec B404 - runs the project's own script
import time
import urllib.parse
import urllib.request

import pytest

from portal.config import ROOT
from portal.demo import DEMO_PASSWORD, USERS
from stripe_sandbox import cards
from stripe_sandbox.testing import free_port

CARDS = ("4242 4242 4242 4242", "4000 0027 6000 3184", "4000 0000 0000 0341")
# Only what a shell gives: the developer's Stripe keys, REDIS_URL, ORDER_SERVICE_URL or
# LOG_LEVEL must not change what this run shows.
KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def _wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def demo(tmp_path):
    """`make run`'s script, up to its "Press Ctrl-C" line: (process, its output file, URL,
    database file). Stopped by SIGKILL to its process group if the test did not stop it."""
    port, out, database = free_port(), tmp_path / "make-run.out", tmp_path / "demo.sqlite"
    env = {k: v for k, v in os.environ.items() if k in KEPT}
    env.update(PORT=str(port), SANDBOX_PORT=str(free_port()),
               DEMO_ORDERS_PORT=str(free_port()), DATABASE_URL=f"sqlite:///{database}")
    with out.open("w") as sink:
        proc = subprocess.Popen(["scripts/run-dev.sh"], cwd=ROOT, env=env, stdout=sink,  # nosec B603
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until(lambda: "Press Ctrl-C to stop." in out.read_text() or proc.poll() is not None,
                    150, "the demo to start")
        assert proc.poll() is None, out.read_text()
        yield proc, out, f"http://127.0.0.1:{port}", database
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _signed_in_admin(url: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPCookieProcessor(
                                             http.cookiejar.CookieJar()))
    page = opener.open(f"{url}/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    admin = next(email for email, role, _ in USERS if role == "admin")
    form = urllib.parse.urlencode({"csrf_token": token, "email": admin,
                                   "password": DEMO_PASSWORD}).encode()
    assert "/login" not in opener.open(f"{url}/login", data=form, timeout=10).url
    return opener


def test_make_run_is_quiet_delivers_notifications_and_ends_cleanly_on_ctrl_c(demo):
    proc, out, url, database = demo
    text = out.read_text()
    lines = text.rstrip().splitlines()
    assert len(lines) < 40, text
    # The URL, then the logins, then the three cards, and nothing after them.
    block = text[text.index(f"ShopSphere Payments is running: {url}/"):]
    assert [line.split()[-1] for line in block.splitlines() if "@demo." in line] == [
        email for email, _, _ in USERS]
    assert block.index(USERS[-1][0]) < block.index("Test cards")
    at = next(i for i, line in enumerate(lines) if "Test cards" in line)
    card_lines = [line.strip() for line in lines[at + 1:at + 4]]
    assert [line[:19] for line in card_lines] == list(CARDS)
    assert [line.strip() for line in lines[at + 4:] if line.strip()] == ["Press Ctrl-C to stop."]
    # No log line: no SDK request, webhook delivery, access log or migration.
    assert not re.search(r' INFO |webhook "|stripe: |"POST |alembic', text), text

    # Each card does in the sandbox what the message says (stripe_sandbox/cards.py).
    said = {line[:19]: line[19:] for line in card_lines}
    number = {c: c.replace(" ", "") for c in CARDS}
    assert said[CARDS[0]].strip() == "succeeds"
    assert not cards.decline_when_charged(number[CARDS[0]])
    assert not cards.needs_three_d_secure(number[CARDS[0]], set_up=False)
    assert "3-D Secure" in said[CARDS[1]]
    assert cards.needs_three_d_secure(number[CARDS[1]], set_up=True)
    assert not cards.decline_when_charged(number[CARDS[1]])
    assert said[CARDS[2]].strip().startswith("declined when charged")
    assert cards.decline_when_charged(number[CARDS[2]])
    assert not cards.decline_when_saved(number[CARDS[2]])

    # The admin's Outbox: the history's notifications delivered, none waiting or given up.
    admin = _signed_in_admin(url)
    for status in ("pending", "given_up"):
        page = admin.open(f"{url}/admin/outbox?status={status}", timeout=10).read().decode()
        assert "Nothing here." in page, status
    sent = admin.open(f"{url}/admin/outbox?status=sent", timeout=10).read().decode()
    assert "order notification" in sent
    with sqlite3.connect(database) as db:
        paid = db.execute("SELECT count(*) FROM payments WHERE status = 'succeeded'").fetchone()
        notified = db.execute(
            "SELECT count(*) FROM outbox_messages WHERE kind = 'order_notification' "
            "AND status = 'sent' AND attempts = 1 AND errors = '[]'").fetchone()
    assert paid == notified and paid[0] > 100

    # Meanwhile the sandbox's late webhooks were processed: nothing more was printed.
    assert out.read_text() == text

    # Ctrl-C: SIGINT to the whole foreground process group, as a terminal sends it.
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    after = out.read_text()
    assert "Error" not in after and "Traceback" not in after, after
    assert after[len(text):].strip() == "Stopped."
    _wait_until(lambda: not _alive(proc.pid), 20, "every process make run started to end")


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True

