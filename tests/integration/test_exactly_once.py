"""Issue 7 in-process: side effects once (outbox), out-of-order events, reconciliation,
backfill, failing closed without PostgreSQL, and the admin event log. The multi-process
fault tests are in tests/faults."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.config import Config
from portal.extensions import db
from portal.ledger.models import Payment
from portal.models_base import utcnow
from portal.outbox import services as outbox
from portal.outbox.models import OutboxMessage
from portal.payments.services import start_checkout
from portal.reconciliation.services import backfill, reconcile
from portal.webhooks.models import StripeEvent
from tests.conftest import portal_env
from tests.helpers import committed, event_body, login, make_order, post_event, sign
from tests.integration.api_support import card_pm, pay

SECRET = "whsec_portal_tests"


def messages(payment, kind=None) -> list[OutboxMessage]:
    db.session.expire_all()
    query = sa.select(OutboxMessage).where(OutboxMessage.payment_id == payment.id)
    if kind:
        query = query.where(OutboxMessage.kind == kind)
    return list(db.session.scalars(query))


def confirmed_at_stripe(stripe_client, people, number="4242424242424242"):
    """A payment the portal knows, confirmed at Stripe only (the portal was not told)."""
    order = make_order(people["customer"], people["vendor"], amounts=(2500,))
    with committed():
        payment = start_checkout(order, source="api").payment
    stripe_client.v1.payment_intents.confirm(payment.stripe_payment_intent_id, params={
        "payment_method": card_pm(stripe_client, number)})
    return payment


# --- side effects exactly once ------------------------------------------------------------------

def test_a_success_writes_one_notification_and_one_receipt_however_often_applied(
        client, people, stripe_client):
    payment = confirmed_at_stripe(stripe_client, people)
    pi = stripe_client.v1.payment_intents.retrieve(payment.stripe_payment_intent_id).to_dict()
    for event_id in ("evt_a", "evt_a", "evt_b"):  # a duplicate delivery and a second event
        assert post_event(client, "payment_intent.succeeded", pi, event_id).status_code == 200
    login(client, people["customer"].email)
    client.get(f"/checkout/{payment.order_id}/complete")  # the completion page too
    assert sorted(m.kind for m in messages(payment)) == ["order_notification", "receipt_email"]
    [receipt] = messages(payment, "receipt_email")
    assert receipt.status == "kept"  # no SMTP server configured: kept for admins
    assert receipt.payload["to"] == people["customer"].email
    assert receipt.payload["card"] == "Visa •••• 4242"
    assert "4242424242424242" not in str(receipt.payload)


def test_the_same_outcome_written_again_adds_and_queues_nothing(client, people, stripe_client):
    payment = confirmed_at_stripe(stripe_client, people)
    pi = stripe_client.v1.payment_intents.retrieve(payment.stripe_payment_intent_id).to_dict()
    assert post_event(client, "payment_intent.succeeded", pi).status_code == 200
    first = {m.kind: m.id for m in messages(payment)}
    # e.g. a retried job: no message added, so no delivery queued
    assert outbox.record_payment_outcome(db.session.get(Payment, payment.id)) == []
    assert {m.kind: m.id for m in messages(payment)} == first
    assert sorted(first) == ["order_notification", "receipt_email"]


def test_out_of_order_events_leave_the_payment_succeeded(client, people, stripe_client):
    payment = confirmed_at_stripe(stripe_client, people)
    pi = stripe_client.v1.payment_intents.retrieve(payment.stripe_payment_intent_id).to_dict()
    post_event(client, "payment_intent.succeeded", pi)
    stale = {**pi, "status": "processing"}
    post_event(client, "payment_intent.processing", stale)
    post_event(client, "payment_intent.created", {**pi, "status": "requires_payment_method"})
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "succeeded"
    assert len(messages(payment, "order_notification")) == 1


class OrderService(ThreadingHTTPServer):
    """The order service: answers 500 ``failures`` times, then 200; records requests."""

    def __init__(self, failures):
        self.failures, self.requests = failures, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if server.failures > 0 else 200
                server.failures -= 1
                server.requests.append((self.path, self.headers["Idempotency-Key"], body,
                                        status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def order_service(test_app, app):
    service = OrderService(failures=3)
    urls = []
    for a in (test_app, app):
        cfg = a.extensions["portal_config"]
        urls.append((cfg, cfg.ORDER_SERVICE_URL))
        cfg.ORDER_SERVICE_URL = f"http://127.0.0.1:{service.server_port}"
    yield service
    service.shutdown()
    for cfg, url in urls:
        cfg.ORDER_SERVICE_URL = url


def test_order_service_failing_three_times_gets_one_delivery_and_three_recorded_attempts(
        people, stripe_client, order_service):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    [msg] = messages(payment, "order_notification")
    statuses = [outbox.deliver(str(msg.id), force=True) for _ in range(5)]
    assert statuses == ["pending", "pending", "pending", "sent", "sent"]
    db.session.expire_all()
    msg = db.session.get(OutboxMessage, msg.id)
    assert (msg.status, msg.attempts, len(msg.errors)) == ("sent", 4, 3)
    assert all("HTTP 500" in e for e in msg.errors)
    delivered = [r for r in order_service.requests if r[3] == 200]
    assert len(delivered) == 1 and len(order_service.requests) == 4
    path, key, body, _ = delivered[0]
    assert path == f"/api/orders/{payment.order_id}/payment-status" and key == str(msg.id)
    assert b'"status": "succeeded"' in body


def test_a_notification_failing_for_24_hours_is_given_up_and_flagged(client, people,
                                                                    stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    [msg] = messages(payment, "order_notification")  # the order service is not running
    assert outbox.deliver(str(msg.id)) == "pending"
    assert outbox.deliver(str(msg.id)) == "pending"  # not due yet: nothing happens
    db.session.get(OutboxMessage, msg.id).created_at = utcnow() - timedelta(hours=25)
    db.session.commit()
    assert outbox.deliver(str(msg.id), force=True) == "given_up"
    login(client, people["admin"].email)
    page = client.get("/admin/outbox?status=given_up").text
    assert "Given up" in page and "Try again" in page


def test_try_again_sends_a_given_up_message_once(client, people, stripe_client,
                                                 order_service):
    """An admin's "Try again" on a given-up notification sends it; a second click (a double
    click, another admin's stale tab) sends nothing again."""
    payment = pay(stripe_client, people["customer"], people["vendor"])
    [msg] = messages(payment, "order_notification")
    assert [outbox.deliver(str(msg.id), force=True) for _ in range(2)] == ["pending"] * 2
    written = utcnow() - timedelta(hours=25)
    db.session.get(OutboxMessage, msg.id).created_at = written
    db.session.commit()
    assert outbox.deliver(str(msg.id), force=True) == "given_up"  # the third 500
    login(client, people["admin"].email)
    page = client.post(f"/admin/outbox/{msg.id}/retry", follow_redirects=True).text
    assert "Tried again: sent." in page
    page = client.post(f"/admin/outbox/{msg.id}/retry", follow_redirects=True).text
    assert "Only a message that was given up can be tried again" in page
    assert [r[3] for r in order_service.requests] == [500, 500, 500, 200]
    db.session.expire_all()
    msg = db.session.get(OutboxMessage, msg.id)
    assert msg.status == "sent"
    # When it was written stays; its new 24 h of attempts ran from the "Try again".
    assert msg.created_at == written and msg.retried_at > written + timedelta(hours=24)


def test_try_again_gives_a_message_24_hours_of_attempts_from_the_retry(people,
                                                                       stripe_client):
    """A message given up and tried again fails again: it is retried later, not given up at
    once (its 24 h run from the "Try again", not from when it was written); 24 h after the
    retry it is given up again."""
    payment = pay(stripe_client, people["customer"], people["vendor"])
    [msg] = messages(payment, "order_notification")  # the order service is not running
    db.session.get(OutboxMessage, msg.id).created_at = utcnow() - timedelta(hours=25)
    db.session.commit()
    assert outbox.deliver(str(msg.id), force=True) == "given_up"
    with committed():
        assert outbox.retry_given_up(msg.id)
    assert outbox.deliver(str(msg.id)) == "pending"
    db.session.expire_all()
    retried = db.session.get(OutboxMessage, msg.id)
    assert retried.next_attempt_at > utcnow() and retried.created_at < utcnow() - timedelta(
        hours=24)
    retried.retried_at = utcnow() - timedelta(hours=25)
    db.session.commit()
    assert outbox.deliver(str(msg.id), force=True) == "given_up"


# --- reconciliation and backfill ----------------------------------------------------------------

def test_a_payment_whose_webhook_never_arrives_is_settled_by_reconciliation(people,
                                                                           stripe_client):
    payment = confirmed_at_stripe(stripe_client, people)
    assert db.session.get(Payment, payment.id).status == "requires_payment_method"
    db.session.execute(sa.update(Payment).values(updated_at=utcnow() - timedelta(minutes=20)))
    db.session.commit()
    with committed():
        result = reconcile(older_than_minutes=10)
    assert (result.payments_checked, result.payments_changed) == (1, 1)
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "succeeded"
    assert len(messages(payment, "order_notification")) == 1
    with committed():
        assert reconcile(older_than_minutes=10).payments_checked == 0  # nothing left


def abandoned_checkouts(people, count):
    """Checkouts the customers never paid: non-final for good, and never changing."""
    orders = [make_order(people["customer"], people["vendor"], amounts=(900,))
              for _ in range(count)]
    with committed():
        return [start_checkout(order, source="api").payment for order in orders]


def test_abandoned_checkouts_do_not_keep_reconciliation_from_a_paid_payment(people,
                                                                           stripe_client):
    """Each run checks a batch and moves on: payments it looked at wait their turn, so a
    paid payment behind more abandoned checkouts than a run checks is still reached."""
    abandoned = abandoned_checkouts(people, 6)
    paid = confirmed_at_stripe(stripe_client, people)
    # The abandoned ones are older: a run that always took the oldest would never get there.
    for age, payment in enumerate([*abandoned, paid]):
        db.session.execute(sa.update(Payment).where(Payment.id == payment.id).values(
            updated_at=utcnow() - timedelta(minutes=60 - age)))
    db.session.commit()
    with committed():
        runs = [reconcile(older_than_minutes=10, limit=3) for _ in range(3)]
    assert [r.payments_checked for r in runs] == [3, 3, 1]
    db.session.expire_all()
    assert db.session.get(Payment, paid.id).status == "succeeded"
    with committed():
        assert reconcile(older_than_minutes=10, limit=3).payments_checked == 0  # all wait now


def test_a_checked_payment_is_checked_again_later_and_less_often_as_it_ages(people,
                                                                          stripe_client):
    payment = abandoned_checkouts(people, 1)[0]
    db.session.execute(sa.update(Payment).where(Payment.id == payment.id).values(
        created_at=utcnow() - timedelta(hours=8), updated_at=utcnow() - timedelta(hours=8)))
    db.session.commit()
    with committed():
        assert reconcile(older_than_minutes=10).payments_checked == 1
    due = db.session.scalar(sa.select(Payment.reconcile_due_at).where(
        Payment.id == payment.id))
    # A quarter of its age (8 h): looked at again in about 2 hours, not every 5 minutes.
    assert timedelta(minutes=110) < due - utcnow() <= timedelta(hours=2)
    db.session.execute(sa.update(Payment).where(Payment.id == payment.id).values(
        reconcile_due_at=utcnow() - timedelta(seconds=1), updated_at=utcnow() - timedelta(hours=8)))
    db.session.commit()
    stripe_client.v1.payment_intents.confirm(payment.stripe_payment_intent_id, params={
        "payment_method": card_pm(stripe_client, "4242424242424242")})
    with committed():
        assert reconcile(older_than_minutes=10).payments_changed == 1
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "succeeded"


def test_a_customer_back_at_the_checkout_gets_the_payment_checked_again_soon(
        client, people, stripe_client):
    """A checkout left for 3 days is re-read every 18 hours. Its customer comes back and
    pays with Stripe.js, but closes the tab before the return and the webhook is lost:
    reconciliation gets to it within minutes, not 18 hours."""
    payment = abandoned_checkouts(people, 1)[0]
    long_ago = utcnow() - timedelta(days=3)
    db.session.execute(sa.update(Payment).where(Payment.id == payment.id).values(
        created_at=long_ago, updated_at=long_ago))
    db.session.commit()
    with committed():
        assert reconcile(older_than_minutes=10).payments_checked == 1  # not due for 18 h now
    login(client, people["customer"].email)
    assert client.get(f"/checkout/{payment.order_id}").status_code == 200  # back to pay
    stripe_client.v1.payment_intents.confirm(payment.stripe_payment_intent_id, params={
        "payment_method": card_pm(stripe_client, "4242424242424242")})
    with committed():
        assert reconcile(older_than_minutes=10).payments_checked == 0  # the payer may be back
    db.session.execute(sa.update(Payment).where(Payment.id == payment.id).values(
        updated_at=utcnow() - timedelta(minutes=11)))  # ... but 11 minutes later:
    db.session.commit()
    with committed():
        assert reconcile(older_than_minutes=10).payments_changed == 1
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "succeeded"


@pytest.mark.parametrize(("retryable", "next_turn"), [
    (True, timedelta(minutes=5)),  # unreachable, 5xx, 429: soon
    (False, timedelta(hours=18)),  # refused (e.g. no such intent): its turn, as checked
])
def test_stripe_unreachable_puts_a_payment_back_in_five_minutes(people, stripe_client,
                                                               monkeypatch, retryable,
                                                               next_turn):
    from portal import stripe_gateway

    payment = abandoned_checkouts(people, 1)[0]
    long_ago = utcnow() - timedelta(days=3)
    db.session.execute(sa.update(Payment).where(Payment.id == payment.id).values(
        created_at=long_ago, updated_at=long_ago))
    db.session.commit()

    def down(intent_id):
        raise stripe_gateway.GatewayError("no luck", retryable=retryable)

    monkeypatch.setattr(stripe_gateway, "retrieve_payment_intent", down)
    with committed():
        result = reconcile(older_than_minutes=10)
    assert (result.payments_checked, result.payments_unread) == (0, 1)
    due = db.session.scalar(sa.select(Payment.reconcile_due_at).where(
        Payment.id == payment.id))
    assert next_turn - timedelta(minutes=1) < due - utcnow() <= next_turn


def test_payments_nobody_touched_for_30_days_are_left_alone(people, stripe_client):
    payment = confirmed_at_stripe(stripe_client, people)
    db.session.execute(sa.update(Payment).where(Payment.id == payment.id).values(
        updated_at=utcnow() - timedelta(days=31)))
    db.session.commit()
    with committed():
        assert reconcile(older_than_minutes=10).payments_checked == 0
    with committed():
        assert reconcile(older_than_minutes=10, limit=None, every=True).payments_checked == 0
    db.session.execute(sa.update(Payment).where(Payment.id == payment.id).values(
        updated_at=utcnow() - timedelta(days=29)))
    db.session.commit()
    with committed():
        assert reconcile(older_than_minutes=10).payments_changed == 1


def test_a_run_stops_at_its_time_budget_and_the_next_run_goes_on(people, stripe_client):
    payments = abandoned_checkouts(people, 3)
    db.session.execute(sa.update(Payment).where(Payment.id.in_([p.id for p in payments]))
                       .values(updated_at=utcnow() - timedelta(minutes=30)))
    db.session.commit()
    with committed():
        assert reconcile(older_than_minutes=10, budget_seconds=0).payments_checked == 1
    with committed():
        assert reconcile(older_than_minutes=10).payments_checked == 2


def test_backfill_stores_and_processes_the_events_we_missed(people, stripe_client):
    payment = confirmed_at_stripe(stripe_client, people)
    with committed():
        listed, new = backfill(utcnow() - timedelta(days=1))
    assert new >= 1 and listed >= new
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "succeeded"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StripeEvent).where(
        StripeEvent.object_id == payment.stripe_payment_intent_id,
        StripeEvent.type == "payment_intent.succeeded")) == 1
    with committed():
        assert backfill(utcnow() - timedelta(days=1))[1] == 0  # twice: nothing new


def test_backfill_reads_the_events_of_each_vendors_connected_account(people, stripe_client,
                                                                     sandbox):
    """Stripe keeps a Connect event on the connected account: listed only with its
    Stripe-Account. A vendor finished onboarding and the account.updated never arrived."""
    from portal.ledger.models import VendorAccount

    account = stripe_client.v1.accounts.create(params={
        "controller": {"stripe_dashboard": {"type": "express"}},
        "capabilities": {"transfers": {"requested": True}}})
    row = VendorAccount(vendor_id=people["vendor"].id, stripe_account_id=account.id)
    gone = VendorAccount(vendor_id=people["vendor2"].id, stripe_account_id="acct_deleted")
    db.session.add_all([row, gone])
    db.session.commit()
    sandbox.test_hook("POST", f"/_sandbox/accounts/{account.id}/requirements", past_due="",
                      currently_due="", eventually_due="", payouts_enabled="true",
                      **{"capabilities[transfers]": "active"})
    with committed():
        listed, new = backfill(utcnow() - timedelta(days=1))
    assert new >= 1
    event = db.session.scalar(sa.select(StripeEvent).where(StripeEvent.object_id == account.id))
    assert (event.type, event.payload["account"]) == ("account.updated", account.id)
    db.session.expire_all()
    assert db.session.get(VendorAccount, row.id).transfers_active is True  # processed


def test_backfill_goes_page_by_page_however_many_events_stripe_lists(monkeypatch):
    """30 days of events can be hundreds of thousands: they are read from Stripe and
    looked up in our store a page at a time, never all in one query (PostgreSQL takes at
    most 65,535 parameters) nor all in memory."""
    from portal import stripe_gateway
    from portal.webhooks.services import receive_event

    listed = [stripe_gateway.Event(id=f"evt_page_{n:03}", type="product.updated",
                                   api_version=None, created=1, object_id=f"cus_{n}",
                                   payload={"id": f"evt_page_{n:03}"}) for n in range(250)]
    for known in listed[100:150]:  # delivered by webhook already
        with committed():
            receive_event(known)
    taken = []

    def pages(since, account=None):
        for event in listed if account is None else ():
            taken.append(event.id)
            yield event

    largest = []

    def count_parameters(conn, cursor, statement, parameters, context, executemany):
        if "stripe_events" in statement and not executemany:
            largest.append(len(parameters or ()))

    monkeypatch.setattr(stripe_gateway, "list_events", pages)
    sa.event.listen(db.engine, "before_cursor_execute", count_parameters)
    try:
        with committed():
            assert backfill(utcnow() - timedelta(days=1)) == (250, 200)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count_parameters)
    assert len(taken) == 250 and max(largest) <= 100
    stored = db.session.execute(sa.select(StripeEvent.status, sa.func.count()).where(
        StripeEvent.id.like("evt_page_%")).group_by(StripeEvent.status)).all()
    assert stored == [("ignored", 250)]  # each stored once and processed (a type we ignore)


# --- PostgreSQL unreachable -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def db_down_app(sandbox):
    """The portal with a database nobody listens on (as when PostgreSQL is down)."""
    from stripe_sandbox.testing import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test?connect_timeout=2"
    return create_app(Config.from_env(portal_env(url, sandbox.url),
                                      extra={"WTF_CSRF_ENABLED": False}))


# `commits`: the rolled-back tests bind the shared session to the test database's
# connection, which would hide the unreachable one.
@pytest.mark.commits
def test_webhook_intake_answers_503_when_the_event_cannot_be_stored(db_down_app):
    body = event_body("evt_down", "payment_intent.succeeded", {"id": "pi_x"})
    r = db_down_app.test_client().post(
        "/api/payments/webhook", data=body,
        headers={"Stripe-Signature": sign(body, SECRET), "Content-Type": "application/json"})
    assert r.status_code == 503 and r.json["error"]["code"] == "storage_unavailable"


@pytest.mark.commits
def test_checkout_fails_closed_with_a_clear_page(client, people, db_down_app, stripe_client):
    order = make_order(people["customer"], people["vendor"])
    login(client, people["customer"].email)
    down = db_down_app.test_client()
    cookie = client.get_cookie("session")
    down.set_cookie("session", cookie.value)
    r = down.get(f"/checkout/{order.id}")
    assert r.status_code == 503
    assert "stopped before anything was charged" in r.text
    listed = stripe_client.v1.payment_intents.list(params={"limit": 100}).data
    assert not [pi for pi in listed if pi.to_dict()["metadata"].get("orderId") == str(order.id)]


# --- the admin event log --------------------------------------------------------------------------

def test_admin_event_log_filters_shows_payloads_and_replays(client, people, stripe_client):
    payment = confirmed_at_stripe(stripe_client, people)
    pi = stripe_client.v1.payment_intents.retrieve(payment.stripe_payment_intent_id).to_dict()
    post_event(client, "payment_intent.succeeded", pi, "evt_ok")
    post_event(client, "invoice.paid", {"id": "in_1"}, "evt_other")
    db.session.add(StripeEvent(id="evt_bad", type="payment_intent.succeeded", object_id="pi_x",
                               payload={"data": {"object": {"id": "pi_x"}}}, status="failed",
                               attempts=3, last_error="Traceback ...\nRuntimeError: boom"))
    db.session.commit()
    login(client, people["admin"].email)
    hx = {"HX-Request": "true"}
    table = client.get("/admin/events?type=payment_intent.*", headers=hx).text
    assert "evt_other" not in table and table.count("payment_intent.succeeded") == 2
    assert "invoice.paid" in client.get("/admin/events?status=ignored", headers=hx).text
    detail = client.get("/admin/events/evt_bad").text
    assert "RuntimeError: boom" in detail and "&#34;pi_x&#34;" in detail
    assert client.post("/admin/events/replay-failed").status_code == 302
    db.session.expire_all()
    # Replayed (in-process): not ours any more, so ignored; the processed one untouched.
    assert db.session.get(StripeEvent, "evt_bad").status == "ignored"
    assert db.session.get(StripeEvent, "evt_ok").status == "processed"
    assert client.post("/admin/events/evt_ok/replay").status_code == 302
    assert len(messages(payment, "order_notification")) == 1  # replay: still once
    client.post("/logout")
    login(client, people["customer"].email)
    assert client.get("/admin/events").status_code == 404
