"""The checkout lists Stripe's three test cards in test mode only (issue 19): the decline
card 4000 0000 0000 0341 included, described as it behaves (saved fine, declined when
charged)."""

import sqlalchemy as sa
from flask import render_template

from portal.cards import services as cards
from portal.extensions import db
from portal.ledger.models import Payment
from tests.helpers import committed, login, make_order, make_user

CARDS = ("4242 4242 4242 4242", "4000 0027 6000 3184", "4000 0000 0000 0341")


def test_test_mode_checkout_lists_the_three_test_cards(client):
    customer = make_user("tester@example.test")
    order = make_order(customer, make_user("tv@example.test", "vendor"))
    login(client, customer.email)
    page = client.get(f"/checkout/{order.id}").text
    assert '<h3 id="test-cards-h">Test cards</h3>' in page
    for number in CARDS:
        assert f"<strong>{number}</strong>" in page
    assert "declined when charged" in page and "can be saved" in page


def test_live_mode_checkout_shows_no_test_cards(client, app):
    customer = make_user("live@example.test")
    order = make_order(customer, make_user("lv@example.test", "vendor"))
    login(client, customer.email)
    assert client.get(f"/checkout/{order.id}").status_code == 200
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))
    with app.test_request_context(f"/checkout/{order.id}"):
        page = render_template("payments/checkout.html", order=order, payment=payment,
                               intent=None, return_url="/", cards=[], default_id=None,
                               test_mode=False)
    assert "Pay $49.99" in page and "Test cards" not in page
    assert not any(number in page for number in CARDS)


def test_0341_saves_and_is_declined_when_charged(client, stripe_client):
    """What the hint says of 0341, as the sandbox (like Stripe) does it."""
    customer = make_user("decline@example.test")
    order = make_order(customer, make_user("dv@example.test", "vendor"))
    login(client, customer.email)
    client.get(f"/checkout/{order.id}")
    pm = stripe_client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4000000000000341", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    with committed():
        saved = cards.save_card(customer, pm.id)
    assert saved.last4 == "0341"
    paid = client.post(f"/checkout/{order.id}/pay",
                       data={"payment_method": saved.stripe_payment_method_id})
    assert paid.json == {"status": "failed", "error": "Your card was declined."}
