"""POST /api/payments/webhook: verified, stored once, processed into the payment's state."""

import json
import time

import pytest
import sqlalchemy as sa

from portal.auth.models import User
from portal.extensions import db
from portal.ledger.models import Payment
from portal.webhooks.models import StripeEvent
from tests.helpers import committed, event_body, login, make_order, make_user, sign

SECRET = "whsec_portal_tests"


def post_event(client, body: bytes, secret: str = SECRET, timestamp=None):
    return client.post("/api/payments/webhook", data=body,
                       headers={"Stripe-Signature": sign(body, secret, timestamp),
                                "Content-Type": "application/json"})


def events() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(StripeEvent))


@pytest.mark.parametrize(
    "how",
    ["tampered body", "wrong secret", "stale timestamp", "future timestamp", "no header",
     "not json"],
)
def test_bad_signature_is_400_and_stores_nothing(client, how, caplog):
    body = event_body("evt_bad", "payment_intent.succeeded", {"id": "pi_x"})
    headers = {"Stripe-Signature": sign(body, SECRET)}
    if how == "tampered body":
        body = body.replace(b"pi_x", b"pi_y")
    elif how == "wrong secret":
        headers["Stripe-Signature"] = sign(body, "whsec_other")
    elif how == "stale timestamp":
        headers["Stripe-Signature"] = sign(body, SECRET, int(time.time()) - 301)
    elif how == "future timestamp":
        headers["Stripe-Signature"] = sign(body, SECRET, int(time.time()) + 400)
    elif how == "no header":
        headers = {}
    else:
        body = b"not json at all"
        headers["Stripe-Signature"] = sign(body, SECRET)
    with caplog.at_level("WARNING", logger="portal.security"):
        r = client.post("/api/payments/webhook", data=body, headers=headers)
    assert r.status_code == 400
    assert r.json["success"] is False
    assert events() == 0
    # A security event: who sent it and why it was refused, never what it carried.
    [line] = [r.getMessage() for r in caplog.records if r.name == "portal.security"]
    assert line.startswith("webhook refused from 127.0.0.1: ")
    assert "pi_" not in line and "evt_bad" not in line and "not json" not in line


def test_events_of_connected_accounts_are_signed_with_the_connect_endpoints_secret(
        client, stripe_client, people):
    """Stripe sends a connected account's events (account.updated) to the platform's Connect
    endpoint, which has its own signing secret: both secrets are accepted, no other."""
    from portal.ledger.models import VendorAccount

    account = stripe_client.v1.accounts.create(params={
        "controller": {"stripe_dashboard": {"type": "express"}},
        "capabilities": {"transfers": {"requested": True}}})
    row = VendorAccount(vendor_id=people["vendor"].id, stripe_account_id=account.id)
    db.session.add(row)
    db.session.commit()
    body = json.dumps({"id": "evt_connect_1", "object": "event", "type": "account.updated",
                       "account": account.id, "created": int(time.time()),
                       "data": {"object": account.to_dict()}}).encode()
    assert post_event(client, body, "whsec_other").status_code == 400
    assert post_event(client, body, "whsec_portal_tests_connect").status_code == 200
    assert db.session.get(StripeEvent, "evt_connect_1").status == "processed"


@pytest.fixture
def paid_intent(client, stripe_client):
    """An order checked out by its customer and paid with 4242 directly at the sandbox."""
    customer = make_user("payer@example.test")
    vendor = make_user("seller@example.test", "vendor")
    order = make_order(customer, vendor, amounts=(2500,), tax=200)
    login(client, customer.email)
    assert client.get(f"/checkout/{order.id}").status_code == 200
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))
    pi = stripe_client.v1.payment_intents.confirm(
        payment.stripe_payment_intent_id, params={"payment_method": card_pm(stripe_client)}
    )
    assert pi.status == "succeeded"
    return payment, pi


def card_pm(stripe_client, number="4242424242424242") -> str:
    return stripe_client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    }).id


def test_event_is_stored_once_and_settles_the_payment(client, paid_intent):
    payment, pi = paid_intent
    assert payment.status == "requires_payment_method"  # nothing told us of the payment yet
    body = event_body("evt_1", "payment_intent.succeeded", pi.to_dict())
    r = post_event(client, body)
    assert r.status_code == 200 and r.json == {"received": True}
    db.session.expire_all()
    event = db.session.get(StripeEvent, "evt_1")
    assert event.status == "processed" and event.object_id == pi.id
    assert event.type == "payment_intent.succeeded" and event.processed_at is not None
    assert payment.status == "succeeded" and payment.order.status == "paid"
    assert (payment.card_brand, payment.card_last4) == ("visa", "4242")
    assert payment.receipt_number and payment.receipt_number.startswith("R-")
    assert pi.client_secret and "client_secret" not in event.payload["data"]["object"]
    assert pi.client_secret not in json.dumps(event.payload)  # a credential is not kept

    again = post_event(client, body)  # Stripe redelivers: a no-op
    assert again.status_code == 200 and again.json == {"received": True}
    assert events() == 1


def test_stale_payload_cannot_undo_a_success(client, paid_intent):
    payment, pi = paid_intent
    post_event(client, event_body("evt_ok", "payment_intent.succeeded", pi.to_dict()))
    late = {**pi.to_dict(), "status": "requires_payment_method"}
    post_event(client, event_body("evt_late", "payment_intent.payment_failed", late))
    db.session.expire_all()
    assert payment.status == "succeeded"


def test_unknown_types_and_foreign_intents_are_stored_and_ignored(client):
    post_event(client, event_body("evt_cust", "customer.created", {"id": "cus_1"}))
    post_event(client, event_body("evt_other", "payment_intent.succeeded", {"id": "pi_not_ours"}))
    statuses = dict(db.session.execute(sa.select(StripeEvent.id, StripeEvent.status)).all())
    assert statuses == {"evt_cust": "ignored", "evt_other": "ignored"}


def test_redis_down_still_answers_200_and_keeps_the_event_for_the_sweeper(app, client,
                                                                          monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
    monkeypatch.delitem(app.extensions, "redis", raising=False)
    body = event_body("evt_noredis", "payment_intent.succeeded", {"id": "pi_whatever"})
    r = post_event(client, body)
    assert r.status_code == 200
    assert db.session.get(StripeEvent, "evt_noredis").status == "received"


def test_event_json_is_kept_verbatim(client):
    body = event_body("evt_keep", "charge.succeeded", {"id": "ch_1", "amount": 123})
    post_event(client, body)
    stored = db.session.get(StripeEvent, "evt_keep")
    assert stored.payload == json.loads(body)


def test_a_failing_event_is_retried_by_the_worker_until_it_succeeds(
        app, client, paid_intent, redis_url, monkeypatch):
    """Stripe unreachable on the first attempt: the job fails, RQ retries, the second wins."""
    from redis import Redis
    from rq import SimpleWorker

    from portal import stripe_gateway

    payment, pi = paid_intent
    monkeypatch.setitem(app.config, "REDIS_URL", redis_url)
    monkeypatch.delitem(app.extensions, "redis", raising=False)
    monkeypatch.setattr("portal.webhooks.jobs.RETRY_DELAYS", (0,))  # no scheduler needed
    real = stripe_gateway.retrieve_payment_intent
    calls = []

    def flaky(intent_id):
        calls.append(intent_id)
        if len(calls) == 1:
            raise stripe_gateway.GatewayError("timed out", retryable=True)
        return real(intent_id)

    monkeypatch.setattr(stripe_gateway, "retrieve_payment_intent", flaky)
    assert post_event(client, event_body("evt_retry", "payment_intent.succeeded",
                                         pi.to_dict())).status_code == 200
    # Stored, not queued: with Redis the intake leaves that to a worker's dispatcher.
    redis = Redis.from_url(redis_url)
    assert db.session.get(StripeEvent, "evt_retry").status == "received"
    assert redis.llen("rq:queue:webhooks") == 0
    dispatch(app)
    db.session.expire_all()
    assert db.session.get(StripeEvent, "evt_retry").status == "queued"
    assert redis.llen("rq:queue:webhooks") == 1
    with app.app_context():
        SimpleWorker(["webhooks"], connection=redis).work(burst=True)
    db.session.expire_all()
    event = db.session.get(StripeEvent, "evt_retry")
    assert (event.status, event.attempts, len(calls)) == ("processed", 2, 2)
    assert db.session.get(Payment, payment.id).status == "succeeded"


def dispatch(app) -> None:
    """What a worker's dispatcher does with the events the intake stored: queue them."""
    from portal.webhooks.jobs import dispatch_received

    with app.app_context():
        assert dispatch_received() == 1
        db.session.remove()


@pytest.mark.parametrize(("status", "attempts"), [(404, 1), (400, 1), (401, 2), (403, 2)])
def test_an_event_stripe_refuses_to_serve_fails_at_once_for_an_admin_to_see(
        app, client, paid_intent, redis_url, monkeypatch, status, attempts):
    """A 4xx from Stripe (e.g. the intent is not found with our key) comes back the same
    on every try: the event is failed after one attempt, not retried for an hour and more.
    401/403 (a revoked or restricted key) are retried: fixing the key cures them."""
    from redis import Redis
    from rq import SimpleWorker

    from portal import stripe_gateway

    payment, pi = paid_intent
    monkeypatch.setitem(app.config, "REDIS_URL", redis_url)
    monkeypatch.delitem(app.extensions, "redis", raising=False)
    monkeypatch.setattr("portal.webhooks.jobs.RETRY_DELAYS", (0,))  # no scheduler needed
    calls = []

    def refused(intent_id):
        calls.append(intent_id)
        raise stripe_gateway.GatewayError("No such payment_intent", code="resource_missing",
                                          stripe_status=status)

    monkeypatch.setattr(stripe_gateway, "retrieve_payment_intent", refused)
    post_event(client, event_body("evt_404", "payment_intent.succeeded", pi.to_dict()))
    dispatch(app)
    with app.app_context():
        SimpleWorker(["webhooks"], connection=Redis.from_url(redis_url)).work(burst=True)
    db.session.expire_all()
    event = db.session.get(StripeEvent, "evt_404")
    assert (event.status, event.attempts, len(calls)) == ("failed", attempts, attempts)
    assert "No such payment_intent" in event.last_error
    assert db.session.get(Payment, payment.id).status == "requires_payment_method"


def _same_email_twice():
    return [User(email="handler@example.com", password_hash="x", session_token=f"t{n}")
            for n in range(2)]


def _negative_amount_with_customer_text():  # PostgreSQL quotes the whole row, newlines and all
    customer = make_user("payer@example.com")
    order = make_order(customer, make_user("seller@example.com", "vendor"))
    return [Payment(user_id=customer.id, order_id=order.id, amount=-1, currency="USD",
                    user_agent="Leave it at\nhandler@example.com's door")]


@pytest.mark.parametrize("bad_write", [_same_email_twice, _negative_amount_with_customer_text])
def test_an_event_whose_transaction_fails_to_commit_is_recorded_as_failed(client, monkeypatch,
                                                                          bad_write):
    """The handler ran, but its changes could not be committed: the event is failed, with
    the database's error, and nothing of the handler's is kept."""
    from portal.webhooks import handlers

    rows = bad_write()

    def handler(payload):
        db.session.add_all(rows)
        return True

    monkeypatch.setitem(handlers.HANDLERS, "payment_intent.succeeded", handler)
    assert post_event(client, event_body("evt_commit", "payment_intent.succeeded",
                                         {"id": "pi_1"})).status_code == 200
    db.session.expire_all()
    event = db.session.get(StripeEvent, "evt_commit")
    assert (event.status, event.attempts) == ("failed", 1)
    assert "IntegrityError" in event.last_error
    # Neither the statement's values nor PostgreSQL's detail (customers' e-mails,
    # addresses) are written with it.
    assert "SQL parameters hidden" in event.last_error and "DETAIL:  (not shown" in (
        event.last_error)
    assert "handler@example.com" not in event.last_error
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User).where(
        User.email == "handler@example.com")) == 0


def test_redelivery_of_a_failed_event_queues_it_again(client, paid_intent, monkeypatch):
    from portal import stripe_gateway

    payment, pi = paid_intent
    body = event_body("evt_again", "payment_intent.succeeded", pi.to_dict())
    real = stripe_gateway.retrieve_payment_intent

    def down(intent_id):
        raise stripe_gateway.GatewayError("down")

    monkeypatch.setattr(stripe_gateway, "retrieve_payment_intent", down)
    post_event(client, body)  # in-process: fails and is recorded
    db.session.expire_all()
    event = db.session.get(StripeEvent, "evt_again")
    assert event.status == "failed" and "GatewayError" in event.last_error
    monkeypatch.setattr(stripe_gateway, "retrieve_payment_intent", real)
    assert post_event(client, body).status_code == 200  # Stripe sends it again
    db.session.expire_all()
    assert db.session.get(StripeEvent, "evt_again").status == "processed"
    assert db.session.get(Payment, payment.id).status == "succeeded"
    assert events() == 1


def test_sweeper_processes_events_left_received(app, client, monkeypatch):
    from portal.webhooks.jobs import sweep_received

    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.delitem(app.extensions, "redis", raising=False)
    post_event(client, event_body("evt_swept", "customer.updated", {"id": "cus_9"}))
    assert db.session.get(StripeEvent, "evt_swept").status == "received"
    monkeypatch.setitem(app.config, "REDIS_URL", "")  # Redis "back": in-process here
    with app.app_context(), committed():  # queued at its commit, run in-process here
        assert sweep_received(older_than_seconds=0) == 1
    db.session.expire_all()
    assert db.session.get(StripeEvent, "evt_swept").status == "ignored"


def test_receive_event_tells_a_new_event_from_a_redelivery():
    from portal.stripe_gateway import Event
    from portal.webhooks.services import receive_event

    event = Event(id="evt_once", type="customer.created", api_version=None, created=1,
                  object_id="cus_1", payload={"id": "evt_once", "type": "customer.created",
                                              "data": {"object": {"id": "cus_1"}}})
    with committed():  # what the intake's request does: commits, then the job runs
        assert receive_event(event) is True
    with committed():
        assert receive_event(event) is False
    assert events() == 1
    assert db.session.get(StripeEvent, "evt_once").status == "ignored"  # processed in-process


@pytest.mark.parametrize("body", [b"[]", b'"evt"', b'{"id": "evt_x", "type": "x", "data": []}',
                                  b'{"id": "evt_x", "object": "v2.core.event", "type": "x"}'])
def test_a_signed_body_that_is_not_a_stripe_event_is_400(client, body):
    r = post_event(client, body)
    assert r.status_code == 400 and r.json["error"]["code"] == "invalid_payload"
    assert events() == 0


def test_events_of_another_api_version_are_processed_warned_once_and_shown(
        client, paid_intent, caplog):
    """A webhook endpoint left on an old API version: its events are applied all the same
    (the handler re-reads the intent, in the portal's version), the log warns once per
    version, and the admin's events page counts them and marks each one."""
    payment, pi = paid_intent
    old = json.loads(event_body("evt_old_1", "payment_intent.succeeded", pi.to_dict()))
    old["api_version"] = "2019-02-19"
    with caplog.at_level("WARNING", logger="portal.webhooks.services"):
        for n in (1, 2):
            old["id"] = f"evt_old_{n}"
            assert post_event(client, json.dumps(old).encode()).status_code == 200
    assert post_event(client, event_body("evt_new", "customer.updated",
                                          {"id": "cus_x"})).status_code == 200
    db.session.expire_all()
    assert payment.status == "succeeded"  # applied
    assert db.session.get(StripeEvent, "evt_old_2").status == "processed"
    warned = [r.getMessage() for r in caplog.records if "API version 2019-02-19" in
              r.getMessage()]
    assert len(warned) == 1 and "the portal uses 2026-10-28.endive" in warned[0]
    client.post("/logout")  # the customer who paid
    login(client, make_user("ops@example.test", "admin").email)
    r = client.get("/admin/events")
    assert r.status_code == 200, (r.status_code, r.headers.get("X-Error-Message"))
    page = r.text
    assert "Events of another API version than the portal's (2026-10-28.endive)" in page
    assert "2 of 2019-02-19" in page
    assert page.count("API 2019-02-19") == 2  # the two events, not the current one
