"""The payment endpoints of the JSON API (issue 3): create-intent, confirm, payments/<id>, history.

Every response goes through `Api`, which checks it the way a client generated from our
OpenAPI document would: the status is documented for the operation, the body conforms to the
document's schema for that status and validates against the pydantic model. The tests then
assert the documented shape field by field and the behaviour a caller notices.
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger.models import Payment
from portal.orders.models import Order
from tests.helpers import bearer, login, make_order
from tests.integration.api_support import (
    OPERATIONS,
    Api,
    assert_error,
    card_pm,
    dumps,
    intent_body,
    intents_for,
    paid,
)

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
VISA_3DS = "4000002760003184"
DECLINED = "4000000000000341"

# --- OpenAPI ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "statuses"),
    [
        ("create-intent", {"200", "400", "401", "404", "409", "500", "503"}),
        ("confirm", {"200", "400", "401", "402", "409", "500", "503"}),
        ("payment", {"200", "401", "404", "500"}),
        ("history", {"200", "400", "401", "500"}),
    ],
)
def test_openapi_documents_each_operation_with_its_status_codes(spec, name, statuses):
    assert spec["openapi"].startswith("3.1")
    path, method = OPERATIONS[name]
    operation = spec["paths"][path][method]
    assert statuses <= set(operation["responses"]), sorted(operation["responses"])
    assert operation["security"] == [{"bearerAuth": []}]
    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


# --- POST /create-intent ---------------------------------------------------------------------

def test_create_intent_answers_the_documented_shape(api, customer, order, stripe_client):
    r = api.create_intent(customer, intent_body(order))
    assert r.status_code == 200
    assert set(r.json) == {"success", "paymentIntent", "publishableKey"}
    assert r.json["success"] is True and r.json["publishableKey"] == "pk_test_portal"
    intent = r.json["paymentIntent"]
    assert set(intent) == {"id", "clientSecret", "amount", "currency", "status", "metadata"}
    assert intent["id"].startswith("pi_")
    assert intent["clientSecret"].startswith(intent["id"] + "_secret_")
    assert intent["amount"] == 29999 and type(intent["amount"]) is int
    assert intent["currency"] == "usd"
    assert intent["status"] == "requires_payment_method"
    assert intent["metadata"] == {"orderId": str(order.id), "userId": str(customer.id)}
    [pi] = intents_for(stripe_client, order.id)
    assert (pi.id, pi.amount, pi.currency) == (intent["id"], 29999, "usd")


def test_create_intent_twice_returns_the_same_intent(api, customer, order, stripe_client):
    first = api.create_intent(customer, intent_body(order)).json["paymentIntent"]
    second = api.create_intent(customer, intent_body(order, currency="usd"))
    assert second.status_code == 200
    assert second.json["paymentIntent"] == first
    assert len(intents_for(stripe_client, order.id)) == 1


def test_wrong_amount_is_400_with_the_expected_total(api, customer, order, stripe_client):
    r = api.create_intent(customer, intent_body(order, amount=Decimal("299.98")))
    error = assert_error(r, 400, "amount_mismatch", "amount")
    assert "$299.99" in error["fields"]["amount"] and "29999" in error["fields"]["amount"]
    assert intents_for(stripe_client, order.id) == []


def test_wrong_currency_is_400_with_the_expected_currency(api, customer, order, stripe_client):
    r = api.create_intent(customer, intent_body(order, currency="EUR"))
    error = assert_error(r, 400, "currency_mismatch", "currency")
    assert "USD" in error["fields"]["currency"] and "$299.99" in error["fields"]["currency"]
    assert intents_for(stripe_client, order.id) == []


def test_unsupported_currency_is_400_naming_currency(api, customer, order):
    assert_error(api.create_intent(customer, intent_body(order, currency="XXX")), 400,
                 field="currency")
    assert_error(api.create_intent(customer, intent_body(order, currency="US")), 400,
                 field="currency")


def test_payment_method_that_is_not_a_saved_card_is_404(api, customer, order, stripe_client):
    pm = card_pm(stripe_client)
    r = api.create_intent(customer, intent_body(order, paymentMethodId=pm))
    # As for another customer's saved card (tests/integration/test_api_methods.py).
    assert_error(r, 404, "payment_method_not_found", "paymentMethodId")
    assert intents_for(stripe_client, order.id) == []


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Token abc"])
def test_create_intent_without_a_valid_token_is_401(api, order, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    r = api.create_intent(None, intent_body(order), headers)
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_another_customers_order_is_404_and_gets_no_intent(api, shop, order, stripe_client):
    r = api.create_intent(shop["other"], intent_body(order))
    assert_error(r, 404, "order_not_found")
    assert intents_for(stripe_client, order.id) == []


@pytest.mark.parametrize("order_id", [str(uuid.uuid4()), "507f1f77bcf86cd799439011", "x"])
def test_unknown_or_malformed_order_is_404(api, customer, order, order_id):
    assert_error(api.create_intent(customer, intent_body(order, orderId=order_id)), 404,
                 "order_not_found")


def test_paid_order_is_400(api, customer, order, stripe_client):
    paid(api, stripe_client, customer, order)
    r = api.create_intent(customer, intent_body(order))
    assert_error(r, 400, "order_already_paid")
    assert len(intents_for(stripe_client, order.id)) == 1


# --- Idempotency-Key -------------------------------------------------------------------------

def test_same_idempotency_key_and_body_replays_the_first_response(api, customer, order,
                                                                  stripe_client):
    key = {"Idempotency-Key": "order-42-attempt-1"}
    first = api.create_intent(customer, intent_body(order), key)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    paid(api, stripe_client, customer, order)  # without the key this would now be a 400
    again = api.create_intent(customer, intent_body(order), key)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json


def test_same_idempotency_key_with_another_body_is_409(api, shop, customer, order,
                                                       stripe_client):
    key = {"Idempotency-Key": "k-1"}
    assert api.create_intent(customer, intent_body(order), key).status_code == 200
    second_order = make_order(customer, shop["vendor"], amounts=(1000,))
    r = api.create_intent(customer, intent_body(second_order), key)
    assert_error(r, 409, "idempotency_key_reused")
    assert intents_for(stripe_client, second_order.id) == []


def test_same_idempotency_key_on_another_endpoint_is_409(api, customer, order, stripe_client):
    key = {"Idempotency-Key": "k-2"}
    intent = api.create_intent(customer, intent_body(order), key).json["paymentIntent"]
    r = api.confirm(customer, intent["id"], card_pm(stripe_client), key)
    assert_error(r, 409, "idempotency_key_reused")
    assert stripe_client.v1.payment_intents.retrieve(intent["id"]).status == (
        "requires_payment_method")  # nothing was charged


def test_idempotency_keys_are_per_user(api, shop, customer, order):
    key = {"Idempotency-Key": "shared-key"}
    mine = api.create_intent(customer, intent_body(order), key)
    other = shop["other"]
    their_order = make_order(other, shop["vendor"], amounts=(1500,))
    theirs = api.create_intent(other, intent_body(their_order), key)
    assert theirs.status_code == 200 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.json["paymentIntent"]["id"] != mine.json["paymentIntent"]["id"]
    assert theirs.json["paymentIntent"]["metadata"]["userId"] == str(other.id)


def test_overlong_idempotency_key_is_400(api, customer, order, stripe_client):
    r = api.create_intent(customer, intent_body(order), {"Idempotency-Key": "k" * 256})
    assert_error(r, 400, "invalid_idempotency_key", "Idempotency-Key")
    assert intents_for(stripe_client, order.id) == []


def test_idempotency_key_is_forgotten_after_24_hours(api, shop, customer, order):
    from portal.api.models import IdempotencyKey

    key = {"Idempotency-Key": "yesterday"}
    assert api.create_intent(customer, intent_body(order), key).status_code == 200
    db.session.execute(sa.update(IdempotencyKey).values(
        created_at=datetime.now(UTC) - timedelta(hours=24, minutes=1)))
    db.session.commit()
    second_order = make_order(customer, shop["vendor"], amounts=(1000,))
    r = api.create_intent(customer, intent_body(second_order), key)
    assert r.status_code == 200 and "Idempotent-Replayed" not in r.headers
    assert r.json["paymentIntent"]["metadata"]["orderId"] == str(second_order.id)


# --- rate limit ------------------------------------------------------------------------------

def test_create_intent_is_rate_limited_in_the_error_format(api, customer):
    unknown = {"orderId": str(uuid.uuid4()), "amount": 1, "currency": "USD"}
    codes = [api.create_intent(customer, unknown).status_code for _ in range(61)]
    assert codes[:60] == [404] * 60 and codes[60] == 429
    r = api.create_intent(customer, unknown)
    assert_error(r, 429)
    assert int(r.headers["Retry-After"]) > 0


def test_one_callers_rate_limit_does_not_block_another(api, shop, customer):
    unknown = {"orderId": str(uuid.uuid4()), "amount": 1, "currency": "USD"}
    for _ in range(61):
        api.create_intent(customer, unknown)
    # Same address (a gateway, a NAT, another ShopSphere service), another customer.
    assert api.create_intent(shop["other"], unknown).status_code == 404


# --- amounts ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("currency", "amounts", "raw_amount", "minor"),
    [("USD", (29999,), "299.99", 29999), ("JPY", (500,), "500", 500),
     ("USD", (29999,), "299.990", 29999), ("JPY", (500,), "5e2", 500)],
)
def test_decimal_amount_becomes_minor_units(api, shop, currency, amounts, raw_amount, minor):
    customer = shop["customer"]
    order = make_order(customer, shop["vendor"], currency=currency, amounts=amounts)
    raw = f'{{"orderId": "{order.id}", "amount": {raw_amount}, "currency": "{currency}"}}'
    r = api.create_intent(customer, raw)
    assert r.status_code == 200, r.json
    assert r.json["paymentIntent"]["amount"] == minor
    assert r.json["paymentIntent"]["currency"] == currency.lower()


@pytest.mark.parametrize(
    "raw_amount", ["1.2345", "-1", "NaN", "Infinity", "1e309", '"299.99"', "true", "null",
                   "299.999", "0.001"],
)
def test_bad_amount_is_400_naming_amount(api, customer, order, raw_amount, stripe_client):
    raw = f'{{"orderId": "{order.id}", "amount": {raw_amount}, "currency": "USD"}}'
    assert_error(api.create_intent(customer, raw), 400, field="amount")
    assert intents_for(stripe_client, order.id) == []


@pytest.mark.commits
def test_concurrent_create_intent_calls_make_one_intent(app, spec, shop, order, stripe_client):
    customer = shop["customer"]
    headers = {**bearer(customer), "Content-Type": "application/json"}
    body, order_id = dumps(intent_body(order)), order.id  # plain values for the threads
    start, responses = threading.Barrier(2), []

    def call():
        c = app.test_client()
        start.wait()
        responses.append(c.post("/api/payments/create-intent", data=body, headers=headers))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in responses] == [200, 200], [r.json for r in responses]
    for r in responses:
        Api(None, spec).check("create-intent", r)
    assert len({r.json["paymentIntent"]["id"] for r in responses}) == 1
    [pi] = intents_for(stripe_client, order_id)
    assert pi.id == responses[0].json["paymentIntent"]["id"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Payment)
                             .where(Payment.order_id == order_id)) == 1


# --- POST /confirm ---------------------------------------------------------------------------

def test_confirm_answers_the_documented_shape(api, customer, order, stripe_client):
    intent = api.create_intent(customer, intent_body(order)).json["paymentIntent"]
    pm = card_pm(stripe_client)
    r = api.confirm(customer, intent["id"], pm)
    assert r.status_code == 200, r.json
    assert set(r.json) == {"success", "payment"} and r.json["success"] is True
    payment = r.json["payment"]
    assert set(payment) == {"id", "paymentIntentId", "status", "amount", "currency",
                            "paymentMethod", "receiptUrl", "createdAt"}
    assert uuid.UUID(payment["id"])
    assert payment["paymentIntentId"] == intent["id"]
    assert payment["status"] == "succeeded"
    assert payment["amount"] == 29999 and type(payment["amount"]) is int
    assert payment["currency"] == "usd"
    assert payment["paymentMethod"] == {"id": pm, "type": "card",
                                        "card": {"brand": "visa", "last4": "4242"}}
    assert payment["receiptUrl"].startswith("http")
    assert ISO_Z.match(payment["createdAt"]), payment["createdAt"]


def test_confirmed_payment_shows_as_paid_everywhere(api, client, customer, order,
                                                    stripe_client):
    payment = paid(api, stripe_client, customer, order)
    db.session.expire_all()
    assert db.session.get(Order, order.id).status == "paid"
    assert api.payment(customer, payment["id"]).json["payment"]["status"] == "succeeded"
    [listed] = api.history(customer).json["payments"]
    assert (listed["_id"], listed["status"]) == (payment["id"], "succeeded")
    assert stripe_client.v1.payment_intents.retrieve(
        payment["paymentIntentId"]).status == "succeeded"
    login(client, customer.email)
    page = client.get(f"/payments/{payment['id']}")
    assert page.status_code == 200 and "Succeeded" in page.text and "4242" in page.text


def test_card_asking_for_3ds_is_402_with_the_client_secret(api, customer, order,
                                                           stripe_client):
    intent = api.create_intent(customer, intent_body(order)).json["paymentIntent"]
    r = api.confirm(customer, intent["id"], card_pm(stripe_client, VISA_3DS))
    assert r.status_code == 402, r.json
    assert set(r.json) == {"success", "requiresAction", "clientSecret", "error"}
    assert r.json["success"] is False and r.json["requiresAction"] is True
    assert r.json["clientSecret"] == intent["clientSecret"]
    assert set(r.json["error"]) == {"code", "message"}
    assert r.json["error"]["code"] == "requires_action"
    payment_id = db.session.scalar(sa.select(Payment.id).where(Payment.order_id == order.id))
    assert api.payment(customer, payment_id).json["payment"]["status"] == "requires_action"
    db.session.expire_all()
    assert db.session.get(Order, order.id).status == "unpaid"


def test_declined_card_is_400_with_stripes_code_and_message(api, customer, order,
                                                            stripe_client):
    intent = api.create_intent(customer, intent_body(order)).json["paymentIntent"]
    r = api.confirm(customer, intent["id"], card_pm(stripe_client, DECLINED))
    error = assert_error(r, 400, "generic_decline")
    assert error["message"] == "Your card was declined."
    payment_id = db.session.scalar(sa.select(Payment.id).where(Payment.order_id == order.id))
    detail = api.payment(customer, payment_id).json["payment"]
    assert (detail["status"], detail["failureCode"], detail["failureMessage"]) == (
        "failed", "generic_decline", "Your card was declined.")
    db.session.expire_all()
    assert db.session.get(Order, order.id).status == "unpaid"


def test_after_a_decline_another_card_pays_the_same_intent(api, customer, order,
                                                           stripe_client):
    intent = api.create_intent(customer, intent_body(order)).json["paymentIntent"]
    api.confirm(customer, intent["id"], card_pm(stripe_client, DECLINED))
    again = api.create_intent(customer, intent_body(order)).json["paymentIntent"]
    assert again["id"] == intent["id"]
    r = api.confirm(customer, intent["id"], card_pm(stripe_client))
    assert r.status_code == 200 and r.json["payment"]["status"] == "succeeded"
    detail = api.payment(customer, r.json["payment"]["id"]).json["payment"]
    assert detail["failureCode"] is None and detail["failureMessage"] is None


def test_confirming_a_succeeded_payment_again_returns_it(api, customer, order, stripe_client):
    payment = paid(api, stripe_client, customer, order)
    r = api.confirm(customer, payment["paymentIntentId"], card_pm(stripe_client))
    assert r.status_code == 200 and r.json["payment"] == payment
    charges = [c for c in stripe_client.v1.charges.list(params={"limit": 100}).auto_paging_iter()
               if c.payment_intent == payment["paymentIntentId"]]
    assert len(charges) == 1  # not charged twice


def test_unknown_payment_intent_is_400(api, customer, stripe_client):
    r = api.confirm(customer, "pi_0000000000unknown", card_pm(stripe_client))
    assert_error(r, 400, "invalid_payment_intent", "paymentIntentId")


@pytest.mark.parametrize("who", ["other", "admin"])
def test_someone_elses_payment_intent_is_400_and_not_charged(api, shop, customer, order,
                                                             stripe_client, who):
    """Another customer, and an admin too: reading is allowed to admins, paying is not."""
    intent = api.create_intent(customer, intent_body(order)).json["paymentIntent"]
    r = api.confirm(shop[who], intent["id"], card_pm(stripe_client))
    assert_error(r, 400, "invalid_payment_intent", "paymentIntentId")
    assert stripe_client.v1.payment_intents.retrieve(intent["id"]).status == (
        "requires_payment_method")


def test_payment_method_unknown_to_stripe_is_400(api, customer, order, stripe_client):
    intent = api.create_intent(customer, intent_body(order)).json["paymentIntent"]
    r = api.confirm(customer, intent["id"], "pm_0000000000unknown")
    assert_error(r, 400)
    assert stripe_client.v1.payment_intents.retrieve(intent["id"]).status == (
        "requires_payment_method")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"paymentIntentId": "pi_123"}, "paymentMethodId"),
     ({"paymentMethodId": "pm_123"}, "paymentIntentId"),
     ({"paymentIntentId": "123", "paymentMethodId": "pm_123"}, "paymentIntentId"),
     ({"paymentIntentId": "pi_123", "paymentMethodId": "card_123"}, "paymentMethodId"),
     ({"paymentIntentId": "pi_123", "paymentMethodId": "pm_123", "amount": 1}, "amount")],
)
def test_malformed_confirm_body_is_400_naming_the_field(api, customer, body, field):
    assert_error(api.post("confirm", customer, body, None), 400, field=field)


def test_confirm_without_a_token_is_401(api):
    r = api.confirm(None, "pi_123", "pm_123")
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


# --- GET /payments/<id> ----------------------------------------------------------------------

def test_payment_answers_the_documented_shape(api, customer, order, stripe_client):
    confirmed = paid(api, stripe_client, customer, order)
    r = api.payment(customer, confirmed["id"])
    assert r.status_code == 200
    assert set(r.json) == {"success", "payment"} and r.json["success"] is True
    p = r.json["payment"]
    assert set(p) == {"_id", "userId", "orderId", "paymentIntentId", "amount", "currency",
                      "status", "paymentMethod", "breakdown", "receiptUrl", "failureCode",
                      "failureMessage", "createdAt", "updatedAt", "amountRefunded",
                      "refundStatus"}  # the last two: issue 5's refunds
    assert (p["amountRefunded"], p["refundStatus"]) == (0, None)
    assert (p["_id"], p["userId"], p["orderId"]) == (confirmed["id"], str(customer.id),
                                                     str(order.id))
    assert p["paymentIntentId"] == confirmed["paymentIntentId"]
    assert (p["amount"], p["currency"], p["status"]) == (29999, "usd", "succeeded")
    assert p["paymentMethod"] == {"type": "card", "card": {"brand": "visa", "last4": "4242"}}
    breakdown = p["breakdown"]
    assert set(breakdown) == {"subtotal", "tax", "shipping", "discount", "platformFee",
                              "vendorAmount"}
    assert (breakdown["subtotal"], breakdown["tax"], breakdown["shipping"],
            breakdown["discount"]) == (26999, 2700, 300, 0)
    for key in ("platformFee", "vendorAmount"):
        assert breakdown[key] is None or type(breakdown[key]) is int
    assert p["receiptUrl"] == confirmed["receiptUrl"]
    assert p["failureCode"] is None and p["failureMessage"] is None
    assert ISO_Z.match(p["createdAt"]) and ISO_Z.match(p["updatedAt"])
    assert p["createdAt"] == confirmed["createdAt"] and p["updatedAt"] >= p["createdAt"]


def test_payment_not_yet_paid_has_no_method_and_no_receipt(api, customer, order):
    api.create_intent(customer, intent_body(order))
    payment_id = db.session.scalar(sa.select(Payment.id).where(Payment.order_id == order.id))
    p = api.payment(customer, payment_id).json["payment"]
    assert p["status"] == "requires_payment_method"
    assert p["paymentMethod"] is None and p["receiptUrl"] is None


def test_owner_and_admin_see_a_payment_others_get_404(api, shop, customer, order,
                                                      stripe_client):
    payment_id = paid(api, stripe_client, customer, order)["id"]
    assert api.payment(customer, payment_id).status_code == 200
    assert api.payment(shop["admin"], payment_id).json["payment"]["_id"] == payment_id
    assert_error(api.payment(shop["other"], payment_id), 404, "payment_not_found")
    assert_error(api.payment(shop["vendor"], payment_id), 404, "payment_not_found")


@pytest.mark.parametrize("payment_id", ["not-a-uuid", "507f1f77bcf86cd799439020",
                                        str(uuid.uuid4()), "%25", "1" * 300])
def test_malformed_or_unknown_payment_id_is_404(api, customer, payment_id):
    assert_error(api.payment(customer, payment_id), 404, "payment_not_found")


def test_a_control_character_in_a_payment_id_is_400(api, customer):
    assert_error(api.payment(customer, "%00"), 400, "control_characters")


def test_payment_without_a_token_is_401(api, client):
    r = api.check("payment", client.get(f"/api/payments/payments/{uuid.uuid4()}"))
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


# --- GET /history ----------------------------------------------------------------------------

HISTORY_START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def history_owner(shop):
    """25 payments of the customer at noon on 1..25 January 2026 (every fifth failed, without
    a card), and one payment of another customer."""
    customer, vendor = shop["customer"], shop["vendor"]
    for n in range(25):
        order = make_order(customer, vendor, currency="EUR", amounts=(1000 + n,))
        failed = n % 5 == 0
        db.session.add(Payment(
            user_id=customer.id, order_id=order.id, amount=order.total, currency="EUR",
            status="failed" if failed else "succeeded", payment_method_type="card",
            card_brand=None if failed else "mastercard", card_last4=None if failed else "4444",
            created_at=HISTORY_START + timedelta(days=n),
        ))
    other_order = make_order(shop["other"], vendor, amounts=(7777,))
    db.session.add(Payment(user_id=shop["other"].id, order_id=other_order.id, amount=7777,
                           currency="USD", status="succeeded",
                           created_at=HISTORY_START + timedelta(days=3)))
    db.session.commit()
    return customer


def test_history_answers_the_documented_shape(api, history_owner):
    r = api.history(history_owner)
    assert r.status_code == 200
    assert set(r.json) == {"success", "payments", "pagination"} and r.json["success"] is True
    assert r.json["pagination"] == {"currentPage": 1, "totalPages": 2, "totalItems": 25,
                                    "itemsPerPage": 20}
    items = r.json["payments"]
    assert len(items) == 20
    for item in items:
        assert set(item) == {"_id", "orderId", "amount", "currency", "status",
                             "paymentMethod", "createdAt", "amountRefunded", "refundStatus"}
        assert uuid.UUID(item["_id"]) and uuid.UUID(item["orderId"])
        assert type(item["amount"]) is int and item["currency"] == "eur"
        assert ISO_Z.match(item["createdAt"])
    newest = items[0]
    assert (newest["amount"], newest["status"], newest["createdAt"]) == (
        1024, "succeeded", "2026-01-25T12:00:00Z")
    assert newest["paymentMethod"] == {"type": "card", "last4": "4444"}
    failed = next(i for i in items if i["status"] == "failed")
    assert failed["paymentMethod"] is None


def test_history_lists_only_own_payments_newest_first(api, history_owner):
    items = api.history(history_owner, "limit=100").json["payments"]
    assert [i["amount"] for i in items] == list(range(1024, 999, -1))
    assert 7777 not in {i["amount"] for i in items}


def test_history_pages(api, history_owner):
    pages = [api.history(history_owner, f"page={n}&limit=10").json for n in (1, 2, 3, 4)]
    assert [len(p["payments"]) for p in pages] == [10, 10, 5, 0]
    assert [p["pagination"]["currentPage"] for p in pages] == [1, 2, 3, 4]
    assert {p["pagination"]["totalPages"] for p in pages} == {3}
    assert {p["pagination"]["itemsPerPage"] for p in pages} == {10}
    ids = [i["_id"] for p in pages for i in p["payments"]]
    assert len(set(ids)) == 25  # no payment twice, none skipped


def test_history_filters_by_status(api, history_owner):
    r = api.history(history_owner, "status=failed")
    assert r.json["pagination"]["totalItems"] == 5
    assert {i["status"] for i in r.json["payments"]} == {"failed"}
    assert api.history(history_owner, "status=canceled").json["payments"] == []


def test_history_filters_by_date_range(api, history_owner):
    r = api.history(history_owner, "startDate=2026-01-05T00:00:00Z&endDate=2026-01-09T23:59:59Z")
    assert [i["createdAt"][:10] for i in r.json["payments"]] == [
        "2026-01-09", "2026-01-08", "2026-01-07", "2026-01-06", "2026-01-05"]
    assert r.json["pagination"]["totalItems"] == 5


def test_history_offset_in_dates_is_honoured(api, history_owner):
    # 2026-01-10T12:00Z is 13:00 in +01:00: a start at 12:30+01:00 includes it.
    r = api.history(history_owner, "startDate=2026-01-10T12:30:00%2B01:00&"
                                   "endDate=2026-01-10T13:00:00%2B01:00")
    assert [i["createdAt"] for i in r.json["payments"]] == ["2026-01-10T12:00:00Z"]


def test_history_date_only_range_includes_both_days(api, history_owner):
    r = api.history(history_owner, "startDate=2026-01-05&endDate=2026-01-09")
    assert r.json["pagination"]["totalItems"] == 5, [i["createdAt"] for i in r.json["payments"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [("page=0", "page"), ("page=-1", "page"), ("page=abc", "page"), ("limit=0", "limit"),
     ("limit=101", "limit"), ("limit=1.5", "limit"), ("status=bogus", "status"),
     ("startDate=not-a-date", "startDate"), ("endDate=2026-13-01", "endDate"),
     ("startDate=2026-01-10T00:00:00Z&endDate=2026-01-09T00:00:00Z", "endDate"),
     ("sort=amount", "sort")],
)
def test_bad_history_query_is_400_naming_the_field(api, history_owner, query, field):
    assert_error(api.history(history_owner, query), 400, "validation_error", field)


def test_history_without_a_token_is_401(api, client):
    r = api.check("history", client.get("/api/payments/history"))
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
