"""A refund of one item in a real browser (issue 19): a vendor asks to refund their chipped
mug, an admin approves it with the keyboard alone, and the vendor's statement shows the
refund borne by that vendor only, not by the other vendor of the order."""

from __future__ import annotations

import csv
import io

import pytest
from playwright.sync_api import Page, expect

from portal.refunds.models import RefundRequest
from tests.e2e.conftest import sa, scalar, wait_for
from tests.e2e.test_keyboard_flows import tab_to
from tests.e2e.test_refunds_flow import sign_out, staff_sign_in
from tests.helpers import make_user

VERA, VICTOR = "vera@example.test", "victor@example.test"


@pytest.fixture
def paid_order(app_ctx, live):
    """€57.20 paid: vera's mug (€10.00) and bowl (€23.50), victor's candles (€23.70)."""
    import stripe

    from portal.extensions import db
    from portal.orders.services import ItemIn, OrderIn, create_order
    from portal.payments.services import confirm_with_card, start_checkout

    customer = make_user("buyer@example.test")
    make_user(VERA, "vendor")
    make_user(VICTOR, "vendor")
    make_user("boss@example.test", "admin")
    order = create_order(OrderIn(customerEmail=customer.email, currency="EUR", items=[
        ItemIn(vendorEmail=VERA, description="Mug", quantity=1, unitAmount=1000),
        ItemIn(vendorEmail=VERA, description="Bowl", quantity=1, unitAmount=2350),
        ItemIn(vendorEmail=VICTOR, description="Candles", quantity=1, unitAmount=2370)]))
    db.session.commit()
    sandbox = stripe.StripeClient("sk_test_portal", base_addresses={"api": live.sandbox.url})
    pm = sandbox.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    payment, _ = confirm_with_card(customer, start_checkout(order).payment, pm.id)
    assert payment.status == "succeeded"
    number = order.number
    db.session.commit()
    return number


def statement(page: Page) -> list[list[str]]:
    """The vendor's statement of the default period, downloaded from the dashboard."""
    page.get_by_role("link", name="Dashboard").first.click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the statement (CSV)").click()
    return list(csv.reader(io.StringIO(download.value.path().read_text())))


def test_a_vendor_refunds_one_item_and_bears_it_alone(page: Page, paid_order):
    number = paid_order
    staff_sign_in(page, VERA, "vendor")
    page.get_by_role("link", name="Sales").first.click()
    page.get_by_role("link", name=f"Request a refund of order #{number}").click()
    items = page.get_by_role("region", name="Items to refund")
    expect(items).to_contain_text("Mug")
    expect(items).not_to_contain_text("Candles")  # victor's: not hers to refund
    page.get_by_label("How many of Mug to refund").fill("1")
    page.get_by_label("Reason").select_option(label="Item damaged or not as described")
    page.get_by_label("Notes").fill("Chipped on arrival")
    page.get_by_role("button", name="Request refund").click()
    expect(page.get_by_text("Your refund request was sent.")).to_be_visible()
    sign_out(page)

    # The admin approves with the keyboard alone.
    staff_sign_in(page, "boss@example.test", "admin")
    page.get_by_role("link", name="Refunds", exact=True).click()
    row = page.get_by_role("row").filter(has_text="1 × Mug")
    expect(row).to_contain_text("€10.00")
    expect(page.get_by_role("rowheader").filter(has_text=f"Order #{number}")).to_contain_text(
        "can still be refunded: €57.20")
    approve = page.get_by_role("button", name=f"Approve order #{number} (€10.00)")
    tab_to(page, approve)
    page.keyboard.press("Enter")
    expect(row).to_contain_text("Approved €10.00.")
    wait_for(lambda: scalar(sa.select(RefundRequest.status)) == "succeeded")
    sign_out(page)

    # Vera's statement: the sale and the mug's refund, €10.00 of gross and its €1.00 fee.
    staff_sign_in(page, VERA, "vendor")
    lines = statement(page)
    refund = [r for r in lines if r[1] == f"#{number}" and r[3] == "refund"]
    assert [r[4:8] for r in refund] == [["EUR", "-10.00", "-1.00", "-9.00"]]
    page.get_by_role("link", name="Sales").first.click()
    expect(page.get_by_role("row").filter(has_text=f"#{number}")).to_contain_text("€10.00")
    sign_out(page)

    # Victor's: his sale only, untouched by vera's refund.
    staff_sign_in(page, VICTOR, "vendor")
    lines = statement(page)
    assert [r[3] for r in lines if r[1] == f"#{number}"] == ["sale"]
    page.get_by_role("link", name="Sales").first.click()  # "Your refunds": none
    expect(page.get_by_role("row").filter(has_text=f"#{number}")).to_contain_text("None")
