"""Every public function of the gateway, and what the sandbox imitates, against real Stripe
test mode: `make test-live`.

Needs STRIPE_SECRET_KEY=sk_test_... and the network (a live key is refused before anything is
sent); `make test` deselects these and CI never runs them. The transfer tests also need
STRIPE_TEST_CONNECTED_ACCOUNT=acct_...: a connected test account whose `transfers` capability
is active (one finished through the onboarding link of test_a_vendors_account_and_its_
onboarding_link, for example). The contract check of the test suite checks every request
here too (tests/stripe_contract.py). Each test makes its own objects (unique idempotency
keys); none is deleted, as Stripe test data is disposable.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import stripe

from portal import create_app
from portal import stripe_gateway as gateway
from portal.config import Config
from tests.helpers import sign

pytestmark = pytest.mark.stripe_live
KEY = os.environ.get("STRIPE_SECRET_KEY", "")
CONNECTED = os.environ.get("STRIPE_TEST_CONNECTED_ACCOUNT", "")
WEBHOOK_SECRET = "whsec_live_suite"
CONNECT_WEBHOOK_SECRET = "whsec_live_suite_connect"
RETURN_URL = "https://example.com/checkout/done"


@pytest.fixture(scope="module")
def app():
    if KEY.startswith(("sk_live_", "rk_live_")):
        pytest.exit("STRIPE_SECRET_KEY is a live key: the live suite runs in test mode only",
                    returncode=2)
    if not KEY.startswith("sk_test_"):
        pytest.skip("set STRIPE_SECRET_KEY=sk_test_... to run against Stripe test mode")
    env = {"PORTAL_ENV": "test", "STRIPE_SECRET_KEY": KEY,
           "STRIPE_PUBLISHABLE_KEY": os.environ.get("STRIPE_PUBLISHABLE_KEY", "pk_test_live"),
           "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "STRIPE_CONNECT_WEBHOOK_SECRET": CONNECT_WEBHOOK_SECRET}
    app = create_app(Config.from_env(env))
    with app.app_context():
        yield app


@pytest.fixture(scope="module")
def sdk(app):
    """Stripe itself, for what a test does 'in Stripe' (or checks there)."""
    return stripe.StripeClient(KEY)


def key() -> str:
    return f"live-suite-{uuid.uuid4()}"


def paid(amount=2000, card="pm_card_visa", currency="usd") -> gateway.Intent:
    intent = gateway.create_payment_intent(amount=amount, currency=currency,
                                           idempotency_key=key(), metadata={"suite": "live"})
    return gateway.confirm_payment_intent(intent.id, payment_method=card, return_url=RETURN_URL,
                                          idempotency_key=key())


# --- payments --------------------------------------------------------------------------------

def test_an_intent_is_created_once_per_key_and_for_cards_only(app, sdk):
    base = key()
    args = {"amount": 1234, "currency": "USD", "idempotency_key": base,
            "metadata": {"orderId": "live-suite"}, "description": "Live suite"}
    first = gateway.create_payment_intent(**args)
    assert gateway.create_payment_intent(**args).id == first.id
    assert first.status == "requires_payment_method" and first.client_secret
    at_stripe = sdk.v1.payment_intents.retrieve(first.id)
    assert at_stripe.payment_method_types == ["card"]
    # The same key with other parameters (a lost first attempt, then a customer who chose
    # differently): a new intent, not Stripe's idempotency_error.
    customer = gateway.create_customer(email="live-suite@example.com", name="Live Suite",
                                       metadata={}, idempotency_key=key())
    other = gateway.create_payment_intent(**args, customer=customer)
    assert other.id != first.id and other.customer == customer
    with pytest.raises(stripe.IdempotencyError):  # what Stripe says to a reused raw key
        for amount in (1234, 1235):
            sdk.v1.payment_intents.create(params={
                "amount": amount, "currency": "usd", "allowed_payment_method_types": ["card"]},
                options={"idempotency_key": base})


def test_a_card_payment_succeeds_and_says_when_its_funds_become_available(app):
    done = paid()
    assert done.status == "succeeded" and done.card.last4 == "4242"
    assert done.receipt_url and done.funds_available_at > done.created
    assert gateway.retrieve_payment_intent(done.id).status == "succeeded"


def test_three_d_secure_is_a_next_action(app):
    intent = gateway.create_payment_intent(amount=1500, currency="eur", idempotency_key=key(),
                                           metadata={})
    for_stripe_js = gateway.confirm_payment_intent(
        intent.id, payment_method="pm_card_authenticationRequired", return_url=None,
        idempotency_key=key())
    assert (for_stripe_js.status, for_stripe_js.next_action) == ("requires_action",
                                                                 "use_stripe_sdk")
    other = gateway.create_payment_intent(amount=1500, currency="eur", idempotency_key=key(),
                                          metadata={})
    redirect = gateway.confirm_payment_intent(
        other.id, payment_method="pm_card_authenticationRequired", return_url=RETURN_URL,
        idempotency_key=key())
    assert (redirect.status, redirect.next_action) == ("requires_action", "redirect_to_url")


def test_a_decline_comes_back_as_a_failed_intent(app):
    failed = paid(card="pm_card_chargeDeclined")
    assert failed.status == "requires_payment_method"
    assert failed.failure_code == "generic_decline" and failed.failure_message


def test_intents_made_for_a_record_are_found_by_its_metadata_and_canceled(app):
    """What reconciliation does for a payment whose intent id was lost in a crash."""
    record = key()
    made = gateway.create_payment_intent(amount=1100, currency="usd", idempotency_key=key(),
                                         metadata={"paymentId": record})
    gateway.create_payment_intent(amount=1100, currency="usd", idempotency_key=key(),
                                  metadata={"paymentId": key()})  # another record's
    found = gateway.payment_intents_with("paymentId", record, created_from=made.created - 60,
                                         created_to=made.created + 60)
    assert [i.id for i in found] == [made.id]
    args = {"reason": "abandoned", "idempotency_key": key()}
    canceled = gateway.cancel_payment_intent(made.id, **args)
    assert canceled.status == "canceled"
    assert gateway.cancel_payment_intent(made.id, **args) == canceled  # the key: replayed
    with pytest.raises(gateway.GatewayError) as refused:  # canceled: no second time
        gateway.cancel_payment_intent(made.id, reason="duplicate", idempotency_key=key())
    assert refused.value.stripe_code == "payment_intent_unexpected_state"
    assert not refused.value.retryable


def test_an_unconfirmed_intent_can_change(app):
    intent = gateway.create_payment_intent(amount=900, currency="usd", idempotency_key=key(),
                                           metadata={})
    customer = gateway.create_customer(email="live-suite@example.com", name="Live Suite",
                                       metadata={}, idempotency_key=key())
    changed = gateway.update_payment_intent(intent.id, customer=customer,
                                            setup_future_usage="off_session")
    assert (changed.customer, changed.setup_future_usage) == (customer, "off_session")
    assert gateway.update_payment_intent(intent.id, setup_future_usage="").setup_future_usage \
        is None


# --- saved cards -----------------------------------------------------------------------------

def test_cards_of_a_customer(app, sdk):
    customer = gateway.create_customer(email="live-suite@example.com", name="Live Suite",
                                       metadata={"userId": "live"}, idempotency_key=key())
    pm = sdk.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    attached = gateway.attach_payment_method(pm.id, customer)
    assert (attached.customer, attached.card.last4) == (customer, "4242")
    gateway.set_default_payment_method(customer, pm.id)
    assert gateway.default_payment_method(customer) == pm.id
    assert gateway.retrieve_payment_method(pm.id).customer == customer
    assert gateway.retrieve_payment_method("pm_does_not_exist") is None
    gateway.detach_payment_method(pm.id)
    gateway.detach_payment_method(pm.id)  # already detached: fine
    assert gateway.retrieve_payment_method(pm.id).customer is None
    assert gateway.default_payment_method(customer) is None
    declined = sdk.v1.payment_methods.create(params={"type": "card",
                                                     "card": {"token": "tok_chargeDeclined"}})
    with pytest.raises(gateway.GatewayError) as raised:
        gateway.attach_payment_method(declined.id, customer)
    assert raised.value.status == 402


def test_a_setup_intent_for_the_cards_page(app):
    customer = gateway.create_customer(email="live-suite@example.com", name="Live Suite",
                                       metadata={}, idempotency_key=key())
    setup = gateway.create_setup_intent(customer=customer, metadata={"suite": "live"},
                                        idempotency_key=key())
    assert (setup.status, setup.customer) == ("requires_payment_method", customer)
    assert setup.client_secret.startswith(setup.id)
    assert gateway.retrieve_setup_intent(setup.id).id == setup.id
    assert gateway.retrieve_setup_intent("seti_does_not_exist") is None


# --- refunds ---------------------------------------------------------------------------------

def test_refunds_up_to_what_is_left_and_not_after_a_full_refund(app):
    intent = paid(amount=2599, currency="eur")
    part = gateway.create_refund(payment_intent=intent.id, amount=1000, reason=None,
                                 metadata={"refundRequestId": "r1"}, idempotency_key=key())
    assert (part.amount, part.currency, part.payment_intent) == (1000, "EUR", intent.id)
    with pytest.raises(gateway.GatewayError) as raised:
        gateway.create_refund(payment_intent=intent.id, amount=1600, reason=None,
                              metadata={}, idempotency_key=key())
    assert (raised.value.status, raised.value.code) == (400, "amount_too_large")
    gateway.create_refund(payment_intent=intent.id, amount=1599,
                          reason="requested_by_customer", metadata={}, idempotency_key=key())
    with pytest.raises(gateway.GatewayError) as raised:
        gateway.create_refund(payment_intent=intent.id, amount=1, reason=None, metadata={},
                              idempotency_key=key())
    assert raised.value.code == "charge_already_refunded"
    assert sorted(r.amount for r in gateway.refunds_of(intent.id)) == [1000, 1599]


# --- Connect ---------------------------------------------------------------------------------

def test_a_vendors_account_and_its_onboarding_link(app, sdk):
    account = gateway.create_account(email="live-suite-vendor@example.com",
                                     metadata={"vendorId": "live"}, idempotency_key=key())
    assert (account.transfers_active, account.details_submitted) == (False, False)
    at_stripe = sdk.v1.accounts.retrieve(account.id)
    assert at_stripe.controller.stripe_dashboard.type == "express"
    assert gateway.retrieve_account(account.id).id == account.id
    url = gateway.onboarding_link(account.id, return_url=RETURN_URL, refresh_url=RETURN_URL)
    assert url.startswith("https://connect.stripe.com/")
    # Its events are listed with its Stripe-Account (none yet, or account.updated ones).
    since = int(time.time()) - 3600
    assert all(e.payload.get("account") == account.id
               for e in gateway.list_events(since, account.id))


@pytest.fixture
def connected(app):
    if not CONNECTED.startswith("acct_"):
        pytest.skip("set STRIPE_TEST_CONNECTED_ACCOUNT=acct_... (transfers active) for "
                    "the transfer tests")
    account = gateway.retrieve_account(CONNECTED)
    assert account is not None and account.transfers_active
    return account


def test_a_transfer_without_available_balance_is_refused(connected):
    group = key()
    with pytest.raises(gateway.GatewayError) as raised:  # more than any test balance holds
        gateway.create_transfer(amount=99_999_999, currency="usd", destination=connected.id,
                                transfer_group=group, description="Live suite",
                                idempotency_key=group)
    assert (raised.value.status, raised.value.code) == (400, "balance_insufficient")
    assert gateway.transfers_in_group(group) == []


def test_a_transfer_out_of_available_funds_goes_through_once(connected):
    paid(amount=1000, card="pm_card_bypassPending")  # 4000000000000077: available at once
    group = key()
    args = {"amount": 500, "currency": "usd", "destination": connected.id,
            "transfer_group": group, "description": "Live suite", "idempotency_key": group}
    transfer = gateway.create_transfer(**args)
    assert gateway.create_transfer(**args) == transfer
    assert gateway.transfers_in_group(group) == [transfer]


def test_a_transfer_is_reversed_in_part_once_per_key(connected):
    paid(amount=1000, card="pm_card_bypassPending")
    group = key()
    transfer = gateway.create_transfer(amount=500, currency="usd", destination=connected.id,
                                       transfer_group=group, description="Live suite",
                                       idempotency_key=group)
    args = {"amount": 200, "idempotency_key": f"{group}-r", "metadata": {"splitLineId": group}}
    reversal = gateway.reverse_transfer(transfer.id, **args)
    assert gateway.reverse_transfer(transfer.id, **args) == reversal
    assert gateway.reversals_of(transfer.id) == [reversal]
    assert gateway.retrieve_transfer(transfer.id) == gateway.TransferState(transfer.id, 500, 200)



def test_funds_available_at_once_are_in_the_available_balance(app):
    before = gateway.available_balance().get("usd", 0)
    paid(amount=1000, card="pm_card_bypassPending")  # 4000000000000077: available at once
    assert gateway.available_balance()["usd"] >= before + 1000 - 60  # Stripe's fee: < 60

# --- events ----------------------------------------------------------------------------------

def test_events_are_listed_and_webhooks_verified(app):
    intent = paid(amount=777)
    since = int(time.time()) - 600
    types = {e.type for e in gateway.list_events(since) if e.object_id == intent.id}
    assert "payment_intent.succeeded" in types
    body = json.dumps({"id": "evt_live_suite", "object": "event", "type": "account.updated",
                       "data": {"object": {"id": "acct_x"}}}).encode()
    assert gateway.verify_webhook(body, sign(body, WEBHOOK_SECRET)).id == "evt_live_suite"
    assert gateway.verify_webhook(body, sign(body, CONNECT_WEBHOOK_SECRET)).type == \
        "account.updated"
    with pytest.raises(gateway.SignatureError):
        gateway.verify_webhook(body, sign(body, "whsec_someone_else"))
