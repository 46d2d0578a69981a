"""The platform balance in the sandbox: a charge's funds are pending until Stripe makes them
available, and a transfer needs available funds (balance_insufficient otherwise), as at
Stripe, unless it names the charge it pays out of."""

import pytest
import stripe

from stripe_sandbox.testing import Sandbox

from .sandbox_helpers import SECRET_KEY

VISA = "4242424242424242"
AVAILABLE_AT_ONCE = "4000000000000077"


@pytest.fixture(scope="module")
def sandbox():
    # Its own sandbox: these tests count the whole balance.
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def client(sandbox):
    return stripe.StripeClient(SECRET_KEY, base_addresses={"api": sandbox.url})


def paid(client, amount, number=VISA, currency="gbp"):
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    return client.v1.payment_intents.create(params={
        "amount": amount, "currency": currency, "payment_method": pm.id, "confirm": True,
        "allowed_payment_method_types": ["card"], "capture_method": "automatic",
        "expand": ["latest_charge.balance_transaction"]})


def ready_account(client, sandbox):
    account = client.v1.accounts.create(params={
        "controller": {"stripe_dashboard": {"type": "express"}, "fees": {"payer": "application"},
                       "losses": {"payments": "application"}},
        "capabilities": {"transfers": {"requested": True}}})
    sandbox.test_hook("POST", f"/_sandbox/accounts/{account.id}/requirements",
                      past_due="", **{"capabilities[transfers]": "active"})
    return account


def amounts(balance, side, currency):
    return sum(entry.amount for entry in getattr(balance, side) if entry.currency == currency)


def test_card_funds_are_pending_and_a_transfer_needs_available_funds(client, sandbox):
    pi = paid(client, 5000)
    txn = pi.latest_charge.balance_transaction
    assert (txn.type, txn.amount, txn.status) == ("charge", 5000, "pending")
    assert txn.available_on >= txn.created + 2 * 24 * 3600 - 5  # two days, as Stripe's US
    balance = client.v1.balance.retrieve()
    assert (amounts(balance, "available", "gbp"), amounts(balance, "pending", "gbp")) == (0, 5000)

    account = ready_account(client, sandbox)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.transfers.create(params={"amount": 1000, "currency": "gbp",
                                           "destination": account.id})
    assert (raised.value.http_status, raised.value.code) == (400, "balance_insufficient")
    assert raised.value.user_message.startswith("You have insufficient available funds")
    assert client.v1.transfers.list(params={"destination": account.id}).data == []

    # Days later (the test hook), the funds are available and the transfer goes through.
    sandbox.make_funds_available()
    assert client.v1.balance_transactions.retrieve(txn.id).status == "available"
    transfer = client.v1.transfers.create(params={"amount": 1000, "currency": "gbp",
                                                  "destination": account.id})
    balance = client.v1.balance.retrieve()
    assert (amounts(balance, "available", "gbp"), amounts(balance, "pending", "gbp")) == (4000, 0)
    # The connected account got it (its balance, with Stripe-Account).
    theirs = client.v1.balance.retrieve(options={"stripe_account": account.id})
    assert amounts(theirs, "available", "gbp") == 1000
    assert client.v1.balance_transactions.list(
        params={"source": transfer.id}).data[0].amount == -1000


def test_4000000000000077_is_available_at_once_and_refunds_take_from_it(client):
    before = amounts(client.v1.balance.retrieve(), "available", "chf")
    pi = paid(client, 3000, AVAILABLE_AT_ONCE, currency="chf")
    assert pi.latest_charge.balance_transaction.status == "available"
    client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1200})
    assert amounts(client.v1.balance.retrieve(), "available", "chf") == before + 1800


def test_a_transfer_may_run_ahead_of_the_charge_it_names(client, sandbox):
    pi = paid(client, 2500, currency="sek")  # pending
    account = ready_account(client, sandbox)
    transfer = client.v1.transfers.create(params={
        "amount": 2000, "currency": "sek", "destination": account.id,
        "source_transaction": pi.latest_charge.id, "expand": ["balance_transaction"]})
    assert transfer.source_transaction == pi.latest_charge.id
    # Its funds move when the charge's do.
    assert transfer.balance_transaction.available_on == \
        pi.latest_charge.balance_transaction.available_on
    with pytest.raises(stripe.InvalidRequestError) as raised:  # 500 more than the charge left
        client.v1.transfers.create(params={
            "amount": 1000, "currency": "sek", "destination": account.id,
            "source_transaction": pi.latest_charge.id})
    assert raised.value.param == "amount"


def test_an_asynchronous_capture_has_its_funds_a_moment_later(sandbox):
    """capture_method automatic_async (Stripe's default): the charge succeeds without a
    balance transaction; charge.updated brings it."""
    from .sandbox_helpers import WEBHOOK_SECRET, WebhookReceiver

    receiver = WebhookReceiver()
    sandbox.register_webhook(receiver.url, WEBHOOK_SECRET, id="async", events=["*"])
    try:
        client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": sandbox.url})
        pi = client.v1.payment_intents.create(params={
            "amount": 1000, "currency": "nok", "payment_method": "pm_card_visa",
            "confirm": True, "expand": ["latest_charge"]})
        assert (pi.status, pi.capture_method) == ("succeeded", "automatic_async")
        assert pi.latest_charge.balance_transaction is None
        updated = receiver.wait_for_event(WEBHOOK_SECRET, "charge.updated",
                                          pi.latest_charge.id)
        assert updated.data.previous_attributes.balance_transaction is None
        assert updated.data.object.balance_transaction.startswith("txn_")
    finally:
        sandbox.register_webhook(receiver.url, WEBHOOK_SECRET, id="async",
                                 events=["sandbox.never_sent"])
        receiver.close()


def test_a_refund_stripe_cannot_cover_from_available_funds_comes_from_pending(client, sandbox):
    pi = paid(client, 1000, currency="hkd")  # pending
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 400})
    balance = client.v1.balance.retrieve()
    assert (amounts(balance, "available", "hkd"), amounts(balance, "pending", "hkd")) == (0, 600)
    # The bank returns it: the money goes back where it came from, still pending.
    sandbox.test_hook("POST", f"/_sandbox/refunds/{refund.id}/fail")
    balance = client.v1.balance.retrieve()
    assert (amounts(balance, "available", "hkd"), amounts(balance, "pending", "hkd")) == (0,
                                                                                         1000)
    at_once = paid(client, 1000, AVAILABLE_AT_ONCE, currency="sgd")
    client.v1.refunds.create(params={"payment_intent": at_once.id, "amount": 300})
    assert amounts(client.v1.balance.retrieve(), "available", "sgd") == 700


def test_what_comes_right_after_an_asynchronous_capture_waits_for_its_funds(client, sandbox):
    """A refund or a transfer out of the charge before its balance transaction exists
    brings it forward: the funds are pending, not conjured into the available balance."""
    account = ready_account(client, sandbox)
    pms = [client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": VISA, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}) for _ in range(2)]
    first, second = (client.v1.payment_intents.create(params={
        "amount": 1000, "currency": "mxn", "payment_method": pm.id, "confirm": True})
        for pm in pms)
    client.v1.refunds.create(params={"payment_intent": first.id, "amount": 400})
    transfer = client.v1.transfers.create(params={
        "amount": 500, "currency": "mxn", "destination": account.id,
        "source_transaction": second.latest_charge, "expand": ["balance_transaction"]})
    assert transfer.balance_transaction.status == "pending"
    balance = client.v1.balance.retrieve()
    assert (amounts(balance, "available", "mxn"), amounts(balance, "pending", "mxn")) == (0,
                                                                                         1100)


def test_an_expansion_the_answer_cannot_make_is_refused_before_anything_is_made(client):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.create(params={"email": "expand@example.com",
                                           "expand": ["invoice_settings.bogus"]})
    assert raised.value.user_message == \
        "This property cannot be expanded (invoice_settings.bogus)."
    assert client.v1.customers.list(params={"email": "expand@example.com"}).data == []
