"""Fixtures for the Stripe sandbox's own tests: a sandbox per test module,
sending its webhooks to a receiver in the test process."""

import pytest
import stripe

from stripe_sandbox.testing import Sandbox

from .sandbox_helpers import CONNECT_WEBHOOK_SECRET, SECRET_KEY, WEBHOOK_SECRET, WebhookReceiver


@pytest.fixture(scope="module")
def webhook_receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def sandbox(webhook_receiver):
    # Registered at startup, from the command line: the account's endpoint and a Connect one.
    with Sandbox(webhook_url=webhook_receiver.url, webhook_secret=WEBHOOK_SECRET,
                 connect_webhook_secret=CONNECT_WEBHOOK_SECRET) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def client(sandbox):
    return stripe.StripeClient(SECRET_KEY, base_addresses={"api": sandbox.url})
