"""Saved cards in a real browser: the card manager, one-click pay, 3-D Secure on a saved
card, cards removed in Stripe, another customer's cards, and no card data kept anywhere."""

from __future__ import annotations

import re
import uuid

import pytest
import stripe
from playwright.sync_api import Page, expect

from portal.cards.models import SavedCard
from portal.extensions import db
from portal.ledger.models import Payment
from tests.e2e.conftest import sa, scalar, wait_for
from tests.e2e.test_checkout_flow import payment_status, sign_in
from tests.helpers import make_order, make_user

# 15-16 digits, spaces or dashes between them, not part of a longer number or a decimal
# fraction (the logs hold timings such as 0.4598054602965, which may pass the Luhn check).
NUMBER = re.compile(r"(?<![\d.])(?:\d[ -]?){14,15}\d(?![\d.])")


def luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += d if i % 2 == 0 else sum(divmod(2 * d, 10))
    return total % 10 == 0


def card_numbers_in(text: str) -> list[str]:
    """Every card-number-like run of digits that passes the Luhn check."""
    found = []
    for match in NUMBER.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if luhn(digits) and digits[0] in "3456":
            found.append(digits)
    return found


def assert_no_card_data(live, numbers: list[str]) -> None:
    """Neither our logs (web, worker) nor any table holds a card number."""
    logs = "".join(p.read_text() for p in live.logs.glob("*.log"))
    assert "/cards" in logs  # the access log is there...
    for number in numbers:
        assert number not in logs.replace(" ", "")
    assert card_numbers_in(logs) == []
    db.session.remove()
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                # Columns apart: a UUID ending in digits next to a timestamp ("...479083
                # 2026-11-27 08") once read as one 16-digit number that passed Luhn. UUIDs
                # (ids of ours, the rollups' keys) are not text anyone typed: a random one
                # may hold 16 digits between its dashes that pass Luhn too.
                text = " | ".join(str(v) for v in row if not isinstance(v, uuid.UUID))
                assert card_numbers_in(text) == [], table.name


@pytest.fixture
def shop(app_ctx):
    customer = make_user("buyer@example.test")
    vendor = make_user("maker@example.test", "vendor")
    order = make_order(customer, vendor, amounts=(4999, 4212), tax=800)  # $100.11
    return {"email": customer.email, "user_id": customer.id, "order": order.id,
            "number": order.number, "vendor": vendor}


def open_cards(page: Page, email: str) -> None:
    sign_in(page, email)
    page.get_by_role("link", name="Saved cards").click()
    expect(page.get_by_role("heading", name="Saved cards", level=1)).to_be_visible()


def add_card(page: Page, number: str, *, authenticate: bool = False) -> None:
    page.get_by_role("button", name="Add a card").click()
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration date").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Save card").click()
    if authenticate:
        page.get_by_role("dialog", name="3D Secure authentication").get_by_role(
            "button", name="Complete authentication").click()


def card_row(page: Page, name: str):
    return page.get_by_role("table", name="Saved cards").get_by_role("row").filter(has_text=name)


def test_card_manager_add_default_remove_and_one_click_pay(page: Page, shop, live):
    open_cards(page, shop["email"])
    expect(page.get_by_text("You have no saved cards.")).to_be_visible()
    page.evaluate("window.notReloaded = true")

    add_card(page, "4242 4242 4242 4242")
    expect(page.get_by_text("Visa •••• 4242 was saved.")).to_be_visible()
    expect(card_row(page, "Visa •••• 4242")).to_contain_text("Default")

    add_card(page, "5555 5555 5555 4444")
    expect(card_row(page, "Mastercard •••• 4444")).to_be_visible()
    expect(card_row(page, "Mastercard •••• 4444")).not_to_contain_text("Default")

    page.get_by_role("button", name="Make Mastercard •••• 4444 the default").click()
    expect(card_row(page, "Mastercard •••• 4444")).to_contain_text("Default")
    expect(card_row(page, "Visa •••• 4242")).not_to_contain_text("Default")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove Visa •••• 4242").click()
    expect(page.get_by_text("The card was removed.")).to_be_visible()
    expect(card_row(page, "Visa •••• 4242")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True  # all of it without a full reload

    # One click: the saved default is preselected at checkout.
    page.get_by_role("link", name="Orders").click()
    page.get_by_role("link", name=f"Pay order #{shop['number']}").click()
    expect(page.get_by_role("radio", name=re.compile("Mastercard •••• 4444"))).to_be_checked()
    page.get_by_role("button", name="Pay $100.11").click()
    expect(page.get_by_text("Succeeded")).to_be_visible()
    assert payment_status(shop["order"]) == "succeeded"
    card = scalar(sa.select(Payment.card_last4).where(Payment.order_id == shop["order"]))
    assert card == "4444"
    assert_no_card_data(live, ["4242424242424242", "5555555555554444"])


def test_saved_3ds_card_is_authenticated_when_saved_and_at_payment(page: Page, shop, live):
    open_cards(page, shop["email"])
    add_card(page, "4000 0027 6000 3184", authenticate=True)
    expect(card_row(page, "Visa •••• 3184")).to_contain_text("Default")
    page.get_by_role("link", name="Orders").click()
    page.get_by_role("link", name=f"Pay order #{shop['number']}").click()
    page.get_by_role("button", name="Pay $100.11").click()
    dialog = page.get_by_role("dialog", name="3D Secure authentication")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_text("Succeeded")).to_be_visible()
    assert payment_status(shop["order"]) == "succeeded"
    assert_no_card_data(live, ["4000002760003184"])


def test_new_card_with_save_this_card_is_saved_by_the_payment(page: Page, shop):
    sign_in(page, shop["email"])
    page.get_by_role("link", name=f"Pay order #{shop['number']}").click()
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiration date").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_label("Save this card for future payments").check()
    page.get_by_role("button", name="Pay $100.11").click()
    expect(page.get_by_text("Succeeded")).to_be_visible()
    page.get_by_role("link", name="Saved cards").click()
    expect(card_row(page, "Visa •••• 4242")).to_contain_text("Default")


def test_card_removed_in_stripe_disappears_after_the_webhook(page: Page, shop, live):
    open_cards(page, shop["email"])
    add_card(page, "4242 4242 4242 4242")
    expect(card_row(page, "Visa •••• 4242")).to_be_visible()
    pm = scalar(sa.select(SavedCard.stripe_payment_method_id))
    sandbox = stripe.StripeClient("sk_test_portal", base_addresses={"api": live.sandbox.url})
    sandbox.v1.payment_methods.detach(pm)  # as from Stripe's dashboard
    wait_for(lambda: scalar(sa.select(sa.func.count()).select_from(SavedCard)) == 0)
    page.reload()
    expect(page.get_by_text("You have no saved cards.")).to_be_visible()


def test_another_customer_cannot_use_or_change_my_cards(page: Page, shop, live, app_ctx):
    open_cards(page, shop["email"])
    add_card(page, "4242 4242 4242 4242")
    expect(card_row(page, "Visa •••• 4242")).to_be_visible()
    pm = scalar(sa.select(SavedCard.stripe_payment_method_id))
    bob = make_user("bob@example.test")
    bobs = make_order(bob, shop["vendor"], amounts=(1500,))
    page.get_by_role("button", name="Sign out").click()
    open_cards(page, bob.email)
    expect(page.get_by_text("You have no saved cards.")).to_be_visible()
    page.goto(f"/checkout/{bobs.id}")
    expect(page.get_by_role("radio")).to_have_count(0)  # no saved cards offered
    token = page.locator("#payment-form").get_attribute("data-csrf-token")
    headers = {"X-CSRFToken": token}
    for path in (f"/cards/{pm}/remove", f"/cards/{pm}/default"):
        assert page.request.post(path, headers=headers).status == 404
    r = page.request.post(f"/checkout/{bobs.id}/pay", headers=headers,
                          form={"payment_method": pm})
    assert r.status == 404
    assert scalar(sa.select(sa.func.count()).select_from(SavedCard)) == 1
    assert payment_status(bobs.id) == "requires_payment_method"
