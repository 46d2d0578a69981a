"""The payment-method endpoints (issue 4): GET/POST /methods, DELETE /methods/<id>,
PUT /methods/<id>/default, and paying with a saved card through create-intent and confirm.

Responses go through `Api`, which checks them against the published OpenAPI document."""

from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa

from portal.cards.models import CustomerMap, SavedCard
from portal.extensions import db
from portal.ledger.models import Payment
from tests.helpers import bearer
from tests.integration.api_support import OPERATIONS, assert_error, card_pm, intent_body

MASTERCARD = "5555555555554444"
VISA_3DS = "4000002760003184"
DECLINED_ON_ATTACH = "4000000000000002"
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def stripe_customer(user) -> str | None:
    return db.session.scalar(sa.select(CustomerMap.stripe_customer_id)
                             .where(CustomerMap.user_id == user.id))


def attached_ids(stripe_client, customer_id: str) -> set[str]:
    listed = stripe_client.v1.payment_methods.list(
        params={"customer": customer_id, "type": "card"})
    return {pm.id for pm in listed.data}


@pytest.mark.parametrize(("name", "statuses"), [
    ("methods", {"200", "401", "500"}),
    ("add-method", {"201", "400", "401", "404", "409", "429", "500", "503"}),
    ("remove-method", {"200", "401", "404", "500", "503"}),
    ("default-method", {"200", "401", "404", "500", "503"}),
])
def test_openapi_documents_the_method_endpoints(spec, name, statuses):
    path, method = OPERATIONS[name]
    assert statuses <= set(spec["paths"][path][method]["responses"])


def test_no_cards_yet_is_an_empty_list(api, customer):
    r = api.methods(customer)
    assert r.status_code == 200
    assert r.json == {"success": True, "paymentMethods": []}


def test_add_a_card_answers_201_with_the_documented_shape(api, customer, stripe_client):
    pm = card_pm(stripe_client)
    r = api.add_method(customer, pm, set_default=True)
    assert r.status_code == 201
    assert r.json == {
        "success": True, "message": "Payment method added successfully",
        "paymentMethod": {"id": pm, "type": "card", "isDefault": True,
                          "card": {"brand": "visa", "last4": "4242", "expMonth": 12,
                                   "expYear": 2030}}}
    # Attached to the customer's own Stripe customer, which is its default too.
    customer_id = stripe_customer(customer)
    assert attached_ids(stripe_client, customer_id) == {pm}
    cus = stripe_client.v1.customers.retrieve(customer_id)
    assert cus.to_dict()["invoice_settings"]["default_payment_method"] == pm
    assert cus.to_dict()["metadata"]["userId"] == str(customer.id)


def test_list_shows_brand_last4_expiry_default_and_date(api, customer, stripe_client):
    visa, master = card_pm(stripe_client), card_pm(stripe_client, MASTERCARD)
    api.add_method(customer, visa)
    api.add_method(customer, master)
    methods = api.methods(customer).json["paymentMethods"]
    assert [(m["id"], m["card"]["brand"], m["card"]["last4"], m["isDefault"])
            for m in methods] == [(visa, "visa", "4242", True),
                                  (master, "mastercard", "4444", False)]
    assert all(ISO_Z.match(m["createdAt"]) for m in methods)
    assert set(methods[0]) == {"id", "type", "card", "isDefault", "createdAt"}


def test_the_first_card_is_the_default_even_without_asking(api, customer, stripe_client):
    r = api.add_method(customer, card_pm(stripe_client))
    assert r.json["paymentMethod"]["isDefault"] is True


def test_the_same_card_twice_is_409_and_saved_once(api, customer, stripe_client):
    api.add_method(customer, card_pm(stripe_client))
    again = card_pm(stripe_client)  # the same number: another PaymentMethod, same fingerprint
    assert_error(api.add_method(customer, again), 409, "payment_method_exists")
    assert len(api.methods(customer).json["paymentMethods"]) == 1
    assert again not in attached_ids(stripe_client, stripe_customer(customer))


def test_the_same_payment_method_twice_is_409(api, customer, stripe_client):
    pm = card_pm(stripe_client)
    api.add_method(customer, pm)
    assert_error(api.add_method(customer, pm), 409, "payment_method_exists")


@pytest.mark.parametrize("pm", ["card_123", "", "pm_" + "x" * 300])
def test_an_invalid_payment_method_is_400_and_saves_nothing(api, customer, pm):
    assert api.add_method(customer, pm).status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SavedCard)) == 0


def test_a_card_declined_when_attached_is_400_with_stripes_message(api, customer,
                                                                    stripe_client):
    r = api.add_method(customer, card_pm(stripe_client, DECLINED_ON_ATTACH))
    error = assert_error(r, 400)
    assert "declined" in error["message"]
    assert api.methods(customer).json["paymentMethods"] == []


def test_another_customers_card_is_as_unknown_as_a_card_that_does_not_exist(
        api, shop, customer, stripe_client):
    """Issue 15, finding 11: the answer was "belongs to another customer" for one and "no such
    payment method" for the other, which told a prober which ids exist."""
    pm = card_pm(stripe_client)
    api.add_method(customer, pm)
    foreign = assert_error(api.add_method(shop["other"], pm), 404, "payment_method_not_found")
    unknown = assert_error(api.add_method(shop["other"], "pm_doesnotexist123"), 404,
                           "payment_method_not_found")
    assert foreign == unknown
    assert api.methods(shop["other"]).json["paymentMethods"] == []


def test_set_default_moves_the_default(api, customer, stripe_client):
    visa, master = card_pm(stripe_client), card_pm(stripe_client, MASTERCARD)
    api.add_method(customer, visa)
    api.add_method(customer, master)
    r = api.default_method(customer, master)
    assert r.status_code == 200
    assert r.json == {"success": True, "message": "Default payment method updated"}
    defaults = {m["id"]: m["isDefault"] for m in api.methods(customer).json["paymentMethods"]}
    assert defaults == {visa: False, master: True}
    cus = stripe_client.v1.customers.retrieve(stripe_customer(customer)).to_dict()
    assert cus["invoice_settings"]["default_payment_method"] == master


def test_remove_detaches_at_stripe_and_the_next_card_becomes_default(api, customer,
                                                                      stripe_client):
    visa, master = card_pm(stripe_client), card_pm(stripe_client, MASTERCARD)
    api.add_method(customer, visa)
    api.add_method(customer, master)
    r = api.remove_method(customer, visa)
    assert r.status_code == 200
    assert r.json == {"success": True, "message": "Payment method removed successfully"}
    methods = api.methods(customer).json["paymentMethods"]
    assert [(m["id"], m["isDefault"]) for m in methods] == [(master, True)]
    assert attached_ids(stripe_client, stripe_customer(customer)) == {master}


def test_unknown_card_is_404_on_remove_and_default(api, customer):
    assert_error(api.remove_method(customer, "pm_unknown"), 404, "payment_method_not_found")
    assert_error(api.default_method(customer, "pm_unknown"), 404, "payment_method_not_found")


def test_customer_b_cannot_see_remove_default_or_pay_with_as_card(api, shop, customer, order,
                                                                  stripe_client):
    pm = card_pm(stripe_client)
    api.add_method(customer, pm)
    mallory = shop["other"]
    assert api.methods(mallory).json["paymentMethods"] == []
    assert_error(api.remove_method(mallory, pm), 404, "payment_method_not_found")
    assert_error(api.default_method(mallory, pm), 404, "payment_method_not_found")
    from tests.helpers import make_order

    their_order = make_order(mallory, shop["vendor"], amounts=(1500,))
    r = api.create_intent(mallory, intent_body(their_order, paymentMethodId=pm))
    assert_error(r, 404, "payment_method_not_found", "paymentMethodId")
    intent = api.create_intent(mallory, intent_body(their_order)).json["paymentIntent"]
    assert_error(api.confirm(mallory, intent["id"], pm), 404, "payment_method_not_found")
    # Still A's, untouched, and nothing was charged.
    assert [m["id"] for m in api.methods(customer).json["paymentMethods"]] == [pm]
    assert stripe_client.v1.payment_intents.retrieve(intent["id"]).status == (
        "requires_payment_method")


@pytest.mark.parametrize("call", ["list", "add", "remove", "default"])
def test_method_endpoints_need_a_token(client, call):
    r = {"list": lambda: client.get("/api/payments/methods"),
         "add": lambda: client.post("/api/payments/methods", json={"paymentMethodId": "pm_1"}),
         "remove": lambda: client.delete("/api/payments/methods/pm_1"),
         "default": lambda: client.put("/api/payments/methods/pm_1/default")}[call]()
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")


def test_pay_with_the_saved_card_through_create_intent_and_confirm(api, customer, order,
                                                                   stripe_client):
    pm = card_pm(stripe_client)
    api.add_method(customer, pm)
    intent = api.create_intent(customer, intent_body(order, paymentMethodId=pm))
    assert intent.status_code == 200
    pi = stripe_client.v1.payment_intents.retrieve(intent.json["paymentIntent"]["id"])
    assert (pi.payment_method, pi.customer) == (pm, stripe_customer(customer))
    r = api.confirm(customer, pi.id, pm)
    assert r.status_code == 200 and r.json["payment"]["status"] == "succeeded"
    assert r.json["payment"]["paymentMethod"]["id"] == pm
    # The saved card can pay again, and the customer's spending follows.
    cmap = db.session.scalar(sa.select(CustomerMap).where(CustomerMap.user_id == customer.id))
    db.session.refresh(cmap)
    assert (cmap.payment_count, cmap.total_spent) == (1, {"USD": 29999})
    assert cmap.last_payment_at is not None


def test_a_card_saved_after_checkout_started_can_still_pay_it(api, customer, order,
                                                              stripe_client):
    # The intent exists (without a Stripe customer) before the first card is saved.
    intent = api.create_intent(customer, intent_body(order)).json["paymentIntent"]
    pm = card_pm(stripe_client)
    api.add_method(customer, pm)
    r = api.confirm(customer, intent["id"], pm)
    assert r.status_code == 200 and r.json["payment"]["status"] == "succeeded"
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))
    assert payment.stripe_customer_id == stripe_customer(customer)


def test_a_saved_3ds_card_asks_for_authentication(api, customer, order, stripe_client):
    pm = card_pm(stripe_client, VISA_3DS)
    api.add_method(customer, pm)
    intent = api.create_intent(customer, intent_body(order, paymentMethodId=pm))
    r = api.confirm(customer, intent.json["paymentIntent"]["id"], pm)
    assert r.status_code == 402 and r.json["requiresAction"] is True


def test_past_payments_count_when_the_stripe_customer_is_created(api, customer, order,
                                                                 stripe_client):
    api.confirm(customer, api.create_intent(customer, intent_body(order)).json[
        "paymentIntent"]["id"], card_pm(stripe_client))
    api.add_method(customer, card_pm(stripe_client, MASTERCARD))
    cmap = db.session.scalar(sa.select(CustomerMap).where(CustomerMap.user_id == customer.id))
    assert (cmap.payment_count, cmap.total_spent) == (1, {"USD": 29999})


@pytest.mark.commits
def test_two_concurrent_first_cards_create_one_stripe_customer(app, shop, stripe_client):
    customer = shop["customer"]
    pms = [card_pm(stripe_client), card_pm(stripe_client, MASTERCARD)]
    headers = bearer(customer)
    start, responses = threading.Barrier(2), []

    def call(pm):
        with app.test_client() as c:
            start.wait()
            responses.append(c.post("/api/payments/methods", headers=headers,
                                    json={"paymentMethodId": pm}))

    threads = [threading.Thread(target=call, args=(pm,)) for pm in pms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in responses) == [201, 201], [r.json for r in responses]
    db.session.remove()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CustomerMap)) == 1
    listed = stripe_client.v1.customers.list(params={"limit": 100}).data
    assert len([c for c in listed if c.to_dict().get("metadata", {}).get("userId")
                == str(customer.id)]) == 1
    assert attached_ids(stripe_client, stripe_customer(customer)) == set(pms)


@pytest.mark.parametrize("role", ["vendor", "admin"])
def test_saved_cards_are_for_customers_only(api, shop, client, stripe_client, role):
    """Issue 15: a vendor or an admin saved cards (and got a Stripe customer) through the
    API while the /cards pages refused them."""
    user = shop[role]
    r = client.post("/api/payments/methods", headers=bearer(user),
                    json={"paymentMethodId": card_pm(stripe_client)})
    assert_error(r, 403, "forbidden")
    assert_error(client.get("/api/payments/methods", headers=bearer(user)), 403)
    assert stripe_customer(user) is None
