"""The back office in a real browser (issue 18): an admin finds a payment by a card's last
four digits and by the customer's e-mail, opens its timeline (a refund made in Stripe and its
events are there), exports the search as CSV, and reads the analytics of the last 30 days in
two currencies."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from portal.refunds.models import RefundRequest
from tests.e2e.conftest import sa, scalar, wait_for
from tests.e2e.test_refunds_flow import paid_in_the_sandbox, staff_sign_in
from tests.helpers import make_order, make_user


@pytest.fixture
def orders(app_ctx):
    vendor = make_user("maker@example.test", "vendor")
    make_user("boss@example.test", "admin")
    paid = {}
    for email, currency, amount in (("buyer@example.test", "USD", 10000),
                                    ("kunde@example.test", "EUR", 2000)):
        o = make_order(make_user(email), vendor, currency=currency, amounts=(amount,))
        paid[currency] = {"id": o.id, "number": o.number, "email": email}
    return paid


def test_an_admin_finds_a_payment_reads_its_timeline_exports_and_reads_analytics(
        page: Page, orders, live):
    sandbox, usd = paid_in_the_sandbox(orders["USD"], live)
    paid_in_the_sandbox(orders["EUR"], live)
    # A refund made in Stripe's dashboard: it arrives by webhook.
    sandbox.v1.refunds.create(params={"payment_intent": usd.stripe_payment_intent_id,
                                      "amount": 1500})
    wait_for(lambda: scalar(sa.select(RefundRequest.status)) == "succeeded")
    number = orders["USD"]["number"]

    staff_sign_in(page, "boss@example.test", "admin")  # lands on the payment search
    search = page.get_by_role("searchbox", name="Search")
    results = page.get_by_role("table", name="Payments found")
    search.fill("4242")
    expect(results.get_by_role("row")).to_have_count(3)  # the header and both payments
    search.fill("buyer@")
    expect(results.get_by_role("row")).to_have_count(2)
    expect(results).to_contain_text(f"#{number}")
    expect(page).to_have_url(re.compile(r"q=buyer%40"))  # shareable, the back button works

    with page.expect_download() as download:
        page.get_by_role("link", name="Export these payments (CSV)").click()
    csv = download.value.path().read_text(encoding="utf-8-sig")
    assert csv.count("\n") == 2 and number in csv and ",100.00,USD," in csv

    results.get_by_role("link", name=f"#{number}").click()
    timeline = page.get_by_role("table", name="Timeline")
    expect(timeline).to_contain_text("Payment succeeded")
    expect(timeline).to_contain_text("Stripe event charge.refunded")
    expect(page.get_by_role("table", name="Refunds")).to_contain_text("$15.00")

    page.get_by_role("link", name="Analytics").click()
    shown = page.get_by_role("status").filter(has_text="amounts in other currencies")
    expect(shown).to_contain_text("Last 30 days")
    figures = page.get_by_role("region", name="Figures")
    expect(figures).to_contain_text("Gross volume$100.00")
    expect(figures).to_contain_text("Refunded$15.00")
    page.get_by_label("Currency").select_option("EUR")
    expect(shown).to_contain_text("in EUR")
    expect(figures).to_contain_text("Gross volume€20.00")
    expect(page).to_have_url(re.compile(r"currency=EUR"))
    expect(page.get_by_role("img", name="Gross volume, per day (UTC)")).to_be_visible()
