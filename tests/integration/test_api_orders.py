"""POST /api/orders: who may register orders, and every bad input answered with its field."""

import jwt
import pytest

from portal.extensions import db
from portal.orders.models import Order
from tests.helpers import bearer, make_user


@pytest.fixture
def parties():
    return {
        "customer": make_user("cust@example.test"),
        "vendor": make_user("vend@example.test", "vendor"),
        "vendor2": make_user("vend2@example.test", "vendor"),
        "admin": make_user("admin@example.test", "admin"),
        "service": make_user("orders-svc@example.test", "service"),
    }


def body(**over):
    b = {"customerEmail": "cust@example.test", "currency": "USD", "tax": 270, "shipping": 300,
         "discount": 100,
         "items": [{"vendorEmail": "vend@example.test", "description": "Lamp", "quantity": 2,
                    "unitAmount": 1999},
                   {"vendorEmail": "VEND2@example.test", "description": "Mug", "quantity": 1,
                    "unitAmount": 850}]}
    b.update(over)
    return b


@pytest.mark.parametrize("role", ["admin", "service"])
def test_admin_or_service_registers_an_order(client, parties, role):
    r = client.post("/api/orders", json=body(), headers=bearer(parties[role]))
    assert r.status_code == 201, r.json
    order = r.json["order"]
    assert r.json["success"] is True
    assert order["subtotal"] == 2 * 1999 + 850
    assert order["total"] == 2 * 1999 + 850 + 270 + 300 - 100
    assert order["currency"] == "usd" and order["status"] == "unpaid"
    assert [i["amount"] for i in order["items"]] == [3998, 850]
    assert db.session.get(Order, __import__("uuid").UUID(order["id"])) is not None


def test_customer_token_is_forbidden_and_nothing_is_stored(client, parties):
    r = client.post("/api/orders", json=body(), headers=bearer(parties["customer"]))
    assert r.status_code == 403
    assert r.json["success"] is False and r.json["error"]["code"] == "forbidden"
    assert db.session.query(Order).count() == 0


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Basic abc"])
def test_missing_or_bad_token_is_401_with_www_authenticate(client, parties, header):
    headers = {"Authorization": header} if header else {}
    r = client.post("/api/orders", json=body(), headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json == {"success": False, "error": {
        "code": "unauthorized", "message": "a valid Bearer token is required"}}


def test_alg_none_and_expired_tokens_are_refused(client, app, parties):
    admin = parties["admin"]
    claims = {"sub": str(admin.id), "exp": 4102444800, "iss": app.config["JWT_ISSUER"],
              "aud": app.config["JWT_AUDIENCE"]}
    none_token = jwt.encode(claims, None, algorithm="none")
    expired = jwt.encode({**claims, "exp": 1000}, app.config["JWT_SECRET"], algorithm="HS256")
    for token in (none_token, expired):
        r = client.post("/api/orders", json=body(), headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401


def test_session_cookie_never_authenticates_the_api(client, parties):
    from tests.helpers import login

    assert login(client, "admin@example.test").status_code == 302
    r = client.post("/api/orders", json=body())
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "XXX"}, "currency"),
        ({"customerEmail": "nobody@example.test"}, "customerEmail"),
        ({"customerEmail": "vend@example.test"}, "customerEmail"),
        ({"items": []}, "items"),
        ({"items": [{"vendorEmail": "vend@example.test", "description": "x", "quantity": 0,
                     "unitAmount": 100}]}, "items.0.quantity"),
        ({"items": [{"vendorEmail": "vend@example.test", "description": "x", "quantity": 1,
                     "unitAmount": 19.99}]}, "items.0.unitAmount"),
        ({"items": [{"vendorEmail": "cust@example.test", "description": "x", "quantity": 1,
                     "unitAmount": 100}]}, "items.0.vendorEmail"),
        ({"tax": -1}, "tax"),
        ({"tax": "12"}, "tax"),
        ({"discount": 10**7}, "discount"),
        ({"unexpected": True}, "unexpected"),
        ({"items": [{"vendorEmail": "vend@example.test", "description": "x", "quantity": 1,
                     "unitAmount": 10}], "tax": 0, "shipping": 0, "discount": 0}, "total"),
    ],
)
def test_malformed_order_is_400_with_the_field(client, parties, change, field):
    r = client.post("/api/orders", json=body(**change), headers=bearer(parties["admin"]))
    assert r.status_code == 400, r.json
    assert r.json["success"] is False
    assert field in r.json["error"]["fields"], r.json
    assert db.session.query(Order).count() == 0


def test_non_json_body_is_400(client, parties):
    r = client.post("/api/orders", data="nope", headers=bearer(parties["admin"]))
    assert r.status_code == 400 and r.json["error"]["code"] == "invalid_json"
    r = client.post("/api/orders", json=[1, 2], headers=bearer(parties["admin"]))
    assert r.status_code == 400 and r.json["error"]["code"] == "invalid_body"


def test_kwd_amount_with_a_non_zero_third_decimal_is_refused(client, parties):
    items = [{"vendorEmail": "vend@example.test", "description": "Dates", "quantity": 1,
              "unitAmount": 1255}]  # 1.255 KWD
    r = client.post("/api/orders", json=body(currency="KWD", items=items, tax=0, shipping=0,
                                             discount=0), headers=bearer(parties["admin"]))
    assert r.status_code == 400
    assert "must end in 0" in r.json["error"]["fields"]["items.0.unitAmount"]


def test_unknown_order_is_404_and_unknown_api_route_is_json_404(client, parties):
    h = bearer(parties["admin"])
    for path in ("/api/orders/6f1c1f3e-0000-4000-8000-000000000000", "/api/orders/123"):
        r = client.get(path, headers=h)
        assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    r = client.get("/api/nowhere")
    assert r.status_code == 404 and r.is_json and r.json["success"] is False


def test_customer_sees_own_order_but_not_anothers(client, parties):
    r = client.post("/api/orders", json=body(), headers=bearer(parties["admin"]))
    oid = r.json["order"]["id"]
    assert client.get(f"/api/orders/{oid}", headers=bearer(parties["customer"])).status_code == 200
    other = make_user("other@example.test")
    assert client.get(f"/api/orders/{oid}", headers=bearer(other)).status_code == 404
