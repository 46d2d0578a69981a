"""The published OpenAPI document against real responses, on every endpoint (issue 16).

- Every route of the app under /api/ is an operation of /api/payments/openapi.json and every
  operation is a route (the two routes that serve the document itself aside).
- ``CASES`` reaches each documented status of each operation (500 aside: no request should
  reach it) with a real request, on PostgreSQL and the Stripe sandbox, and checks the response
  against the document (tests/integration/api_support.conforms: a documented status, a body
  valid against that status's schema, the error format, Retry-After on 429 and 503);
  ``test_every_documented_status_is_reached`` holds CASES to the document, so a status added
  to an operation needs its case here.
- A Stripe outage answers 503 with Retry-After and code processor_unavailable on every
  endpoint that calls Stripe (was 500 on create-intent, confirm and the card endpoints),
  except the refund, which is queued and answered 200 pending. Stripe "down" is the real SDK
  talking to a closed port (``stripe_down``): a connection error, whichever Stripe call the
  endpoint makes.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
import stripe

from portal.api.openapi import OPERATIONS
from portal.errors import Unavailable
from portal.extensions import db
from portal.ledger.models import Payment
from portal.payments import declines
from portal.refunds.models import RefundRequest
from tests.helpers import PASSWORD, bearer, event_body, make_order, make_user, sign
from tests.integration.api_support import (
    assert_error,
    card_pm,
    conforms,
    dumps,
    intent_body,
    paid,
)

VISA_3DS = "4000002760003184"
TOO_LARGE = b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}'
# Routes under /api/ that are not operations: they serve the document itself.
NOT_OPERATIONS = {("GET", "/api/payments/openapi.json"), ("GET", "/api/payments/docs")}


# --- the world the cases run in ---------------------------------------------------------------

@dataclass
class World:
    app: object
    client: object
    api: object
    stripe_client: object
    monkeypatch: object
    users: dict
    order: object  # the customer's, 299.99 USD, unpaid

    def call(self, method: str, path: str, user: str | None = None, body=None,
             headers: dict | None = None, raw: bytes | None = None):
        all_headers = {**(bearer(self.users[user]) if user else {}), **(headers or {})}
        data = raw if raw is not None else (None if body is None else dumps(body))
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        return self.client.open(path, method=method, data=data, headers=all_headers)

    def intent(self) -> dict:
        """The customer's order checked out: its `paymentIntent` object."""
        r = self.call("POST", "/api/payments/create-intent", "customer", intent_body(self.order))
        assert r.status_code == 200, r.json
        return r.json["paymentIntent"]

    def saved(self, user: str = "customer", number: str = "4242424242424242") -> str:
        """A card saved through the API: its PaymentMethod id."""
        pm = card_pm(self.stripe_client, number)
        r = self.call("POST", "/api/payments/methods", user, {"paymentMethodId": pm})
        assert r.status_code == 201, r.json
        return pm

    def declines_spent(self, user: str = "customer") -> None:
        """The user's card-testing budget spent (10 declines an hour)."""
        with self.app.test_request_context(environ_base={"REMOTE_ADDR": "127.0.0.1"}):
            for _ in range(declines.PER_CUSTOMER.amount):
                declines.declined(self.users[user].id)

    def stripe_down(self) -> None:
        """Stripe unreachable from now on: the gateway's client talks to a closed port."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # free, and nobody listens once it is closed
        dead = stripe.StripeClient("sk_test_portal", max_network_retries=0,
                                   base_addresses={"api": f"http://127.0.0.1:{port}"})
        self.monkeypatch.setitem(self.app.extensions, "stripe_client", dead)


@pytest.fixture
def world(app, client, api, stripe_client, monkeypatch, shop, order):
    users = {**shop, "service": make_user("orders-svc@example.test", "service")}
    return World(app, client, api, stripe_client, monkeypatch, users, order)


# --- request builders used by several cases ---------------------------------------------------

def no_token(method: str, path: str, body=None) -> Callable:
    return lambda w: w.call(method, path, body=body)


def as_user(user: str, method: str, path: str, body=None) -> Callable:
    return lambda w: w.call(method, path, user, body)


def too_large(method: str, path: str) -> Callable:
    return lambda w: w.call(method, path, "customer", raw=TOO_LARGE)


def control_character(method: str, path_with_nul: str) -> Callable:
    return lambda w: w.call(method, path_with_nul, "customer")


def key_reused(path: str, user: str, first: Callable, second: Callable) -> Callable:
    """The same Idempotency-Key with another body: 409."""
    def run(w):
        key = {"Idempotency-Key": f"reused-{uuid.uuid4()}"}
        assert w.call("POST", path, user, first(w), key).status_code < 500
        return w.call("POST", path, user, second(w), key)
    return run


def order_body(w) -> dict:
    return {"customerEmail": w.users["customer"].email, "currency": "USD",
            "items": [{"vendorEmail": w.users["vendor"].email, "description": "Lamp",
                       "quantity": 1, "unitAmount": 1999}]}


def webhook(w, signature: str | None = None):
    body = event_body(f"evt_{uuid.uuid4().hex}", "customer.created", {"id": "cus_contract"})
    secret = w.app.config["STRIPE_WEBHOOK_SECRET"]
    return w.call("POST", "/api/payments/webhook", raw=body,
                  headers={"Stripe-Signature": signature or sign(body, secret)})


def webhook_storage_down(w):
    def down(event):
        raise RuntimeError("PostgreSQL unreachable")

    w.monkeypatch.setattr("portal.api.views.receive_event", down)
    return webhook(w)


def token_budget_spent(w):
    body = {"email": w.users["customer"].email, "password": "wrong-password"}
    for _ in range(5):
        assert w.call("POST", "/api/auth/token", body=body).status_code == 401
    return w.call("POST", "/api/auth/token", body=body)


def intents_rate_limited(w):
    unknown = {"orderId": str(uuid.uuid4()), "amount": 1, "currency": "USD"}
    for _ in range(60):
        w.call("POST", "/api/payments/create-intent", "customer", unknown)
    return w.call("POST", "/api/payments/create-intent", "customer", unknown)


def create_intent_down(w):
    w.stripe_down()
    return w.call("POST", "/api/payments/create-intent", "customer", intent_body(w.order))


def confirm_body(w, number: str = "4242424242424242", intent: dict | None = None) -> dict:
    intent = intent or w.intent()
    return {"paymentIntentId": intent["id"], "paymentMethodId": card_pm(w.stripe_client, number)}


def confirm_with(build: Callable) -> Callable:
    return lambda w: w.call("POST", "/api/payments/confirm", "customer", build(w))


def confirm_key_reused(w):
    intent = w.intent()
    body = lambda w: confirm_body(w, intent=intent)  # noqa: E731 - another card each time
    return key_reused("/api/payments/confirm", "customer", body, body)(w)


def confirm_others_card(w):
    theirs = w.saved("other")
    return w.call("POST", "/api/payments/confirm", "customer",
                  {"paymentIntentId": w.intent()["id"], "paymentMethodId": theirs})


def confirm_budget_spent(w):
    body = confirm_body(w)
    w.declines_spent()
    return w.call("POST", "/api/payments/confirm", "customer", body)


def confirm_down(w):
    body = confirm_body(w)
    w.stripe_down()
    return w.call("POST", "/api/payments/confirm", "customer", body)


def a_payment(w):
    w.intent()
    payment_id = db.session.scalar(sa.select(Payment.id).where(Payment.order_id == w.order.id))
    return w.call("GET", f"/api/payments/payments/{payment_id}", "customer")


def listed(w):
    w.saved()
    return w.call("GET", "/api/payments/methods", "customer")


def add_method(pm: Callable, user: str = "customer") -> Callable:
    return lambda w: w.call("POST", "/api/payments/methods", user, {"paymentMethodId": pm(w)})


def add_saved_twice(w):
    return w.call("POST", "/api/payments/methods", "customer", {"paymentMethodId": w.saved()})


def add_budget_spent(w):
    w.declines_spent()
    return w.call("POST", "/api/payments/methods", "customer",
                  {"paymentMethodId": card_pm(w.stripe_client)})


def add_down(w):
    pm = card_pm(w.stripe_client)
    w.stripe_down()
    return w.call("POST", "/api/payments/methods", "customer", {"paymentMethodId": pm})


def on_saved(method: str, suffix: str = "", down: bool = False) -> Callable:
    """DELETE or PUT .../default of a card the customer saved (Stripe down after saving)."""
    def run(w):
        pm = w.saved()
        if down:
            w.stripe_down()
        return w.call(method, f"/api/payments/methods/{pm}{suffix}", "customer")
    return run


def refund_of(amount: int) -> Callable:
    def run(w):
        payment = paid(w.api, w.stripe_client, w.users["customer"], w.order)
        return w.call("POST", "/api/payments/refund", "admin",
                      {"paymentId": payment["id"], "amount": amount})
    return run


def refund_key_reused(w):
    payment = paid(w.api, w.stripe_client, w.users["customer"], w.order)
    return key_reused("/api/payments/refund", "admin",
                      lambda w: {"paymentId": payment["id"], "amount": 100},
                      lambda w: {"paymentId": payment["id"], "amount": 200})(w)


# --- every documented status of every operation ------------------------------------------------

TOKEN, ORDERS, ORDER = "POST /api/auth/token", "POST /api/orders", "GET /api/orders/{orderId}"
WEBHOOK, INTENT = "POST /api/payments/webhook", "POST /api/payments/create-intent"
CONFIRM, PAYMENT = "POST /api/payments/confirm", "GET /api/payments/payments/{paymentId}"
HISTORY, METHODS = "GET /api/payments/history", "GET /api/payments/methods"
ADD, REMOVE = "POST /api/payments/methods", "DELETE /api/payments/methods/{paymentMethodId}"
DEFAULT = "PUT /api/payments/methods/{paymentMethodId}/default"
REFUND, PAYOUTS = "POST /api/payments/refund", "GET /api/payments/vendor/payouts"
ANALYTICS = "GET /api/payments/analytics"
_INTENT = INTENT.split()[1]

CASES: list[tuple[str, int, str, Callable]] = [
    (TOKEN, 200, "password", lambda w: w.call("POST", "/api/auth/token", body={
        "email": w.users["customer"].email, "password": PASSWORD})),
    (TOKEN, 400, "no password", lambda w: w.call("POST", "/api/auth/token",
                                                 body={"email": "a@b.test"})),
    (TOKEN, 401, "wrong password", lambda w: w.call("POST", "/api/auth/token", body={
        "email": w.users["customer"].email, "password": "wrong-password"})),
    (TOKEN, 413, "too large", too_large("POST", "/api/auth/token")),
    (TOKEN, 429, "budget spent", token_budget_spent),

    (ORDERS, 201, "service", lambda w: w.call("POST", "/api/orders", "service", order_body(w))),
    (ORDERS, 400, "unknown customer", lambda w: w.call(
        "POST", "/api/orders", "service", {**order_body(w), "customerEmail": "x@y.test"})),
    (ORDERS, 401, "no token", lambda w: no_token("POST", "/api/orders", order_body(w))(w)),
    (ORDERS, 403, "customer", lambda w: w.call("POST", "/api/orders", "customer",
                                               order_body(w))),
    (ORDERS, 413, "too large", too_large("POST", "/api/orders")),

    (ORDER, 200, "own", lambda w: w.call("GET", f"/api/orders/{w.order.id}", "customer")),
    (ORDER, 400, "NUL", control_character("GET", "/api/orders/%00")),
    (ORDER, 401, "no token", lambda w: w.call("GET", f"/api/orders/{w.order.id}")),
    (ORDER, 404, "another's", lambda w: w.call("GET", f"/api/orders/{w.order.id}", "other")),

    (WEBHOOK, 200, "signed", webhook),
    (WEBHOOK, 400, "bad signature", lambda w: webhook(w, "t=1,v1=00")),
    (WEBHOOK, 413, "too large", too_large("POST", "/api/payments/webhook")),
    (WEBHOOK, 503, "storage down", webhook_storage_down),

    (INTENT, 200, "order", lambda w: w.call("POST", _INTENT, "customer", intent_body(w.order))),
    (INTENT, 400, "amount", lambda w: w.call("POST", _INTENT, "customer",
                                             intent_body(w.order, amount=1))),
    (INTENT, 401, "no token", lambda w: w.call("POST", _INTENT, body=intent_body(w.order))),
    (INTENT, 404, "another's order", lambda w: w.call("POST", _INTENT, "other",
                                                      intent_body(w.order))),
    (INTENT, 409, "key reused", key_reused(
        _INTENT, "customer", lambda w: intent_body(w.order),
        lambda w: intent_body(make_order(w.users["customer"], w.users["vendor"])))),
    (INTENT, 413, "too large", too_large("POST", _INTENT)),
    (INTENT, 429, "rate limit", intents_rate_limited),
    (INTENT, 503, "Stripe down", create_intent_down),

    (CONFIRM, 200, "visa", confirm_with(confirm_body)),
    (CONFIRM, 400, "unknown intent", lambda w: w.call("POST", "/api/payments/confirm",
                                                      "customer", {
        "paymentIntentId": "pi_unknown", "paymentMethodId": "pm_unknown"})),
    (CONFIRM, 401, "no token", no_token("POST", "/api/payments/confirm", {
        "paymentIntentId": "pi_1", "paymentMethodId": "pm_1"})),
    (CONFIRM, 402, "3-D Secure", confirm_with(lambda w: confirm_body(w, VISA_3DS))),
    (CONFIRM, 404, "another's card", confirm_others_card),
    (CONFIRM, 409, "key reused", confirm_key_reused),
    (CONFIRM, 413, "too large", too_large("POST", "/api/payments/confirm")),
    (CONFIRM, 429, "declines", confirm_budget_spent),
    (CONFIRM, 503, "Stripe down", confirm_down),

    (PAYMENT, 200, "own", a_payment),
    (PAYMENT, 400, "NUL", control_character("GET", "/api/payments/payments/%00")),
    (PAYMENT, 401, "no token", no_token("GET", f"/api/payments/payments/{uuid.uuid4()}")),
    (PAYMENT, 404, "unknown", as_user("customer", "GET",
                                      f"/api/payments/payments/{uuid.uuid4()}")),

    (HISTORY, 200, "own", as_user("customer", "GET", "/api/payments/history")),
    (HISTORY, 400, "page 0", as_user("customer", "GET", "/api/payments/history?page=0")),
    (HISTORY, 401, "no token", no_token("GET", "/api/payments/history")),

    (METHODS, 200, "a saved card", listed),
    (METHODS, 401, "no token", no_token("GET", "/api/payments/methods")),
    (METHODS, 403, "vendor", as_user("vendor", "GET", "/api/payments/methods")),

    (ADD, 201, "visa", add_method(lambda w: card_pm(w.stripe_client))),
    (ADD, 400, "not a pm id", add_method(lambda w: "card_123")),
    (ADD, 401, "no token", no_token("POST", "/api/payments/methods",
                                    {"paymentMethodId": "pm_1"})),
    (ADD, 403, "vendor", add_method(lambda w: "pm_1", "vendor")),
    (ADD, 404, "unknown", add_method(lambda w: "pm_doesnotexist")),
    (ADD, 409, "saved twice", add_saved_twice),
    (ADD, 413, "too large", too_large("POST", "/api/payments/methods")),
    (ADD, 429, "declines", add_budget_spent),
    (ADD, 503, "Stripe down", add_down),

    (REMOVE, 200, "saved", on_saved("DELETE")),
    (REMOVE, 400, "NUL", control_character("DELETE", "/api/payments/methods/%00")),
    (REMOVE, 401, "no token", no_token("DELETE", "/api/payments/methods/pm_1")),
    (REMOVE, 403, "vendor", as_user("vendor", "DELETE", "/api/payments/methods/pm_1")),
    (REMOVE, 404, "unknown", as_user("customer", "DELETE", "/api/payments/methods/pm_1")),
    (REMOVE, 503, "Stripe down", on_saved("DELETE", down=True)),

    (DEFAULT, 200, "saved", on_saved("PUT", "/default")),
    (DEFAULT, 400, "NUL", control_character("PUT", "/api/payments/methods/%00/default")),
    (DEFAULT, 401, "no token", no_token("PUT", "/api/payments/methods/pm_1/default")),
    (DEFAULT, 403, "vendor", as_user("vendor", "PUT", "/api/payments/methods/pm_1/default")),
    (DEFAULT, 404, "unknown", as_user("customer", "PUT", "/api/payments/methods/pm_1/default")),
    (DEFAULT, 503, "Stripe down", on_saved("PUT", "/default", down=True)),

    (REFUND, 200, "part", refund_of(2500)),
    (REFUND, 400, "too much", refund_of(30000)),
    (REFUND, 401, "no token", no_token("POST", "/api/payments/refund",
                                       {"paymentId": str(uuid.uuid4())})),
    (REFUND, 403, "customer", as_user("customer", "POST", "/api/payments/refund",
                                      {"paymentId": str(uuid.uuid4())})),
    (REFUND, 404, "unknown", as_user("admin", "POST", "/api/payments/refund",
                                     {"paymentId": str(uuid.uuid4())})),
    (REFUND, 409, "key reused", refund_key_reused),
    (REFUND, 413, "too large", too_large("POST", "/api/payments/refund")),

    (PAYOUTS, 200, "vendor", as_user("vendor", "GET", "/api/payments/vendor/payouts")),
    (PAYOUTS, 400, "page 0", as_user("vendor", "GET", "/api/payments/vendor/payouts?page=0")),
    (PAYOUTS, 401, "no token", no_token("GET", "/api/payments/vendor/payouts")),
    (PAYOUTS, 403, "customer", as_user("customer", "GET", "/api/payments/vendor/payouts")),

    (ANALYTICS, 200, "service", as_user("service", "GET", "/api/payments/analytics")),
    (ANALYTICS, 400, "no such day", as_user("admin", "GET",
                                            "/api/payments/analytics?from=2026-02-30&to=2026-03-01")),
    (ANALYTICS, 401, "no token", no_token("GET", "/api/payments/analytics")),
    (ANALYTICS, 403, "vendor", as_user("vendor", "GET", "/api/payments/analytics")),
]


@pytest.mark.parametrize(("operation", "status", "build"),
                         [(op, status, build) for op, status, _, build in CASES],
                         ids=[f"{op} {status} {label}" for op, status, label, _ in CASES])
def test_the_response_is_the_documented_one(world, spec, operation, status, build):
    method, path = operation.split()
    r = build(world)
    assert r.status_code == status, r.json
    conforms(spec, path, method.lower(), r)
    if status == 401 and operation != TOKEN:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_documented_status_is_reached(spec):
    documented = {(f"{method.upper()} {path}", int(status))
                  for path, item in spec["paths"].items() for method, op in item.items()
                  for status in op["responses"] if status != "500"}
    assert {(op, status) for op, status, _, _ in CASES} == documented


def test_every_api_route_is_an_operation_of_the_document_and_back(app, spec):
    routes = {(method, rule.rule.replace("<", "{").replace(">", "}"))
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")
              for method in rule.methods - {"HEAD", "OPTIONS"}} - NOT_OPERATIONS
    documented = {(method.upper(), path) for path, item in spec["paths"].items()
                  for method in item}
    assert routes == documented
    assert {(op.method, op.path) for op in OPERATIONS} == documented


# --- a Stripe outage --------------------------------------------------------------------------

OUTAGES = [(op, build) for op, status, _, build in CASES if status == 503 and op != WEBHOOK]


@pytest.mark.parametrize(("operation", "build"), OUTAGES, ids=[op for op, _ in OUTAGES])
def test_a_stripe_outage_is_503_with_retry_after(world, spec, operation, build):
    r = build(world)
    assert_error(r, 503, "processor_unavailable")
    # At least the gateway's 30 s (a rate-limited route may say its window's reset, if later).
    assert int(r.headers["Retry-After"]) >= Unavailable.retry_after
    method, path = operation.split()
    conforms(spec, path, method.lower(), r)


def test_every_endpoint_that_calls_stripe_documents_503(spec):
    assert {op for op, _ in OUTAGES} == {INTENT, CONFIRM, ADD, REMOVE, DEFAULT}
    for op in (INTENT, CONFIRM, ADD, REMOVE, DEFAULT):
        method, path = op.split()
        assert "Retry-After" in spec["paths"][path][method.lower()]["responses"]["503"]["headers"]


def test_an_outage_answer_is_not_replayed_the_same_key_works_after_it(world):
    key = {"Idempotency-Key": "during-the-outage"}
    body = intent_body(world.order)
    world.stripe_down()
    assert world.call("POST", _INTENT, "customer", body, key).status_code == 503
    world.monkeypatch.undo()  # Stripe is back
    r = world.call("POST", _INTENT, "customer", body, key)
    assert r.status_code == 200 and "Idempotent-Replayed" not in r.headers


def test_a_refund_during_an_outage_is_accepted_pending_and_sent_later(world, spec):
    payment = paid(world.api, world.stripe_client, world.users["customer"], world.order)
    world.stripe_down()
    r = world.call("POST", "/api/payments/refund", "admin",
                   {"paymentId": payment["id"], "amount": 2500})
    assert r.status_code == 200, r.json
    conforms(spec, "/api/payments/refund", "post", r)
    refund = r.json["refund"]
    assert (refund["status"], refund["amount"]) == ("pending", 2500)
    request = db.session.get(RefundRequest, uuid.UUID(refund["id"]))
    assert request.status in ("approved", "processing")  # a retry is queued


# --- refusals under an Idempotency-Key ----------------------------------------------------------

def test_a_decline_under_an_idempotency_key_is_replayed_not_tried_again(world, stripe_client):
    """The operation answers a refusal itself (openapi._answered), so the key stores it: a
    client retrying the declined confirmation gets the decline again, the card is not tried a
    second time (nor counted twice against the decline budget)."""
    body = confirm_body(world, "4000000000000341")  # declined
    key = {"Idempotency-Key": "declined-once"}
    first = world.call("POST", "/api/payments/confirm", "customer", body, key)
    assert_error(first, 400, "generic_decline")
    again = world.call("POST", "/api/payments/confirm", "customer", body, key)
    assert (again.status_code, again.json) == (400, first.json)
    assert again.headers["Idempotent-Replayed"] == "true"
    charges = [c for c in stripe_client.v1.charges.list(params={"limit": 100}).auto_paging_iter()
               if c.payment_intent == body["paymentIntentId"]]
    assert len(charges) == 1
