"""Every finding of the pre-launch attack (issue 15) replayed as the attacker did it: against a
running portal (gunicorn, 2 workers, production settings; tests/security/live.py), at a small
size, asserting the fixed behaviour.

One portal for the module, on a database of its own (``portal_security_<pid>``) and Redis
(the database after TEST_REDIS_URL's, flushed before each test: fresh counters). Each
simulated client has an address of its own (X-Forwarded-For through the one trusted proxy
hop), so the per-address limits a test meets are its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import jwt
import pytest

from portal.config import DEV_SECRET_KEY, ROOT, SANDBOX_WEBHOOK_SECRET
from stripe_sandbox.testing import Sandbox, free_port
from tests.conftest import PG_URL, need
from tests.faults.support import Db, wait_for
from tests.helpers import PASSWORD, event_body, sign
from tests.security import live
from tests.security.live import Browser, Portal, rss_kb
from tests.security.report import count

MIB = 1024 * 1024
VISA, THREE_D_SECURE = "4242424242424242", "4000002760003184"
DECLINED = "4000000000000002"  # declined when saved and when charged (generic_decline)
LOST, STOLEN, FRAUDULENT = "4000000000009987", "4000000000009979", "4100000000000019"
TOO_LARGE = {"success": False, "error": {"code": "too_large",
                                         "message": "The request is too large"}}
USERS = {name: (f"{name}@security.test", role) for name, role in (
    ("owner", "customer"), ("owner2", "customer"), ("owner3", "customer"),
    ("tester", "customer"), ("saver", "customer"), ("buyer", "customer"),
    ("buyer2", "customer"), ("buyer3", "customer"), ("buyer4", "customer"),
    ("vendor1", "vendor"), ("vendor2", "vendor"), ("admin", "admin"),
    ("service", "service"))}
# {finding: names of its tests that passed}; a finding counts as replayed when all of its
# tests (test_finding_<n>_..., test_findings_<n>_and_<m>_...) passed.
REPLAYED: dict[int, set[str]] = {}


def _findings(test_name: str) -> list[int]:
    found = re.match(r"test_findings?_(\d+(?:_and_\d+)*)_", test_name)
    return [int(n) for n in re.findall(r"\d+", found.group(1))] if found else []


def replayed() -> None:
    """Called at the end of a test of a finding: it passed."""
    name = sys._getframe(1).f_code.co_name
    for finding in _findings(name):
        REPLAYED.setdefault(finding, set()).add(name)


def findings_replayed() -> int:
    tests: dict[int, set[str]] = {}
    for name in globals():
        if name.startswith("test_finding"):
            for finding in _findings(name):
                tests.setdefault(finding, set()).add(name)
    return sum(1 for finding, names in tests.items() if REPLAYED.get(finding) == names)


# --- the running portal -------------------------------------------------------------------

@pytest.fixture(scope="module")
def portal(redis_url, tmp_path_factory):
    """gunicorn in production mode on ``portal_security_<pid>``, Redis and a Stripe sandbox;
    the users of USERS (in ``portal.users``); stopped and dropped at the end."""
    import psycopg
    import stripe
    from flask_migrate import upgrade
    from redis import Redis

    from portal import create_app
    from portal.config import Config
    from portal.extensions import db
    from tests.conftest import portal_env

    name = f"portal_security_{os.getpid()}"
    try:
        url = live.create_database(PG_URL, name)
    except psycopg.OperationalError as exc:
        need("PostgreSQL", exc)
    # A Redis database of its own, next to the suite's: flushing it before each test must not
    # touch the keys of the end-to-end suite's server and worker (still up until the end).
    parts = urlsplit(redis_url)
    redis_url = parts._replace(path=f"/{(int(parts.path.strip('/') or 0) + 1) % 16}").geturl()
    redis = Redis.from_url(redis_url)
    sandbox = proc = reader = None
    try:
        app = create_app(Config.from_env(portal_env(url, "http://127.0.0.1:9")))
        with app.app_context():
            upgrade()
            db.engine.dispose()
        users = live.add_users(url, USERS)
        redis.flushdb()
        port = free_port()
        sandbox = Sandbox().start()
        env = live.production_env(url, redis_url, sandbox, port)
        log = tmp_path_factory.mktemp("security-live") / "gunicorn.log"
        proc = live.start_gunicorn(env, port, log)
        reader = Db(url)
        live.wait_until_up(port, proc, log)
        running = Portal(port=port, env=env, proc=proc, log=log, sandbox=sandbox, db=reader,
                         redis=redis, users=users, stripe=stripe.StripeClient(
                             env["STRIPE_SECRET_KEY"], base_addresses={"api": sandbox.url}))
        yield running
        count("requests sent to the running portal", running.requests_sent)
        count("findings replayed against it (of 11)", findings_replayed())
    finally:
        if proc is not None:
            live.stop(proc)
        if sandbox is not None:
            sandbox.stop()
        if reader is not None:
            reader.close()
        redis.flushdb()
        live.drop_database(PG_URL, name)


@pytest.fixture(autouse=True)
def _fresh_counters(portal):
    """Each test meets the limits with fresh counters. (The database keeps its rows: no test
    depends on another's, whatever the order.)"""
    portal.redis.flushdb()


def email(portal: Portal, name: str) -> str:
    return portal.users[name]["email"]


def pm(portal: Portal, number: str = VISA) -> str:
    """A card PaymentMethod made at the sandbox (as Stripe.js makes one)."""
    return portal.stripe.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034,
                                 "cvc": "123"}}).id


def new_order(portal: Portal, customer: str, items, currency: str = "USD") -> dict:
    """An order registered by the order service (POST /api/orders); items: (vendor, minor
    units)."""
    body = {"customerEmail": email(portal, customer), "currency": currency,
            "items": [{"vendorEmail": email(portal, vendor), "description": f"Item {n}",
                       "quantity": 1, "unitAmount": amount}
                      for n, (vendor, amount) in enumerate(items)]}
    r = portal.api("POST", "/api/orders", body, token=portal.token(email(portal, "service")))
    assert r.status == 201, r.text
    return r.json["order"]


def major(amount: int, currency: str) -> float | int:
    digits = 0 if currency.upper() == "JPY" else 2
    return int(amount) if not digits else float(Decimal(amount).scaleb(-digits))


def open_intent(portal: Portal, token: str, order: dict) -> str:
    r = portal.api("POST", "/api/payments/create-intent", {
        "orderId": order["id"], "currency": order["currency"],
        "amount": major(order["total"], order["currency"])}, token=token)
    assert r.status == 200, r.text
    return r.json["paymentIntent"]["id"]


def paid(portal: Portal, customer: str, items, currency: str = "USD") -> dict:
    """A succeeded payment of a new order, paid through the API; the confirmed payment."""
    token = portal.token(email(portal, customer))
    intent = open_intent(portal, token, new_order(portal, customer, items, currency))
    r = portal.api("POST", "/api/payments/confirm",
                   {"paymentIntentId": intent, "paymentMethodId": pm(portal)}, token=token)
    assert r.status == 200 and r.json["payment"]["status"] == "succeeded", r.text
    return r.json["payment"]


def signed_in(portal: Portal, name: str) -> Browser:
    browser = Browser(portal)
    r = browser.login(email(portal, name))
    assert r.status == 302, r.text
    return browser


def refund_requests(portal: Portal, payment_id: str) -> list[tuple]:
    return portal.db.rows("SELECT source, amount, status FROM refund_requests "
                          "WHERE payment_id = %s ORDER BY created_at", (payment_id,))


# --- 1. request-body limit ----------------------------------------------------------------

def post_head(portal: Portal, path: str, length: int | None = None) -> str:
    """The request line and headers of a POST from a client of its own (chunked without a
    length)."""
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST {path} HTTP/1.1\r\nHost: {portal.host}\r\n"
            f"X-Forwarded-For: {portal.address()}\r\nX-Forwarded-Proto: https\r\n"
            f"Content-Type: application/json\r\nStripe-Signature: t=1,v1=bad\r\n{size}")


def announced(portal: Portal, path: str, length: int, first: bytes) -> live.Response:
    """A POST announcing ``length`` bytes of which only ``first`` is sent; the answer must
    come without the rest (a server waiting for it times out here)."""
    try:
        return portal.raw(post_head(portal, path, length), first, timeout=10)
    except TimeoutError:
        pytest.fail(f"{path}: no answer within 10 s to a {length:,}-byte announced body: the "
                    "server is waiting for the body instead of refusing it")


def chunked(portal: Portal, path: str, size: int, body: bytes = b"x") -> live.Response:
    """A POST whose body (``size`` bytes, made of ``body``) comes in 64 KiB chunks, without
    Content-Length."""
    data = (body * (size // len(body) + 1))[:size]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 65536]), data[i:i + 65536])
                      for i in range(0, len(data), 65536))
    return portal.raw(post_head(portal, path), chunks + b"0\r\n\r\n")


def test_finding_1_a_300_mb_announced_body_is_refused_before_it_is_read(portal):
    """The attack: 300 MB POSTs to the webhook (bad signature) and the token endpoint took a
    worker from 178 MB to 2,033 MB. Now: 413 in the JSON error format at once, with only the
    first 4 KB sent or with the client sending on, and no worker grows."""
    workers = portal.worker_pids()
    assert len(workers) == 2
    before = {pid: rss_kb(pid) for pid in workers}
    for path in ("/api/payments/webhook", "/api/auth/token"):
        for _ in range(2):  # two, as in the attack (both workers, most likely)
            r = announced(portal, path, 300 * MIB, b'{"id": "evt_' + b"x" * 4096)
            assert r.status == 413, (path, r.status, r.text)
            assert r.json == TOO_LARGE
            assert r.headers["Content-Type"] == "application/json"
        # And a client that keeps sending (up to 64 MB of the 300): answered all the same,
        # the rest never read (a server that read it would have grown by as much).
        r = portal.streaming(post_head(portal, path, 300 * MIB), 64 * MIB, timeout=10)
        assert r.status == 413 and r.json == TOO_LARGE, (path, r.status, r.text)
    assert portal.worker_pids() == workers  # none died (and was replaced)
    grown = {pid: (rss_kb(pid) - kb) // 1024 for pid, kb in before.items()}
    assert all(mb < 30 for mb in grown.values()), f"worker RSS grew (MB): {grown}"
    replayed()


def test_finding_1_a_chunked_body_over_1_mib_is_refused(portal):
    """No Content-Length to refuse it by: read up to the limit, no further, then 413."""
    for path in ("/api/auth/token", "/api/payments/webhook"):
        r = chunked(portal, path, MIB + 256 * 1024)
        assert r.status == 413, (path, r.status, r.text)
        assert r.json == TOO_LARGE
    # A small chunked body is read as usual (the 413 is about its size, not its encoding).
    small = json.dumps({"email": "nobody@security.test", "password": "guess"}).encode()
    r = chunked(portal, "/api/auth/token", len(small), small)
    assert r.status == 401 and r.json["error"]["code"] == "invalid_credentials", r.text
    replayed()


# --- 2. and 3. password guessing ----------------------------------------------------------

def guess_api(portal: Portal, who: str, password: str, address: str) -> live.Response:
    return portal.api("POST", "/api/auth/token", {"email": who, "password": password},
                      address=address)


def test_finding_2_a_lock_on_the_login_page_holds_on_the_token_endpoint(portal):
    """The attack: after /login answered 429, POST /api/auth/token still checked passwords
    for the account and issued a token."""
    owner = email(portal, "owner")
    attacker = Browser(portal)
    assert attacker.get("/login").status == 200
    statuses = [attacker.post("/login", {"email": owner, "password": f"guess-{n}"}).status
                for n in range(6)]
    assert statuses == [400] * 5 + [429]
    r = guess_api(portal, owner, PASSWORD, attacker.address)  # the right password, the API way
    assert r.status == 429, r.text
    assert r.json["error"]["code"] == "rate_limited" and "token" not in r.json
    assert "too many attempts for this account" in r.json["error"]["message"]
    assert 0 < int(r.headers["Retry-After"]) <= 15 * 60
    # And the other way round: guessed through the API, then refused on the page.
    elsewhere = portal.address()
    assert [guess_api(portal, owner, "guess", elsewhere).status
            for _ in range(6)] == [401] * 5 + [429]
    page = Browser(portal, elsewhere)
    r = page.login(owner)
    assert r.status == 429 and "Too many attempts for this account" in r.text
    replayed()


def test_findings_2_and_3_guesses_from_many_addresses_meet_one_budget_not_the_owner(portal):
    """The attack: three addresses made 30 guesses at one account in a minute. Now each
    address gets 5, all together 20 an hour; and the owner's own browser still signs in."""
    owner = email(portal, "owner2")
    browser = Browser(portal)  # the owner's, known to the portal from an earlier sign-in
    assert browser.login(owner).status == 302
    assert browser.logout().status == 302
    evaluated = 0
    for _ in range(3):  # the reported attack: 3 addresses x 10 guesses (the route's limit)
        statuses = [guess_api(portal, owner, f"guess-{n}", address).status
                    for address in [portal.address()] for n in range(10)]
        assert statuses == [401] * 5 + [429] * 5
        evaluated += statuses.count(401)
    assert evaluated == 15  # of the 30 sent
    fourth = portal.address()
    assert [guess_api(portal, owner, "guess", fourth).status for _ in range(5)] == [401] * 5
    # 20 guesses an hour for the account, whatever the address: the next one is refused.
    r = guess_api(portal, owner, PASSWORD, portal.address())
    assert r.status == 429 and "token" not in r.json
    assert Browser(portal).login(owner).status == 429  # a stranger, the right password
    # The owner, in the browser they signed in with before, is not locked out.
    assert browser.login(owner).status == 302
    assert browser.get("/payments").status == 200
    replayed()


def test_finding_3_ten_bad_passwords_from_one_address_do_not_lock_the_owner_out(portal):
    """The attack: 10 bad passwords from any address, and the victim's right password got a
    429 for the window."""
    owner = email(portal, "owner3")
    attacker = Browser(portal)
    assert attacker.get("/login").status == 200
    statuses = [attacker.post("/login", {"email": owner, "password": f"guess-{n}"}).status
                for n in range(10)]
    assert statuses == [400] * 5 + [429] * 5
    victim = Browser(portal)  # another address, a browser never used for this account
    assert victim.login(owner).status == 302
    replayed()


# --- 4. card testing ----------------------------------------------------------------------

def confirm(portal: Portal, token: str, intent: str, number: str) -> live.Response:
    return portal.api("POST", "/api/payments/confirm",
                      {"paymentIntentId": intent, "paymentMethodId": pm(portal, number)},
                      token=token)


def test_finding_4_card_testing_through_the_api_is_budgeted_and_told_nothing(portal):
    """The attack: 60 declined confirmations a minute, each answered with what is wrong with
    the stolen card. Now: generic_decline for lost/stolen/fraudulent, and the sixth attempt on
    a payment refused before it reaches Stripe."""
    tester = email(portal, "tester")
    token = portal.token(tester)
    order = new_order(portal, "tester", [("vendor1", 2500)])
    intent = open_intent(portal, token, order)
    answers = [confirm(portal, token, intent, n) for n in (STOLEN, FRAUDULENT, DECLINED,
                                                              DECLINED, LOST)]
    assert [(r.status, r.json["error"]["code"]) for r in answers] == [
        (400, "generic_decline")] * 5
    assert {r.json["error"]["message"] for r in answers} == {"Your card was declined."}
    sixth = confirm(portal, token, intent, VISA)  # even a good card
    assert sixth.status == 429, sixth.text
    assert sixth.json["error"]["code"] == "too_many_declines"
    assert "declined too many times" in sixth.json["error"]["message"]
    assert 3000 < int(sixth.headers["Retry-After"]) <= 3600
    charges = [c for c in portal.stripe.v1.charges.list(params={"limit": 100})
               .auto_paging_iter() if c.payment_intent == intent]
    assert len(charges) == 5  # the sixth never reached Stripe
    # The customer sees a generic decline on the payment; an admin sees the real code.
    listed = portal.api("GET", "/api/payments/history", token=token).json["payments"]
    payment_id = next(p["_id"] for p in listed if p["orderId"] == order["id"])
    path = f"/api/payments/payments/{payment_id}"
    assert portal.api("GET", path, token=token).json["payment"]["failureCode"] == \
        "generic_decline"
    admin = portal.token(email(portal, "admin"))
    assert portal.api("GET", path, token=admin).json["payment"]["failureCode"] == "lost_card"
    replayed()


def test_finding_4_saving_declined_cards_through_the_api_is_budgeted(portal):
    """The attack: POST /api/payments/methods took 25 declining cards in a row."""
    token = portal.token(email(portal, "saver"))

    def save(number):
        return portal.api("POST", "/api/payments/methods",
                          {"paymentMethodId": pm(portal, number)}, token=token)

    assert [(r.status, r.json["error"]["code"]) for r in (save(DECLINED) for _ in range(10))] \
        == [(400, "card_declined")] * 10
    r = save(VISA)
    assert r.status == 429 and r.json["error"]["code"] == "too_many_declines", r.text
    assert portal.api("GET", "/api/payments/methods", token=token).json["paymentMethods"] == []
    replayed()


# --- 5. and 6. refund requests --------------------------------------------------------------

def test_finding_5_forty_refund_requests_on_one_payment_record_one(portal):
    """The attack: 40 full-amount requests on one ¥8,580 payment were all accepted in 0.5 s
    (¥343,300 pending)."""
    payment = paid(portal, "buyer", [("vendor1", 8580)], currency="JPY")
    browser = signed_in(portal, "buyer")
    assert browser.get(f"/payments/{payment['id']}").status == 200  # the request form
    statuses = [browser.post(f"/payments/{payment['id']}/refunds",
                             {"amount": "8580", "reason": "customer_request"}).status
                for _ in range(40)]
    assert statuses[0] == 302
    assert set(statuses[1:]) <= {400, 429} and 429 in statuses, statuses
    assert refund_requests(portal, payment["id"]) == [("customer", 8580, "requested")]
    replayed()


def test_finding_6_a_vendor_asks_at_most_for_their_own_items(portal):
    """The attack: vendor2, whose items were €23.70 of €57.20, asked for €52.20."""
    payment = paid(portal, "buyer2", [("vendor1", 3350), ("vendor2", 2370)], currency="EUR")
    assert payment["amount"] == 5720
    vendor2 = signed_in(portal, "vendor2")
    form = vendor2.get(f"/vendor/sales/{payment['id']}/refund")
    assert "Up to <strong>€23.70</strong> can be refunded." in form.text
    r = vendor2.post(f"/payments/{payment['id']}/refunds",
                     {"amount": "52.20", "reason": "damaged"})
    assert r.status == 400 and "You can ask for at most €23.70" in r.text
    assert refund_requests(portal, payment["id"]) == []
    r = vendor2.post(f"/payments/{payment['id']}/refunds",
                     {"amount": "23.70", "reason": "damaged"})
    assert r.status == 302, r.text
    assert refund_requests(portal, payment["id"]) == [("vendor", 2370, "requested")]
    replayed()


# --- 7. log injection and key growth --------------------------------------------------------

FORGED = "CRITICAL approved refund of $999999"
LOG_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def test_finding_7_what_an_attacker_types_never_forges_a_log_line(portal):
    """The attack: a login e-mail with a newline forged a second log line ("CRITICAL ...
    approved refund of $999999"). Replayed with the e-mail (past the login's limits, whose
    refusals are logged), a path and a User-Agent; then the gunicorn output is read."""
    start, sent = len(portal.log.read_bytes()), portal.requests_sent
    hostile = f"victim@security.test\n{FORGED}"
    attacker = Browser(portal)
    assert attacker.get("/login").status == 200
    statuses = [attacker.post("/login", {"email": hostile, "password": "guess"}).status
                for _ in range(31)]
    assert statuses[:5] == [400] * 5 and statuses[-1] == 429  # throttled, then over 30/min
    address = portal.address()
    assert [guess_api(portal, hostile, "guess", address).status
            for _ in range(11)][-1] == 429
    assert portal.request("GET", f"/%0A{FORGED.replace(' ', '%20')}").status == 404
    assert portal.request("GET", "/%E2%80%A8CRITICAL%20forged%0D").status == 404
    # gunicorn 27 refuses a header with an ESC itself (400, and no access log line; a later
    # one may let it through to the access log, which is checked either way); C1 controls
    # (the 8-bit CSI, NEL) get through to the app and its access log.
    esc = portal.request("GET", "/login", headers={"User-Agent": "attacker\x1b[31m red"})
    assert esc.status in (200, 400)
    assert portal.request("GET", "/login", headers={
        "User-Agent": "attacker\x9b31m red \x85 next"}).status == 200
    # Each request's access line is written after its answer: wait for all of them (one
    # ' HTTP/1.1" ' each, however the rest of the line came out).
    expected = portal.requests_sent - sent - (esc.status == 400)
    wait_for(lambda: portal.log.read_bytes()[start:].count(b' HTTP/1.1" ') >= expected,
             timeout=10, what=f"{expected} access log lines", diagnostics=portal.diagnostics)
    written = portal.log.read_bytes()[start:].decode("utf-8")
    lines = written.split("\n")[:-1]
    # Every line is one of gunicorn's or the app's (a timestamp or a client address first):
    # none forged; and none carries a control character a terminal would act on.
    assert [line for line in lines if not re.match(r"\[?[0-9]", line)] == []
    assert [line for line in lines if LOG_CONTROLS.search(line)] == []
    assert f'"GET /\\n{FORGED} HTTP/1.1" 404' in written  # logged, escaped
    # Refusals of the login's own limit are logged: with the address, never the e-mail.
    assert re.search(r"ratelimit 30 per 1 minute \(198\.18\.[0-9.]+\) exceeded at endpoint: "
                     r"auth\.login$", written, re.M)
    assert "victim@security.test" not in written
    replayed()


def test_finding_7_rate_limit_keys_do_not_grow_with_the_email(portal):
    """The attack: a 400 KB e-mail made two 400 KB Redis keys. Keys are a hash of the
    normalised e-mail: short, and without the e-mail in them."""
    local = "k" * 240
    for value in (f"{local}@security.test", "x" * 400_000 + "@security.test"):
        assert guess_api(portal, value, "guess", portal.address()).status in (400, 401)
        page = Browser(portal)
        assert page.get("/login").status == 200
        assert page.post("/login", {"email": value, "password": "guess"}).status == 400
    keys = list(portal.redis.scan_iter(count=1000))
    assert keys, "no rate-limit keys were written to Redis"
    assert max(len(k) for k in keys) < 200, max(keys, key=len)[:200]
    assert not [k for k in keys if b"kkkkkkkk" in k or b"xxxxxxxx" in k]
    # The long (valid) one did reach the account budget: its hash is a key.
    from portal.auth.throttle import account_key

    assert [k for k in keys if account_key(f"{local}@security.test").encode() in k]
    replayed()


# --- 8. the reported 500s -------------------------------------------------------------------

NUL = "\x00"


def test_finding_8_each_reported_500_is_now_a_clear_400(portal):
    """The 16 requests of the report that answered 500 (NUL bytes in every kind of input,
    impossible days, an unknown payout period), each now a 400 saying what is wrong."""
    payment = paid(portal, "buyer3", [("vendor1", 5000)])
    customer, admin = signed_in(portal, "buyer3"), signed_in(portal, "admin")
    vendor = signed_in(portal, "vendor1")
    service = portal.token(email(portal, "service"))
    token = portal.token(email(portal, "buyer3"))
    anonymous = Browser(portal)
    assert anonymous.get("/login").status == 200
    order = {"customerEmail": email(portal, "buyer3"), "currency": "USD",
             "items": [{"vendorEmail": email(portal, "vendor1"), "description": "Lamp",
                        "quantity": 1, "unitAmount": 1999}]}
    item = order["items"][0]
    refunds = f"/payments/{payment['id']}/refunds"
    control = "control characters"
    results = []

    def api(method, path, body=None, *, bearer):
        r = portal.api(method, path, body, token=bearer)
        results.append((f"{method} {path}", r))
        return r

    def page(browser, method, path, form=None):
        r = browser.request(method, path, form)
        results.append((f"{method} {path}", r))
        return r

    assert control in page(anonymous, "POST", "/login",
                           {"email": f"carol{NUL}@security.test", "password": "x"}).text
    orders_before = portal.db.scalar("SELECT count(*) FROM orders")
    for body in ({**order, "customerEmail": f"buyer3{NUL}@security.test"},
                 {**order, "items": [{**item, "description": f"La{NUL}mp"}]},
                 {**order, "items": [{**item, "description": "La\x07mp"}]},
                 {**order, "items": [{**item, "vendorEmail": f"vendor1{NUL}@security.test"}]}):
        assert api("POST", "/api/orders", body, bearer=service).json["error"]["code"] == \
            "control_characters"
    assert portal.db.scalar("SELECT count(*) FROM orders") == orders_before
    assert api("POST", "/api/auth/token", {"email": f"a{NUL}b@security.test",
                                           "password": "x"}, bearer=None).status == 400
    assert api("GET", "/api/payments/payments/a%00b", bearer=token).json["error"]["code"] == \
        "control_characters"
    assert control in page(customer, "POST", refunds, {
        "amount": "10", "reason": "customer_request", "notes": f"a{NUL}b"}).text
    assert refund_requests(portal, payment["id"]) == []
    assert customer.post(refunds, {"amount": "10", "reason": "customer_request"}).status == 302
    request_id = portal.db.scalar("SELECT id::text FROM refund_requests WHERE payment_id = %s",
                                  (payment["id"],))
    r = page(admin, "POST", f"/admin/refunds/{request_id}/reject", {"note": f"no{NUL}pe"})
    assert r.headers["X-Error-Message"].startswith("The request contains control characters")
    assert refund_requests(portal, payment["id"]) == [("customer", 1000, "requested")]
    for path in ("/cards/pm_a%00b/remove", "/cards/pm_a%1Bb/default"):
        assert control in page(customer, "POST", path).text
    assert control in page(admin, "GET", "/admin/events?type=payment%00").text
    assert control in page(admin, "GET", "/admin/events/evt_%00").text
    assert "2000-01-01 to 2100-12-31" in page(
        vendor, "GET", "/vendor/statement.csv?from=0001-01-01&to=9999-12-31").text
    for form in ({"period": "daily"}, {"until": "9999-12-31"}):
        assert "The period must be weekly or monthly" in page(
            admin, "POST", "/admin/payouts/run", form).text
    assert len(results) == 16
    assert [(what, r.status) for what, r in results if r.status != 400] == []
    for what, r in results:
        if what.split(" ", 1)[1].startswith("/api/"):
            assert set(r.json) == {"success", "error"} and r.json["success"] is False, what
    assert "Traceback" not in portal.log_text()
    count("reported 500s replayed", len(results))
    replayed()


# --- 9. published defaults ------------------------------------------------------------------

def placeholders() -> dict[str, str]:
    """The secrets .env.example ships as placeholders (REPLACE_ME)."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, _, value = line.partition("=")
        if "REPLACE_ME" in value and not line.startswith("#"):
            found[name] = value
    return found


def test_finding_9_production_refuses_published_defaults_at_start_up(portal):
    """Each published value as a production secret: `flask --app wsgi` exits non-zero with one
    line, `configuration error: ...`, naming the variable (all started at once)."""
    cases = [  # (what the line names, the settings changed)
        ("SECRET_KEY is a published default", {"SECRET_KEY": DEV_SECRET_KEY}),
        ("JWT_SECRET is a published default", {"JWT_SECRET": DEV_SECRET_KEY}),
        ("STRIPE_WEBHOOK_SECRET is a published default",
         {"STRIPE_WEBHOOK_SECRET": SANDBOX_WEBHOOK_SECRET}),
        ("JWT_SECRET must differ from SECRET_KEY", {"JWT_SECRET": live.SECRETS["SECRET_KEY"]}),
        *((f"{name} is still a placeholder", {name: value})
          for name, value in placeholders().items()),
    ]
    assert len(cases) >= 6  # .env.example has its placeholders
    started = [
        (what, subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "routes"],
                                cwd=ROOT, env={**live.clean_environ(), **portal.env, **change},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for what, change in cases]
    for what, proc in started:
        out, err = proc.communicate(timeout=60)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode != 0, (what, out[:300])
        assert len(lines) == 1 and lines[0].startswith("configuration error: "), (what, err)
        assert what in lines[0], (what, lines[0])
        assert out == ""
    # The same settings with the suite's own secrets do start (the portal of this module).
    ok = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "routes"], cwd=ROOT,
                        env={**live.clean_environ(), **portal.env}, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and "/api/auth/token" in ok.stdout, ok.stderr
    count("start-ups with published secrets refused", len(cases))
    replayed()


# --- 10. token lifetime ---------------------------------------------------------------------

def test_finding_10_a_signed_token_living_ten_years_is_refused(portal):
    user = portal.users["buyer4"]
    now = datetime.now(UTC)

    def token(**claims):
        base = {"sub": user["id"], "email": user["email"], "role": user["role"],
                "iat": now, "exp": now + timedelta(hours=1), "iss": "shopsphere-payments",
                "aud": "shopsphere-payments"}
        body = {k: v for k, v in {**base, **claims}.items() if v is not None}
        return jwt.encode(body, live.SECRETS["JWT_SECRET"], algorithm="HS256")

    history = "/api/payments/history"
    assert portal.api("GET", history, token=token()).status == 200  # a normal one works
    for bad in (token(exp=now + timedelta(days=3650)), token(iat=None),
                token(iat=now + timedelta(days=3649), exp=now + timedelta(days=3650))):
        r = portal.api("GET", history, token=bad)
        assert r.status == 401, r.text
        assert r.json["error"]["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    replayed()


# --- 11. the smaller ones -------------------------------------------------------------------

def test_finding_11_a_forged_host_is_refused_and_urls_name_server_name(portal):
    forged = [portal.request("GET", "/login", host="evil.example"),
              portal.request("GET", "/login", host=f"evil.example:{portal.port}"),
              portal.request("GET", "/login", headers={"X-Forwarded-Host": "evil.example"}),
              portal.request("GET", "/api/payments/openapi.json", host="evil.example")]
    assert [r.status for r in forged] == [400] * 4
    assert "evil.example" not in "".join(r.text for r in forged)
    # The Stripe return URL of a payment asked for through another Host (the trusted name on
    # another port) is built with SERVER_NAME.
    token = portal.token(email(portal, "buyer4"))
    order = new_order(portal, "buyer4", [("vendor1", 1200)])
    intent = open_intent(portal, token, order)
    r = portal.request("POST", "/api/payments/confirm", host="127.0.0.1:1", body=json.dumps(
        {"paymentIntentId": intent, "paymentMethodId": pm(portal, THREE_D_SECURE)}),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    assert r.status == 402, r.text
    return_url = portal.stripe.v1.payment_intents.retrieve(intent).next_action \
        .redirect_to_url.return_url
    assert return_url == f"https://{portal.host}/checkout/{order['id']}/complete"
    replayed()


def test_finding_11_the_api_document_names_server_name_not_the_host_header(portal):
    """The OpenAPI document's server URL (an absolute URL clients call) is SERVER_NAME's,
    whatever Host the request came with."""
    for host in (portal.host, "127.0.0.1:1", "127.0.0.1"):
        r = portal.request("GET", "/api/payments/openapi.json", host=host)
        assert r.status == 200
        assert r.json["servers"] == [{"url": portal.origin}], host
    replayed()


def test_finding_11_production_headers_and_cookies(portal):
    browser = Browser(portal)
    r = browser.get("/login")
    assert r.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    r = browser.post("/login", {"email": email(portal, "buyer4"), "password": PASSWORD})
    assert r.status == 302
    session = [c for c in r.cookies() if c.startswith("__Host-session=")]
    assert len(session) == 1, r.cookies()
    attributes = {a.strip().split("=")[0].lower() for a in session[0].split(";")[1:]}
    assert {"secure", "httponly", "path"} <= attributes and "domain" not in attributes
    assert "Path=/;" in session[0] + ";"
    assert not [c for c in r.cookies() if c.startswith("session=")]
    replayed()


def test_finding_11_saved_cards_are_for_customers_only(portal):
    vendor = signed_in(portal, "vendor2")
    assert [vendor.get(path).status for path in ("/cards", "/cards/new")] == [403, 403]
    customers = portal.stripe.v1.customers.list(params={"limit": 100}).data
    assert not [c for c in customers if c.email == email(portal, "vendor2")]
    replayed()


def test_finding_11_the_event_filter_takes_percent_and_underscore_literally(portal):
    kinds = ["payment_intent.succeeded", "payout.paid", "charge.refunded"]
    for n, kind in enumerate(kinds):
        body = event_body(f"evt_security_{n}_{time.time_ns()}", kind, {"id": f"obj_{n}"})
        r = portal.request("POST", "/api/payments/webhook", body=body, headers={
            "Content-Type": "application/json",
            "Stripe-Signature": sign(body, live.SECRETS["STRIPE_WEBHOOK_SECRET"])})
        assert r.status == 200, r.text
    admin = signed_in(portal, "admin")

    def shown(query):
        text = admin.get(f"/admin/events?{query}").text
        return {k for k in kinds if k in text}

    assert shown("type=pay*") == {"payment_intent.succeeded", "payout.paid"}
    assert shown("type=%25") == set()
    assert shown("type=pay_") == set()
    assert shown("type=payment_") == {"payment_intent.succeeded"}
    replayed()


def test_finding_11_refund_amounts_are_plain_decimals_only(portal):
    payment = paid(portal, "buyer4", [("vendor1", 10000)])
    customer = signed_in(portal, "buyer4")
    path = f"/payments/{payment['id']}/refunds"
    for typed in ("1_0", "١٠", "1e1"):
        r = customer.post(path, {"amount": typed, "reason": "customer_request"})
        assert r.status == 400 and "is not a number" in r.text, typed
    assert refund_requests(portal, payment["id"]) == []
    assert customer.post(path, {"amount": "10", "reason": "customer_request"}).status == 302
    assert refund_requests(portal, payment["id"]) == [("customer", 1000, "requested")]
    replayed()


def test_finding_11_another_customers_card_is_as_unknown_as_no_card(portal):
    theirs = pm(portal)
    owner = portal.token(email(portal, "buyer2"))
    assert portal.api("POST", "/api/payments/methods", {"paymentMethodId": theirs},
                      token=owner).status == 201
    mine = portal.token(email(portal, "buyer3"))
    foreign = portal.api("POST", "/api/payments/methods", {"paymentMethodId": theirs},
                         token=mine)
    unknown = portal.api("POST", "/api/payments/methods", {"paymentMethodId": "pm_nosuch"},
                         token=mine)
    assert (foreign.status, foreign.json) == (unknown.status, unknown.json)
    assert foreign.status == 404
    replayed()
