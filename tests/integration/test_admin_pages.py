"""The admin area (issue 16): every list a page at a time with its total, no silent cap, and
a bounded number of queries per page whatever its number of rows; the vendor's sales and
payouts pages too."""

from __future__ import annotations

import contextlib
import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from portal.admin import queries
from portal.audit.models import AuditEntry
from portal.extensions import db
from portal.ledger.models import Payment
from portal.orders.models import Order
from portal.outbox.models import OutboxMessage
from portal.refunds import services as refunds
from portal.refunds.models import RefundRequest
from portal.webhooks.models import StripeEvent
from tests.helpers import committed, login, make_user, paid_payment
from tests.integration.api_support import pay

HX = {"HX-Request": "true"}
ROW = re.compile(r'<tr id="refund-([0-9a-f-]{36})"')
PAGE = queries.PAGE_SIZE


def link(page: str, name: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)"[^>]*>{name}</a>', page)
    return html.unescape(found.group(1)) if found else None


@contextlib.contextmanager
def counting_statements():
    """The SQL statements sent meanwhile: the test's sessions are all bound to one connection
    (conftest), so its engine sees the requests' statements too."""
    engine = db.session.get_bind().engine
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def requests_of_many_payments(people, count: int, first: datetime) -> list[RefundRequest]:
    """``count`` requests, each of its own payment and customer, one minute apart; every
    other payment has an approved request in flight too."""
    rows = []
    for n in range(count):
        customer = make_user(f"c{n}-{first:%m%d}@example.test")
        payment = paid_payment(customer, people["vendor"], 10000 + n)
        rows.append(RefundRequest(payment_id=payment.id, requested_by_id=customer.id,
                                  source="customer", amount=500, currency="USD",
                                  reason="other", created_at=first + timedelta(minutes=n)))
        if n % 2:
            rows.append(RefundRequest(payment_id=payment.id, requested_by_id=customer.id,
                                      source="customer", amount=1000, approved_amount=700,
                                      currency="USD", reason="other", status="approved",
                                      decided_by_id=people["admin"].id,
                                      created_at=first + timedelta(minutes=n, seconds=1)))
    db.session.add_all(rows)
    db.session.commit()
    return rows


# --- the refund queue -----------------------------------------------------------------------------

def test_the_refund_queue_page_takes_the_same_few_queries_for_5_or_50_rows(client, people):
    login(client, people["admin"].email)
    requests_of_many_payments(people, 5, datetime(2026, 1, 1, tzinfo=UTC))
    with counting_statements() as few:
        page = client.get("/admin/refunds").text
    assert len(ROW.findall(page)) == 5
    requests_of_many_payments(people, PAGE, datetime(2026, 2, 1, tzinfo=UTC))
    with counting_statements() as many:
        page = client.get("/admin/refunds").text
    assert len(ROW.findall(page)) == PAGE and link(page, "Older")
    assert len(many) == len(few) <= 15, many
    # The remainders shown are the ones refunds.remaining computes: $100.xx paid, $7.00 of
    # every other one approved and in flight.
    assert "$93.49" in page and "$100.48" in page


def test_the_remainders_of_a_page_agree_with_refunds_remaining(people, stripe_client):
    """with_refundable computes for many payments at once what refunds.remaining computes
    for one: nothing refunded, part refunded with more in flight, not succeeded."""
    whole = pay(stripe_client, people["customer"], people["vendor"], amounts=(10000,))
    part = pay(stripe_client, people["customer"], people["vendor"], amounts=(8000,))
    with committed():
        done = refunds.request_refund(people["customer"], part, amount=1500, reason="other")
    with committed():
        refunds.approve(people["admin"], done.id)
    with committed():
        held = refunds.request_refund(people["customer"], part, amount=2500, reason="other")
    with committed():
        refunds.approve(people["admin"], held.id, execute=False)
    with committed():
        asked = refunds.request_refund(people["customer"], whole, amount=100, reason="other")
    pending = paid_payment(people["customer"], people["vendor"], 4000)
    pending.status = "processing"
    db.session.add(RefundRequest(payment_id=pending.id, source="stripe", amount=100,
                                 currency="USD", reason="other"))
    db.session.commit()
    db.session.expire_all()
    rows = queries.with_refundable(list(db.session.scalars(sa.select(RefundRequest))))
    assert {r.payment_id for r, _ in rows} == {whole.id, part.id, pending.id}
    for request, left in rows:
        assert left == refunds.remaining(db.session.get(Payment, request.payment_id))
    assert dict((r.id, left) for r, left in rows)[asked.id] == 10000
    assert dict((r.id, left) for r, left in rows)[held.id] == 8000 - 1500 - 2500


# --- the audit log, the event log, the outbox, payout runs ----------------------------------------

def test_the_audit_log_pages_past_its_first_page(client, people):
    start = datetime(2026, 3, 1, tzinfo=UTC)
    db.session.add_all([AuditEntry(at=start + timedelta(minutes=n), action="refund.requested",
                                   note=f"entry-{n:03d}") for n in range(PAGE + 7)])
    db.session.commit()
    login(client, people["admin"].email)
    first = client.get("/admin/audit").text
    assert f"{PAGE} of {PAGE + 7} entries" in first
    assert "entry-056" in first and "entry-007" in first and "entry-006" not in first
    assert link(first, "Newer") is None
    second = client.get(link(first, "Older")).text
    assert "7 of 57 entries" in second and link(second, "Older") is None
    assert [f"entry-{n:03d}" for n in range(6, -1, -1)] == re.findall(r"entry-\d{3}", second)
    back = client.get(link(second, "Newer")).text
    assert re.findall(r"entry-\d{3}", back) == re.findall(r"entry-\d{3}", first)


def test_the_event_log_pages_keep_the_filters(client, people):
    start = datetime(2026, 3, 1, tzinfo=UTC)
    db.session.add_all([StripeEvent(id=f"evt_page_{n:03d}", type="payment_intent.succeeded",
                                    payload={}, status="processed",
                                    received_at=start + timedelta(seconds=n))
                        for n in range(PAGE + 3)])
    db.session.add(StripeEvent(id="evt_other", type="invoice.paid", payload={},
                               status="processed", received_at=start))
    db.session.commit()
    login(client, people["admin"].email)
    first = client.get("/admin/events?type=payment_intent.*", headers=HX).text
    assert first.lstrip().startswith('<div id="events">')
    assert f"{PAGE} of {PAGE + 3} events" in first and "evt_other" not in first
    older = link(first, "Older")
    assert "type=payment_intent.*" in older
    second = client.get(older, headers=HX).text
    shown = re.findall(r'href="/admin/events/(evt_page_\d{3})"', second)
    assert shown == [f"evt_page_{n:03d}" for n in (2, 1, 0)]


def test_the_outbox_and_payout_runs_are_paged_too(client, people):
    payment = paid_payment(people["customer"], people["vendor"], 1000)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    db.session.add_all([OutboxMessage(kind="order_notification", dedupe_key=f"k{n}",
                                      payment_id=payment.id, status="sent",
                                      payload={"orderId": f"order-{n:03d}", "status": "x"},
                                      created_at=start + timedelta(seconds=n))
                        for n in range(PAGE + 1)])
    db.session.commit()
    login(client, people["admin"].email)
    first = client.get("/admin/outbox?status=sent").text
    assert f"{PAGE} of {PAGE + 1} messages" in first and "order-000" not in first
    second = client.get(link(first, "Older")).text
    assert "order-000" in second and "1 of 51 messages" in second
    assert "0 of 0 runs" not in client.get("/admin/payouts").text  # no pager without runs


def test_a_bad_cursor_shows_the_first_page(client, people):
    login(client, people["admin"].email)
    for query in ("before=x", "after=20261301000000000000.abc", "before=" + "9" * 300):
        assert client.get(f"/admin/audit?{query}").status_code == 200
        assert client.get(f"/admin/events?{query}").status_code == 200
        assert client.get(f"/admin/refunds?{query}").status_code == 200


# --- the vendor's pages ---------------------------------------------------------------------------

def test_a_vendors_sales_are_paged_without_a_cap(client, people):
    for n in range(52):
        paid_payment(people["customer"], people["vendor"], 1000 + n)
    login(client, people["vendor"].email)
    first = client.get("/vendor/sales").text
    assert "50 of 52 sales" in first and link(first, "Newer") is None
    second = client.get(link(first, "Older")).text
    assert "2 of 52 sales" in second and "$10.01" in second and "$10.00" in second
    assert link(second, "Older") is None and link(second, "Newer")
    assert client.get("/vendor/sales?page=abc").status_code == 200
    assert client.get("/vendor/sales?page=99999999999999999999").status_code == 200


@pytest.mark.parametrize("days", [None, "90"])
def test_the_dashboard_says_how_many_payouts_there_are(client, people, days):
    login(client, people["vendor"].email)
    page = client.get("/vendor" + (f"?days={days}" if days else "")).text
    assert "No payouts yet." in page


def test_the_statement_names_each_order_by_its_number(client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"], amounts=(2500,))
    number = db.session.get(Order, payment.order_id).number
    login(client, people["vendor"].email)
    rows = list(csv.reader(io.StringIO(client.get("/vendor/statement.csv").text)))
    [sale] = [r for r in rows[1:] if r[0] != "total"]
    assert sale[1:5] == [f"#{number}", str(payment.id), "sale", "USD"]
    assert sale[8:] == ["", "unpaid"]
