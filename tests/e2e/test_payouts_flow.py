"""A vendor onboards through the sandbox's Connect page, customers pay, an admin runs and
approves payouts, the worker transfers, and the vendor sees it all (and the CSV agrees)."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import Page, expect

from portal.auth.services import find_user
from portal.ledger.models import Payout
from portal.payments.services import confirm_with_card, start_checkout
from tests.e2e.conftest import sa, scalar, wait_for
from tests.e2e.test_refunds_flow import staff_sign_in
from tests.helpers import make_order, make_user


@pytest.fixture
def shop(app_ctx):
    make_user("vendy@example.test", "vendor")
    make_user("buyer@example.test")
    make_user("boss@example.test", "admin")


def paid_order(live, amounts) -> None:
    """A customer's order of the vendor, paid (as the checkout tests do in the browser)."""
    import stripe

    sandbox = stripe.StripeClient("sk_test_portal", base_addresses={"api": live.sandbox.url})
    order = make_order(find_user("buyer@example.test"), find_user("vendy@example.test"),
                       amounts=amounts)
    # Stripe's test card whose funds are available at once (4242's stay pending for days,
    # and payout runs wait for them).
    pm = sandbox.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4000000000000077", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    payment, _ = confirm_with_card(find_user("buyer@example.test"),
                                   start_checkout(order).payment, pm.id)
    assert payment.status == "succeeded"


def test_onboard_get_paid_and_see_the_payout(page: Page, shop, live):
    staff_sign_in(page, "vendy@example.test", "vendor")  # lands on the dashboard
    expect(page.get_by_text("Payouts not enabled")).to_be_visible()
    page.get_by_role("button", name="Connect with Stripe").click()
    # The sandbox's stand-in for Stripe's hosted onboarding: leave it unfinished first.
    page.get_by_role("button", name="Save and finish later").click()
    expect(page.get_by_text("Stripe still needs: a bank account for payouts.")).to_be_visible()
    page.get_by_role("button", name="Continue onboarding with Stripe").click()
    page.get_by_role("button", name="Complete onboarding").click()
    expect(page.get_by_text("Payouts enabled")).to_be_visible()

    paid_order(live, (10000,))  # $100.00, fee $10.00
    paid_order(live, (2550, 1000))  # $35.50, fee $3.55
    page.get_by_role("button", name="Sign out").click()
    staff_sign_in(page, "boss@example.test", "admin")
    page.get_by_role("link", name="Payouts").click()
    page.get_by_role("button", name="Run payouts now").click()
    run = page.get_by_role("region", name=re.compile("^Run of "))
    expect(run.get_by_role("row").filter(has_text="vendy@example.test")).to_contain_text(
        "$121.95")
    page.get_by_role("button", name="Approve and send").click()
    # A confirmation states the amounts; nothing is sent before it (keyboard: Enter on it).
    expect(page.get_by_role("heading", name="Send 1 payout totalling $121.95 to 1 vendor?")
           ).to_be_visible()
    assert scalar(sa.select(Payout.status)) == "pending"
    page.get_by_role("button", name="Confirm: send 1 payout").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Sending 1 payout.")).to_be_visible()
    wait_for(lambda: scalar(sa.select(Payout.status)) == "paid")
    page.get_by_role("button", name="Sign out").click()

    staff_sign_in(page, "vendy@example.test", "vendor")  # lands on the dashboard
    row = page.get_by_role("table", name="Payouts").get_by_role("row").filter(
        has_text="$121.95")
    expect(row).to_contain_text("Paid")
    totals = page.get_by_role("table", name="Totals")
    expect(totals).to_contain_text("$135.50")  # sales
    expect(totals).to_contain_text("$13.55")  # fees
    row.get_by_role("link", name=re.compile("Details of the payout")).click()
    expect(page.get_by_role("heading", name="Payout of $121.95")).to_be_visible()
    lines = page.get_by_role("table", name="Lines")
    expect(lines.get_by_role("row")).to_have_count(3)  # header + 2 sale lines
    expect(page.get_by_text(re.compile(r"transfer tr_"))).to_be_visible()
    # Each line names its order, and leads to the vendor's page of it.
    lines.get_by_role("row").filter(has_text="$31.95").get_by_role(
        "link", name=re.compile(r"^#[0-9A-F]{8}$")).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Order #"))).to_be_visible()
    expect(page.get_by_role("table", name="Your items")).to_contain_text("Item 1")
    expect(page.get_by_role("table", name="How your share was computed")).to_contain_text(
        "$35.50")
    expect(page.get_by_role("link", name=re.compile("^Payout of "))).to_be_visible()

    page.goto("/vendor")
    expect(page.get_by_role("img", name=re.compile("^Net sales in USD"))).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the statement (CSV)").click()
    rows = list(csv.reader(io.StringIO(download.value.path().read_text())))
    total = next(r for r in rows if r[0] == "total")
    assert total[4:8] == ["USD", "135.50", "13.55", "121.95"]  # equal to the page
