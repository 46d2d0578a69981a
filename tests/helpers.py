"""Test helpers: users, orders, logins and signed Stripe webhooks."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import time
import uuid

from portal import jobs
from portal.auth.services import create_user, issue_token
from portal.database import unit_of_work
from portal.extensions import db
from portal.orders.services import ItemIn, OrderIn, create_order

PASSWORD = "correct-horse-battery"


@contextlib.contextmanager
def committed():
    """What the edge of a request or a job does around services a test calls directly:
    commit their changes (roll back on an error), then run the jobs they queued, in-process
    as without Redis."""
    with unit_of_work():
        yield
    jobs.run_committed()


def make_user(email: str, role: str = "customer"):
    user = create_user(email, role, PASSWORD, email.split("@")[0].title())
    db.session.commit()
    return user


def make_order(customer, vendor, *, currency: str = "USD", amounts=(4999,), tax: int = 0,
               shipping: int = 0):
    order = create_order(OrderIn(
        customerEmail=customer.email, currency=currency, tax=tax, shipping=shipping,
        items=[ItemIn(vendorEmail=vendor.email, description=f"Item {n}", quantity=1,
                      unitAmount=a) for n, a in enumerate(amounts)],
    ))
    db.session.commit()
    return order


def paid_payment(customer, vendor, amount: int, currency: str = "USD"):
    """A succeeded Payment of a new order, committed, without its sale lines: for tests that
    write a vendor's line themselves (a payment has one sale line per vendor)."""
    from portal.ledger.models import Payment
    from portal.models_base import utcnow

    order = make_order(customer, vendor, currency=currency, amounts=(amount,))
    payment = Payment(user_id=customer.id, order_id=order.id, amount=amount, currency=currency,
                      status="succeeded", subtotal=amount, succeeded_at=utcnow())
    db.session.add(payment)
    db.session.commit()
    return payment


def bearer(user) -> dict:
    return {"Authorization": f"Bearer {issue_token(user)[0]}"}


def login(client, email: str, password: str = PASSWORD):
    return client.post("/login", data={"email": email, "password": password})


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event_body(event_id: str, event_type: str, obj: dict) -> bytes:
    return json.dumps({
        "id": event_id, "object": "event", "type": event_type, "api_version": "2026-10-28.endive",
        "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "data": {"object": obj},
    }).encode()


def post_event(client, event_type: str, obj: dict, event_id: str | None = None,
               secret: str = "whsec_portal_tests"):
    """POST a signed Stripe event (a new id unless given) to the webhook; the response."""
    body = event_body(event_id or f"evt_{uuid.uuid4().hex[:14]}", event_type, obj)
    return client.post("/api/payments/webhook", data=body,
                       headers={"Stripe-Signature": sign(body, secret),
                                "Content-Type": "application/json"})


def truncate_all() -> None:
    """Empty every table (for tests whose rows were really committed)."""
    with db.engine.begin() as conn:
        if conn.dialect.name == "sqlite":  # no TRUNCATE: children first
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
            return
        tables = ", ".join(t.name for t in db.metadata.sorted_tables)
        conn.exec_driver_sql(f"TRUNCATE {tables} CASCADE")
