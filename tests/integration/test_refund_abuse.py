"""Refund abuse (issue 15): request spam (finding 5), a vendor asking to refund other vendors'
items (finding 6) and the amount parser of the refund forms (finding 11)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from portal.admin.queries import PAGE_SIZE
from portal.extensions import db
from portal.orders.services import ItemIn, OrderIn, create_order
from portal.payments.services import confirm_with_card, start_checkout
from portal.refunds import services as refunds
from portal.refunds.models import RefundRequest
from tests.helpers import committed, login, paid_payment
from tests.integration.api_support import card_pm, pay

HX = {"HX-Request": "true"}
ROW = re.compile(r'<tr id="refund-([0-9a-f-]{36})"')


def ask(client, payment, amount: str, reason: str = "customer_request"):
    return client.post(f"/payments/{payment.id}/refunds",
                       data={"amount": amount, "reason": reason})


def recorded(**where) -> int:
    query = sa.select(sa.func.count()).select_from(RefundRequest)
    for column, value in where.items():
        query = query.where(getattr(RefundRequest, column) == value)
    return db.session.scalar(query)


def switch_to(client, user) -> None:
    client.post("/logout")
    login(client, user.email)


# --- finding 5: request spam ------------------------------------------------------------------

def test_forty_full_refund_requests_on_one_payment_record_one(client, people, stripe_client):
    """The reported case: 40 requests for all of a ¥8,580 payment were all accepted."""
    payment = pay(stripe_client, people["customer"], people["vendor"], currency="JPY",
                  amounts=(8580,))
    login(client, people["customer"].email)
    statuses = [ask(client, payment, "8580").status_code for _ in range(40)]
    assert statuses[0] == 302
    assert set(statuses[1:]) == {400, 429}  # refused: one is pending; then: too many
    assert recorded() == 1
    pending = db.session.scalar(sa.select(sa.func.sum(RefundRequest.amount)).where(
        RefundRequest.status == "requested"))
    assert pending == 8580


def test_a_second_request_waits_for_the_decision_on_the_first(client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])  # $100.00
    login(client, people["customer"].email)
    assert ask(client, payment, "40.00").status_code == 302
    r = ask(client, payment, "10.00")
    assert r.status_code == 400
    assert ("You already asked for $40.00 of this payment; you can ask again once an admin "
            "has decided on it.") in r.text
    assert 'aria-invalid="true"' in r.text
    assert recorded() == 1
    page = client.get(f"/payments/{payment.id}").text  # the form says so before one is sent
    assert "You asked for $40.00" in page and "Request refund" not in page
    # Another requester of the same payment is not held up by it.
    switch_to(client, people["vendor"])
    assert ask(client, payment, "25.00", "not_received").status_code == 302
    # Once the first is decided, the customer may ask again.
    first = db.session.scalar(sa.select(RefundRequest).where(
        RefundRequest.source == "customer"))
    with committed():
        refunds.reject(people["admin"], first.id, note="Send the item back first")
    switch_to(client, people["customer"])
    assert ask(client, payment, "10.00").status_code == 302
    assert recorded(status="requested") == 2 and recorded(status="rejected") == 1


def test_refund_requests_are_rate_limited_per_user(client, people):
    customer, vendor = people["customer"], people["vendor"]
    payments = [paid_payment(customer, vendor, 1000) for _ in range(6)]
    login(client, customer.email)
    assert [ask(client, p, "5.00").status_code for p in payments[:5]] == [302] * 5
    r = ask(client, payments[5], "5.00")
    assert r.status_code == 429
    assert "Too many attempts" in r.text and "Please wait, then try again" in r.text
    assert recorded() == 5
    # Counted per user, not per address: another customer at the same address may ask.
    theirs = paid_payment(people["other"], vendor, 1000)
    switch_to(client, people["other"])
    assert ask(client, theirs, "5.00").status_code == 302
    assert recorded() == 6


# --- finding 5: the admin queue shows every request, page by page -----------------------------

def spam(payment, count: int, first: datetime, status: str = "requested") -> list:
    """``count`` requests one minute apart from ``first`` (as the unlimited form let in)."""
    rows = [RefundRequest(payment_id=payment.id, requested_by_id=payment.user_id,
                          source="customer", amount=100 + n, currency=payment.currency,
                          reason="other", status=status, created_at=first + timedelta(minutes=n))
            for n in range(count)]
    db.session.add_all(rows)
    db.session.commit()
    return rows


def link(page: str, name: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)"[^>]*>{name}</a>', page)
    return html.unescape(found.group(1)) if found else None


def test_admin_queue_pages_reach_a_request_behind_210_spam_ones_keeping_filters(client,
                                                                              people):
    payment = paid_payment(people["customer"], people["vendor"], 10000)
    real = spam(payment, 1, datetime(2026, 1, 2, 9, 0, tzinfo=UTC))
    flood = spam(payment, 210, datetime(2026, 1, 10, tzinfo=UTC))
    spam(payment, 5, datetime(2026, 2, 10, tzinfo=UTC))  # outside the dates
    spam(payment, 3, datetime(2026, 1, 20, tzinfo=UTC), status="rejected")  # other status
    newest_first = [str(r.id) for r in reversed(real + flood)]
    login(client, people["admin"].email)

    page = client.get("/admin/refunds?status=requested&from=2026-01-01&to=2026-01-31").text
    assert "211 requests" in page
    assert link(page, "Newer") is None
    seen, pages = ROW.findall(page), [page]
    while older := link(page, "Older"):
        assert {"status=requested", "from=2026-01-01", "to=2026-01-31"} <= set(
            older.split("?")[1].split("&"))
        page = client.get(older, headers=HX).text  # the table alone (HTMX)
        assert page.lstrip().startswith('<div id="queue">')
        assert 'hx-target="#queue"' in page
        seen += ROW.findall(page)
        pages.append(page)
    assert seen == newest_first  # every request once, newest first, the real one last
    assert len(pages) == -(-211 // PAGE_SIZE) > 1
    # And back: Newer shows the page before it again.
    back = client.get(link(pages[-1], "Newer"), headers=HX).text
    assert ROW.findall(back) == ROW.findall(pages[-2])


def test_deciding_a_page_of_the_queue_does_not_make_the_next_page_skip_requests(client,
                                                                             people):
    payment = paid_payment(people["customer"], people["vendor"], 10000)
    rows = spam(payment, PAGE_SIZE + 20, datetime(2026, 3, 1, tzinfo=UTC))
    newest_first = [str(r.id) for r in reversed(rows)]
    login(client, people["admin"].email)
    first = client.get("/admin/refunds", headers=HX).text
    assert ROW.findall(first) == newest_first[:PAGE_SIZE]
    r = client.post("/admin/refunds/bulk", headers=HX,
                    data={"action": "reject", "ids": ROW.findall(first), "note": "Spam"})
    assert f"{PAGE_SIZE} of {PAGE_SIZE} rejected." in r.text
    following = client.get(link(first, "Older"), headers=HX).text
    assert ROW.findall(following) == newest_first[PAGE_SIZE:]


# --- finding 6: a vendor asks only for their own items ----------------------------------------

def two_vendor_payment(stripe_client, people):
    """€57.20 paid: €33.50 of vera's items (vendor) and €23.70 of victor's (vendor2)."""
    order = create_order(OrderIn(customerEmail=people["customer"].email, currency="EUR",
                                 items=[ItemIn(vendorEmail=people["vendor"].email,
                                               description="Lamp", quantity=1,
                                               unitAmount=3350),
                                        ItemIn(vendorEmail=people["vendor2"].email,
                                               description="Shade", quantity=1,
                                               unitAmount=2370)]))
    db.session.commit()
    payment = start_checkout(order, source="api").payment
    payment, _ = confirm_with_card(people["customer"], payment, card_pm(stripe_client))
    assert (payment.status, payment.amount) == ("succeeded", 5720)
    return payment


def test_a_vendor_cannot_ask_to_refund_other_vendors_items(client, people, stripe_client):
    """The reported case: vendor2, €23.70 of a €57.20 order, asked for €52.20."""
    payment = two_vendor_payment(stripe_client, people)
    login(client, people["vendor2"].email)
    page = client.get(f"/vendor/sales/{payment.id}/refund").text
    assert "Up to <strong>€23.70</strong> can be refunded." in page
    r = ask(client, payment, "52.20", "damaged")
    assert r.status_code == 400
    assert "You can ask for at most €23.70" in r.text
    assert 'aria-invalid="true"' in r.text
    assert recorded() == 0
    assert ask(client, payment, "23.70", "damaged").status_code == 302
    switch_to(client, people["vendor"])  # the other vendor: their own €33.50
    assert "at most €33.50" in ask(client, payment, "33.51", "damaged").text
    assert ask(client, payment, "33.50", "damaged").status_code == 302
    # The customer: what the vendors asked for waits for a decision, and counts.
    switch_to(client, people["customer"])
    page = client.get(f"/payments/{payment.id}").text
    assert "Nothing more of this payment can be refunded" in page
    assert "Only €0.00 of this payment can still be refunded." in ask(client, payment, "0.01").text
    assert [recorded(source=s) for s in ("vendor", "customer")] == [2, 0]


def test_a_vendors_maximum_counts_refunds_made_and_refunds_in_flight(client, people,
                                                                     stripe_client):
    payment = two_vendor_payment(stripe_client, people)
    customer, admin = people["customer"], people["admin"]
    # 20 % of the payment refunded, 20 % more approved and not yet made: each takes 20 % of
    # victor's €23.70 share (the split rule), so €14.22 of it is left to ask for.
    with committed():
        done = refunds.request_refund(customer, payment, amount=1144, reason="other")
    with committed():
        refunds.approve(admin, done.id)
    db.session.expire_all()
    assert db.session.get(RefundRequest, done.id).status == "succeeded"
    with committed():
        held = refunds.request_refund(customer, payment, amount=1144, reason="other")
    with committed():
        refunds.approve(admin, held.id, execute=False)
    login(client, people["vendor2"].email)
    assert "Up to <strong>€14.22</strong> can be refunded." in client.get(
        f"/vendor/sales/{payment.id}/refund").text
    r = ask(client, payment, "14.23", "damaged")
    assert r.status_code == 400 and "You can ask for at most €14.22" in r.text
    assert recorded(source="vendor") == 0
    assert ask(client, payment, "14.22", "damaged").status_code == 302
    assert recorded(source="vendor") == 1


# --- finding 11: only plain decimal amounts ---------------------------------------------------

@pytest.mark.parametrize("typed", ["1_0", "١٠", "۱۰", "1e1", "1E1", "+10", "1,0", "10.", ".5"])
def test_the_request_form_takes_only_plain_decimal_amounts(client, people, typed):
    payment = paid_payment(people["customer"], people["vendor"], 10000)
    login(client, people["customer"].email)
    r = ask(client, payment, typed)
    assert r.status_code == 400
    assert "is not a number: use digits and at most one decimal point, e.g. 40.00." in r.text
    assert 'aria-invalid="true"' in r.text
    assert recorded() == 0
    assert ask(client, payment, "10").status_code == 302  # plain digits are fine
    assert db.session.scalar(sa.select(RefundRequest.amount)) == 1000


def test_the_admin_approve_amount_takes_only_plain_decimal_amounts(client, people,
                                                                   stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    with committed():
        request = refunds.request_refund(people["customer"], payment, amount=5000, reason="other")
    login(client, people["admin"].email)
    for typed in ("1e1", "1_0", "١٠"):
        row = client.post(f"/admin/refunds/{request.id}/approve", data={"amount": typed},
                          headers=HX).text
        assert "is not a number" in row
    db.session.expire_all()
    assert db.session.get(RefundRequest, request.id).status == "requested"
    assert stripe_client.v1.refunds.list(params={
        "payment_intent": payment.stripe_payment_intent_id}).data == []
