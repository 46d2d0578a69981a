"""A customer pays in a real browser: cards, 3-D Secure, declines, and the webhook alone."""

import re

import pytest
from playwright.sync_api import Page, expect

from portal.extensions import db
from portal.ledger.models import Payment
from portal.orders.models import Order
from portal.webhooks.models import StripeEvent
from tests.e2e.conftest import sa, scalar, wait_for
from tests.helpers import PASSWORD, make_order, make_user


@pytest.fixture
def order(app_ctx):
    customer = make_user("buyer@example.test")
    vendor = make_user("maker@example.test", "vendor")
    o = make_order(customer, vendor, amounts=(4999, 4212), tax=800)  # $100.11
    return {"id": o.id, "number": o.number, "email": customer.email}


def sign_in(page: Page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your orders")).to_be_visible()


def open_checkout(page: Page, order) -> None:
    sign_in(page, order["email"])
    page.get_by_role("link", name=f"Pay order #{order['number']}").click()
    expect(page.get_by_role("heading", name=f"Pay order #{order['number']}")).to_be_visible()


def enter_card(page: Page, number: str) -> None:
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration date").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Pay $100.11").click()


def succeeded_event(order_id):
    """Status of the payment_intent.succeeded event of this order's intent (None: not yet).
    Late webhooks of earlier tests' intents may be stored too, so match the intent."""
    return scalar(
        sa.select(StripeEvent.status)
        .join(Payment, Payment.stripe_payment_intent_id == StripeEvent.object_id)
        .where(Payment.order_id == order_id, StripeEvent.type == "payment_intent.succeeded")
    )


def payment_status(order_id):
    return scalar(sa.select(Payment.status).where(Payment.order_id == order_id))


def test_pay_with_4242_then_history_lists_it(page: Page, order):
    open_checkout(page, order)
    expect(page.get_by_role("heading", name="Test cards")).to_be_visible()
    expect(page.get_by_text("4000 0000 0000 0341")).to_be_visible()
    enter_card(page, "4242 4242 4242 4242")
    expect(page.get_by_text("Succeeded")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Payment of \$100\.11 received with Visa •••• 4242"))
           ).to_be_visible()
    # The completion page sums the order up and says what became of the receipt e-mail.
    summary = page.get_by_role("region", name=f"Order #{order['number']}")
    expect(summary).to_contain_text("Item 0")
    expect(summary).to_contain_text("$100.11")
    expect(page.get_by_text("No receipt e-mail is sent")).to_be_visible()  # no SMTP_HOST
    page.get_by_role("link", name="Payment history").first.click()
    expect(page.get_by_text("Dates and times are in UTC")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Visa •••• 4242")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("$100.11")
    expect(row).to_contain_text("USD")
    expect(row).to_contain_text("Paid")
    assert payment_status(order["id"]) == "succeeded"
    # The status filter swaps the list in place (HTMX) and keeps the URL shareable.
    page.evaluate("window.notReloaded = true")
    page.get_by_label("Status").select_option(label="Failed")
    expect(page.get_by_text("No payments with status “Failed”.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/payments\?status=failed"))
    # Reversed days: the message shows under the field, in place, and nothing is filtered.
    page.get_by_label("From (UTC)").fill("2026-03-05")
    page.get_by_label("To (UTC)").fill("2026-03-01")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("The end date must not be before the start date.")).to_be_visible()
    expect(page.get_by_label("To (UTC)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert").filter(has_text="Nothing was filtered")).to_be_visible()
    assert page.evaluate("window.notReloaded") is True
    # The orders page links the paid order to its payment.
    page.get_by_role("link", name="Orders").click()
    page.get_by_role("link", name=f"View payment of order #{order['number']}").click()
    expect(page.get_by_text("Visa •••• 4242").first).to_be_visible()
    expect(page).to_have_url(re.compile(r"/payments/[0-9a-f-]{36}$"))


def test_saving_the_card_is_confirmed_on_the_completion_page(page: Page, order):
    open_checkout(page, order)
    page.get_by_label("Save this card for future payments").check()
    enter_card(page, "4242 4242 4242 4242")
    expect(page.get_by_text("Succeeded")).to_be_visible()
    expect(page.get_by_text("We saved this card for next time")).to_be_visible()


def test_3ds_card_approved(page: Page, order):
    open_checkout(page, order)
    enter_card(page, "4000 0027 6000 3184")
    dialog = page.get_by_role("dialog", name="3D Secure authentication")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_text("Succeeded")).to_be_visible()
    assert payment_status(order["id"]) == "succeeded"


def test_3ds_failed_shows_a_message_and_the_order_can_be_paid_again(page: Page, order):
    open_checkout(page, order)
    enter_card(page, "4000 0027 6000 3184")
    page.get_by_role("dialog", name="3D Secure authentication").get_by_role(
        "button", name="Fail authentication").click()
    expect(page.get_by_role("alert")).to_contain_text("unable to authenticate")
    assert payment_status(order["id"]) != "succeeded"
    # The same page, another card: the order is paid.
    enter_card(page, "4242 4242 4242 4242")
    expect(page.get_by_text("Succeeded")).to_be_visible()
    assert payment_status(order["id"]) == "succeeded"


def test_declined_card_shows_the_decline_and_nothing_succeeds(page: Page, order):
    open_checkout(page, order)
    enter_card(page, "4000 0000 0000 0341")
    expect(page.get_by_role("alert")).to_contain_text("Your card was declined.")
    expect(page.get_by_role("button", name="Pay $100.11")).to_be_enabled()
    # The webhook (payment_intent.payment_failed) records the failure; nothing succeeded.
    wait_for(lambda: payment_status(order["id"]) == "failed")
    failure = scalar(sa.select(Payment.failure_message).where(Payment.order_id == order["id"]))
    assert "declined" in failure
    assert scalar(sa.select(Order.status).where(Order.id == order["id"])) == "unpaid"
    # Coming back to the order page tells the customer what happened and lets them retry.
    page.goto(f"/checkout/{order['id']}")
    expect(page.get_by_role("alert").first).to_contain_text("Your last attempt failed")


def test_browser_closed_after_confirming_the_webhook_alone_settles_it(page: Page, order):
    open_checkout(page, order)
    # The browser never comes back to our completion page: it is closed on the way.
    page.route("**/checkout/*/complete*", lambda route: route.abort())
    with page.expect_request("**/checkout/*/complete*"):
        enter_card(page, "4242 4242 4242 4242")
    page.context.close()
    # Stripe's signed webhook -> stored event -> RQ worker on Redis -> payment succeeded.
    wait_for(lambda: payment_status(order["id"]) == "succeeded")
    assert succeeded_event(order["id"]) == "processed"
    payment = scalar(sa.select(Payment).where(Payment.order_id == order["id"]))
    assert (payment.card_brand, payment.card_last4) == ("visa", "4242")
    assert scalar(sa.select(Order.status).where(Order.id == order["id"])) == "paid"


def test_reloading_checkout_keeps_one_payment_intent(page: Page, order, live):
    import stripe

    open_checkout(page, order)
    page.reload()
    page.reload()
    enter_card(page, "4242 4242 4242 4242")
    expect(page.get_by_text("Succeeded")).to_be_visible()
    sandbox = stripe.StripeClient("sk_test_portal", base_addresses={"api": live.sandbox.url})
    intents = [pi for pi in sandbox.v1.payment_intents.list(params={"limit": 100}).data
               if pi.to_dict()["metadata"].get("orderId") == str(order["id"])]
    assert len(intents) == 1 and intents[0].status == "succeeded"


def test_no_card_number_or_client_secret_in_logs_or_database(page: Page, order, live):
    open_checkout(page, order)
    with page.expect_request("**/checkout/*/complete*") as returned:
        enter_card(page, "4242 4242 4242 4242")
    expect(page.get_by_text("Succeeded")).to_be_visible()
    assert "payment_intent_client_secret=" in returned.value.url  # what Stripe.js sends us
    secret = returned.value.url.split("payment_intent_client_secret=")[1].split("&")[0]
    # Scan after the webhook has been stored and processed too.
    wait_for(lambda: succeeded_event(order["id"]) == "processed")
    logs = "".join(p.read_text() for p in live.logs.glob("*.log"))
    assert "/checkout/" in logs  # the access log is there...
    for needle in ("4242424242424242", "4242 4242 4242 4242", secret):
        assert needle not in logs  # ...without card numbers or client secrets
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                text = " ".join(str(v) for v in row)
                assert "4242424242424242" not in text and secret not in text, table.name
