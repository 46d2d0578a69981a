"""apply_intent: the one transition function; final states never move, sums must match."""

import dataclasses
import uuid

import pytest

from portal.ledger.models import Payment
from portal.orders.models import Order
from portal.payments.services import apply_intent, status_from_intent
from portal.stripe_gateway import CardDetails, Intent


def intent(status, *, amount=2500, currency="USD", failure=None, id="pi_1"):
    return Intent(id=id, status=status, amount=amount, currency=currency, client_secret=None,
                  created=1, metadata={}, payment_method_id="pm_1",
                  card=CardDetails(brand="visa", last4="4242", exp_month=1, exp_year=2031),
                  receipt_url="https://receipts.example/1", failure_code=failure,
                  failure_message="Your card was declined." if failure else None)


@pytest.fixture
def payment():
    p = Payment(id=uuid.uuid4(), status="requires_payment_method", amount=2500, currency="USD",
                stripe_payment_intent_id="pi_1")
    p.order = Order(status="unpaid", currency="USD", subtotal=2500, total=2500)
    return p


@pytest.mark.parametrize(("pi_status", "failure", "ours"), [
    ("requires_payment_method", None, "requires_payment_method"),
    ("requires_payment_method", "card_declined", "failed"),
    ("requires_action", None, "requires_action"),
    ("processing", None, "processing"),
    ("requires_capture", None, "processing"),
    ("succeeded", None, "succeeded"),
    ("canceled", None, "canceled"),
])
def test_status_mapping(pi_status, failure, ours):
    assert status_from_intent(intent(pi_status, failure=failure)) == ours


def test_success_marks_the_order_paid_with_card_and_receipt(payment):
    assert apply_intent(payment, intent("succeeded")) is True
    assert payment.status == "succeeded" and payment.order.status == "paid"
    assert (payment.card_brand, payment.card_last4) == ("visa", "4242")
    assert payment.receipt_url and payment.receipt_number.startswith("R-")


def test_a_final_state_never_moves(payment):
    apply_intent(payment, intent("succeeded"))
    stamp, number = payment.succeeded_at, payment.receipt_number
    for later in ("processing", "requires_payment_method", "requires_action", "canceled"):
        assert apply_intent(payment, intent(later, failure="x")) is False
    assert apply_intent(payment, intent("succeeded")) is False  # a replay changes nothing
    assert (payment.status, payment.succeeded_at, payment.receipt_number) == (
        "succeeded", stamp, number)


def test_a_failed_attempt_can_be_followed_by_success(payment):
    apply_intent(payment, intent("requires_payment_method", failure="card_declined"))
    assert payment.status == "failed" and payment.failure_code == "card_declined"
    apply_intent(payment, intent("succeeded"))
    assert payment.status == "succeeded" and payment.failure_code is None


def test_a_change_gives_the_payment_a_fresh_turn_at_reconciliation(payment):
    from portal.models_base import utcnow

    payment.reconcile_due_at = due = utcnow()
    apply_intent(payment, intent("requires_payment_method"))  # no change
    assert payment.reconcile_due_at == due
    apply_intent(payment, intent("processing"))
    assert payment.reconcile_due_at is None


def test_a_long_decline_text_from_stripe_is_clipped_to_its_column(payment):
    declined = dataclasses.replace(intent("requires_payment_method", failure="c" * 80),
                                   failure_message="Declined. " * 80)
    apply_intent(payment, declined)
    assert payment.status == "failed"
    assert (len(payment.failure_code), len(payment.failure_message)) == (64, 500)
    assert payment.failure_message.startswith("Declined. Declined.")


@pytest.mark.parametrize("other", [{"amount": 2499}, {"currency": "EUR"}])
def test_never_paid_for_another_sum(payment, other):
    assert apply_intent(payment, intent("succeeded", **other)) is False
    assert payment.status == "requires_payment_method" and payment.order.status == "unpaid"


def test_another_intent_is_ignored(payment):
    assert apply_intent(payment, intent("succeeded", id="pi_other")) is False
    assert payment.status == "requires_payment_method"
