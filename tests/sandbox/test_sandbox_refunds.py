"""Refunds in the sandbox as Stripe does them (API 2026-10-28.endive), through
stripe-python 16.1.0 and raw requests: amounts and the remainder, Stripe's
errors, idempotent replays, the Charge's bookkeeping, lists, the events, and
refunds failing later (test card 4000000000005126, the sandbox's test hook)."""

import uuid

import pytest
import stripe

from stripe_sandbox.testing import Sandbox

from .sandbox_helpers import PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET, http

VISA = "4242424242424242"
DECLINED_WHEN_CHARGED = "4000000000000341"
REFUND_PENDING = "4000000000007726"  # refunds begin pending, then succeed
REFUND_FAILS = "4000000000005126"  # refunds begin succeeded, then fail
AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}
REFUND_FIELDS = {
    "id",
    "object",
    "amount",
    "balance_transaction",
    "charge",
    "created",
    "currency",
    "destination_details",
    "failure_balance_transaction",
    "failure_reason",
    "metadata",
    "payment_intent",
    "pending_reason",
    "reason",
    "receipt_number",
    "source_transfer_reversal",
    "status",
    "transfer_reversal",
}


def card(client, number=VISA):
    return client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )


def paid(client, number=VISA, amount=2599, currency="eur", **params):
    """A succeeded PaymentIntent (or what confirming it gives)."""
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": currency,
            "payment_method": card(client, number).id,
            "confirm": True,
            **params,
        }
    )


def refund(client, pi, **params):
    return client.v1.refunds.create(params={"payment_intent": pi.id, **params})


def refused(call):
    """The InvalidRequestError a call raises (it must raise one)."""
    with pytest.raises(stripe.InvalidRequestError) as raised:
        call()
    assert raised.value.http_status == 400
    return raised.value


def event(webhook_receiver, type, object_id, where=None):
    return webhook_receiver.wait_for_event(WEBHOOK_SECRET, type, object_id, where=where)


def refund_ids(client, **params):
    return [r.id for r in client.v1.refunds.list(params=params).data]


def fail_hook(sandbox, refund_id, params=None, headers=AUTH):
    return http("POST", f"{sandbox.url}/_sandbox/refunds/{refund_id}/fail", params, headers)


# --- Creating refunds ----------------------------------------------------


def test_full_refund_of_a_payment_intent(client, webhook_receiver):
    pi = paid(client)
    re = refund(client, pi, reason="requested_by_customer", metadata={"refund_request": "rr_1"})

    assert set(re.to_dict()) == REFUND_FIELDS
    assert re.id.startswith("re_")
    assert (re.object, re.amount, re.currency, re.status) == ("refund", 2599, "eur", "succeeded")
    assert (re.charge, re.payment_intent) == (pi.latest_charge, pi.id)
    assert re.reason == "requested_by_customer"
    assert re.metadata.to_dict() == {"refund_request": "rr_1"}
    assert isinstance(re.created, int)
    assert re.failure_reason is None and re.failure_balance_transaction is None
    assert re.pending_reason is None
    assert re.balance_transaction.startswith("txn_")
    assert re.destination_details.to_dict() == {
        "card": {
            "reference": None,
            "reference_status": "pending",
            "reference_type": "acquirer_reference_number",
            "type": "refund",
        },
        "type": "card",
    }
    assert client.v1.refunds.retrieve(re.id).to_dict() == re.to_dict()

    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (2599, True)
    assert "refunds" not in charge  # not expanded by default since API 2022-11-15
    charge = client.v1.charges.retrieve(pi.latest_charge, params={"expand": ["refunds"]})
    assert [r.id for r in charge.refunds.data] == [re.id]
    assert charge.refunds.url == f"/v1/charges/{charge.id}/refunds"

    # The PaymentIntent is still succeeded; its latest charge shows the refunds.
    pi = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge.refunds"]})
    assert pi.status == "succeeded"
    assert pi.latest_charge.amount_refunded == 2599
    assert [r.id for r in pi.latest_charge.refunds.data] == [re.id]
    assert (
        "refunds"
        not in client.v1.payment_intents.retrieve(
            pi.id, params={"expand": ["latest_charge"]}
        ).latest_charge
    )

    created = event(webhook_receiver, "refund.created", re.id)
    assert created.api_version == stripe.api_version
    assert created.data.object.to_dict() == re.to_dict()
    refunded = event(webhook_receiver, "charge.refunded", charge.id)
    assert refunded.data.object.object == "charge"
    assert (refunded.data.object.amount_refunded, refunded.data.object.refunded) == (2599, True)
    assert refunded.data.previous_attributes.to_dict() == {"amount_refunded": 0, "refunded": False}


def test_partial_refunds_then_the_remainder(client, webhook_receiver):
    pi = paid(client)
    first = refund(client, pi, amount=1000, reason="duplicate")
    assert (first.amount, first.status, first.reason) == (1000, "succeeded", "duplicate")
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (1000, False)
    partial = event(webhook_receiver, "charge.refunded", charge.id)
    assert partial.data.object.amount_refunded == 1000
    assert partial.data.previous_attributes.to_dict() == {"amount_refunded": 0}

    rest = refund(client, pi)  # no amount: what is left
    assert rest.amount == 1599
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (2599, True)
    full = event(
        webhook_receiver,
        "charge.refunded",
        charge.id,
        where=lambda e: e.data.object.amount_refunded == 2599,
    )
    assert full.data.previous_attributes.to_dict() == {"amount_refunded": 1000, "refunded": False}
    event(webhook_receiver, "refund.created", first.id)
    event(webhook_receiver, "refund.created", rest.id)

    # A fully refunded charge cannot be refunded again, with or without an amount.
    for params in ({}, {"amount": 1}):
        error = refused(lambda params=params: refund(client, pi, **params))
        assert error.code == "charge_already_refunded"
        assert error.user_message == f"Charge {charge.id} has already been refunded."
    assert refund_ids(client, payment_intent=pi.id) == [rest.id, first.id]


def test_refund_by_charge(client):
    pi = paid(client, amount=5000)
    re = client.v1.refunds.create(params={"charge": pi.latest_charge, "amount": 1200})
    assert (re.charge, re.payment_intent, re.amount) == (pi.latest_charge, pi.id, 1200)
    # Both, when they agree.
    both = client.v1.refunds.create(
        params={"charge": pi.latest_charge, "payment_intent": pi.id, "amount": 800}
    )
    assert both.amount == 800
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 2000
    other = paid(client)
    error = refused(
        lambda: client.v1.refunds.create(
            params={"charge": pi.latest_charge, "payment_intent": other.id}
        )
    )
    assert error.param == "charge"


@pytest.mark.parametrize(
    ("currency", "amount", "first", "too_much", "charge_message", "remainder_message"),
    [
        ("eur", 2599, 1000, 3000, ("€30.00", "€25.99"), ("€16.00", "€15.99")),
        ("usd", 1000, 250, 1001, ("$10.01", "$10.00"), ("$7.51", "$7.50")),
        ("jpy", 1500, 500, 2000, ("¥2000", "¥1500"), ("¥1001", "¥1000")),
        ("chf", 1000, 1, 1200, ("12.00 CHF", "10.00 CHF"), ("10.00 CHF", "9.99 CHF")),
    ],
)
def test_over_refunds_are_refused_like_stripe(
    client, currency, amount, first, too_much, charge_message, remainder_message
):
    pi = paid(client, amount=amount, currency=currency)

    error = refused(lambda: refund(client, pi, amount=too_much))
    assert (error.code, error.param) == ("amount_too_large", "amount")
    assert error.json_body["error"]["type"] == "invalid_request_error"
    assert error.user_message == (
        "Refund amount ({}) is greater than charge amount ({})".format(*charge_message)
    )
    assert refund_ids(client, payment_intent=pi.id) == []

    refund(client, pi, amount=first)
    remaining = amount - first
    error = refused(lambda: refund(client, pi, amount=remaining + 1))
    assert (error.code, error.param) == ("amount_too_large", "amount")
    assert error.user_message == (
        "Refund amount ({}) is greater than unrefunded amount on charge ({})".format(
            *remainder_message
        )
    )
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == first
    # Exactly the remainder still works.
    assert refund(client, pi, amount=remaining).amount == remaining


def test_invalid_parameters(client):
    pi = paid(client)
    error = refused(lambda: refund(client, pi, reason="changed_mind"))
    assert (error.code, error.param) == ("parameter_invalid_string", "reason")
    assert error.user_message == (
        "Invalid reason: must be one of duplicate, fraudulent, requested_by_customer"
    )
    for amount, message in (
        (0, "This value must be greater than or equal to 1."),
        (-100, "Invalid positive integer"),
    ):
        error = refused(lambda amount=amount: refund(client, pi, amount=amount))
        assert (error.code, error.param, error.user_message) == (
            "parameter_invalid_integer",
            "amount",
            message,
        )
    error = refused(lambda: client.v1.refunds.create(params={"amount": 100}))
    assert error.user_message == (
        "One of the following params should be provided for this request: payment_intent or charge."
    )
    error = refused(lambda: client.v1.refunds.create(params={"payment_intent": "pi_nope"}))
    assert (error.code, error.param) == ("resource_missing", "payment_intent")
    assert error.user_message == "No such payment_intent: 'pi_nope'"
    error = refused(lambda: client.v1.refunds.create(params={"charge": "ch_nope"}))
    assert (error.code, error.param) == ("resource_missing", "charge")
    error = refused(lambda: refund(client, pi, colour="blue"))
    assert (error.code, error.user_message) == (
        "parameter_unknown",
        "Received unknown parameter: colour",
    )
    error = refused(lambda: refund(client, pi, metadata="nope"))
    assert error.param == "metadata"
    # Nothing was refunded.
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 0
    assert refund_ids(client, payment_intent=pi.id) == []


def test_payment_intents_without_a_successful_charge(client):
    unconfirmed = client.v1.payment_intents.create(params={"amount": 1000, "currency": "eur"})
    uncaptured = paid(client, capture_method="manual")
    assert uncaptured.status == "requires_capture"
    canceled = client.v1.payment_intents.cancel(
        client.v1.payment_intents.create(params={"amount": 1000, "currency": "eur"}).id
    )
    with pytest.raises(stripe.CardError) as raised:
        paid(client, DECLINED_WHEN_CHARGED)
    declined = client.v1.payment_intents.retrieve(
        raised.value.json_body["error"]["payment_intent"]["id"]
    )
    assert declined.status == "requires_payment_method"

    for pi in (unconfirmed, uncaptured, canceled, declined):
        error = refused(lambda pi=pi: refund(client, pi))
        assert error.user_message == (
            f"This PaymentIntent ({pi.id}) does not have a successful charge to refund."
        )
    # The uncaptured charge itself: Stripe says to cancel the PaymentIntent.
    error = refused(lambda: client.v1.refunds.create(params={"charge": uncaptured.latest_charge}))
    assert error.user_message.startswith(
        f"This uncaptured Charge was created by a PaymentIntent ({uncaptured.id}). You must "
        "cancel the PaymentIntent to reverse the authorization"
    )
    # The declined charge is not refundable either.
    failed_charge = client.v1.payment_intents.retrieve(declined.id).latest_charge
    error = refused(lambda: client.v1.refunds.create(params={"charge": failed_charge}))
    assert error.user_message == (
        f"This PaymentIntent ({declined.id}) does not have a successful charge to refund."
    )
    assert refund_ids(client, payment_intent=uncaptured.id) == []


def test_uncaptured_charge_without_payment_intent(client):
    """Charges made with /v1/charges and capture=false are released by a
    refund of their whole amount."""
    charge = client.v1.charges.create(
        params={"amount": 1000, "currency": "eur", "source": card(client).id, "capture": False}
    )
    assert charge.captured is False
    error = refused(lambda: client.v1.refunds.create(params={"charge": charge.id, "amount": 500}))
    assert error.param == "amount"
    assert error.user_message.startswith("You cannot partially refund an uncaptured charge.")
    re = client.v1.refunds.create(params={"charge": charge.id})
    assert (re.amount, re.status, re.balance_transaction, re.payment_intent) == (
        1000,
        "succeeded",
        None,
        None,
    )
    charge = client.v1.charges.retrieve(charge.id)
    assert (charge.refunded, charge.amount_refunded, charge.captured) == (True, 1000, False)


def test_refunds_need_the_secret_key(sandbox, client):
    pi = paid(client)
    response = http(
        "POST",
        f"{sandbox.url}/v1/refunds",
        {"payment_intent": pi.id},
        {"Authorization": f"Bearer {PUBLISHABLE_KEY}"},
    )
    assert response.status == 401
    assert response.json()["error"]["code"] == "secret_key_required"
    assert refund_ids(client, payment_intent=pi.id) == []


# --- Idempotency -----------------------------------------------------------


def test_idempotent_replay_returns_the_same_refund(client, sandbox, webhook_receiver):
    pi = paid(client)
    key = f"refund-request-{uuid.uuid4()}"
    params = {"payment_intent": pi.id, "amount": 700, "metadata": {"refund_request": "42"}}

    first = client.v1.refunds.create(params=params, options={"idempotency_key": key})
    again = client.v1.refunds.create(params=params, options={"idempotency_key": key})
    assert again.id == first.id
    assert again.to_dict() == first.to_dict()
    raw = http(
        "POST",
        f"{sandbox.url}/v1/refunds",
        {"payment_intent": pi.id, "amount": 700, "metadata[refund_request]": "42"},
        {**AUTH, "Idempotency-Key": key},
    )
    assert raw.status == 200
    assert raw.headers["Idempotent-Replayed"] == "true"
    assert raw.json()["id"] == first.id

    assert refund_ids(client, payment_intent=pi.id) == [first.id]
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 700
    event(webhook_receiver, "refund.created", first.id)

    # The same key with other parameters is an error, and refunds nothing.
    with pytest.raises(stripe.IdempotencyError):
        client.v1.refunds.create(params={**params, "amount": 800}, options={"idempotency_key": key})
    # Another key is another refund.
    other = client.v1.refunds.create(params=params, options={"idempotency_key": key + "-2"})
    assert other.id != first.id
    assert refund_ids(client, payment_intent=pi.id) == [other.id, first.id]
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 1400


# --- Lists, retrieval, updates, cancellation --------------------------------


def test_lists_newest_first_with_filters_and_pages(client, sandbox):
    pi = paid(client, amount=10000)
    ids = [refund(client, pi, amount=amount).id for amount in (100, 200, 300)]
    other = paid(client)
    other_refund = refund(client, other, amount=50)
    newest_first = ids[::-1]

    assert refund_ids(client, payment_intent=pi.id) == newest_first
    assert refund_ids(client, charge=pi.latest_charge) == newest_first
    assert refund_ids(client, charge=other.latest_charge) == [other_refund.id]
    everything = refund_ids(client, limit=100)
    assert everything[:4] == [other_refund.id, *newest_first]

    page = client.v1.refunds.list(params={"payment_intent": pi.id, "limit": 2})
    assert ([r.id for r in page.data], page.has_more) == (newest_first[:2], True)
    rest = client.v1.refunds.list(
        params={"payment_intent": pi.id, "limit": 2, "starting_after": newest_first[1]}
    )
    assert ([r.id for r in rest.data], rest.has_more) == (newest_first[2:], False)
    paged = client.v1.refunds.list(params={"payment_intent": pi.id, "limit": 1})
    assert [r.id for r in paged.auto_paging_iter()] == newest_first
    created = client.v1.refunds.retrieve(ids[0]).created
    assert set(newest_first) <= set(refund_ids(client, limit=100, created={"gte": created}))
    assert refund_ids(client, payment_intent=pi.id, created={"lt": created}) == []

    # The charge's own list.
    listed = http("GET", f"{sandbox.url}/v1/charges/{pi.latest_charge}/refunds", None, AUTH)
    assert listed.status == 200
    assert [r["id"] for r in listed.json()["data"]] == newest_first

    error = refused(lambda: client.v1.refunds.list(params={"payment_intent": "pi_nope"}))
    assert (error.code, error.param) == ("resource_missing", "payment_intent")
    error = refused(lambda: client.v1.refunds.list(params={"customer": "cus_x"}))
    assert error.code == "parameter_unknown"


def test_retrieve_unknown_refund(client):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.retrieve("re_nope")
    assert raised.value.http_status == 404
    assert raised.value.code == "resource_missing"
    assert raised.value.user_message == "No such refund: 're_nope'"


def test_update_metadata_sends_refund_updated(client, webhook_receiver):
    pi = paid(client)
    re = refund(client, pi, amount=500, metadata={"request": "r1", "note": "x"})
    updated = client.v1.refunds.update(re.id, params={"metadata": {"note": "", "batch": "b7"}})
    assert updated.metadata.to_dict() == {"request": "r1", "batch": "b7"}
    assert client.v1.refunds.retrieve(re.id).metadata.to_dict() == {"request": "r1", "batch": "b7"}

    for type in ("refund.updated", "charge.refund.updated"):
        sent = event(webhook_receiver, type, re.id)
        assert sent.data.object.metadata.to_dict() == {"request": "r1", "batch": "b7"}
        assert sent.data.previous_attributes.to_dict() == {"metadata": {"batch": None, "note": "x"}}

    # Only metadata may change.
    error = refused(lambda: client.v1.refunds.update(re.id, params={"amount": 100}))
    assert (error.code, error.param) == ("parameter_unknown", "amount")
    assert client.v1.refunds.retrieve(re.id).amount == 500


def test_card_refunds_cannot_be_canceled(client):
    """Stripe cancels only refunds in requires_action, which card refunds
    never enter."""
    pi = paid(client)
    re = refund(client, pi)
    error = refused(lambda: client.v1.refunds.cancel(re.id))
    assert error.user_message == (
        "You cannot cancel this refund because it has a status of succeeded. "
        "Only a refund with a status of requires_action may be canceled."
    )
    assert client.v1.refunds.retrieve(re.id).status == "succeeded"


# --- Refunds that change later ----------------------------------------------


def test_refund_of_4000000000005126_fails_asynchronously(client, webhook_receiver):
    pi = paid(client, REFUND_FAILS, amount=4200)
    re = refund(client, pi, reason="requested_by_customer")
    assert (re.status, re.failure_reason, re.amount) == ("succeeded", None, 4200)
    refunded = event(webhook_receiver, "charge.refunded", pi.latest_charge)
    assert (refunded.data.object.amount_refunded, refunded.data.object.refunded) == (4200, True)

    failed = event(webhook_receiver, "refund.failed", re.id)
    assert failed.data.object.status == "failed"
    assert failed.data.object.failure_reason == "expired_or_canceled_card"
    assert failed.data.object.failure_balance_transaction.startswith("txn_")
    for type in ("refund.updated", "charge.refund.updated"):
        sent = event(webhook_receiver, type, re.id)
        assert sent.data.object.status == "failed"
        assert sent.data.previous_attributes.to_dict() == {
            "failure_balance_transaction": None,
            "failure_reason": None,
            "status": "succeeded",
        }

    re = client.v1.refunds.retrieve(re.id)
    assert (re.status, re.failure_reason) == ("failed", "expired_or_canceled_card")
    charge = client.v1.charges.retrieve(pi.latest_charge, params={"expand": ["refunds"]})
    assert (charge.amount_refunded, charge.refunded) == (0, False)
    assert [r.status for r in charge.refunds.data] == ["failed"]
    # The money is refundable again (and this card fails again, later).
    assert refund(client, pi).amount == 4200


def test_refund_of_4000000000007726_is_pending_then_succeeds(client, webhook_receiver):
    pi = paid(client, REFUND_PENDING, amount=3000)
    re = refund(client, pi, amount=1000)
    assert (re.status, re.pending_reason) == ("pending", "processing")
    # A pending refund counts: the rest is 2000.
    error = refused(lambda: refund(client, pi, amount=2001))
    assert error.code == "amount_too_large"

    updated = event(
        webhook_receiver,
        "refund.updated",
        re.id,
        where=lambda e: e.data.object.status == "succeeded",
    )
    assert updated.data.previous_attributes.to_dict() == {
        "pending_reason": "processing",
        "status": "pending",
    }
    event(webhook_receiver, "charge.refund.updated", re.id)
    re = client.v1.refunds.retrieve(re.id)
    assert (re.status, re.pending_reason) == ("succeeded", None)
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 1000


def test_fail_hook(client, sandbox, webhook_receiver):
    pi = paid(client, amount=3000)
    kept = refund(client, pi, amount=700)
    re = refund(client, pi, amount=500)

    # Secret key only.
    assert fail_hook(sandbox, re.id, {"key": PUBLISHABLE_KEY}, headers={}).status == 401
    bad = fail_hook(sandbox, re.id, {"failure_reason": "bored"})
    assert (bad.status, bad.json()["error"]["param"]) == (400, "failure_reason")
    assert fail_hook(sandbox, "re_nope").status == 404

    response = fail_hook(sandbox, re.id, {"failure_reason": "lost_or_stolen_card"})
    assert response.status == 200
    body = response.json()
    assert (body["id"], body["status"], body["failure_reason"]) == (
        re.id,
        "failed",
        "lost_or_stolen_card",
    )
    assert body["failure_balance_transaction"].startswith("txn_")

    failed = event(webhook_receiver, "refund.failed", re.id)
    assert failed.data.object.failure_reason == "lost_or_stolen_card"
    updated = event(webhook_receiver, "refund.updated", re.id)
    assert updated.data.previous_attributes.status == "succeeded"
    event(webhook_receiver, "charge.refund.updated", re.id)

    # Only that refund stops counting.
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (700, False)
    assert client.v1.refunds.retrieve(kept.id).status == "succeeded"
    # A failed refund cannot fail again; the default reason.
    again = fail_hook(sandbox, re.id)
    assert again.status == 400
    assert again.json()["error"]["message"] == (
        "Only a pending or succeeded refund can fail; this one is failed."
    )
    default = fail_hook(sandbox, kept.id).json()
    assert (default["status"], default["failure_reason"]) == ("failed", "expired_or_canceled_card")
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 0


# --- A sandbox whose asynchronous refunds take an hour ---------------------------


@pytest.fixture(scope="module")
def slow_client(webhook_receiver):
    with Sandbox(
        webhook_url=webhook_receiver.url, webhook_secret=WEBHOOK_SECRET, refund_delay=3600
    ) as slow:
        yield slow, stripe.StripeClient(SECRET_KEY, base_addresses={"api": slow.url})


def test_fail_hook_on_a_pending_refund(slow_client, webhook_receiver):
    slow, client = slow_client
    pi = paid(client, REFUND_PENDING, amount=2000)
    re = refund(client, pi)
    assert re.status == "pending"
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 2000

    response = fail_hook(slow, re.id, {"failure_reason": "declined"})
    assert (response.status, response.json()["status"]) == (200, "failed")
    updated = event(webhook_receiver, "refund.updated", re.id)
    assert updated.data.previous_attributes.to_dict() == {
        "failure_balance_transaction": None,
        "failure_reason": None,
        "pending_reason": "processing",
        "status": "pending",
    }
    event(webhook_receiver, "refund.failed", re.id)
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 0


def test_refunds_of_4000000000005126_stay_succeeded_until_the_delay(slow_client):
    _, client = slow_client
    pi = paid(client, REFUND_FAILS)
    re = refund(client, pi)
    assert client.v1.refunds.retrieve(re.id).status == "succeeded"
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 2599
