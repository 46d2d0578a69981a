"""Refunds by item (issue 19): an item's refund is borne by its vendor, what may be asked for
counts the requests waiting for a decision, and a vendor names only their own items."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger.models import SplitLine
from portal.orders.models import OrderItem
from portal.orders.services import ItemIn, OrderIn, create_order
from portal.payments.services import confirm_with_card, start_checkout
from portal.refunds import services as refunds
from portal.refunds.models import RefundRequest
from tests.helpers import bearer, committed, login
from tests.integration.api_support import card_pm

HX = {"HX-Request": "true"}


def shop_payment(stripe_client, people, *, tax=0, shipping=0, candles=1):
    """€57.20 (plus tax and shipping): vera's mug (€10.00) and bowl (€23.50), victor's
    candles (€23.70 each)."""
    vendor, vendor2 = people["vendor"].email, people["vendor2"].email
    order = create_order(OrderIn(
        customerEmail=people["customer"].email, currency="EUR", tax=tax, shipping=shipping,
        items=[ItemIn(vendorEmail=vendor, description="Mug", quantity=1, unitAmount=1000),
               ItemIn(vendorEmail=vendor, description="Bowl", quantity=1, unitAmount=2350),
               ItemIn(vendorEmail=vendor2, description="Candles", quantity=candles,
                      unitAmount=2370)]))
    db.session.commit()
    payment = start_checkout(order, source="api").payment
    payment, _ = confirm_with_card(people["customer"], payment, card_pm(stripe_client))
    assert payment.status == "succeeded"
    return payment


def item(payment, description: str) -> OrderItem:
    return db.session.scalar(sa.select(OrderItem).where(
        OrderItem.order_id == payment.order_id, OrderItem.description == description))


def ask_items(client, payment, quantities: dict, reason="damaged", amount=""):
    data = {"amount": amount, "reason": reason}
    data.update({f"qty-{item(payment, name).id}": str(q) for name, q in quantities.items()})
    return client.post(f"/payments/{payment.id}/refunds", data=data)


def given_back(payment) -> dict[str, tuple[int, int]]:
    """Vendor e-mail -> (gross, fee) their refund lines gave back."""
    rows = db.session.execute(
        sa.select(SplitLine.vendor_id, sa.func.sum(SplitLine.gross), sa.func.sum(SplitLine.fee))
        .where(SplitLine.payment_id == payment.id, SplitLine.kind == "refund")
        .group_by(SplitLine.vendor_id)).all()
    from portal.auth.models import User

    return {db.session.get(User, v).email: (-int(g), -int(f)) for v, g, f in rows}


def approve_all(people) -> None:
    for request_id in db.session.scalars(sa.select(RefundRequest.id).where(
            RefundRequest.status == "requested")):
        with committed():
            refunds.approve(people["admin"], request_id)
    db.session.expire_all()


def test_each_vendors_item_refund_is_borne_by_that_vendor_only(client, people, stripe_client):
    """The reported case: the chipped mug (vera, €10.00) and the candles (victor, €23.70)
    were each shared by both vendors, so vera bore €19.36 of refunds for a €10 problem."""
    payment = shop_payment(stripe_client, people)
    login(client, people["customer"].email)
    page = client.get(f"/payments/{payment.id}").text
    assert "Up to <strong>€57.20</strong> can be refunded" in page
    assert re.search(r"Mug <span class=\"muted\">× 1</span></td>\s*<td class=\"num\">€10.00",
                     page)
    assert ask_items(client, payment, {"Mug": 1}).status_code == 302
    client.post("/logout")
    login(client, people["vendor2"].email)
    form = client.get(f"/vendor/sales/{payment.id}/refund").text
    assert "Candles" in form and "Mug" not in form.split("Items to refund")[1]
    r = client.post(f"/payments/{payment.id}/refunds", data={
        "reason": "damaged", f"qty-{item(payment, 'Candles').id}": "1"})
    assert r.status_code == 302
    approve_all(people)
    assert [r.status for r in db.session.scalars(sa.select(RefundRequest))] == [
        "succeeded", "succeeded"]
    # Each vendor gave back their own item, and the platform fee on it (10 %).
    assert given_back(payment) == {"vera@example.test": (1000, 100),
                                   "victor@example.test": (2370, 237)}
    assert payment.amount_refunded == 3370


def test_tax_and_shipping_follow_the_items_and_the_units_add_up_to_what_was_paid(
        client, people, stripe_client):
    # Items €10.00 + €23.50 + 3 × €23.70 = €104.60, tax €10.46, shipping €4.99: €120.05.
    payment = shop_payment(stripe_client, people, tax=1046, shipping=499, candles=3)
    assert payment.amount == 12005
    lines = {line.item.description: line for line in
             refunds.item_lines(people["customer"], payment)}
    # Victor's gross is 71.10 / 104.60 of €120.05 (the sale's largest remainder): €81.60.
    assert sum(line.paid for line in lines.values()) == 12005
    assert lines["Candles"].paid == 8160 and lines["Mug"].paid == 1148
    login(client, people["customer"].email)
    asked = []
    for _ in range(3):  # one candle at a time: 27.20 each, the last what is left
        assert ask_items(client, payment, {"Candles": 1}).status_code == 302
        asked.append(db.session.scalar(sa.select(RefundRequest.amount).order_by(
            RefundRequest.created_at.desc()).limit(1)))
        approve_all(people)
    assert asked == [2720, 2720, 2720] and sum(asked) == 8160
    assert given_back(payment) == {"victor@example.test": (8160, 711)}  # all of his fee
    page = client.get(f"/payments/{payment.id}").text
    assert "Refunded or asked for" in page
    r = ask_items(client, payment, {"Candles": 1})
    assert r.status_code == 400 and "Candles is already refunded or asked for." in r.text


def test_up_to_counts_requests_waiting_for_a_decision(client, people, stripe_client):
    """The reported case: with €30.00 asked for, the customer still read "Up to €57.20"."""
    payment = shop_payment(stripe_client, people)
    login(client, people["vendor"].email)
    assert client.post(f"/payments/{payment.id}/refunds",
                       data={"amount": "30.00", "reason": "damaged"}).status_code == 302
    client.post("/logout")
    login(client, people["customer"].email)
    page = client.get(f"/payments/{payment.id}").text
    assert "Up to <strong>€27.20</strong> can be refunded: requests waiting for a decision" \
        in page
    r = ask_items(client, payment, {}, amount="27.21")
    assert r.status_code == 400
    assert "Only €27.20 of this payment can still be refunded." in r.text
    # Vera's goodwill is hers: her mug and bowl can be refunded for €3.50 more, at most.
    mug = next(line for line in refunds.item_lines(people["customer"], payment)
               if line.item.description == "Mug")
    assert mug.refundable == 350
    approve_all(people)
    assert given_back(payment) == {"vera@example.test": (3000, 300)}


def test_a_vendor_names_only_their_own_items_and_an_item_only_once(client, people,
                                                                   stripe_client):
    payment = shop_payment(stripe_client, people)
    candles = item(payment, "Candles").id
    with (pytest.raises(refunds.RefundError, match="only ask to refund your own items"),
          committed()):
        refunds.request_refund(people["vendor"], payment, amount=None, reason="damaged",
                               quantities={candles: 1})
    login(client, people["vendor"].email)  # a form field for another vendor's item: ignored
    r = client.post(f"/payments/{payment.id}/refunds",
                    data={"reason": "damaged", f"qty-{candles}": "1"})
    assert r.status_code == 400 and "Choose items to refund or enter an amount." in r.text
    r = client.post(f"/payments/{payment.id}/refunds",
                    data={"reason": "damaged", f"qty-{item(payment, 'Mug').id}": "2"})
    assert r.status_code == 400 and "Mug: choose between 1 and 1." in r.text
    assert 'aria-invalid="true"' in r.text
    r = client.post(f"/payments/{payment.id}/refunds",
                    data={"reason": "damaged", f"qty-{item(payment, 'Mug').id}": "x"})
    assert r.status_code == 400 and "Quantities are whole numbers" in r.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest)) == 0
    # The customer asks for the mug; the vendor may not ask for it again meanwhile.
    with committed():
        refunds.request_refund(people["customer"], payment, amount=None, reason="damaged",
                               quantities={item(payment, "Mug").id: 1})
    r = client.post(f"/payments/{payment.id}/refunds",
                    data={"reason": "damaged", f"qty-{item(payment, 'Mug').id}": "1"})
    assert r.status_code == 400 and "Mug is already refunded or asked for." in r.text


def test_the_admin_queue_groups_a_payments_requests_and_flags_overlaps(client, people,
                                                                       stripe_client):
    payment = shop_payment(stripe_client, people)
    with committed():
        first = refunds.request_refund(people["customer"], payment, amount=None,
                                       reason="damaged", quantities={item(payment, "Mug").id: 1})
    with committed():  # an admin's request: it does not wait for the customer's
        refunds.request_refund(people["admin"], payment, amount=None, reason="damaged",
                               quantities={item(payment, "Bowl").id: 1})
    login(client, people["admin"].email)
    queue = client.get("/admin/refunds").text
    assert queue.count('<th scope="rowgroup"') == 1
    assert "2 requests" in queue and "can still be refunded: €57.20" in queue
    assert "1 × Mug (€10.00)" in queue and "1 × Bowl (€23.50)" in queue
    assert "<strong>Overlaps</strong> the request of ada@example.test" in queue
    assert "The requester sees the note." in queue
    # An itemized request is approved as asked.
    row = client.post(f"/admin/refunds/{first.id}/approve", data={"amount": "5.00"},
                      headers=HX).text
    assert "A refund of items is approved as asked" in row
    assert db.session.get(RefundRequest, first.id).status == "requested"


def test_the_api_refunds_items_and_keeps_its_shape(client, people, stripe_client):
    payment = shop_payment(stripe_client, people)
    order = client.get(f"/api/orders/{payment.order_id}",
                       headers=bearer(people["admin"])).json
    mug = item(payment, "Mug")
    assert {i["id"]: i["description"] for i in order["order"]["items"]}[str(mug.id)] == "Mug"
    body = {"paymentId": str(payment.id), "items": [{"itemId": str(mug.id), "quantity": 1}]}
    both = client.post("/api/payments/refund", json={**body, "amount": 500},
                       headers=bearer(people["admin"]))
    assert both.status_code == 400 and both.json["success"] is False
    assert "not both" in both.json["error"]["message"]
    unknown = client.post("/api/payments/refund", headers=bearer(people["admin"]), json={
        **body, "items": [{"itemId": "not-an-item", "quantity": 1}]})
    assert unknown.status_code == 400 and "no such item" in unknown.json["error"]["message"]
    r = client.post("/api/payments/refund", json=body, headers=bearer(people["admin"]))
    assert r.status_code == 200, r.json
    assert set(r.json["refund"]) == {"id", "paymentId", "amount", "currency", "status",
                                     "reason", "createdAt"}
    assert (r.json["refund"]["amount"], r.json["refund"]["status"]) == (1000, "succeeded")
    db.session.expire_all()
    assert given_back(payment) == {"vera@example.test": (1000, 100)}


def test_an_admin_refunds_an_item_from_the_payment_page_after_confirming(client, people,
                                                                         stripe_client):
    payment = shop_payment(stripe_client, people)
    login(client, people["admin"].email)
    url = f"/admin/payments/{payment.id}"
    page = client.get(url).text
    assert "How many of Candles to refund" in page and "victor@example.test" in page
    asked = {"reason": "damaged", f"qty-{item(payment, 'Candles').id}": "1"}
    r = client.post(f"{url}/refund", data=asked)
    assert r.status_code == 200 and "Refund €23.70 to carol@example.test's card" in r.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest)) == 0
    both = client.post(f"{url}/refund", data={**asked, "amount": "5"})
    assert both.status_code == 400 and "not both" in both.text
    r = client.post(f"{url}/refund", data={**asked, "confirm": "yes", "expected": "2370"})
    assert r.status_code == 302
    db.session.expire_all()
    assert given_back(payment) == {"victor@example.test": (2370, 237)}


def test_one_request_for_items_of_two_vendors_is_borne_by_each_for_their_own(
        client, people, stripe_client):
    payment = shop_payment(stripe_client, people, tax=572)  # 10 % tax: €62.92
    login(client, people["customer"].email)
    r = ask_items(client, payment, {"Mug": 1, "Candles": 1})
    assert r.status_code == 302
    request = db.session.scalar(sa.select(RefundRequest))
    # Each item with its share of the tax: 11.00 and 26.07 (their vendors' gross, split).
    assert [(i.order_item.description, i.amount) for i in request.items] == [
        ("Mug", 1100), ("Candles", 2607)]
    assert request.amount == 3707
    approve_all(people)
    assert given_back(payment) == {"vera@example.test": (1100, 100),
                                   "victor@example.test": (2607, 237)}


def test_an_item_partly_covered_by_a_waiting_request_is_refused_not_cut_short(
        client, people, stripe_client):
    """A shared €40.00 waits for a decision: €23.43 of it would be vera's, leaving her room
    for €10.07. Her bowl (€23.50) would be cut to that and marked refunded for good; it is
    refused until the admin decides. Her mug (€10.00) fits."""
    payment = shop_payment(stripe_client, people)
    with committed():
        waiting = refunds.request_refund(people["customer"], payment, amount=4000,
                                         reason="other")
    login(client, people["vendor"].email)
    r = client.post(f"/payments/{payment.id}/refunds", data={
        "reason": "damaged", f"qty-{item(payment, 'Bowl').id}": "1"})
    assert r.status_code == 400
    assert "A request waiting for a decision covers part of Bowl" in r.text
    with committed():
        refunds.reject(people["admin"], waiting.id, note="Not yet")
    r = client.post(f"/payments/{payment.id}/refunds", data={
        "reason": "damaged", f"qty-{item(payment, 'Bowl').id}": "1"})
    assert r.status_code == 302
    assert db.session.scalar(sa.select(RefundRequest.amount).where(
        RefundRequest.source == "vendor")) == 2350


def test_approval_refuses_goodwill_its_vendor_can_no_longer_bear(client, people,
                                                                 stripe_client):
    payment = shop_payment(stripe_client, people)
    with committed():
        goodwill = refunds.request_refund(people["vendor"], payment, amount=2000,
                                          reason="other")
    # Support refunds all of vera's items meanwhile (an admin does not wait for requests).
    refunds.refund_now(people["admin"], payment, amount=None, reason="damaged", notes=None,
                       quantities={item(payment, "Mug").id: 1, item(payment, "Bowl").id: 1})
    db.session.expire_all()
    with pytest.raises(refunds.RefundError, match="can bear only €0.00 more"), committed():
        refunds.approve(people["admin"], goodwill.id)
    db.session.expire_all()
    assert db.session.get(RefundRequest, goodwill.id).status == "requested"
    assert given_back(payment) == {"vera@example.test": (3350, 335)}  # victor: untouched


def test_the_admins_confirmation_holds_for_the_amount_it_showed(client, people,
                                                                stripe_client):
    payment = shop_payment(stripe_client, people)
    login(client, people["admin"].email)
    url = f"/admin/payments/{payment.id}/refund"
    asked = client.post(url, data={"reason": "other"})  # all that can be refunded
    assert "Refund €57.20 to carol@example.test's card" in asked.text
    refunds.refund_now(people["admin2"], payment, amount=1000, reason="other", notes=None)
    r = client.post(url, data={"reason": "other", "confirm": "yes", "expected": "5720"})
    assert r.status_code == 400
    assert "The amount changed since you confirmed it" in r.text
    assert "Refund €47.20 to carol@example.test's card" in r.text
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest)) == 1


def test_a_vendor_sees_only_their_own_items_of_anothers_request(client, people,
                                                                stripe_client):
    payment = shop_payment(stripe_client, people)
    with committed():
        refunds.request_refund(people["customer"], payment, amount=None, reason="damaged",
                               quantities={item(payment, "Mug").id: 1,
                                           item(payment, "Candles").id: 1})
    login(client, people["vendor2"].email)
    page = client.get(f"/vendor/sales/{payment.id}/refund").text
    requests = page.split('aria-label="Refunds"')[1].split("</table>")[0]
    assert "1 × Candles (€23.70)" in requests and "Items of other sellers" in requests
    assert "Mug" not in requests
