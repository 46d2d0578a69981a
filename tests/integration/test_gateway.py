"""What the gateway asks of Stripe, against the sandbox: requests real Stripe takes."""

from __future__ import annotations

import pytest
import stripe

from portal import stripe_gateway as gateway


def test_a_vendors_account_is_express_by_controller_properties(stripe_client):
    account = gateway.create_account(email="maker@example.test", metadata={"vendorId": "v1"},
                                     idempotency_key="account-v1")
    at_stripe = stripe_client.v1.accounts.retrieve(account.id)
    assert at_stripe.type == "none"  # no deprecated `type` was sent
    assert (at_stripe.controller.stripe_dashboard.type, at_stripe.controller.fees.payer,
            at_stripe.controller.losses.payments) == ("express", "application", "application")
    assert at_stripe.capabilities.transfers == "inactive"
    assert (account.transfers_active, account.payouts_enabled) == (False, False)


def test_a_key_reused_with_other_parameters_is_a_new_attempt_not_stripes_400(stripe_client):
    """Stripe refuses an idempotency key sent again with other parameters; the gateway's keys
    are specific to the parameters, so a changed request is a new attempt."""
    with pytest.raises(stripe.IdempotencyError) as raised:  # what Stripe would answer
        for email in ("a@example.test", "b@example.test"):
            stripe_client.v1.customers.create(params={"email": email},
                                              options={"idempotency_key": "raw-key-1"})
    assert raised.value.http_status == 400

    first = gateway.create_customer(email="a@example.test", name="A", metadata={},
                                    idempotency_key="customer-u1")
    again = gateway.create_customer(email="a@example.test", name="A", metadata={},
                                    idempotency_key="customer-u1")
    changed = gateway.create_customer(email="b@example.test", name="A", metadata={},
                                      idempotency_key="customer-u1")
    assert first == again != changed


def test_an_intent_tells_when_its_funds_become_available(stripe_client):
    pm = stripe_client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    intent = gateway.create_payment_intent(amount=1000, currency="usd", idempotency_key="pi-1",
                                           metadata={}, payment_method=pm.id)
    assert intent.funds_available_at is None  # not charged yet
    paid = gateway.confirm_payment_intent(intent.id, payment_method=pm.id, return_url=None,
                                          idempotency_key="pi-1-confirm")
    txn = stripe_client.v1.payment_intents.retrieve(
        intent.id, params={"expand": ["latest_charge.balance_transaction"]}
    ).latest_charge.balance_transaction
    assert paid.funds_available_at == txn.available_on > txn.created
