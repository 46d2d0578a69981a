"""Events and webhook deliveries in the sandbox: GET /v1/events as Stripe
lists them (newest first, filters, cursors, 30 days, Connect events on the
connected account), the same ids and payloads as delivered, the events of
each flow the portal uses, and the delivery test hooks (hold and release in
any order with duplicates and concurrency, drop, retries with backoff,
redeliver)."""

import json
import threading
import time
import uuid

import pytest
import stripe

from stripe_sandbox.testing import Sandbox

from .sandbox_helpers import (
    CONNECT_WEBHOOK_SECRET,
    PUBLISHABLE_KEY,
    SECRET_KEY,
    WEBHOOK_SECRET,
    WebhookReceiver,
    http,
    wait_until,
)

AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}
RETRY_DELAY = 0.2  # seconds before the first retry in this module's sandbox
UNSUBSCRIBED = ["sandbox.never_sent"]  # an endpoint's events once its test is over


@pytest.fixture(scope="module")
def sandbox():
    """This module's own sandbox (conftest's sends to a receiver of its own):
    quick first attempts and retries, no endpoint but the tests'."""
    with Sandbox(webhook_delay=0.05, webhook_retries=3, webhook_retry_delay=RETRY_DELAY) as sb:
        yield sb


@pytest.fixture
def endpoints(sandbox):
    """endpoints(receiver=None) registers a new endpoint (with a new
    WebhookReceiver unless given): (id, receiver). Unsubscribed and closed
    after the test, so that tests do not see each other's deliveries."""
    made = []

    def register(receiver=None, events=None):
        receiver = receiver or WebhookReceiver()
        id = f"we_{uuid.uuid4().hex[:10]}"
        sandbox.register_webhook(receiver.url, WEBHOOK_SECRET, id=id, events=events)
        made.append((id, receiver))
        return id, receiver

    yield register
    sandbox.release()  # whatever a failed test left held
    sandbox.drop(count=0)
    for id, receiver in made:
        sandbox.register_webhook(receiver.url, WEBHOOK_SECRET, id=id, events=UNSUBSCRIBED)
        sandbox.drop(count=0, endpoint=id)
        receiver.close()


def customers(client, n):
    """n new customers: one customer.created event each."""
    return [client.v1.customers.create(params={"email": f"c{i}@example.com"}) for i in range(n)]


def events_of(sandbox, objects, endpoint=None):
    """The ids of the events about these objects, in the order sent."""
    ids = {obj.id for obj in objects}
    rows = sandbox.deliveries(endpoint=endpoint)["data"]
    listed = http("GET", f"{sandbox.url}/v1/events", {"limit": 100}, headers=AUTH).json()["data"]
    by_object = [e["id"] for e in reversed(listed) if e["data"]["object"]["id"] in ids]
    if endpoint is not None:
        assert [r["event"] for r in rows if r["event"] in by_object] == by_object
    return by_object


def rows_of(sandbox, endpoint):
    return {row["event"]: row for row in sandbox.deliveries(endpoint=endpoint)["data"]}


def verified(receiver, secret=WEBHOOK_SECRET):
    """Every request received, its signature checked like the portal does (the events of
    connected accounts with the Connect endpoint's secret)."""
    return [stripe.Webhook.construct_event(
        body, sig, CONNECT_WEBHOOK_SECRET if json.loads(body).get("account") else secret)
        for sig, body in receiver.received]


def get(sandbox, path, params=None, headers=AUTH):
    return http("GET", f"{sandbox.url}{path}", params, headers=headers)


# --- GET /v1/events -------------------------------------------------------


@pytest.fixture
def quiet_sandbox():
    """A sandbox of its own, no endpoint: exactly the events a test makes."""
    with Sandbox() as sb:
        yield sb, stripe.StripeClient(SECRET_KEY, base_addresses={"api": sb.url})


def test_events_are_listed_newest_first_with_stripe_filters_and_cursors(quiet_sandbox):
    sandbox, client = quiet_sandbox
    made = customers(client, 5)
    client.v1.customers.update(made[0].id, params={"metadata": {"n": "1"}})
    paid = {"amount": 2599, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True,
            "capture_method": "automatic"}
    pi = client.v1.payment_intents.create(params=paid)
    expected_types = [
        "payment_intent.succeeded",
        "charge.succeeded",
        "payment_intent.created",
        "customer.updated",
    ] + ["customer.created"] * 5

    everything = get(sandbox, "/v1/events", {"limit": 100}).json()
    assert everything["object"] == "list" and everything["url"] == "/v1/events"
    assert everything["has_more"] is False
    events = everything["data"]
    assert [e["type"] for e in events] == expected_types
    assert [e["data"]["object"]["id"] for e in events[4:]] == [c.id for c in reversed(made)]
    assert events[0]["data"]["object"]["id"] == pi.id
    assert all(e["object"] == "event" and e["api_version"] == stripe.api_version for e in events)
    ids = [e["id"] for e in events]
    assert len(set(ids)) == 9
    assert get(sandbox, "/v1/events").json()["data"] == events[:9]  # default limit 10

    # Stripe's paging, as stripe-python does it, and by hand.
    paged = client.v1.events.list(params={"limit": 2}).auto_paging_iter()
    assert [e.id for e in paged] == ids
    page1 = get(sandbox, "/v1/events", {"limit": 4}).json()
    assert [e["id"] for e in page1["data"]] == ids[:4] and page1["has_more"] is True
    page2 = get(sandbox, "/v1/events", {"limit": 4, "starting_after": ids[3]}).json()
    assert [e["id"] for e in page2["data"]] == ids[4:8] and page2["has_more"] is True
    page3 = get(sandbox, "/v1/events", {"limit": 4, "starting_after": ids[7]}).json()
    assert [e["id"] for e in page3["data"]] == ids[8:] and page3["has_more"] is False
    back = get(sandbox, "/v1/events", {"limit": 4, "ending_before": ids[4]}).json()
    assert [e["id"] for e in back["data"]] == ids[:4] and back["has_more"] is False
    back = get(sandbox, "/v1/events", {"limit": 2, "ending_before": ids[4]}).json()
    assert [e["id"] for e in back["data"]] == ids[2:4] and back["has_more"] is True
    backwards = client.v1.events.list(params={"limit": 3, "ending_before": ids[-1]})
    assert [e.id for e in backwards.auto_paging_iter()] == ids[:-1][::-1]  # pages newest last

    # Types: `*` wildcards, or a list of exact names; cursors within a filter.
    def types(params):
        return [e["type"] for e in get(sandbox, "/v1/events", params).json()["data"]]

    assert types({"type": "customer.*"}) == expected_types[3:]
    assert types({"type": "*.succeeded"}) == expected_types[:2]
    assert types({"type": "payment_intent.created"}) == ["payment_intent.created"]
    assert types({"type": "payment_intent"}) == []  # no wildcard, no prefix match
    pairs = [("types[]", "customer.updated"), ("types[]", "charge.succeeded")]
    assert types(pairs) == ["charge.succeeded", "customer.updated"]
    listed = client.v1.events.list(params={"types": ["customer.updated", "charge.succeeded"]})
    assert [e.type for e in listed.auto_paging_iter()] == ["charge.succeeded", "customer.updated"]
    filtered = get(
        sandbox, "/v1/events", {"type": "customer.created", "limit": 2, "starting_after": ids[1]}
    ).json()
    assert [e["id"] for e in filtered["data"]] == ids[4:6] and filtered["has_more"] is True

    # created: exact, or bounds.
    created = events[0]["created"]
    assert all(e["created"] <= created for e in events)
    assert len(types({"created[gte]": events[-1]["created"]})) == 9
    assert types({"created[gt]": created}) == []
    assert types({"created[lt]": events[-1]["created"]}) == []
    assert len(types({"created[lte]": created, "created[gte]": events[-1]["created"]})) == 9
    since = client.v1.events.list(params={"created": {"gte": events[-1]["created"]}, "limit": 100})
    assert [e.id for e in since.auto_paging_iter()] == ids

    # One event, as listed.
    assert get(sandbox, f"/v1/events/{ids[3]}").json() == events[3]
    assert client.v1.events.retrieve(ids[0]).to_dict() == events[0]

    # Stripe's refusals.
    def error(params, path="/v1/events", status=400, headers=AUTH):
        response = get(sandbox, path, params, headers=headers)
        assert response.status == status, response.body
        return response.json()["error"]

    assert error({"limit": 0})["param"] == "limit"
    assert error({"limit": 101})["param"] == "limit"
    assert error({"starting_after": "evt_unknown"})["code"] == "resource_missing"
    assert error({"starting_after": ids[0], "ending_before": ids[1]})["message"].startswith(
        "You may only specify one of these parameters"
    )
    assert error([("type", "customer.*"), ("types[]", "customer.created")])["param"] == "types"
    assert error([("types[]", f"t{i}") for i in range(21)])["param"] == "types"
    assert error({"created[since]": 1})["code"] == "parameter_unknown"
    assert error({"object": "customer"})["code"] == "parameter_unknown"
    missing = error(None, "/v1/events/evt_unknown", 404)
    assert missing["code"] == "resource_missing" and "evt_unknown" in missing["message"]
    publishable = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}
    assert error(None, status=401, headers=publishable)["code"] == "secret_key_required"
    assert get(sandbox, "/v1/events", headers={}).status == 401
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.list(params={"limit": 101})


def test_only_the_last_30_days_are_listed_and_retrieved():
    # The sandbox's own record, with a clock: an event created 30 days and
    # a second ago is gone, one created exactly 30 days ago is not yet.
    from stripe_sandbox import events
    from stripe_sandbox.core import StripeError

    record = events.State()
    now = 2_000_000_000
    for index, (id, age) in enumerate(
        [("evt_old", events.RETENTION + 1), ("evt_edge", events.RETENTION), ("evt_new", 0)]
    ):
        body = json.dumps({"id": id, "object": "event", "type": "customer.created"}).encode()
        record.sent[id] = events.Sent(index, id, "customer.created", now - age, None, body)

    listed = events.list_events(record, now=now, limit=100)
    assert [e["id"] for e in listed["data"]] == ["evt_new", "evt_edge"]
    assert events.retrieve_event(record, "evt_edge", now=now)["id"] == "evt_edge"
    with pytest.raises(StripeError) as raised:
        events.retrieve_event(record, "evt_old", now=now)
    assert raised.value.status == 404
    with pytest.raises(StripeError):
        events.list_events(record, now=now, starting_after="evt_old")
    assert [e["id"] for e in events.list_events(record, now=now + 1)["data"]] == ["evt_new"]


def wait_delivered(sandbox, endpoint=None, count=None):
    """Until every delivery (to `endpoint`) is delivered; the rows."""

    def done():
        rows = sandbox.deliveries(endpoint=endpoint)["data"]
        return (count is None or len(rows) >= count) and all(r["delivered"] for r in rows)

    wait_until(done)
    return sandbox.deliveries(endpoint=endpoint)["data"]


def test_the_events_listed_are_those_delivered_with_the_same_payloads():
    receiver = WebhookReceiver()
    try:
        with Sandbox(
            webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET, webhook_delay=0,
            connect_webhook_secret=CONNECT_WEBHOOK_SECRET,
        ) as sandbox:
            client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": sandbox.url})
            since = int(time.time())
            customer = client.v1.customers.create(params={"email": "a@example.com"})
            pi = client.v1.payment_intents.create(
                params={
                    "amount": 2599,
                    "currency": "eur",
                    "customer": customer.id,
                    "payment_method": "pm_card_visa",
                    "capture_method": "automatic",
                    "setup_future_usage": "off_session",
                    "confirm": True,
                }
            )
            client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 500})
            account = client.v1.accounts.create(params={"type": "express", "country": "DE"})
            hook = http(
                "POST",
                f"{sandbox.url}/_sandbox/accounts/{account.id}/requirements",
                {"currently_due[]": "", "capabilities[transfers]": "active"},
                headers=AUTH,
            )
            assert hook.status == 200
            rows = wait_delivered(sandbox)
            assert len(rows) == 8  # recorded when created: all there already
            # account.updated went to the Connect endpoint only, the others to the other.
            assert {(r["type"] == "account.updated", r["endpoint"]) for r in rows} == {
                (True, "cli-connect"), (False, "cli")}

            delivered = {}
            for event in verified(receiver):
                delivered[event.id] = event.to_dict()
            sent_order = [row["event"] for row in rows]
            assert len(receiver.received) == len(delivered) == len(sent_order)
            listed = client.v1.events.list(params={"created": {"gte": since}, "limit": 100})
            listed = [e.to_dict() for e in listed.auto_paging_iter()]
            # Connect events are on the connected account, as at Stripe.
            connect_events = [id for id, e in delivered.items() if e.get("account")]
            assert [delivered[id]["type"] for id in connect_events] == ["account.updated"]
            assert delivered[connect_events[0]]["account"] == account.id
            platform = [id for id in reversed(sent_order) if id not in connect_events]
            assert [e["id"] for e in listed] == platform
            assert all(e == delivered[e["id"]] for e in listed)
            # The very bytes: the SDK's parse of the listing equals the raw body.
            raw = {json.loads(body)["id"]: json.loads(body) for _, body in receiver.received}
            assert raw == delivered
            assert {e["type"] for e in listed} >= {
                "customer.created",
                "payment_intent.created",
                "charge.succeeded",
                "payment_method.attached",
                "payment_intent.succeeded",
                "charge.refunded",
                "refund.created",
            }

            on_account = client.v1.events.list(
                params={"limit": 100}, options={"stripe_account": account.id}
            )
            assert [e.to_dict() for e in on_account.auto_paging_iter()] == [
                delivered[connect_events[0]]
            ]
            assert get(sandbox, f"/v1/events/{connect_events[0]}").status == 404
            unknown = get(sandbox, "/v1/events", headers={**AUTH, "Stripe-Account": "acct_unknown"})
            assert unknown.status == 403
            assert unknown.json()["error"]["code"] == "account_invalid"
    finally:
        receiver.close()


# --- The events of the portal's flows -------------------------------------


def card(client, number):
    return client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    ).id


def test_each_flow_sends_the_events_stripe_sends(client, sandbox):
    def new_types(flow):
        """The types of the events `flow` makes, in the order sent."""
        before = {e.id for e in client.v1.events.list(params={"limit": 100}).auto_paging_iter()}
        flow()
        listed = client.v1.events.list(params={"limit": 100}).auto_paging_iter()
        return [e.type for e in listed if e.id not in before][::-1]

    def intent(**params):  # captured as the portal captures them (its funds known at once)
        return client.v1.payment_intents.create(
            params={"amount": 2599, "currency": "eur", "capture_method": "automatic", **params}
        )

    def pay(number):
        pi = intent()
        client.v1.payment_intents.confirm(pi.id, params={"payment_method": card(client, number)})

    def declined():
        with pytest.raises(stripe.CardError):
            pay("4000000000000341")

    def three_d_secure(success):
        pi = intent(payment_method=card(client, "4000002760003184"), confirm=True)
        assert pi.status == "requires_action"
        page = http(
            "POST",
            f"{sandbox.url}/3ds/{pi.id}",
            {"client_secret": pi.client_secret, "success": success},
        )
        assert page.status == 200

    customer = client.v1.customers.create(params={"email": "flows@example.com"})

    def save_card():
        si = client.v1.setup_intents.create(
            params={
                "customer": customer.id,
                "payment_method": card(client, "4242424242424242"),
                "confirm": True,
            }
        )
        assert si.status == "succeeded"

    def default_then_detach():
        pm = card(client, "4242424242424242")
        client.v1.payment_methods.attach(pm, params={"customer": customer.id})
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": pm}}
        )
        client.v1.payment_methods.update(pm, params={"card": {"exp_month": 11}})
        client.v1.payment_methods.detach(pm)

    def refund():
        pi = intent(payment_method="pm_card_visa", confirm=True)
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 100})

    assert new_types(lambda: pay("4242424242424242")) == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    assert new_types(declined) == [
        "payment_intent.created",
        "charge.failed",
        "payment_intent.payment_failed",
    ]
    assert new_types(lambda: three_d_secure("true")) == [
        "payment_intent.created",
        "payment_intent.requires_action",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    assert new_types(lambda: three_d_secure("false")) == [
        "payment_intent.created",
        "payment_intent.requires_action",
        "payment_intent.payment_failed",
    ]
    assert new_types(lambda: client.v1.payment_intents.cancel(intent().id)) == [
        "payment_intent.created",
        "payment_intent.canceled",
    ]
    assert new_types(save_card) == [
        "setup_intent.created",
        "payment_method.attached",
        "setup_intent.succeeded",
    ]
    assert new_types(default_then_detach) == [
        "payment_method.attached",
        "customer.updated",
        "payment_method.updated",
        "payment_method.detached",
        "customer.updated",  # the default was detached
    ]
    assert new_types(refund)[-2:] == ["charge.refunded", "refund.created"]


# --- Hold and release -----------------------------------------------------


def test_held_events_are_released_in_reverse_with_interleaved_duplicates(
    client, sandbox, endpoints
):
    endpoint, receiver = endpoints()
    other, other_receiver = endpoints()
    held = sandbox.hold(endpoint=endpoint)
    assert held["held"] == [endpoint] and held["hold_all"] is False
    made = customers(client, 3)
    ids = events_of(sandbox, made, endpoint)
    assert len(ids) == 3
    rows = rows_of(sandbox, endpoint)
    assert [rows[id]["status"] for id in ids] == ["queued"] * 3
    assert all(rows[id]["queued"] and rows[id]["attempts"] == 0 for id in ids)
    assert sandbox.deliveries()["queued"] == {endpoint: 3}
    # The other endpoint is not held, and they are listed meanwhile.
    wait_delivered(sandbox, other)
    assert sorted(other_receiver.event_ids()) == sorted(ids)
    listed = get(sandbox, "/v1/events", {"limit": 3, "type": "customer.created"}).json()
    assert [e["id"] for e in listed["data"]] == ids[::-1]
    assert receiver.received == []  # queued ones are not in flight: nothing came

    # Signed when sent: once a second has passed, the timestamp is newer.
    created = max(rows[id]["created"] for id in ids)
    wait_until(lambda: time.time() >= created + 1.05)
    released = sandbox.release(endpoint=endpoint, order="reverse", duplicates=1)
    assert released["released"] == 3
    assert released["deliveries"] == 6 and released["succeeded"] == 6
    assert released["failed"] == 0
    assert [d["event"] for d in released["sequence"]] == ids[::-1] * 2
    assert receiver.event_ids() == ids[::-1] * 2  # one at a time, in that order
    events = verified(receiver)
    assert [json.loads(body)["id"] for _, body in receiver.received] == [e.id for e in events]
    stamps = [int(sig.split(",")[0][2:]) for sig, _ in receiver.received]
    assert all(stamp > created for stamp in stamps)
    assert len({body for _, body in receiver.received}) == 3  # duplicates: the same bytes
    rows = rows_of(sandbox, endpoint)
    for id in ids:
        assert rows[id]["status"] == "delivered" and rows[id]["attempts"] == 2
        assert [a["kind"] for a in rows[id]["history"]] == ["release", "duplicate"]
        assert rows[id]["last_status_code"] == 200
    assert released["held"] == [] and released["queued"] == {}

    # Normal delivery resumed.
    (later,) = customers(client, 1)
    receiver.wait_for_event(WEBHOOK_SECRET, "customer.created", later.id)
    assert sandbox.release(endpoint=endpoint)["deliveries"] == 0


def test_shuffled_release_with_a_seed_is_reproducible_and_concurrent(client, sandbox, endpoints):
    gate = threading.Condition()
    in_flight = []  # requests being answered
    most = [0]

    def respond(payload, n):
        with gate:
            in_flight.append(payload["id"])
            most[0] = max(most[0], len(in_flight))
            gate.notify_all()
            # The first requests wait for each other: proof they overlap.
            if most[0] < 3:
                gate.wait_for(lambda: most[0] >= 3, timeout=5)
            in_flight.remove(payload["id"])
        return 200

    endpoint, receiver = endpoints(WebhookReceiver(respond))

    def shuffled():
        receiver.received.clear()
        sandbox.hold(endpoint=endpoint)
        ids = events_of(sandbox, customers(client, 5), endpoint)
        released = sandbox.release(
            endpoint=endpoint, order="shuffle", seed="42", duplicates=2, concurrency=3
        )
        assert released["seed"] == "42"
        assert released["deliveries"] == released["succeeded"] == 15
        sequence = [d["event"] for d in released["sequence"]]
        assert sorted(sequence) == sorted(ids * 3)
        assert sorted(receiver.event_ids()) == sorted(ids * 3)
        assert all(receiver.event_ids().count(id) == 3 for id in ids)
        rows = rows_of(sandbox, endpoint)
        assert all(rows[id]["attempts"] == 3 and rows[id]["delivered"] for id in ids)
        return [ids.index(id) for id in sequence]  # which event went when

    first = shuffled()
    assert first != list(range(5)) * 3  # shuffled (seed 42 is not the identity)
    assert most[0] == 3  # three at once, never more
    most[0] = 0
    assert shuffled() == first  # same seed, same queue length: same order

    sandbox.hold(endpoint=endpoint)
    customers(client, 2)
    unseeded = sandbox.release(endpoint=endpoint, order="shuffle")
    assert unseeded["seed"] and unseeded["deliveries"] == 2


def test_holding_every_endpoint_and_releasing_one(client, sandbox, endpoints):
    first, first_receiver = endpoints()
    second, second_receiver = endpoints()
    state = sandbox.hold()
    assert state["hold_all"] is True and {first, second} <= set(state["held"])
    made = customers(client, 2)
    ids = events_of(sandbox, made, first)
    assert sandbox.deliveries()["queued"] == {first: 2, second: 2}

    released = sandbox.release(endpoint=first, delay_ms=50)
    assert [d["event"] for d in released["sequence"]] == ids  # order=sent
    assert first_receiver.event_ids() == ids
    assert second in released["held"] and first not in released["held"]
    (late,) = customers(client, 1)
    first_receiver.wait_for_event(WEBHOOK_SECRET, "customer.created", late.id)
    late_id = first_receiver.event_ids()[-1]
    assert rows_of(sandbox, second)[late_id]["status"] == "queued"
    assert second_receiver.received == []

    released = sandbox.release()
    assert released["deliveries"] == 3 and released["hold_all"] is False
    assert second_receiver.event_ids() == [*ids, late_id]
    history = [rows_of(sandbox, first)[id]["history"][0]["at"] for id in ids]
    assert history[1] - history[0] >= 0.05  # delay_ms between deliveries


# --- Drop -----------------------------------------------------------------


def test_dropped_events_are_never_delivered_but_are_listed(client, sandbox, endpoints):
    endpoint, receiver = endpoints()
    other, other_receiver = endpoints()
    assert sandbox.drop(count=2, endpoint=endpoint)["drop_next"] == {endpoint: 2}
    made = customers(client, 3)
    receiver.wait_for_event(WEBHOOK_SECRET, "customer.created", made[2].id)
    ids = events_of(sandbox, made, endpoint)
    rows = rows_of(sandbox, endpoint)
    assert [rows[id]["status"] for id in ids] == ["dropped", "dropped", "delivered"]
    assert [rows[id]["attempts"] for id in ids] == [0, 0, 1]
    assert rows[ids[0]]["dropped"] and not rows[ids[2]]["dropped"]
    assert receiver.event_ids() == ids[2:]
    wait_delivered(sandbox, other)
    assert other_receiver.event_ids() == ids  # only that endpoint's were dropped
    for id in ids:
        assert get(sandbox, f"/v1/events/{id}").status == 200
    failing = get(sandbox, "/v1/events", {"delivery_success": "false", "limit": 100}).json()
    assert {ids[0], ids[1]} <= {e["id"] for e in failing["data"]}
    assert ids[2] not in {e["id"] for e in failing["data"]}
    succeeded = get(sandbox, "/v1/events", {"delivery_success": "true", "limit": 100}).json()
    assert ids[2] in {e["id"] for e in succeeded["data"]}
    assert sandbox.deliveries()["drop_next"] == {}

    # Without endpoint: the next event, everywhere.
    sandbox.drop(count=1)
    dropped, kept = customers(client, 2)
    receiver.wait_for_event(WEBHOOK_SECRET, "customer.created", kept.id)
    other_receiver.wait_for_event(WEBHOOK_SECRET, "customer.created", kept.id)
    dropped_id, kept_id = events_of(sandbox, [dropped, kept])
    for id in (endpoint, other):
        assert rows_of(sandbox, id)[dropped_id]["status"] == "dropped"
    assert dropped_id not in receiver.event_ids() + other_receiver.event_ids()

    # A dropped event can still be resent by hand.
    resent = sandbox.redeliver(event=dropped_id, endpoint=endpoint)
    assert resent["deliveries"] == resent["succeeded"] == 1
    assert receiver.event_ids()[-1] == dropped_id
    row = rows_of(sandbox, endpoint)[dropped_id]
    assert row["status"] == "delivered" and row["dropped"] is True


# --- Retries and redelivery -----------------------------------------------


def test_failed_deliveries_are_retried_with_backoff(client, sandbox, endpoints):
    # 500 twice, then 200, for every event.
    endpoint, receiver = endpoints(WebhookReceiver(lambda payload, n: 500 if n <= 2 else 200))
    (customer,) = customers(client, 1)
    receiver.wait_for_event(WEBHOOK_SECRET, "customer.created", customer.id)
    (id,) = events_of(sandbox, [customer], endpoint)
    wait_until(lambda: rows_of(sandbox, endpoint)[id]["delivered"])
    row = rows_of(sandbox, endpoint)[id]
    assert row["attempts"] == 3 and row["last_status_code"] == 200
    assert [a["status_code"] for a in row["history"]] == [500, 500, 200]
    assert [a["kind"] for a in row["history"]] == ["automatic", "retry", "retry"]
    at = [a["at"] for a in row["history"]]
    assert at[1] - at[0] >= RETRY_DELAY and at[2] - at[1] >= 2 * RETRY_DELAY  # doubling
    assert receiver.event_ids() == [id] * 3
    events = verified(receiver)  # each attempt signed, with its own timestamp
    assert len({body for _, body in receiver.received}) == 1
    assert [e.id for e in events] == [id] * 3


def test_deliveries_that_keep_failing_give_up_and_can_be_redelivered(client, sandbox, endpoints):
    answer = [500]
    endpoint, receiver = endpoints(WebhookReceiver(lambda payload, n: answer[0]))
    gone, gone_receiver = endpoints()
    gone_receiver.close()  # nothing listens there any more
    (customer,) = customers(client, 1)
    (id,) = events_of(sandbox, [customer], endpoint)
    wait_until(lambda: rows_of(sandbox, endpoint)[id]["status"] == "failed", timeout=15)
    wait_until(lambda: rows_of(sandbox, gone)[id]["status"] == "failed", timeout=15)
    row = rows_of(sandbox, endpoint)[id]
    assert row["attempts"] == 4 and row["last_status_code"] == 500  # 1 + 3 retries
    assert row["next_retry_at"] is None
    unreachable = rows_of(sandbox, gone)[id]
    assert unreachable["attempts"] == 4 and unreachable["last_status_code"] is None
    assert unreachable["last_error"]
    assert receiver.event_ids() == [id] * 4
    failing = get(sandbox, "/v1/events", {"delivery_success": "false", "limit": 100}).json()
    assert id in {e["id"] for e in failing["data"]}

    answer[0] = 200
    resent = sandbox.redeliver(all_failed=True, endpoint=endpoint)
    assert resent["deliveries"] == resent["succeeded"] == 1
    assert resent["sequence"] == [
        {"event": id, "type": "customer.created", "endpoint": endpoint, "status_code": 200}
    ]
    row = rows_of(sandbox, endpoint)[id]
    assert row["status"] == "delivered" and row["attempts"] == 5
    assert row["history"][-1]["kind"] == "redeliver"
    assert receiver.event_ids() == [id] * 5
    verified(receiver)
    assert sandbox.redeliver(all_failed=True, endpoint=endpoint)["deliveries"] == 0

    # Resend (as the Dashboard does) an event already delivered: a duplicate.
    again = sandbox.redeliver(event=id, endpoint=endpoint)
    assert again["deliveries"] == 1 and receiver.event_ids() == [id] * 6
    everywhere = sandbox.redeliver(event=id)  # every endpoint it went to
    assert {d["endpoint"] for d in everywhere["sequence"]} == {endpoint, gone}
    assert everywhere["succeeded"] == 1 and everywhere["failed"] == 1
    assert rows_of(sandbox, gone)[id]["status"] == "failed"


def test_a_release_that_fails_is_retried(client, sandbox, endpoints):
    endpoint, receiver = endpoints(WebhookReceiver(lambda payload, n: 503 if n <= 2 else 204))
    sandbox.hold(endpoint=endpoint)
    (id,) = events_of(sandbox, customers(client, 1), endpoint)
    released = sandbox.release(endpoint=endpoint, duplicates=1)
    assert released["deliveries"] == 2 and released["failed"] == 2
    wait_until(lambda: rows_of(sandbox, endpoint)[id]["delivered"])
    history = rows_of(sandbox, endpoint)[id]["history"]
    assert [(a["kind"], a["status_code"]) for a in history] == [
        ("release", 503),
        ("duplicate", 503),
        ("retry", 204),
    ]


# --- The hooks' own errors ------------------------------------------------


def test_delivery_hooks_refuse_bad_parameters(sandbox, endpoints):
    endpoint, _ = endpoints()

    def refused(path, params, status=400, key=SECRET_KEY):
        response = http(
            "POST",
            f"{sandbox.url}/_sandbox/deliveries/{path}",
            params,
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status == status, response.body
        return response.json()["error"]

    assert refused("release", {"order": "random"})["param"] == "order"
    assert refused("release", {"seed": "1"})["param"] == "seed"  # only with shuffle
    assert refused("release", {"duplicates": "11"})["param"] == "duplicates"
    assert refused("release", {"duplicates": "-1"})["param"] == "duplicates"
    assert refused("release", {"concurrency": "0"})["param"] == "concurrency"
    assert refused("release", {"delay_ms": "x"})["param"] == "delay_ms"
    assert refused("release", {"endpoint": "we_unknown"})["code"] == "resource_missing"
    assert refused("hold", {"endpoint": "we_unknown"})["param"] == "endpoint"
    assert refused("hold", {"minutes": "5"})["code"] == "parameter_unknown"
    assert refused("drop", {"count": "-1"})["param"] == "count"
    assert refused("redeliver", {})["param"] == "event"
    assert refused("redeliver", {"event": "evt_x", "all_failed": "true"})["param"] == "event"
    assert refused("redeliver", {"event": "evt_unknown"})["code"] == "resource_missing"
    assert refused("redeliver", {"all_failed": "maybe"})["param"] == "all_failed"
    refused("hold", {}, status=401, key=PUBLISHABLE_KEY)
    listing = http(
        "GET",
        f"{sandbox.url}/_sandbox/deliveries",
        headers={"Authorization": f"Bearer {PUBLISHABLE_KEY}"},
    )
    assert listing.status == 401
    assert sandbox.deliveries()["held"] == []  # nothing was held by the refusals
