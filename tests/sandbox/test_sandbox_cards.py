"""Saved cards in the sandbox: customers' payment methods, SetupIntents,
PaymentIntents with customers and their events, through stripe-python 16.1.0
(and raw requests where Stripe.js or the sandbox's test hook are concerned)."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import stripe

from .sandbox_helpers import PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET, http

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
DECLINED = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
DECLINED_WHEN_CHARGED = "4000000000000341"
ALWAYS_AUTHENTICATE = "4000002760003184"
AUTHENTICATE_UNLESS_SET_UP = "4000002500003155"
AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}


def card(client, number=VISA, exp_month=12, exp_year=2034, **params):
    return client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": "123"},
            **params,
        }
    )


def customer(client, **params):
    return client.v1.customers.create(params={"email": "ada@example.com", **params})


def saved_card(client, cus, number=VISA, **params):
    return client.v1.payment_methods.attach(card(client, number, **params).id, {"customer": cus.id})


def setup_intent(client, cus=None, **params):
    if cus is not None:
        params["customer"] = cus.id
    return client.v1.setup_intents.create(
        params={"allowed_payment_method_types": ["card"], **params})


def payment_intent(client, **params):
    return client.v1.payment_intents.create(params={"amount": 1500, "currency": "eur", **params})


def event(webhook_receiver, type, object_id, where=None):
    return webhook_receiver.wait_for_event(WEBHOOK_SECRET, type, object_id, where=where)


def authenticate(sandbox, intent, success):
    """The 3-D Secure challenge of a SetupIntent, completed or failed."""
    return http(
        "POST",
        f"{sandbox.url}/v1/setup_intents/{intent.id}/_authenticate",
        {"client_secret": intent.client_secret, "success": "true" if success else "false"},
        AUTH,
    )


def attached_ids(client, cus):
    return [pm.id for pm in client.v1.customers.payment_methods.list(cus.id).data]


# --- Customers and their default payment method --------------------------


def test_customer_default_payment_method(client, webhook_receiver):
    cus = customer(client, name="Ada Lovelace", metadata={"user_id": "7"})
    assert (cus.email, cus.name, cus.metadata.user_id) == ("ada@example.com", "Ada Lovelace", "7")
    assert cus.invoice_settings.default_payment_method is None

    pm = saved_card(client, cus)
    client.v1.customers.update(
        cus.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    cus = client.v1.customers.retrieve(cus.id)
    assert cus.invoice_settings.default_payment_method == pm.id
    updated = event(
        webhook_receiver,
        "customer.updated",
        cus.id,
        where=lambda e: e.data.object.invoice_settings.default_payment_method == pm.id,
    )
    assert updated.data.previous_attributes.invoice_settings.default_payment_method is None

    # Another update keeps it.
    cus = client.v1.customers.update(cus.id, params={"name": "Ada King"})
    assert (cus.name, cus.invoice_settings.default_payment_method) == ("Ada King", pm.id)


@pytest.mark.parametrize("whose", ["nobody", "another customer"])
def test_default_payment_method_must_be_attached_to_the_customer(client, whose):
    cus = customer(client)
    pm = card(client) if whose == "nobody" else saved_card(client, customer(client))
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.update(
            cus.id, params={"invoice_settings": {"default_payment_method": pm.id}}
        )
    assert raised.value.http_status == 400
    assert raised.value.param == "invoice_settings[default_payment_method]"
    assert raised.value.user_message == (
        f"The customer does not have a payment method with the ID {pm.id}. "
        "The payment method must be attached to the customer."
    )
    assert client.v1.customers.retrieve(cus.id).invoice_settings.default_payment_method is None


def test_default_payment_method_unknown_to_stripe(client):
    cus = customer(client)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.update(
            cus.id, params={"invoice_settings": {"default_payment_method": "pm_nonexistent"}}
        )
    assert raised.value.code == "resource_missing"


def test_detaching_the_default_payment_method(client, webhook_receiver):
    cus = customer(client)
    pm = saved_card(client, cus)
    other = saved_card(client, cus, MASTERCARD)
    client.v1.customers.update(
        cus.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )

    detached = client.v1.payment_methods.detach(pm.id)
    assert detached.customer is None
    assert client.v1.customers.retrieve(cus.id).invoice_settings.default_payment_method is None
    assert attached_ids(client, cus) == [other.id]

    event_ = event(webhook_receiver, "payment_method.detached", pm.id)
    assert event_.data.object.customer is None
    assert event_.data.previous_attributes.customer == cus.id
    event(
        webhook_receiver,
        "customer.updated",
        cus.id,
        where=lambda e: (
            e.data.object.invoice_settings.default_payment_method is None
            and "previous_attributes" in e.data
        ),
    )

    # A detached payment method is spent, as at Stripe.
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_methods.attach(pm.id, {"customer": cus.id})
    assert "may not be used again" in raised.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as raised:
        payment_intent(client, payment_method=pm.id)
    assert "It may not be used again" in raised.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_methods.detach(pm.id)
    assert raised.value.user_message == (
        "The payment method you provided is not attached to a customer so detachment is impossible."
    )


# --- Attaching -----------------------------------------------------------


def test_attach_sends_payment_method_attached(client, webhook_receiver):
    cus = customer(client)
    pm = client.v1.payment_methods.attach(card(client).id, {"customer": cus.id})
    assert pm.customer == cus.id
    assert event(webhook_receiver, "payment_method.attached", pm.id).data.object.customer == cus.id
    # Again for the same customer: nothing changes.
    assert client.v1.payment_methods.attach(pm.id, {"customer": cus.id}).customer == cus.id


def test_a_payment_method_belongs_to_one_customer(client):
    alice, bob = customer(client), customer(client, email="bob@example.com")
    pm = saved_card(client, alice)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_methods.attach(pm.id, {"customer": bob.id})
    assert raised.value.http_status == 400
    assert raised.value.user_message == (
        "The payment method you provided has already been attached to a customer."
    )
    assert client.v1.payment_methods.retrieve(pm.id).customer == alice.id
    assert attached_ids(client, bob) == []


def test_attaching_a_declined_card_is_a_card_error(client):
    cus = customer(client)
    with pytest.raises(stripe.CardError) as raised:
        client.v1.payment_methods.attach(card(client, DECLINED).id, {"customer": cus.id})
    assert raised.value.http_status == 402
    assert raised.value.code == "card_declined"
    assert raised.value.json_body["error"]["decline_code"] == "generic_decline"
    assert attached_ids(client, cus) == []


# --- Listing a customer's payment methods --------------------------------


def test_list_payment_methods_newest_first(client):
    cus, other = customer(client), customer(client)
    first = saved_card(client, cus)
    saved_card(client, other)
    card(client)  # attached to nobody
    second = saved_card(client, cus, MASTERCARD)
    third = saved_card(client, cus)
    newest_first = [third.id, second.id, first.id]

    listed = client.v1.payment_methods.list(params={"customer": cus.id, "type": "card"})
    assert [pm.id for pm in listed.data] == newest_first
    assert listed.object == "list" and listed.has_more is False
    assert listed.url == "/v1/payment_methods"
    assert attached_ids(client, cus) == newest_first
    by_customer = client.v1.customers.payment_methods.list(cus.id, params={"type": "card"})
    assert by_customer.url == f"/v1/customers/{cus.id}/payment_methods"

    page = client.v1.customers.payment_methods.list(cus.id, params={"limit": 2})
    assert ([pm.id for pm in page.data], page.has_more) == (newest_first[:2], True)
    page = client.v1.customers.payment_methods.list(
        cus.id, params={"limit": 2, "starting_after": page.data[-1].id}
    )
    assert ([pm.id for pm in page.data], page.has_more) == (newest_first[2:], False)
    page = client.v1.customers.payment_methods.list(
        cus.id, params={"limit": 1, "ending_before": first.id}
    )
    assert ([pm.id for pm in page.data], page.has_more) == ([second.id], True)
    # stripe-python's auto-pagination follows has_more.
    walked = client.v1.customers.payment_methods.list(cus.id, params={"limit": 1})
    assert [pm.id for pm in walked.auto_paging_iter()] == newest_first

    assert client.v1.customers.payment_methods.retrieve(cus.id, second.id).card.last4 == "4444"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.payment_methods.retrieve(other.id, second.id)
    assert raised.value.http_status == 404


# --- Card details --------------------------------------------------------


def test_card_fingerprint_is_per_card_number(client):
    a, b, c = card(client, VISA), card(client, VISA, exp_year=2035), card(client, MASTERCARD)
    assert a.id != b.id
    assert a.card.fingerprint == b.card.fingerprint
    assert a.card.fingerprint != c.card.fingerprint
    assert re.fullmatch(r"[A-Za-z0-9]{16}", a.card.fingerprint)
    assert (a.card.brand, a.card.last4, a.card.exp_month, a.card.exp_year) == (
        "visa",
        "4242",
        12,
        2034,
    )
    assert (c.card.brand, c.card.last4) == ("mastercard", "4444")
    # Also once saved through a SetupIntent.
    cus = customer(client)
    si = setup_intent(client, cus, payment_method=card(client, VISA).id, confirm=True)
    assert client.v1.payment_methods.retrieve(si.payment_method).card.fingerprint == (
        a.card.fingerprint
    )


def test_update_card_expiry_and_billing_details(client, webhook_receiver):
    cus = customer(client)
    pm = saved_card(client, cus, exp_month=3, exp_year=2030)
    pm = client.v1.payment_methods.update(
        pm.id,
        params={
            "card": {"exp_month": 11, "exp_year": 2031},
            "billing_details": {"name": "Ada Lovelace", "address": {"postal_code": "10115"}},
        },
    )
    assert (pm.card.exp_month, pm.card.exp_year, pm.card.last4) == (11, 2031, "4242")
    assert pm.billing_details.name == "Ada Lovelace"
    assert pm.billing_details.address.postal_code == "10115"
    assert pm.billing_details.address.city is None
    updated = event(webhook_receiver, "payment_method.updated", pm.id)
    assert updated.data.object.card.exp_month == 11
    previous = updated.data.previous_attributes
    assert (previous.card.exp_month, previous.card.exp_year) == (3, 2030)
    assert previous.billing_details.name is None


def test_only_expiry_and_billing_details_of_a_saved_card_may_change(client):
    cus = customer(client)
    pm = saved_card(client, cus)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_methods.update(pm.id, params={"card": {"number": MASTERCARD}})
    assert (raised.value.code, raised.value.param) == ("parameter_unknown", "card[number]")
    with pytest.raises(stripe.CardError) as raised:
        client.v1.payment_methods.update(pm.id, params={"card": {"exp_month": 13}})
    assert raised.value.code == "invalid_expiry_month"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_methods.update(card(client).id, params={"card": {"exp_month": 1}})
    assert raised.value.user_message == (
        "You must save this PaymentMethod to a customer before you can update it."
    )
    assert client.v1.payment_methods.retrieve(pm.id).card.exp_month == 12


def test_card_account_updater_test_hook(client, sandbox, webhook_receiver):
    cus = customer(client)
    pm = saved_card(client, cus, exp_month=1, exp_year=2030)
    url = f"{sandbox.url}/_sandbox/payment_methods/{pm.id}/automatically_update"
    update = {"exp_month": "9", "exp_year": "2033", "last4": "1016"}

    assert http("POST", url, {**update, "key": PUBLISHABLE_KEY}).status == 401
    response = http("POST", url, update, AUTH)
    assert response.status == 200
    assert response.json()["card"]["last4"] == "1016"

    pm_after = client.v1.payment_methods.retrieve(pm.id)
    assert (pm_after.card.exp_month, pm_after.card.exp_year, pm_after.card.last4) == (
        9,
        2033,
        "1016",
    )
    assert pm_after.card.fingerprint != pm.card.fingerprint  # a new card number
    assert pm_after.card.fingerprint == card(client, "4242424242421016").card.fingerprint
    assert pm_after.customer == cus.id
    updated = event(webhook_receiver, "payment_method.automatically_updated", pm.id)
    assert updated.data.object.card.exp_year == 2033
    assert updated.data.previous_attributes.card.exp_year == 2030
    assert updated.data.previous_attributes.card.last4 == "4242"

    # Only the expiry; exp_month and exp_year are required.
    assert http("POST", url, {"exp_month": "10", "exp_year": "2034"}, AUTH).status == 200
    assert client.v1.payment_methods.retrieve(pm.id).card.last4 == "1016"
    missing = http("POST", url, {"exp_month": "10"}, AUTH)
    assert (missing.status, missing.json()["error"]["param"]) == (400, "exp_year")
    unsaved = http("POST", url.replace(pm.id, card(client).id), update, AUTH)
    assert unsaved.status == 400


# --- SetupIntents --------------------------------------------------------


def test_setup_intent_saves_the_card_to_the_customer(client, webhook_receiver):
    cus = customer(client)
    si = setup_intent(client, cus, metadata={"purpose": "wallet"})
    assert si.status == "requires_payment_method"
    assert si.usage == "off_session"
    assert si.client_secret.startswith(f"{si.id}_secret_")
    assert (si.customer, si.metadata.purpose, si.payment_method_types) == (
        cus.id,
        "wallet",
        ["card"],
    )
    assert si.next_action is None and si.last_setup_error is None

    pm = card(client)
    si = client.v1.setup_intents.confirm(si.id, params={"payment_method": pm.id})
    assert (si.status, si.payment_method) == ("succeeded", pm.id)
    assert client.v1.setup_intents.retrieve(si.id).status == "succeeded"
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id
    assert attached_ids(client, cus) == [pm.id]

    for type in ("setup_intent.created", "setup_intent.succeeded"):
        event(webhook_receiver, type, si.id)
    assert event(webhook_receiver, "payment_method.attached", pm.id).data.object.customer == cus.id

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.setup_intents.confirm(si.id, params={"payment_method": card(client).id})
    assert raised.value.code == "setup_intent_unexpected_state"


def test_create_with_payment_method_and_confirm(client):
    cus = customer(client)
    si = setup_intent(client, cus, payment_method=card(client).id)
    assert si.status == "requires_confirmation"
    si = client.v1.setup_intents.confirm(si.id)
    assert si.status == "succeeded"

    si = setup_intent(client, cus, usage="on_session", payment_method=card(client).id, confirm=True)
    assert (si.status, si.usage) == ("succeeded", "on_session")
    assert client.v1.payment_methods.retrieve(si.payment_method).customer == cus.id


@pytest.mark.parametrize(
    "number, decline_code, message",
    [
        (DECLINED, "generic_decline", "Your card was declined."),
        (INSUFFICIENT_FUNDS, "insufficient_funds", "Your card has insufficient funds."),
    ],
)
def test_declined_setup(client, webhook_receiver, number, decline_code, message):
    cus = customer(client)
    si = setup_intent(client, cus)
    pm = card(client, number)
    with pytest.raises(stripe.CardError) as raised:
        client.v1.setup_intents.confirm(si.id, params={"payment_method": pm.id})
    error = raised.value
    assert (error.http_status, error.code, error.user_message) == (402, "card_declined", message)
    body = error.json_body["error"]
    assert (body["type"], body["decline_code"]) == ("card_error", decline_code)
    assert body["setup_intent"]["status"] == "requires_payment_method"
    assert body["payment_method"]["id"] == pm.id

    si = client.v1.setup_intents.retrieve(si.id)
    assert (si.status, si.payment_method) == ("requires_payment_method", None)
    assert (si.last_setup_error.code, si.last_setup_error.decline_code) == (
        "card_declined",
        decline_code,
    )
    assert si.last_setup_error.type == "card_error"
    assert si.last_setup_error.payment_method.id == pm.id
    assert attached_ids(client, cus) == []
    event(webhook_receiver, "setup_intent.setup_failed", si.id)

    # Another card: a new attempt succeeds.
    si = client.v1.setup_intents.confirm(si.id, params={"payment_method": card(client).id})
    assert si.status == "succeeded" and si.last_setup_error is None


def test_card_declined_only_when_charged_can_be_saved(client):
    si = setup_intent(client, customer(client))
    si = client.v1.setup_intents.confirm(
        si.id, params={"payment_method": card(client, DECLINED_WHEN_CHARGED).id}
    )
    assert si.status == "succeeded"


@pytest.mark.parametrize("number", [ALWAYS_AUTHENTICATE, AUTHENTICATE_UNLESS_SET_UP])
def test_3ds_setup_redirects_through_the_sandbox_page(client, webhook_receiver, number):
    cus = customer(client)
    pm = card(client, number)
    si = setup_intent(
        client,
        cus,
        payment_method=pm.id,
        confirm=True,
        return_url="http://shop.test/cards?step=2",
    )
    assert si.status == "requires_action"
    assert si.next_action.type == "redirect_to_url"
    redirect = si.next_action.redirect_to_url
    assert redirect.return_url == "http://shop.test/cards?step=2"
    assert redirect.url.split("?")[0].endswith(f"/3ds/{si.id}")
    assert client.v1.payment_methods.retrieve(pm.id).customer is None  # not yet
    event(webhook_receiver, "setup_intent.requires_action", si.id)

    challenge = http("GET", redirect.url)
    assert challenge.status == 200
    assert b"Complete authentication" in challenge.body
    assert http("GET", redirect.url.split("?")[0], {"client_secret": "nope"}).status == 400

    answer = http(
        "POST", redirect.url.split("?")[0], {"client_secret": si.client_secret, "success": "true"}
    )
    assert answer.status == 303
    location = urlsplit(answer.headers["Location"])
    assert location.netloc == "shop.test" and location.path == "/cards"
    assert parse_qs(location.query) == {
        "step": ["2"],
        "setup_intent": [si.id],
        "setup_intent_client_secret": [si.client_secret],
        "redirect_status": ["succeeded"],
    }
    assert client.v1.setup_intents.retrieve(si.id).status == "succeeded"
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id
    event(webhook_receiver, "setup_intent.succeeded", si.id)


def test_3ds_setup_page_failure_redirects_with_failed(client):
    si = setup_intent(
        client,
        customer(client),
        payment_method=card(client, ALWAYS_AUTHENTICATE).id,
        confirm=True,
        return_url="http://shop.test/cards",
    )
    page_url = si.next_action.redirect_to_url.url.split("?")[0]
    answer = http("POST", page_url, {"client_secret": si.client_secret, "success": "false"})
    assert answer.status == 303
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["redirect_status"] == ["failed"]
    assert client.v1.setup_intents.retrieve(si.id).status == "requires_payment_method"


def test_3ds_setup_authentication_failure(client, sandbox, webhook_receiver):
    cus = customer(client)
    si = setup_intent(client, cus)
    pm = card(client, ALWAYS_AUTHENTICATE)
    si = client.v1.setup_intents.confirm(si.id, params={"payment_method": pm.id})
    assert si.status == "requires_action"
    # No return_url: an action for Stripe.js (handleNextAction).
    assert si.next_action.type == "use_stripe_sdk"
    assert si.next_action.use_stripe_sdk.type == "three_d_secure_redirect"

    response = authenticate(sandbox, si, success=False)
    assert response.status == 200
    si = client.v1.setup_intents.retrieve(si.id)
    assert (si.status, si.payment_method, si.next_action) == ("requires_payment_method", None, None)
    error = si.last_setup_error
    assert error.code == "setup_intent_authentication_failure"
    assert error.type == "invalid_request_error"
    assert error.message == (
        "The latest attempt to set up the payment method has failed because authentication failed."
    )
    assert error.payment_method.id == pm.id
    assert client.v1.payment_methods.retrieve(pm.id).customer is None
    failed = event(webhook_receiver, "setup_intent.setup_failed", si.id)
    assert failed.data.object.last_setup_error.code == "setup_intent_authentication_failure"

    # Authenticating what does not wait for it is refused.
    assert authenticate(sandbox, si, success=True).status == 400


def test_3ds_setup_authentication_success(client, sandbox):
    cus = customer(client)
    si = setup_intent(client, cus, payment_method=card(client, AUTHENTICATE_UNLESS_SET_UP).id)
    si = client.v1.setup_intents.confirm(si.id)
    assert si.status == "requires_action"
    bad_secret = http(
        "POST",
        f"{sandbox.url}/v1/setup_intents/{si.id}/_authenticate",
        {"client_secret": si.client_secret + "x", "success": "true"},
        AUTH,
    )
    assert bad_secret.status == 400
    assert authenticate(sandbox, si, success=True).json()["status"] == "succeeded"
    assert attached_ids(client, cus) == [si.payment_method]


def test_setup_intent_from_stripe_js_with_publishable_key(client, sandbox):
    cus = customer(client)
    si = setup_intent(client, cus)
    si_url = f"{sandbox.url}/v1/setup_intents/{si.id}"
    secret = {"key": PUBLISHABLE_KEY, "client_secret": si.client_secret}

    assert http("GET", si_url, secret).json()["status"] == "requires_payment_method"
    wrong = http("GET", si_url, {**secret, "client_secret": si.client_secret + "x"})
    assert wrong.status == 400
    assert wrong.json()["error"]["message"] == (
        "The client_secret provided does not match the client_secret associated with the "
        "SetupIntent."
    )
    assert http("GET", si_url, {"key": PUBLISHABLE_KEY}).status == 400

    confirmed = http(
        "POST",
        f"{si_url}/confirm",
        {
            **secret,
            "use_stripe_sdk": "true",
            "return_url": "http://shop.test/cards",
            "payment_method_data[type]": "card",
            "payment_method_data[card][number]": ALWAYS_AUTHENTICATE,
            "payment_method_data[card][exp_month]": "12",
            "payment_method_data[card][exp_year]": "2034",
            "payment_method_data[card][cvc]": "123",
        },
    )
    assert confirmed.status == 200
    body = confirmed.json()
    # Confirmed by Stripe.js: an action for it, even with a return_url.
    assert (body["status"], body["next_action"]["type"]) == ("requires_action", "use_stripe_sdk")
    authenticated = http("POST", f"{si_url}/_authenticate", {**secret, "success": "true"})
    assert authenticated.json()["status"] == "succeeded"
    assert attached_ids(client, cus) == [body["payment_method"]]

    # What only a server may do.
    assert http("POST", f"{si_url}/cancel", secret).status == 401
    assert http("POST", f"{sandbox.url}/v1/setup_intents", {"key": PUBLISHABLE_KEY}).status == 401


def test_cancel_setup_intent(client, webhook_receiver):
    si = setup_intent(client, customer(client))
    si = client.v1.setup_intents.cancel(si.id, params={"cancellation_reason": "abandoned"})
    assert (si.status, si.cancellation_reason) == ("canceled", "abandoned")
    event(webhook_receiver, "setup_intent.canceled", si.id)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.setup_intents.cancel(si.id)
    assert raised.value.code == "setup_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.setup_intents.confirm(si.id, params={"payment_method": card(client).id})
    assert raised.value.user_message == (
        "You cannot confirm this SetupIntent because it has been canceled."
    )

    done = setup_intent(client, customer(client), payment_method=card(client).id, confirm=True)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.setup_intents.cancel(done.id)
    assert raised.value.code == "setup_intent_unexpected_state"


def test_setup_intent_needs_a_payment_method(client):
    si = setup_intent(client, customer(client))
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.setup_intents.confirm(si.id)
    assert raised.value.code == "setup_intent_unexpected_state"
    assert "missing a payment method" in raised.value.user_message


def test_setup_intent_with_another_customers_payment_method(client):
    alice, bob = customer(client), customer(client)
    pm = saved_card(client, alice)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        setup_intent(client, bob, payment_method=pm.id)
    assert raised.value.param == "payment_method"
    assert raised.value.user_message == (
        f"The PaymentMethod {pm.id} does not belong to the Customer you supplied {bob.id}. "
        "Please use this PaymentMethod with the Customer that it belongs to instead."
    )
    si = setup_intent(client, bob)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.setup_intents.confirm(si.id, params={"payment_method": pm.id})
    assert raised.value.json_body["error"]["setup_intent"]["id"] == si.id
    assert client.v1.payment_methods.retrieve(pm.id).customer == alice.id


# --- PaymentIntents with a customer --------------------------------------


def test_pay_with_a_saved_card_twice(client, webhook_receiver):
    cus = customer(client)
    pm = saved_card(client, cus)
    for _ in range(2):  # a saved card is not used up
        pi = payment_intent(client, customer=cus.id, payment_method=pm.id)
        assert pi.status == "requires_confirmation"
        pi = client.v1.payment_intents.confirm(
            pi.id, params={"return_url": "http://shop.test/paid"}
        )
        assert (pi.status, pi.customer, pi.payment_method) == ("succeeded", cus.id, pm.id)
        paid = event(webhook_receiver, "payment_intent.succeeded", pi.id)
        assert paid.data.object.customer == cus.id
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id


def test_saved_3ds_card_requires_action_with_a_redirect(client):
    cus = customer(client)
    pm = saved_card(client, cus, ALWAYS_AUTHENTICATE)
    pi = payment_intent(client, customer=cus.id, payment_method=pm.id)
    pi = client.v1.payment_intents.confirm(pi.id, params={"return_url": "http://shop.test/paid"})
    assert pi.status == "requires_action"
    assert pi.next_action.type == "redirect_to_url"
    assert pi.next_action.redirect_to_url.url.split("?")[0].endswith(f"/3ds/{pi.id}")
    answer = http(
        "POST",
        pi.next_action.redirect_to_url.url.split("?")[0],
        {"client_secret": pi.client_secret, "success": "true"},
    )
    assert answer.status == 303
    assert "redirect_status=succeeded" in answer.headers["Location"]
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


def test_card_set_up_once_needs_no_more_authentication(client, sandbox):
    cus = customer(client)
    pm = card(client, AUTHENTICATE_UNLESS_SET_UP)
    # Not set up: a one-time payment asks for 3-D Secure.
    assert (
        payment_intent(
            client, payment_method=card(client, AUTHENTICATE_UNLESS_SET_UP).id, confirm=True
        ).status
        == "requires_action"
    )

    si = setup_intent(client, cus, payment_method=pm.id, confirm=True)
    assert si.status == "requires_action"
    authenticate(sandbox, si, success=True)

    pi = payment_intent(client, customer=cus.id, payment_method=pm.id, confirm=True)
    assert pi.status == "succeeded"


@pytest.mark.parametrize("on", ["create", "confirm", "update"])
def test_another_customers_card_is_refused(client, on):
    alice, bob = customer(client), customer(client)
    pm = saved_card(client, alice)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        if on == "create":
            payment_intent(client, customer=bob.id, payment_method=pm.id)
        elif on == "confirm":
            pi = payment_intent(client, customer=bob.id)
            client.v1.payment_intents.confirm(pi.id, params={"payment_method": pm.id})
        else:
            pi = payment_intent(client, customer=bob.id)
            client.v1.payment_intents.update(pi.id, params={"payment_method": pm.id})
    assert raised.value.http_status == 400
    assert raised.value.param == "payment_method"
    assert raised.value.user_message == (
        f"The PaymentMethod {pm.id} does not belong to the Customer you supplied {bob.id}. "
        "Please use this PaymentMethod with the Customer that it belongs to instead."
    )

    # Without a customer on the PaymentIntent either.
    with pytest.raises(stripe.InvalidRequestError) as raised:
        payment_intent(client, payment_method=pm.id, confirm=True)
    assert "Please include the Customer in the `customer` parameter" in raised.value.user_message


def test_update_customer_and_setup_future_usage(client):
    cus = customer(client)
    pi = payment_intent(client)
    pi = client.v1.payment_intents.update(
        pi.id, params={"customer": cus.id, "setup_future_usage": "off_session"}
    )
    assert (pi.customer, pi.setup_future_usage) == (cus.id, "off_session")
    pi = client.v1.payment_intents.update(pi.id, params={"setup_future_usage": "on_session"})
    assert pi.setup_future_usage == "on_session"
    pi = client.v1.payment_intents.update(pi.id, params={"setup_future_usage": ""})
    assert pi.setup_future_usage is None
    assert client.v1.payment_intents.retrieve(pi.id).setup_future_usage is None

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.update(pi.id, params={"setup_future_usage": "always"})
    assert raised.value.param == "setup_future_usage"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.update(pi.id, params={"customer": "cus_nonexistent"})
    assert raised.value.code == "resource_missing"

    pi = client.v1.payment_intents.confirm(pi.id, params={"payment_method": card(client).id})
    assert pi.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.update(pi.id, params={"setup_future_usage": "off_session"})
    assert raised.value.code == "payment_intent_unexpected_state"
    # Metadata may still change.
    pi = client.v1.payment_intents.update(pi.id, params={"metadata": {"order": "42"}})
    assert pi.metadata.order == "42" and pi.status == "succeeded"


@pytest.mark.parametrize("number", [VISA, AUTHENTICATE_UNLESS_SET_UP])
def test_setup_future_usage_saves_the_card(client, webhook_receiver, number):
    cus = customer(client)
    pm = card(client, number)
    pi = payment_intent(client, customer=cus.id, setup_future_usage="off_session")
    pi = client.v1.payment_intents.confirm(
        pi.id, params={"payment_method": pm.id, "return_url": "http://shop.test/paid"}
    )
    if pi.status == "requires_action":
        page_url = pi.next_action.redirect_to_url.url.split("?")[0]
        assert client.v1.payment_methods.retrieve(pm.id).customer is None  # not yet
        http("POST", page_url, {"client_secret": pi.client_secret, "success": "true"})
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id
    assert event(webhook_receiver, "payment_method.attached", pm.id).data.object.customer == cus.id

    # And it can pay again, now without 3-D Secure.
    again = payment_intent(client, customer=cus.id, payment_method=pm.id, confirm=True)
    assert again.status == "succeeded"


def test_without_setup_future_usage_the_card_is_not_saved(client):
    cus = customer(client)
    pm = card(client)
    pi = payment_intent(client, customer=cus.id, payment_method=pm.id, confirm=True)
    assert pi.status == "succeeded"
    assert client.v1.payment_methods.retrieve(pm.id).customer is None
    assert attached_ids(client, cus) == []
