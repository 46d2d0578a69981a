"""Keyboard only: a customer signs in, manages saved cards (add one in the Payment Element,
make another the default, remove one) and pays an order, with a saved card or a new one,
using Tab, Shift+Tab, Enter, Space and the arrow keys of a radio group; no mouse, no click.
Every element reached shows a focus ring."""

from __future__ import annotations

import re

import pytest
import stripe
from playwright.sync_api import Locator, Page, expect

from portal.auth.services import find_user
from portal.cards.services import save_card
from tests.e2e.test_checkout_flow import payment_status
from tests.helpers import PASSWORD, committed, make_order, make_user

MAX_TABS = 60

# The element that has the focus shows it: an outline or a ring (box-shadow).
FOCUS_SHOWN = """el => {
  const style = getComputedStyle(el);
  return el === document.activeElement &&
    ((style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2) ||
     style.boxShadow !== 'none');
}"""


def tab_to(page: Page, target: Locator, *, backwards: bool = False) -> None:
    """Press Tab (Shift+Tab) until ``target`` has the focus; it must show it."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(MAX_TABS):
        if target.evaluate("el => el === document.activeElement"):
            assert target.evaluate(FOCUS_SHOWN), f"{target} has the focus but shows no ring"
            return
        page.keyboard.press(key)
    raise AssertionError(f"{target} cannot be reached with {key} ({MAX_TABS} presses)")


def type_into(page: Page, field: Locator, text: str) -> None:
    tab_to(page, field)
    page.keyboard.type(text)


def sign_in_by_keyboard(page: Page, email: str) -> None:
    page.goto("/login")
    type_into(page, page.get_by_label("Email"), email)
    type_into(page, page.get_by_label("Password"), PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Your orders")).to_be_visible()


@pytest.fixture
def shop(app_ctx):
    customer = make_user("buyer@example.test")
    vendor = make_user("maker@example.test", "vendor")
    order = make_order(customer, vendor, amounts=(4999, 4212), tax=800)  # $100.11
    return {"email": customer.email, "order": order.id, "number": order.number}


def card_row(page: Page, name: str) -> Locator:
    return page.get_by_role("table", name="Saved cards").get_by_role("row").filter(has_text=name)


def add_card_by_keyboard(page: Page, number: str) -> None:
    tab_to(page, page.get_by_role("button", name="Add a card"))
    page.keyboard.press("Enter")
    # The form replaces the button: the focus goes to the card number, not to the page's top.
    expect(page.get_by_label("Card number")).to_be_focused()
    page.keyboard.type(number)
    type_into(page, page.get_by_label("Expiration date"), "12 / 34")
    type_into(page, page.get_by_label("CVC"), "123")
    tab_to(page, page.get_by_role("button", name="Save card"))
    page.keyboard.press("Enter")


def test_card_management_by_keyboard(page: Page, shop):
    sign_in_by_keyboard(page, shop["email"])
    tab_to(page, page.get_by_role("link", name="Saved cards"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Saved cards", level=1)).to_be_visible()

    add_card_by_keyboard(page, "4242 4242 4242 4242")
    saved = page.get_by_text("Visa •••• 4242 was saved.")
    expect(saved).to_be_visible()
    expect(saved).to_be_focused()  # the message says what happened; Tab goes on from there
    expect(card_row(page, "Visa •••• 4242")).to_contain_text("Default")

    add_card_by_keyboard(page, "5555 5555 5555 4444")
    expect(card_row(page, "Mastercard •••• 4444")).to_be_visible()

    # Space presses a button as Enter does.
    tab_to(page, page.get_by_role("button", name="Make Mastercard •••• 4444 the default"))
    page.keyboard.press("Space")
    expect(card_row(page, "Mastercard •••• 4444")).to_contain_text("Default")
    expect(card_row(page, "Visa •••• 4242")).not_to_contain_text("Default")

    page.once("dialog", lambda dialog: dialog.accept())  # "Remove Visa •••• 4242?"
    tab_to(page, page.get_by_role("button", name="Remove Visa •••• 4242"))
    page.keyboard.press("Enter")
    removed = page.get_by_text("The card was removed.")
    expect(removed).to_be_focused()
    expect(card_row(page, "Visa •••• 4242")).to_have_count(0)
    expect(card_row(page, "Mastercard •••• 4444")).to_contain_text("Default")


def save_mastercard(shop, live) -> None:
    """The customer's default card: a Mastercard •••• 4444 saved in the sandbox."""
    sandbox = stripe.StripeClient("sk_test_portal", base_addresses={"api": live.sandbox.url})
    pm = sandbox.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "5555555555554444", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    with committed():
        save_card(find_user(shop["email"]), pm.id, make_default=True)


def test_checkout_with_the_saved_card_by_keyboard(page: Page, shop, live):
    save_mastercard(shop, live)
    sign_in_by_keyboard(page, shop["email"])
    tab_to(page, page.get_by_role("link", name=f"Pay order #{shop['number']}"))
    page.keyboard.press("Enter")
    saved = page.get_by_role("radio", name=re.compile("Mastercard •••• 4444"))
    tab_to(page, saved)  # a radio group is one Tab stop: the checked card
    expect(saved).to_be_checked()
    tab_to(page, page.get_by_role("button", name="Pay $100.11"))
    page.keyboard.press("Enter")
    expect(page.get_by_text("Succeeded")).to_be_visible()
    assert payment_status(shop["order"]) == "succeeded"


def test_checkout_with_a_new_card_by_keyboard(page: Page, shop, live):
    save_mastercard(shop, live)
    sign_in_by_keyboard(page, shop["email"])
    tab_to(page, page.get_by_role("link", name=f"Pay order #{shop['number']}"))
    page.keyboard.press("Enter")
    tab_to(page, page.get_by_role("radio", name=re.compile("Mastercard •••• 4444")))
    page.keyboard.press("ArrowDown")  # within the group: the next choice, "A new card"
    expect(page.get_by_role("radio", name="A new card")).to_be_checked()
    type_into(page, page.get_by_label("Card number"), "4242 4242 4242 4242")
    type_into(page, page.get_by_label("Expiration date"), "12 / 34")
    type_into(page, page.get_by_label("CVC"), "123")
    tab_to(page, page.get_by_role("button", name="Pay $100.11"))
    page.keyboard.press("Enter")
    expect(page.get_by_text("Succeeded")).to_be_visible()
    expect(page.get_by_text(re.compile(r"received with Visa •••• 4242"))).to_be_visible()
    assert payment_status(shop["order"]) == "succeeded"
