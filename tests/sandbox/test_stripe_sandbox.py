"""The sandbox's payments, cards, idempotency and CORS, through stripe-python 16.1.0."""

import uuid

import pytest
import stripe

from .sandbox_helpers import PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET, WebhookReceiver, http

VISA = "4242424242424242"
DECLINED_WHEN_CHARGED = "4000000000000341"
THREE_D_SECURE = "4000002760003184"
AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}


def payment_method(client, number, **params):
    return client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            **params,
        }
    )


def payment_intent(client, **params):
    return client.v1.payment_intents.create(params={"amount": 2599, "currency": "eur", **params})


def authenticate(sandbox, pi, success):
    """Complete or fail the 3-D Secure challenge of a PaymentIntent."""
    return http(
        "POST",
        f"{sandbox.url}/v1/payment_intents/{pi.id}/_authenticate",
        {"client_secret": pi.client_secret, "success": "true" if success else "false"},
        AUTH,
    )


# --- Confirming with a payment method ------------------------------------


def test_confirm_with_payment_method_succeeds(client, sandbox, webhook_receiver):
    pi = payment_intent(client)
    pm = payment_method(client, VISA)
    pi = client.v1.payment_intents.confirm(pi.id, params={"payment_method": pm.id})
    assert pi.status == "succeeded"
    assert pi.payment_method == pm.id
    assert pi.amount_received == 2599
    event = webhook_receiver.wait_for_event(WEBHOOK_SECRET, "payment_intent.succeeded", pi.id)
    assert event.api_version == stripe.api_version
    assert event.data.object.status == "succeeded"
    assert event.data.object.latest_charge == pi.latest_charge


def test_declined_card_is_a_402_card_error(client, webhook_receiver):
    pi = payment_intent(client)
    pm = payment_method(client, DECLINED_WHEN_CHARGED)
    with pytest.raises(stripe.CardError) as raised:
        client.v1.payment_intents.confirm(pi.id, params={"payment_method": pm.id})
    error = raised.value
    assert error.http_status == 402
    assert error.code == "card_declined"
    body = error.json_body["error"]
    assert body["type"] == "card_error"
    assert body["decline_code"] == "generic_decline"
    assert body["message"] == "Your card was declined."
    assert body["payment_intent"]["id"] == pi.id
    assert body["payment_intent"]["status"] == "requires_payment_method"

    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "requires_payment_method"
    assert pi.payment_method is None
    assert pi.last_payment_error.code == "card_declined"
    assert pi.last_payment_error.decline_code == "generic_decline"
    assert pi.last_payment_error.payment_method.id == pm.id
    webhook_receiver.wait_for_event(WEBHOOK_SECRET, "payment_intent.payment_failed", pi.id)

    # The customer tries another card: a new attempt, which succeeds.
    pi = client.v1.payment_intents.confirm(
        pi.id, params={"payment_method": payment_method(client, VISA).id}
    )
    assert pi.status == "succeeded"
    assert pi.last_payment_error is None


@pytest.mark.parametrize(
    "number, code, decline_code",
    [
        ("4000000000000002", "card_declined", "generic_decline"),
        ("4000000000009995", "card_declined", "insufficient_funds"),
        ("4000000000000069", "expired_card", "expired_card"),
    ],
)
def test_decline_codes_of_stripe_test_cards(client, number, code, decline_code):
    pi = payment_intent(client)
    with pytest.raises(stripe.CardError) as raised:
        client.v1.payment_intents.confirm(
            pi.id, params={"payment_method": payment_method(client, number).id}
        )
    assert raised.value.code == code
    assert raised.value.json_body["error"]["decline_code"] == decline_code


def test_invalid_card_number_is_refused_like_stripe(client):
    with pytest.raises(stripe.CardError) as raised:
        payment_method(client, "4242424242424241")
    assert raised.value.code == "incorrect_number"


def test_create_with_confirm_still_works(client):
    pi = payment_intent(client, payment_method="pm_card_visa", confirm=True)
    assert pi.status == "succeeded"
    assert pi.payment_method.startswith("pm_")
    assert pi.payment_method != "pm_card_visa"

    with pytest.raises(stripe.CardError) as raised:
        payment_intent(
            client, confirm=True, payment_method=payment_method(client, DECLINED_WHEN_CHARGED).id
        )
    assert raised.value.json_body["error"]["payment_intent"]["status"] == "requires_payment_method"


def test_confirming_a_succeeded_payment_intent_is_refused(client):
    pi = payment_intent(client, payment_method="pm_card_visa", confirm=True)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"})
    assert raised.value.code == "payment_intent_unexpected_state"


# --- 3-D Secure ---------------------------------------------------------


def test_3ds_card_requires_action_then_authentication_succeeds(client, sandbox, webhook_receiver):
    pi = payment_intent(client)
    pi = client.v1.payment_intents.confirm(
        pi.id, params={"payment_method": payment_method(client, THREE_D_SECURE).id}
    )
    assert pi.status == "requires_action"
    assert pi.next_action.type == "use_stripe_sdk"
    assert pi.latest_charge is None

    response = authenticate(sandbox, pi, success=True)
    assert response.status == 200
    assert response.json()["status"] == "succeeded"
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "succeeded"
    assert pi.latest_charge.startswith("ch_")
    for type in ("payment_intent.requires_action", "payment_intent.succeeded"):
        webhook_receiver.wait_for_event(WEBHOOK_SECRET, type, pi.id)


def test_3ds_authentication_failure(client, sandbox, webhook_receiver):
    pm = payment_method(client, THREE_D_SECURE)
    pi = payment_intent(client, payment_method=pm.id, confirm=True)
    assert pi.status == "requires_action"

    assert authenticate(sandbox, pi, success=False).status == 200
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "payment_intent_authentication_failure"
    assert pi.last_payment_error.payment_method.id == pm.id
    event = webhook_receiver.wait_for_event(WEBHOOK_SECRET, "payment_intent.payment_failed", pi.id)
    assert event.data.object.last_payment_error.code == "payment_intent_authentication_failure"


def test_3ds_with_return_url_redirects_through_a_sandbox_page(client):
    pi = payment_intent(
        client,
        confirm=True,
        return_url="http://shop.test/done?order=7",
        payment_method=payment_method(client, THREE_D_SECURE).id,
    )
    assert pi.next_action.type == "redirect_to_url"
    page = http("GET", pi.next_action.redirect_to_url.url)
    assert page.status == 200
    assert b"Complete authentication" in page.body

    answer = http(
        "POST",
        pi.next_action.redirect_to_url.url.split("?")[0],
        {"client_secret": pi.client_secret, "success": "true"},
    )
    assert answer.status == 303
    assert answer.headers["Location"] == (
        f"http://shop.test/done?order=7&payment_intent={pi.id}"
        f"&payment_intent_client_secret={pi.client_secret}"
        "&redirect_status=succeeded"
    )
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


# --- From the browser: publishable key and client secret -----------------


def test_stripe_js_calls_with_publishable_key(client, sandbox):
    pi = payment_intent(client)
    pm = http(
        "POST",
        f"{sandbox.url}/v1/payment_methods",
        {
            "key": PUBLISHABLE_KEY,
            "type": "card",
            "card[number]": VISA,
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        },
    )
    assert pm.status == 200
    confirm_url = f"{sandbox.url}/v1/payment_intents/{pi.id}/confirm"
    confirm = {"key": PUBLISHABLE_KEY, "payment_method": pm.json()["id"]}

    refused = http("POST", confirm_url, {**confirm, "client_secret": pi.client_secret + "x"})
    assert refused.status == 400
    assert refused.json()["error"]["param"] == "client_secret"

    confirmed = http("POST", confirm_url, {**confirm, "client_secret": pi.client_secret})
    assert confirmed.status == 200
    assert confirmed.json()["status"] == "succeeded"

    retrieve_url = f"{sandbox.url}/v1/payment_intents/{pi.id}"
    assert (
        http(
            "GET",
            retrieve_url,
            {
                "key": PUBLISHABLE_KEY,
                "client_secret": pi.client_secret,
            },
        ).json()["status"]
        == "succeeded"
    )
    assert http("GET", retrieve_url, {"key": PUBLISHABLE_KEY}).status == 400
    # Anything else still needs the secret key.
    assert http("GET", f"{sandbox.url}/v1/customers", {"key": PUBLISHABLE_KEY}).status == 401


# --- Idempotency --------------------------------------------------------


def test_idempotency_key_replays_the_first_response(client, sandbox):
    key = str(uuid.uuid4())
    email = f"{key}@example.com"
    first = client.v1.customers.create(params={"email": email}, options={"idempotency_key": key})
    again = client.v1.customers.create(params={"email": email}, options={"idempotency_key": key})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    customers = client.v1.customers.list(params={"email": email})
    assert [c.id for c in customers.data] == [first.id]

    raw = [
        http(
            "POST",
            f"{sandbox.url}/v1/customers",
            {"email": email},
            {**AUTH, "Idempotency-Key": key},
        )
        for _ in range(2)
    ]
    assert raw[0].status == raw[1].status == 200
    assert raw[0].body == raw[1].body == first.last_response.body.encode()


def test_idempotency_replays_card_errors_without_charging_again(client):
    pi = payment_intent(client)
    pm = payment_method(client, DECLINED_WHEN_CHARGED)
    key = str(uuid.uuid4())
    errors = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as raised:
            client.v1.payment_intents.confirm(
                pi.id, params={"payment_method": pm.id}, options={"idempotency_key": key}
            )
        errors.append(raised.value)
    assert errors[0].json_body == errors[1].json_body
    assert errors[1].headers["Idempotent-Replayed"] == "true"


def test_idempotency_key_reused_differently_is_an_error(client, sandbox):
    key = str(uuid.uuid4())
    client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": key})
    with pytest.raises(stripe.IdempotencyError) as raised:
        client.v1.customers.create(
            params={"email": "b@example.com"}, options={"idempotency_key": key}
        )
    assert raised.value.http_status == 400
    assert raised.value.json_body["error"]["type"] == "idempotency_error"
    assert "same parameters" in raised.value.user_message

    with pytest.raises(stripe.IdempotencyError) as raised:
        client.v1.payment_intents.create(
            params={"amount": 100, "currency": "eur"}, options={"idempotency_key": key}
        )
    assert "same endpoint" in raised.value.user_message


def test_idempotency_keys_are_per_api_key(client, sandbox):
    key = str(uuid.uuid4())
    other = stripe.StripeClient("sk_test_someone_else", base_addresses={"api": sandbox.url})
    mine = client.v1.customers.create(options={"idempotency_key": key})
    theirs = other.v1.customers.create(options={"idempotency_key": key})
    assert mine.id != theirs.id


# --- Shapes of the pinned API version -----------------------------------


def test_latest_charge_is_an_id_unless_expanded(client, sandbox):
    pm = payment_method(
        client, VISA, billing_details={"name": "Ada Lovelace", "email": "ada@example.com"}
    )
    pi = payment_intent(client, payment_method=pm.id, confirm=True)
    assert isinstance(pi.latest_charge, str)
    assert isinstance(client.v1.payment_intents.retrieve(pi.id).latest_charge, str)

    pi = client.v1.payment_intents.retrieve(
        pi.id, params={"expand": ["latest_charge", "payment_method"]}
    )
    assert pi.payment_method.card.last4 == "4242"
    charge = pi.latest_charge
    assert charge.object == "charge"
    assert charge.payment_intent == pi.id
    assert charge.payment_method_details.type == "card"
    card = charge.payment_method_details.card
    assert (card.brand, card.last4, card.exp_month, card.exp_year, card.funding, card.country) == (
        "visa",
        "4242",
        12,
        2034,
        "credit",
        "US",
    )
    assert charge.billing_details.name == "Ada Lovelace"
    assert charge.billing_details.email == "ada@example.com"
    assert charge.billing_details.address.postal_code is None
    receipt = http("GET", charge.receipt_url)
    assert receipt.status == 200
    assert b"25.99 EUR" in receipt.body

    # Also when confirming: expand works on POSTs too.
    pi = payment_intent(
        client, payment_method="pm_card_visa", confirm=True, expand=["latest_charge"]
    )
    assert pi.latest_charge.object == "charge"


# --- Webhooks -----------------------------------------------------------


def test_webhooks_registered_at_runtime_are_signed_with_their_secret(client, sandbox):
    receiver = WebhookReceiver()
    try:
        sandbox.register_webhook(receiver.url, "whsec_runtime", id="runtime")
        pi = payment_intent(client, payment_method="pm_card_visa", confirm=True)
        event = receiver.wait_for_event("whsec_runtime", "payment_intent.succeeded", pi.id)
        assert isinstance(event.data.object.latest_charge, str)
        with pytest.raises(stripe.SignatureVerificationError):
            signature, body = receiver.received[0]
            stripe.Webhook.construct_event(body, signature, WEBHOOK_SECRET)
    finally:
        receiver.close()


def test_cancel_sends_payment_intent_canceled(client, webhook_receiver):
    pi = payment_intent(client)
    pi = client.v1.payment_intents.cancel(
        pi.id, params={"cancellation_reason": "requested_by_customer"}
    )
    assert pi.status == "canceled"
    assert pi.cancellation_reason == "requested_by_customer"
    event = webhook_receiver.wait_for_event(WEBHOOK_SECRET, "payment_intent.canceled", pi.id)
    assert event.data.object.status == "canceled"

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.cancel(pi.id)
    assert raised.value.code == "payment_intent_unexpected_state"


# --- Browser access -----------------------------------------------------


def test_cors_preflight_and_responses(sandbox):
    origin = "http://127.0.0.1:5000"
    preflight = http(
        "OPTIONS",
        f"{sandbox.url}/v1/payment_intents/pi_1/confirm",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed

    response = http("GET", f"{sandbox.url}/v1/customers", headers={**AUTH, "Origin": origin})
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin


def test_stripe_js_double_is_served(sandbox):
    response = http("GET", sandbox.js_url)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/javascript")
    assert b"confirmPayment" in response.body
    assert b"console." not in response.body  # it logs nothing, no card data

