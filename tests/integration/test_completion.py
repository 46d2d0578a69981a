"""The completion page: the order's summary, the card used, whether this checkout saved it,
and only the truth about the receipt e-mail (issue 19)."""

import dataclasses

import pytest
import sqlalchemy as sa
import stripe

from portal.cards import services as cards
from portal.extensions import db
from portal.ledger.models import Payment
from portal.outbox.models import OutboxMessage
from tests.helpers import committed, login, make_order, make_user


@pytest.fixture
def shop(client):
    customer = make_user("payer@example.test")
    vendor = make_user("seller@example.test", "vendor")
    order = make_order(customer, vendor, amounts=(1999, 500), tax=200)  # $26.99
    login(client, customer.email)
    assert client.get(f"/checkout/{order.id}").status_code == 200
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))
    return customer, order, payment


def card(stripe_client, number="4242424242424242"):
    return stripe_client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})


def test_summary_card_used_and_saved_card(client, shop, stripe_client):
    customer, order, payment = shop
    # "Save this card" ticked, then Stripe.js confirms with a new card.
    saved = client.post(f"/checkout/{order.id}/save-card", data={"save": "true"})
    assert saved.status_code == 200 and saved.json == {"ok": True}
    stripe_client.v1.payment_intents.confirm(payment.stripe_payment_intent_id,
                                            params={"payment_method": card(stripe_client).id})
    page = client.get(f"/checkout/{order.id}/complete").text
    assert "Payment of $26.99 received with Visa •••• 4242" in page
    assert f'<h2 id="summary-h">Order #{order.number}</h2>' in page
    for line in ("Item 0", "$19.99", "Item 1", "$5.00", "Tax", "$2.00", "Total", "$26.99"):
        assert line in page
    assert "We saved this card for next time" in page
    assert [c.last4 for c in cards.cards_of(customer)] == ["4242"]
    assert "4242424242424242" not in page


def test_paying_with_a_card_on_file_does_not_claim_to_save_it(client, shop, stripe_client):
    customer, order, _ = shop
    with committed():
        on_file = cards.save_card(customer, card(stripe_client).id)
    paid = client.post(f"/checkout/{order.id}/pay",
                       data={"payment_method": on_file.stripe_payment_method_id})
    assert paid.json["status"] == "succeeded"
    page = client.get(f"/checkout/{order.id}/complete").text
    assert "Visa •••• 4242" in page and "We saved this card" not in page


def _receipt(payment):
    return db.session.scalar(sa.select(OutboxMessage).where(
        OutboxMessage.payment_id == payment.id, OutboxMessage.kind == "receipt_email"))


def test_the_receipt_e_mail_is_mentioned_as_it_stands(client, app, shop, stripe_client,
                                                      monkeypatch):
    customer, order, payment = shop
    stripe_client.v1.payment_intents.confirm(payment.stripe_payment_intent_id,
                                            params={"payment_method": card(stripe_client).id})
    url = f"/checkout/{order.id}/complete"
    # No mail server: the receipt is kept in the admins' outbox, and the page says so.
    page = client.get(url).text
    assert "No receipt e-mail is sent" in page and "A receipt was sent" not in page
    assert "We saved this card" not in page
    message = _receipt(payment)
    assert message.payload["to"] == customer.email
    message.status = "sent"
    db.session.commit()
    assert f"A receipt was sent to {customer.email}." in client.get(url).text
    message.status = "given_up"
    db.session.commit()
    assert f"We could not e-mail the receipt to {customer.email}" in client.get(url).text
    # With a mail server, a receipt waiting for its delivery is on its way.
    config = app.extensions["portal_config"]
    monkeypatch.setitem(app.extensions, "portal_config",
                        dataclasses.replace(config, SMTP_HOST="mail.example.test"))
    message.status = "pending"
    db.session.commit()
    assert f"A receipt is on its way to {customer.email}." in client.get(url).text
    # The status partial (what the page polls) says the same.
    status = client.get(f"/payments/{payment.id}/status").text
    assert f"A receipt is on its way to {customer.email}." in status


def test_a_declined_payment_shows_the_summary_and_no_receipt(client, shop, stripe_client):
    _, order, payment = shop
    with pytest.raises(stripe.CardError):  # the sandbox declines 0341 when it is charged
        stripe_client.v1.payment_intents.confirm(
            payment.stripe_payment_intent_id,
            params={"payment_method": card(stripe_client, "4000000000000341").id})
    page = client.get(f"/checkout/{order.id}/complete").text
    assert "Your card was declined." in page and "Try again" in page
    assert f"Order #{order.number}" in page and "Item 1" in page
    assert "receipt" not in page.split('id="payment-status"')[1].split("</div>")[0].lower()
