"""Hostile input (issue 15, findings 1, 8 and 11): bodies over the limit refused before they
are read, control characters refused at one place with a clear 400, dates and periods that
once raised answered as errors, and the smaller findings."""

from __future__ import annotations

import io
import json

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.orders.models import Order
from portal.refunds import services as refunds
from portal.refunds.models import RefundRequest
from portal.webhooks.models import StripeEvent
from tests.helpers import bearer, committed, login, make_user, paid_payment, sign

NUL = "\u0000"
MAX_REQUEST_BYTES = 1024 * 1024  # the documented limit (README, "Security")


class CountingStream(io.RawIOBase):
    """A request body of ``size`` bytes that counts what the server reads of it."""

    def __init__(self, size: int):
        self.size, self.position, self.read_bytes = size, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # the test client measures the body
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = offset if whence == io.SEEK_SET else self.size + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.position)
        buffer[:n] = b"x" * n
        self.position += n
        self.read_bytes += n
        return n


@pytest.fixture
def people():
    return {"customer": make_user("carol@example.test"),
            "vendor": make_user("vera@example.test", "vendor"),
            "admin": make_user("ada@example.test", "admin"),
            "service": make_user("orders-svc@example.test", "service")}


# --- Finding 1: the request-body limit -----------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/payments/webhook", "/api/auth/token",
                                  "/api/payments/create-intent", "/login"])
def test_a_body_over_the_limit_is_refused_before_it_is_read(client, path):
    body = CountingStream(300 * 1024 * 1024)  # 300 MB announced, as in the attack
    r = client.post(path, input_stream=body, content_length=body.size,
                    headers={"Content-Type": "application/json",
                             "Stripe-Signature": "t=1,v1=bad"})
    assert r.status_code == 413
    assert body.read_bytes == 0
    if path.startswith("/api/"):
        assert r.json == {"success": False, "error": {
            "code": "too_large", "message": "The request is too large"}}
    else:
        assert "The request is too large" in r.text


def test_a_body_without_a_length_is_read_only_up_to_the_limit(app):
    """A chunked body: no length to refuse it by (gunicorn marks such input terminated)."""
    body = CountingStream(20 * 1024 * 1024)
    r = app.test_client().post(
        "/api/auth/token", input_stream=body, environ_overrides={"wsgi.input_terminated": True},
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    assert r.status_code == 413
    assert body.read_bytes <= MAX_REQUEST_BYTES + 64 * 1024


def test_a_stripe_event_just_under_the_limit_is_taken(client):
    padding = "x" * (MAX_REQUEST_BYTES - 2000)
    payload = json.dumps({
        "id": "evt_big", "object": "event", "type": "customer.updated",
        "api_version": "2026-10-28.endive", "created": 1, "livemode": False,
        "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
        "data": {"object": {"id": "cus_x", "object": "customer", "description": padding}},
    }).encode()
    assert len(payload) < MAX_REQUEST_BYTES
    r = client.post("/api/payments/webhook", data=payload, headers={
        "Stripe-Signature": sign(payload, "whsec_portal_tests"),
        "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


# --- Finding 8: control characters and values that raised ----------------------------------------

def test_a_nul_in_the_login_email_is_a_clear_400(client):
    r = client.post("/login", data={"email": f"carol{NUL}@example.test", "password": "x"})
    assert r.status_code == 400
    assert "control characters" in r.text


def test_control_characters_in_an_order_change_nothing(client, people):
    base = {"customerEmail": "carol@example.test", "currency": "USD",
            "items": [{"vendorEmail": "vera@example.test", "description": "Lamp",
                       "quantity": 1, "unitAmount": 1999}]}
    for body in ({**base, "customerEmail": f"carol{NUL}@example.test"},
                 {**base, "items": [{**base["items"][0], "description": "La\u0007mp"}]},
                 {**base, "items": [{**base["items"][0], "description": "Lamp\u0085"}]}):
        r = client.post("/api/orders", json=body, headers=bearer(people["service"]))
        assert r.status_code == 400
        assert r.json["error"]["code"] == "control_characters"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0
    # Tabs and line breaks are text, and other scripts are welcome.
    fine = {**base, "items": [{**base["items"][0], "description": "Lampe\tà poser\n« Ω »"}]}
    assert client.post("/api/orders", json=fine,
                       headers=bearer(people["service"])).status_code == 201


def test_control_characters_in_refund_notes_change_nothing(client, people):
    payment = paid_payment(people["customer"], people["vendor"], 5000)
    login(client, people["customer"].email)
    r = client.post(f"/payments/{payment.id}/refunds",
                    data={"amount": "10", "reason": "customer_request", "notes": f"a{NUL}b"})
    assert r.status_code == 400 and "control characters" in r.text
    assert r.headers["X-Error-Message"].startswith("The request contains control characters")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest)) == 0


def test_control_characters_in_a_reject_note_change_nothing(client, people):
    payment = paid_payment(people["customer"], people["vendor"], 5000)
    with committed():
        asked = refunds.request_refund(people["customer"], payment, amount=1000,
                                       reason="customer_request", notes=None)
    db.session.commit()
    login(client, people["admin"].email)
    r = client.post(f"/admin/refunds/{asked.id}/reject", data={"note": f"no{NUL}pe"},
                    headers={"HX-Request": "true"})
    assert r.status_code == 400 and r.headers["X-Error-Message"]
    db.session.expire_all()
    assert db.session.get(RefundRequest, asked.id).status == "requested"


@pytest.mark.parametrize("path", ["/cards/pm_a%00b/remove", "/cards/pm_a%1Bb/default"])
def test_a_control_character_in_a_path_is_a_400(client, people, path):
    login(client, people["customer"].email)
    assert client.post(path).status_code == 400


def test_the_event_log_filters_refuse_control_characters_and_impossible_days(client, people):
    login(client, people["admin"].email)
    assert client.get("/admin/events?type=payment%00").status_code == 400
    assert client.get("/admin/events?from=0001-01-01&to=9999-12-31").status_code == 200


@pytest.mark.parametrize("query", ["from=0001-01-01&to=9999-12-31", "from=2024-13-01",
                                   "from=2025-02-01&to=2025-01-01", "to=1999-12-31"])
def test_a_statement_for_impossible_dates_is_a_400(client, people, query):
    login(client, people["vendor"].email)
    r = client.get(f"/vendor/statement.csv?{query}")
    assert r.status_code == 400
    assert "2000-01-01 to 2100-12-31" in r.text


def test_a_statement_for_a_plain_range_is_a_csv(client, people):
    login(client, people["vendor"].email)
    r = client.get("/vendor/statement.csv?from=2025-01-01&to=2025-01-31")
    assert r.status_code == 200 and r.mimetype == "text/csv"


@pytest.mark.parametrize("form", [{"period": "daily"}, {"until": "9999-12-31"},
                                  {"until": "yesterday"}])
def test_a_payout_run_with_an_unknown_period_or_day_is_a_form_error(client, people, form):
    login(client, people["admin"].email)
    r = client.post("/admin/payouts/run", data=form)
    assert r.status_code == 400
    assert "The period must be weekly or monthly" in r.text


def test_the_webhook_takes_a_signed_event_with_control_characters_as_stripe_sent_it(client):
    payload = json.dumps({
        "id": "evt_ctl", "object": "event", "type": "customer.updated",
        "api_version": "2026-10-28.endive", "created": 1, "livemode": False,
        "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
        "data": {"object": {"id": "cus_x", "object": "customer", "name": "A\u0000B"}},
    }).encode()
    r = client.post("/api/payments/webhook", data=payload, headers={
        "Stripe-Signature": sign(payload, "whsec_portal_tests"),
        "Content-Type": "application/json"})
    assert r.status_code == 200
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StripeEvent)) == 1


# --- Finding 11: the smaller ones -----------------------------------------------------------------

@pytest.mark.parametrize("role", ["vendor", "admin", "service"])
@pytest.mark.parametrize("path", ["/cards", "/cards/new"])
def test_saved_cards_are_for_customers_only(client, people, stripe_client, role, path):
    login(client, people[role].email)
    assert client.get(path).status_code == 403
    customers = stripe_client.v1.customers.list(params={"limit": 100}).data
    assert not any(c.email == people[role].email for c in customers)


def test_the_event_type_filter_matches_percent_and_underscore_literally(client, people):
    for n, kind in enumerate(["payment_intent.succeeded", "payout.paid", "charge.refunded"]):
        db.session.add(StripeEvent(id=f"evt_{n}", type=kind, payload={},
                                   status="processed"))
    db.session.commit()
    login(client, people["admin"].email)
    shown = lambda q: {k for k in ("payment_intent.succeeded", "payout.paid",  # noqa: E731
                                   "charge.refunded") if k in client.get(q).text}
    assert shown("/admin/events?type=%25") == set()        # "%" is not "anything"
    assert shown("/admin/events?type=pay_") == set()        # "_" is not "any one character"
    assert shown("/admin/events?type=payment_") == {"payment_intent.succeeded"}
    assert shown("/admin/events?type=pay*") == {"payment_intent.succeeded", "payout.paid"}


def test_the_user_agent_kept_with_a_payment_has_no_control_characters(client, people):
    """A header is not a field the request checks cover; gunicorn lets C1 codes through."""
    from portal.ledger.models import Payment
    from tests.helpers import make_order

    order = make_order(people["customer"], people["vendor"])
    login(client, people["customer"].email)
    r = client.get(f"/checkout/{order.id}", headers={"User-Agent": "Agent\u009b31m/1.0\u0085"})
    assert r.status_code == 200
    assert db.session.scalar(sa.select(Payment.user_agent)) == "Agent31m/1.0"
