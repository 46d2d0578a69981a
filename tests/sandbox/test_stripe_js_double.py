"""The Stripe.js double in a browser, on a page of another origin (as the
portal's checkout page is), driven through labels and roles."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import need

from .sandbox_helpers import PUBLISHABLE_KEY

# Debian's Chromium, as in the end-to-end tests.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

CHECKOUT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Checkout</title>
<script src="{js_url}"></script></head>
<body>
<form id="checkout"><div id="payment-element"></div>
<button type="submit">Pay</button></form>
<output id="result"></output>
<script>
const params = new URLSearchParams(location.search);
const clientSecret = params.get('client_secret');
const stripe = Stripe('{publishable_key}');
const elements = stripe.elements({{clientSecret}});
const element = elements.create('payment');
element.on('ready', () => document.body.dataset.ready = 'yes');
element.on('change', event => document.body.dataset.complete = event.complete);
element.mount('#payment-element');
const show = result => {{
  document.getElementById('result').textContent = JSON.stringify(result);
}};
document.getElementById('checkout').addEventListener('submit', async event => {{
  event.preventDefault();
  show(await stripe.confirmPayment({{
    elements,
    confirmParams: {{return_url: new URL('/done', location.href).href}},
    redirect: params.get('redirect') || 'always',
  }}));
}});
window.nextAction = async () => show(await stripe.handleNextAction({{clientSecret}}));
</script></body></html>"""


@pytest.fixture(scope="module")
def shop(sandbox):
    """The merchant's site, on its own loopback origin."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = CHECKOUT_PAGE.format(js_url=sandbox.js_url, publishable_key=PUBLISHABLE_KEY)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(playwright):
    if not Path(CHROMIUM).exists():
        need("Chromium", f"{CHROMIUM} not found (apt-get install -y chromium)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield browser
    browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.console_messages_seen = []
    page.on("console", lambda message: page.console_messages_seen.append(message.text))
    yield page
    context.close()


def open_checkout(page, shop, client, redirect="if_required"):
    pi = client.v1.payment_intents.create(params={"amount": 4200, "currency": "eur"})
    page.goto(f"{shop}/checkout?client_secret={pi.client_secret}&redirect={redirect}")
    page.wait_for_selector("body[data-ready=yes]")
    return pi


def pay(page, number, expiry="12 / 34", cvc="123"):
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration date").fill(expiry)
    page.get_by_label("CVC").fill(cvc)
    page.get_by_role("button", name="Pay").click()


def result(page):
    page.wait_for_function("document.getElementById('result').textContent !== ''")
    return json.loads(page.locator("#result").text_content())


def test_successful_payment(page, shop, client):
    pi = open_checkout(page, shop, client)
    assert page.get_by_label("Expiration date").get_attribute("placeholder") == "MM / YY"
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiration date").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.wait_for_selector("body[data-complete=true]")  # the 'change' event
    page.get_by_role("button", name="Pay").click()
    assert result(page)["paymentIntent"]["status"] == "succeeded"
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    assert not any("4242" in text for text in page.console_messages_seen)


def test_success_redirects_to_return_url(page, shop, client):
    pi = open_checkout(page, shop, client, redirect="always")
    pay(page, "4242424242424242")
    page.wait_for_url("**/done?**")
    query = parse_qs(urlsplit(page.url).query)
    assert query == {
        "payment_intent": [pi.id],
        "payment_intent_client_secret": [pi.client_secret],
        "redirect_status": ["succeeded"],
    }


def test_declined_card(page, shop, client):
    open_checkout(page, shop, client, redirect="always")
    pay(page, "4000 0000 0000 0341")
    error = result(page)["error"]
    assert (error["type"], error["code"], error["decline_code"], error["message"]) == (
        "card_error",
        "card_declined",
        "generic_decline",
        "Your card was declined.",
    )
    assert error["payment_intent"]["status"] == "requires_payment_method"
    assert "/checkout" in page.url  # no redirect on card errors


@pytest.mark.parametrize(
    "button, outcome",
    [
        ("Complete authentication", "succeeded"),
        ("Fail authentication", "payment_intent_authentication_failure"),
    ],
)
def test_3d_secure_dialog(page, shop, client, button, outcome):
    pi = open_checkout(page, shop, client, redirect="always")
    pay(page, "4000 0027 6000 3184")
    dialog = page.get_by_role("dialog", name="3D Secure authentication")
    dialog.get_by_role("button", name=button).click()
    if outcome == "succeeded":
        page.wait_for_url("**/done?**redirect_status=succeeded")
        assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    else:
        error = result(page)["error"]
        assert error["code"] == outcome
        assert error["type"] == "invalid_request_error"
        assert error["payment_intent"]["status"] == "requires_payment_method"
    assert dialog.count() == 0


def test_handle_next_action_after_server_side_confirmation(page, shop, client):
    pi = open_checkout(page, shop, client)
    pm = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4000002760003184", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    client.v1.payment_intents.confirm(pi.id, params={"payment_method": pm.id})
    page.evaluate("() => { nextAction(); }")  # not awaiting the dialog
    page.get_by_role("button", name="Complete authentication").click()
    assert result(page)["paymentIntent"]["status"] == "succeeded"


VALIDATION_ERRORS = [
    ("4242", "12 / 34", "123", "incomplete_number", "Your card number is incomplete."),
    ("4242 4242 4242 4241", "12 / 34", "123", "invalid_number", "Your card number is invalid."),
    (
        "4242 4242 4242 4242",
        "12",
        "123",
        "incomplete_expiry",
        "Your card's expiration date is incomplete.",
    ),
    (
        "4242 4242 4242 4242",
        "12 / 20",
        "123",
        "invalid_expiry_year_past",
        "Your card's expiration year is in the past.",
    ),
    (
        "4242 4242 4242 4242",
        "12 / 34",
        "1",
        "incomplete_cvc",
        "Your card's security code is incomplete.",
    ),
]


def test_validation_errors(page, shop, client):
    pi = open_checkout(page, shop, client)
    for number, expiry, cvc, code, message in VALIDATION_ERRORS:
        page.evaluate("document.getElementById('result').textContent = ''")
        pay(page, number, expiry, cvc)
        error = result(page)["error"]
        assert (error["type"], error["code"], error["message"]) == (
            "validation_error",
            code,
            message,
        )
    # Nothing reached the sandbox.
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"


LOOK = """button => {
  const s = getComputedStyle(button);
  return [s.backgroundColor, s.color, s.borderTopColor];
}"""


def test_3d_secure_buttons_look_different_primary_first(page, shop, client):
    """As on Stripe's test page: "Complete authentication" is the filled primary button and
    "Fail authentication" an outlined red one, both named by their text; in the dialog and
    on the 3-D Secure page a redirect goes to."""
    open_checkout(page, shop, client, redirect="always")
    pay(page, "4000 0027 6000 3184")
    dialog = page.get_by_role("dialog", name="3D Secure authentication")
    complete = dialog.get_by_role("button", name="Complete authentication")
    fail = dialog.get_by_role("button", name="Fail authentication")
    assert complete.evaluate(LOOK) == ["rgb(61, 50, 200)", "rgb(255, 255, 255)",
                                       "rgb(61, 50, 200)"]
    assert fail.evaluate(LOOK) == ["rgb(255, 255, 255)", "rgb(163, 18, 46)", "rgb(163, 18, 46)"]
    assert page.evaluate("document.activeElement.textContent") == "Complete authentication"
    # The bank's page of a PaymentIntent confirmed by the server with a return_url.
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4000002760003184", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    pi = client.v1.payment_intents.create(params={
        "amount": 4200, "currency": "eur", "payment_method": pm.id, "confirm": True,
        "return_url": f"{shop}/done"})
    page.goto(pi.next_action.redirect_to_url.url)
    buttons = page.get_by_role("button")
    assert buttons.all_inner_texts() == ["Complete authentication", "Fail authentication"]
    assert page.get_by_role("button", name="Complete authentication").evaluate(LOOK)[0] == \
        "rgb(61, 50, 200)"
    assert page.get_by_role("button", name="Fail authentication").evaluate(LOOK)[:2] == [
        "rgb(255, 255, 255)", "rgb(163, 18, 46)"]
