"""Refunds in a real browser: a customer asks, an admin approves in the queue, the RQ worker
refunds at Stripe, the webhook confirms, and the remainder holds."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from portal.refunds.models import RefundRequest
from tests.e2e.conftest import sa, scalar, wait_for
from tests.e2e.test_checkout_flow import open_checkout, payment_status, sign_in
from tests.helpers import PASSWORD, committed, make_order, make_user


@pytest.fixture
def order(app_ctx):
    customer = make_user("buyer@example.test")
    vendor = make_user("maker@example.test", "vendor")
    make_user("boss@example.test", "admin")
    o = make_order(customer, vendor, amounts=(10000,))  # $100.00
    return {"id": o.id, "number": o.number, "email": customer.email}


# Where vendors and admins land after signing in: their own home pages.
HOME_HEADINGS = {"vendor": "Vendor dashboard", "admin": "Payments"}


def staff_sign_in(page: Page, email: str, role: str) -> None:
    """Sign in as a vendor or an admin: each lands on its own home page (customers land on
    their orders: test_checkout_flow.sign_in)."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=HOME_HEADINGS[role])).to_be_visible()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()


def request_refund(page: Page, amount: str) -> None:
    page.get_by_label("Amount to refund").fill(amount)
    page.get_by_label("Reason").select_option(label="Requested by customer")
    page.get_by_label("Notes").fill("The lamp is too bright")
    page.get_by_role("button", name="Request refund").click()


def test_customer_asks_admin_approves_and_the_remainder_holds(page: Page, order):
    open_checkout(page, order)
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiration date").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Pay $100.00").click()
    expect(page.get_by_text("Succeeded")).to_be_visible()
    assert payment_status(order["id"]) == "succeeded"

    page.get_by_role("link", name="Payment details").click()
    expect(page.get_by_text("Up to $100.00 can be refunded.")).to_be_visible()
    request_refund(page, "40.00")
    expect(page.get_by_text("Your refund request was sent.")).to_be_visible()
    expect(page.get_by_role("table", name="Refunds")).to_contain_text("Requested")
    sign_out(page)

    staff_sign_in(page, "boss@example.test", "admin")  # lands on the back office
    page.get_by_role("link", name="Refunds", exact=True).click()
    name = f"order #{order['number']} ($40.00)"
    group = page.get_by_role("rowheader").filter(has_text=f"Order #{order['number']}")
    expect(group).to_contain_text("buyer@example.test")
    expect(group).to_contain_text("can still be refunded: $100.00")
    row = page.get_by_role("row").filter(has_text="by buyer@example.test (customer)")
    page.evaluate("window.notReloaded = true")
    page.get_by_role("button", name=f"Approve {name}").click()
    expect(row).to_contain_text("Approved $40.00.")
    assert page.evaluate("window.notReloaded") is True  # inline, not a page load
    # The RQ worker refunds at Stripe; the webhook confirms it.
    wait_for(lambda: scalar(sa.select(RefundRequest.status)) == "succeeded")
    sign_out(page)

    sign_in(page, order["email"])
    page.get_by_role("link", name="Payment history").first.click()
    expect(page.get_by_role("row").filter(has_text="$100.00")).to_contain_text(
        "Partially refunded $40.00")
    page.get_by_role("row").filter(has_text="$100.00").get_by_role("link").click()
    expect(page.get_by_role("table", name="Refunds")).to_contain_text("Succeeded")
    request_refund(page, "70.00")
    alert = page.locator("#amount-error")
    expect(alert).to_have_text("Only $60.00 of this payment can still be refunded.")
    expect(page.get_by_label("Amount to refund")).to_have_attribute("aria-invalid", "true")
    assert scalar(sa.select(sa.func.count()).select_from(RefundRequest)) == 1
    expect(page.get_by_text(re.compile(r"Up to \$60\.00 can be refunded"))).to_be_visible()


def paid_in_the_sandbox(order, live):
    """The order paid with a Visa card, server-side (the sandbox's client, the payment)."""
    import stripe

    from portal.auth.services import find_user
    from portal.orders.models import Order
    from portal.payments.services import confirm_with_card, start_checkout

    sandbox = stripe.StripeClient("sk_test_portal", base_addresses={"api": live.sandbox.url})
    pm = sandbox.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    payment = start_checkout(scalar(sa.select(Order).where(Order.id == order["id"]))).payment
    payment, _ = confirm_with_card(find_user(order["email"]), payment, pm.id)
    assert payment.status == "succeeded"
    return sandbox, payment


def test_refund_made_in_the_sandbox_arrives_by_webhook_and_lowers_the_remainder(
        page: Page, order, live):
    sandbox, payment = paid_in_the_sandbox(order, live)
    # As from Stripe's dashboard: the sandbox sends refund.created and charge.refunded.
    sandbox.v1.refunds.create(params={"payment_intent": payment.stripe_payment_intent_id,
                                      "amount": 1500})
    wait_for(lambda: scalar(sa.select(RefundRequest.status).where(
        RefundRequest.source == "stripe")) == "succeeded")
    sign_in(page, order["email"])
    page.goto(f"/payments/{payment.id}")
    expect(page.get_by_text("Up to $85.00 can be refunded.")).to_be_visible()
    expect(page.get_by_role("table", name="Refunds")).to_contain_text("Refunded in Stripe")


def test_a_refused_inline_decision_says_why(page: Page, order, live):
    """htmx does not swap an error answer: the page's alert line says what was refused."""
    from portal.auth.services import find_user
    from portal.extensions import db
    from portal.refunds import services as refunds

    _, payment = paid_in_the_sandbox(order, live)
    with committed():
        refunds.request_refund(find_user(order["email"]), payment, amount=2500,
                               reason="customer_request", notes=None)
    db.session.commit()
    staff_sign_in(page, "boss@example.test", "admin")  # lands on the back office
    page.get_by_role("link", name="Refunds", exact=True).click()
    name = f"order #{order['number']} ($25.00)"
    page.get_by_label(f"Note for {name}").fill("pasted\u000bfrom a document")
    page.get_by_role("button", name=f"Reject {name}").click()
    expect(page.get_by_role("alert")).to_have_text(
        "The request contains control characters, which no field accepts. (400)")
    row = page.get_by_role("row").filter(has_text="by buyer@example.test (customer)")
    expect(row).to_contain_text("Requested")
    assert scalar(sa.select(RefundRequest.status)) == "requested"
