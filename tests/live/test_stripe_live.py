"""The gateway against real Stripe test mode: `pytest -m stripe_live tests/live`.

Needs STRIPE_SECRET_KEY=sk_test_... (and network); `make test` deselects these, CI never
needs them. They check that what the sandbox imitates is what Stripe does.
"""

import os
import uuid

import pytest

from portal import create_app, stripe_gateway
from portal.config import Config

pytestmark = pytest.mark.stripe_live
KEY = os.environ.get("STRIPE_SECRET_KEY", "")


@pytest.fixture(scope="module")
def app():
    if not KEY.startswith("sk_test_"):
        pytest.skip("set STRIPE_SECRET_KEY=sk_test_... to run against Stripe test mode")
    env = {"PORTAL_ENV": "test", "STRIPE_SECRET_KEY": KEY,
           "STRIPE_PUBLISHABLE_KEY": os.environ.get("STRIPE_PUBLISHABLE_KEY", "pk_test_x")}
    app = create_app(Config.from_env(env))
    with app.app_context():
        yield app


def test_idempotent_create_then_confirm_with_a_test_card(app):
    key = f"live-test-{uuid.uuid4()}"
    args = {"amount": 1234, "currency": "USD", "idempotency_key": key,
            "metadata": {"orderId": "live-test"}}
    first = stripe_gateway.create_payment_intent(**args)
    again = stripe_gateway.create_payment_intent(**args)
    assert first.id == again.id and first.status == "requires_payment_method"
    done = stripe_gateway.confirm_payment_intent(
        first.id, payment_method="pm_card_visa", return_url="https://example.com/done",
        idempotency_key=f"{key}-confirm")
    assert done.status == "succeeded" and done.card.last4 == "4242"
    assert done.receipt_url


def test_decline_comes_back_as_a_failed_intent(app):
    key = f"live-test-{uuid.uuid4()}"
    pi = stripe_gateway.create_payment_intent(amount=1234, currency="USD", idempotency_key=key,
                                              metadata={})
    failed = stripe_gateway.confirm_payment_intent(
        pi.id, payment_method="pm_card_chargeDeclined", return_url="https://example.com/done",
        idempotency_key=f"{key}-confirm")
    assert failed.status == "requires_payment_method" and failed.failure_code
