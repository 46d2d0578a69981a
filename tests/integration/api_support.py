"""Shared by the JSON API tests: a client that checks every response against the published
OpenAPI document (``conforms``), and helpers to build requests (the fixtures are in
conftest.py)."""

from __future__ import annotations

import json
from decimal import Decimal

import jsonschema_rs

from portal.api.schemas import (
    AddMethodOut,
    ConfirmOut,
    CreateIntentOut,
    ErrorOut,
    HistoryOut,
    MessageOut,
    MethodsOut,
    PaymentOut,
    RequiresActionOut,
)
from portal.extensions import db
from portal.money import to_decimal
from portal.payments.services import confirm_with_card, start_checkout
from tests.helpers import bearer, make_order

VISA = "4242424242424242"

OPERATIONS = {
    "create-intent": ("/api/payments/create-intent", "post"),
    "confirm": ("/api/payments/confirm", "post"),
    "payment": ("/api/payments/payments/{paymentId}", "get"),
    "history": ("/api/payments/history", "get"),
    "methods": ("/api/payments/methods", "get"),
    "add-method": ("/api/payments/methods", "post"),
    "remove-method": ("/api/payments/methods/{paymentMethodId}", "delete"),
    "default-method": ("/api/payments/methods/{paymentMethodId}/default", "put"),
}
MODELS = {
    ("create-intent", 200): CreateIntentOut,
    ("confirm", 200): ConfirmOut,
    ("confirm", 402): RequiresActionOut,
    ("payment", 200): PaymentOut,
    ("history", 200): HistoryOut,
    ("methods", 200): MethodsOut,
    ("add-method", 201): AddMethodOut,
    ("remove-method", 200): MessageOut,
    ("default-method", 200): MessageOut,
}


# --- helpers ---------------------------------------------------------------------------------

def dumps(body: dict) -> str:
    """JSON as a client writes it: Decimal amounts become JSON numbers digit for digit (never
    through a float)."""
    digits = {}

    def mark(value: Decimal) -> str:
        digits[f"@@{len(digits)}@@"] = str(value)
        return f"@@{len(digits) - 1}@@"

    text = json.dumps(body, default=mark)
    for key, number in digits.items():
        text = text.replace(f'"{key}"', number)
    return text


class Api:
    """The test client plus the published OpenAPI document every response is checked against."""

    def __init__(self, client, spec: dict):
        self.client, self.spec = client, spec

    def create_intent(self, user, body, headers: dict | None = None):
        return self.post("create-intent", user, body, headers)

    def confirm(self, user, intent_id: str, pm_id: str, headers: dict | None = None):
        body = {"paymentIntentId": intent_id, "paymentMethodId": pm_id}
        return self.post("confirm", user, body, headers)

    def payment(self, user, payment_id):
        r = self.client.get(f"/api/payments/payments/{payment_id}", headers=bearer(user))
        return self.check("payment", r)

    def history(self, user, query: str = ""):
        r = self.client.get(f"/api/payments/history?{query}", headers=bearer(user))
        return self.check("history", r)

    def methods(self, user):
        return self.check("methods", self.client.get("/api/payments/methods",
                                                     headers=bearer(user)))

    def add_method(self, user, pm_id: str, set_default: bool = False):
        return self.post("add-method", user, {"paymentMethodId": pm_id,
                                              "setAsDefault": set_default}, None)

    def remove_method(self, user, pm_id: str):
        return self.check("remove-method", self.client.delete(
            f"/api/payments/methods/{pm_id}", headers=bearer(user)))

    def default_method(self, user, pm_id: str):
        return self.check("default-method", self.client.put(
            f"/api/payments/methods/{pm_id}/default", headers=bearer(user)))

    def post(self, name, user, body, headers):
        data = body if isinstance(body, str) else dumps(body)
        all_headers = {"Content-Type": "application/json", **(bearer(user) if user else {}),
                       **(headers or {})}
        return self.check(name, self.client.post(OPERATIONS[name][0], data=data,
                                                 headers=all_headers))

    def check(self, name, r):
        path, method = OPERATIONS[name]
        conforms(self.spec, path, method, r)
        MODELS.get((name, r.status_code), ErrorOut).model_validate(r.json)
        return r


def conforms(spec: dict, path: str, method: str, r) -> None:
    """The response is what the published document says of the operation: a documented
    status, JSON, a body valid against that status's schema; an error in the error format;
    Retry-After on 429 and 503."""
    assert r.is_json, (r.status_code, r.text[:200])
    responses = spec["paths"][path][method]["responses"]
    assert str(r.status_code) in responses, f"{method} {path}: {r.status_code} is not documented"
    schema = responses[str(r.status_code)]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**schema, "components": spec["components"]})
    problems = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(r.json)]
    assert problems == [], (method, path, r.status_code, problems, r.json)
    if r.status_code >= 400 and r.status_code != 402:
        assert_error_format(r.json)
    if r.status_code in (429, 503):
        assert int(r.headers["Retry-After"]) > 0


def assert_error_format(body: dict) -> None:
    """{"success": false, "error": {"code", "message", "fields"?}}, nothing else."""
    assert set(body) == {"success", "error"} and body["success"] is False
    error = body["error"]
    assert {"code", "message"} <= set(error) <= {"code", "message", "fields"}
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    if "fields" in error:
        assert error["fields"] and all(isinstance(v, str) for v in error["fields"].values())


def assert_error(r, status: int, code: str | None = None, field: str | None = None) -> dict:
    assert r.status_code == status, r.json
    error = r.json["error"]
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert field in error.get("fields", {}), error
    return error


def intent_body(order, **over) -> dict:
    """The create-intent body a client sends for ``order``: its total in major units."""
    body = {"orderId": str(order.id), "amount": to_decimal(order.total, order.currency),
            "currency": order.currency}
    body.update(over)
    return body


def card_pm(stripe_client, number: str = VISA) -> str:
    return stripe_client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030,
                                 "cvc": "123"}}).id


def intents_for(stripe_client, order_id) -> list:
    """The sandbox's PaymentIntents of an order (by the metadata the portal sets)."""
    listed = stripe_client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
    return [pi for pi in listed if pi.to_dict()["metadata"].get("orderId") == str(order_id)]


def paid(api, stripe_client, user, order) -> dict:
    """Pay ``order`` through the API with a Visa card; the confirmed `payment` object."""
    intent = api.create_intent(user, intent_body(order)).json["paymentIntent"]
    r = api.confirm(user, intent["id"], card_pm(stripe_client))
    assert r.status_code == 200, r.json
    return r.json["payment"]


def pay(stripe_client, customer, vendor, amounts=(10000,), vendor2=None, number=VISA,
        **order_kw):
    """A succeeded payment of ``customer`` (items of ``vendor``, and of ``vendor2``) with the
    test card ``number``."""
    order = make_order(customer, vendor, amounts=amounts, **order_kw)
    if vendor2 is not None:
        from portal.orders.models import OrderItem

        db.session.add(OrderItem(order_id=order.id, vendor_id=vendor2.id, position=9,
                                 description="Other", quantity=1, unit_amount=3333))
        order.subtotal += 3333
        order.total += 3333
        db.session.commit()
    payment = start_checkout(order, source="api").payment
    payment, _ = confirm_with_card(customer, payment, card_pm(stripe_client, number))
    assert payment.status == "succeeded"
    return payment
