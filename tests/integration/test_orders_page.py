"""The orders page: an unpaid order links to its checkout, a paid one to its payment."""

import re

from portal.extensions import db
from tests.helpers import login, make_order, make_user, paid_payment


def _paid_order(customer, vendor):
    payment = paid_payment(customer, vendor, 2500)
    payment.order.status = "paid"
    payment.receipt_number = "R-20260101-TESTRECEIPT1"
    db.session.commit()
    return payment


def test_paid_orders_link_to_their_payment_unpaid_ones_to_checkout(client):
    customer = make_user("orders@example.test")
    vendor = make_user("ov@example.test", "vendor")
    unpaid = make_order(customer, vendor, amounts=(1234,))
    payment = _paid_order(customer, vendor)
    login(client, customer.email)
    page = client.get("/orders").text
    pay = re.search(rf'<a class="button" href="([^"]+)" aria-label="Pay order #{unpaid.number}"',
                    page)
    assert pay and pay.group(1) == f"/checkout/{unpaid.id}"
    number = payment.order.number
    view = re.search(rf'<a href="([^"]+)" aria-label="View payment of order #{number}">'
                     r"View payment</a>", page)
    assert view and f"Pay order #{number}" not in page
    opened = client.get(view.group(1))
    assert opened.status_code == 302 and opened.location.endswith(f"/payments/{payment.id}")
    detail = client.get(opened.location)
    assert detail.status_code == 200 and "R-20260101-TESTRECEIPT1" in detail.text


def test_another_customers_order_payment_is_404(client, app):
    owner = make_user("owner@example.test")
    vendor = make_user("ov2@example.test", "vendor")
    payment = _paid_order(owner, vendor)
    unpaid = make_order(owner, vendor)
    login(client, make_user("nosy@example.test").email)
    for order_id in (payment.order_id, unpaid.id, "not-a-uuid"):
        r = client.get(f"/orders/{order_id}/payment")
        assert r.status_code == 404 and "$25.00" not in r.text
    # The owner's order that was never paid has no payment page either.
    mine = app.test_client()
    login(mine, owner.email)
    assert mine.get(f"/orders/{unpaid.id}/payment").status_code == 404
    assert mine.get(f"/orders/{payment.order_id}/payment").status_code == 302
