"""Card testing (issue 15, finding 4): a budget of declines per payment, per customer and per
address, counted wherever the portal itself tries a card, and decline codes that describe the
card (lost, stolen, fraudulent...) answered as a generic decline to everyone but admins."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger.models import Payment
from tests.helpers import bearer, login, make_order
from tests.integration.api_support import assert_error, card_pm, intent_body

DECLINED = "4000000000000002"
DECLINED_WHEN_CHARGED = "4000000000000341"  # saves fine, declined when paying
LOST, STOLEN, FRAUDULENT = "4000000000009987", "4000000000009979", "4100000000000019"


def new_intent(api, customer, vendor) -> dict:
    order = make_order(customer, vendor, amounts=(2500,))
    return api.create_intent(customer, intent_body(order)).json["paymentIntent"]


def charges_of(stripe_client, intent_id: str) -> int:
    return sum(1 for c in stripe_client.v1.charges.list(params={"limit": 100})
               .auto_paging_iter() if c.payment_intent == intent_id)


def test_a_payment_declined_five_times_in_an_hour_refuses_more_attempts(
        api, shop, stripe_client):
    customer = shop["customer"]
    intent = new_intent(api, customer, shop["vendor"])
    for _ in range(5):
        assert_error(api.confirm(customer, intent["id"], card_pm(stripe_client, DECLINED)),
                     400, "generic_decline")
    r = api.confirm(customer, intent["id"], card_pm(stripe_client))  # even a good card
    error = assert_error(r, 429, "too_many_declines")
    assert "declined too many times" in error["message"] and "60 minutes" in error["message"]
    assert 3000 < int(r.headers["Retry-After"]) <= 3600
    assert charges_of(stripe_client, intent["id"]) == 5  # the sixth never reached Stripe
    # The customer's other payments are not locked by this one (5 of their 10 are left).
    other = new_intent(api, customer, shop["vendor"])
    assert api.confirm(customer, other["id"], card_pm(stripe_client)).status_code == 200


def test_a_customer_is_stopped_after_ten_declines_across_payments(api, shop, stripe_client):
    customer = shop["customer"]
    for _ in range(5):  # two declines on each of five payments: no payment's budget spent
        intent = new_intent(api, customer, shop["vendor"])
        for _ in range(2):
            assert api.confirm(customer, intent["id"],
                               card_pm(stripe_client, DECLINED)).status_code == 400
    fresh = new_intent(api, customer, shop["vendor"])
    assert_error(api.confirm(customer, fresh["id"], card_pm(stripe_client)), 429,
                 "too_many_declines")
    # Saving cards spends the same budget: no way around it through the methods endpoint.
    assert_error(api.add_method(customer, card_pm(stripe_client)), 429, "too_many_declines")
    # Someone else is not affected.
    other = new_intent(api, shop["other"], shop["vendor"])
    assert api.confirm(shop["other"], other["id"], card_pm(stripe_client)).status_code == 200


def test_one_address_is_stopped_after_twenty_declines_whoever_signs_in(
        client, api, shop, stripe_client):
    from tests.helpers import make_user

    testers = [make_user(f"tester{n}@example.test") for n in range(5)]
    address = {"REMOTE_ADDR": "192.0.2.66"}
    for user in testers[:4]:  # 4 accounts x 5 declines: each within its own budgets
        intent = new_intent(api, user, shop["vendor"])
        for _ in range(5):
            r = client.post("/api/payments/confirm", headers=bearer(user), environ_base=address,
                            json={"paymentIntentId": intent["id"],
                                  "paymentMethodId": card_pm(stripe_client, DECLINED)})
            assert r.status_code == 400
    intent = new_intent(api, testers[4], shop["vendor"])
    r = client.post("/api/payments/confirm", headers=bearer(testers[4]), environ_base=address,
                    json={"paymentIntentId": intent["id"],
                          "paymentMethodId": card_pm(stripe_client)})
    assert_error(r, 429, "too_many_declines")
    # The same customer from another address pays.
    assert api.confirm(testers[4], intent["id"], card_pm(stripe_client)).status_code == 200


def test_saving_declined_cards_through_the_api_is_budgeted(api, customer, stripe_client):
    for _ in range(10):
        assert_error(api.add_method(customer, card_pm(stripe_client, DECLINED)), 400,
                     "card_declined")
    assert_error(api.add_method(customer, card_pm(stripe_client)), 429, "too_many_declines")
    assert api.methods(customer).json["paymentMethods"] == []


@pytest.mark.parametrize("number", [LOST, STOLEN, FRAUDULENT])
def test_what_is_wrong_with_a_stolen_card_is_told_to_admins_only(api, shop, stripe_client,
                                                                  number):
    customer = shop["customer"]
    intent = new_intent(api, customer, shop["vendor"])
    error = assert_error(api.confirm(customer, intent["id"], card_pm(stripe_client, number)),
                         400, "generic_decline")
    assert error["message"] == "Your card was declined."
    payment_id = db.session.scalar(sa.select(Payment.id).where(
        Payment.stripe_payment_intent_id == intent["id"]))
    assert api.payment(customer, payment_id).json["payment"]["failureCode"] == "generic_decline"
    real = {LOST: "lost_card", STOLEN: "stolen_card", FRAUDULENT: "fraudulent"}[number]
    assert api.payment(shop["admin"], payment_id).json["payment"]["failureCode"] == real


def test_a_decline_that_says_nothing_about_the_card_keeps_its_code(api, shop, stripe_client):
    intent = new_intent(api, shop["customer"], shop["vendor"])
    r = api.confirm(shop["customer"], intent["id"], card_pm(stripe_client, "4000000000009995"))
    assert_error(r, 400, "insufficient_funds")


def test_paying_with_a_saved_card_on_the_page_is_budgeted_too(client, api, shop,
                                                                stripe_client):
    customer = shop["customer"]
    pm = card_pm(stripe_client, DECLINED_WHEN_CHARGED)
    assert api.add_method(customer, pm).status_code == 201
    order = make_order(customer, shop["vendor"], amounts=(2500,))
    login(client, customer.email)
    assert client.get(f"/checkout/{order.id}").status_code == 200
    for _ in range(5):
        r = client.post(f"/checkout/{order.id}/pay", data={"payment_method": pm})
        assert r.json["status"] == "failed" and r.json["error"] == "Your card was declined."
    r = client.post(f"/checkout/{order.id}/pay", data={"payment_method": pm})
    assert r.status_code == 429 and r.headers["Retry-After"]
    assert r.json["error"].startswith("This payment was declined too many times.")
