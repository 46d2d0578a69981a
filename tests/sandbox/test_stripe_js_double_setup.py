"""The Stripe.js double saving cards (SetupIntents, confirmSetup) and handling
next actions, in a browser on a page of another origin (as the portal's
pages are), driven through labels and roles."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from . import test_stripe_js_double as js_double
from .sandbox_helpers import PUBLISHABLE_KEY

# The same Chromium and browser contexts as the payment tests.
browser = js_double.browser
page = js_double.page

AUTHENTICATION_FAILED = (
    "We are unable to authenticate your payment method. Please choose a different payment "
    "method and try again."
)

CARDS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Saved cards</title>
<script src="{js_url}"></script></head>
<body>
<form id="add-card"><div id="payment-element"></div>
<button type="submit">Save card</button></form>
<output id="result"></output>
<script>
const params = new URLSearchParams(location.search);
const clientSecret = params.get('client_secret');
const stripe = Stripe('{publishable_key}');
const elements = stripe.elements({{clientSecret}});
const element = elements.create('payment');
element.on('ready', () => document.body.dataset.ready = 'yes');
element.mount('#payment-element');
const show = result => {{
  document.getElementById('result').textContent = JSON.stringify(result);
}};
document.getElementById('add-card').addEventListener('submit', async event => {{
  event.preventDefault();
  show(await stripe.confirmSetup({{
    elements,
    confirmParams: {{
      return_url: new URL('/done', location.href).href,
      payment_method_data: {{billing_details: {{name: 'Ada Lovelace'}}}},
    }},
    redirect: params.get('redirect') || 'always',
  }}));
}});
window.nextAction = async () => show(await stripe.handleNextAction({{clientSecret}}));
window.retrieveSetup = async () => show(await stripe.retrieveSetupIntent(clientSecret));
</script></body></html>"""


@pytest.fixture(scope="module")
def shop(sandbox):
    """The merchant's site, on its own loopback origin."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = CARDS_PAGE.format(js_url=sandbox.js_url, publishable_key=PUBLISHABLE_KEY)
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


def open_page(page, shop, client_secret, redirect="if_required"):
    page.goto(f"{shop}/cards?client_secret={client_secret}&redirect={redirect}")
    page.wait_for_selector("body[data-ready=yes]")


def new_setup_intent(client, **params):
    cus = client.v1.customers.create(params={"email": "ada@example.com"})
    return cus, client.v1.setup_intents.create(params={"customer": cus.id, **params})


def save_card(page, number, expiry="12 / 34", cvc="123"):
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration date").fill(expiry)
    page.get_by_label("CVC").fill(cvc)
    page.get_by_role("button", name="Save card").click()


def result(page):
    page.wait_for_function("document.getElementById('result').textContent !== ''")
    return json.loads(page.locator("#result").text_content())


def saved_cards(client, cus):
    return client.v1.customers.payment_methods.list(cus.id).data


def test_save_a_card(page, shop, client):
    cus, si = new_setup_intent(client)
    open_page(page, shop, si.client_secret)
    save_card(page, "4242 4242 4242 4242")
    setup_intent = result(page)["setupIntent"]
    assert (setup_intent["id"], setup_intent["status"]) == (si.id, "succeeded")

    [pm] = saved_cards(client, cus)
    assert pm.id == setup_intent["payment_method"]
    assert (pm.card.last4, pm.card.exp_month, pm.card.exp_year) == ("4242", 12, 2034)
    assert pm.billing_details.name == "Ada Lovelace"
    assert not any("4242" in text for text in page.console_messages_seen)


def test_success_redirects_to_return_url(page, shop, client):
    cus, si = new_setup_intent(client)
    open_page(page, shop, si.client_secret, redirect="always")
    save_card(page, "5555 5555 5555 4444")
    page.wait_for_url("**/done?**")
    assert parse_qs(urlsplit(page.url).query) == {
        "setup_intent": [si.id],
        "setup_intent_client_secret": [si.client_secret],
        "redirect_status": ["succeeded"],
    }
    assert [pm.card.last4 for pm in saved_cards(client, cus)] == ["4444"]


def test_declined_card(page, shop, client):
    cus, si = new_setup_intent(client)
    open_page(page, shop, si.client_secret, redirect="always")
    save_card(page, "4000 0000 0000 0002")
    error = result(page)["error"]
    assert (error["type"], error["code"], error["decline_code"], error["message"]) == (
        "card_error",
        "card_declined",
        "generic_decline",
        "Your card was declined.",
    )
    assert error["setup_intent"]["status"] == "requires_payment_method"
    assert "/cards" in page.url  # no redirect on card errors
    assert saved_cards(client, cus) == []


@pytest.mark.parametrize("number", ["4000 0027 6000 3184", "4000 0025 0000 3155"])
@pytest.mark.parametrize("button", ["Complete authentication", "Fail authentication"])
def test_3d_secure_dialog(page, shop, client, number, button):
    cus, si = new_setup_intent(client)
    open_page(page, shop, si.client_secret, redirect="always")
    save_card(page, number)
    dialog = page.get_by_role("dialog", name="3D Secure authentication")
    dialog.get_by_role("button", name=button).click()
    if button == "Complete authentication":
        page.wait_for_url("**/done?**redirect_status=succeeded")
        assert client.v1.setup_intents.retrieve(si.id).status == "succeeded"
        assert len(saved_cards(client, cus)) == 1
    else:
        error = result(page)["error"]
        assert (error["type"], error["code"], error["message"]) == (
            "invalid_request_error",
            "setup_intent_authentication_failure",
            AUTHENTICATION_FAILED,
        )
        assert error["setup_intent"]["status"] == "requires_payment_method"
        assert saved_cards(client, cus) == []
    assert dialog.count() == 0


def test_redirect_type_action_is_followed(page, shop, client):
    """Should the intent answer with a redirect_to_url action (a redirect-based
    method), confirmSetup goes there even with redirect 'if_required': here
    the sandbox's 3-D Secure page, then back to the return_url."""
    cus, si = new_setup_intent(client)

    def as_redirect(route):
        response = route.fetch()
        body = response.json()
        if body.get("status") == "requires_action":
            url = body["next_action"]["use_stripe_sdk"]["stripe_js"]
            body["next_action"] = {
                "type": "redirect_to_url",
                "redirect_to_url": {"url": url, "return_url": f"{shop}/done"},
            }
        route.fulfill(response=response, json=body)

    page.route("**/v1/setup_intents/*/confirm", as_redirect)
    open_page(page, shop, si.client_secret, redirect="if_required")
    save_card(page, "4000 0027 6000 3184")
    page.wait_for_url("**/3ds/**")
    page.get_by_role("button", name="Complete authentication").click()
    page.wait_for_url("**/done?**")
    query = parse_qs(urlsplit(page.url).query)
    assert (query["setup_intent"], query["redirect_status"]) == ([si.id], ["succeeded"])
    assert query["setup_intent_client_secret"] == [si.client_secret]
    assert len(saved_cards(client, cus)) == 1


def test_retrieve_setup_intent(page, shop, client):
    _, si = new_setup_intent(client, metadata={"purpose": "wallet"})
    open_page(page, shop, si.client_secret)
    page.evaluate("() => retrieveSetup()")
    setup_intent = result(page)["setupIntent"]
    assert (setup_intent["id"], setup_intent["status"]) == (si.id, "requires_payment_method")
    assert setup_intent["client_secret"] == si.client_secret


def test_validation_errors_reach_nothing(page, shop, client):
    _, si = new_setup_intent(client)
    open_page(page, shop, si.client_secret)
    save_card(page, "4242 4242 4242 4241")
    error = result(page)["error"]
    assert (error["type"], error["code"]) == ("validation_error", "invalid_number")
    assert page.get_by_label("Card number").get_attribute("aria-invalid") == "true"
    assert client.v1.setup_intents.retrieve(si.id).status == "requires_payment_method"


def test_handle_next_action_for_setup_intent_confirmed_by_the_server(page, shop, client):
    cus, si = new_setup_intent(client)
    pm = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4000002760003184", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    si = client.v1.setup_intents.confirm(si.id, params={"payment_method": pm.id})
    assert si.status == "requires_action"
    open_page(page, shop, si.client_secret)
    page.evaluate("() => { nextAction(); }")  # not awaiting the dialog
    page.get_by_role("button", name="Complete authentication").click()
    assert result(page)["setupIntent"]["status"] == "succeeded"
    assert [saved.id for saved in saved_cards(client, cus)] == [pm.id]


@pytest.mark.parametrize(
    "button, outcome",
    [("Complete authentication", "succeeded"), ("Fail authentication", "failed")],
)
def test_handle_next_action_for_a_redirect_to_url_payment(page, shop, client, button, outcome):
    """A PaymentIntent confirmed by the server with a return_url has a
    redirect_to_url action; handleNextAction shows the dialog for it."""
    cus = client.v1.customers.create(params={"email": "ada@example.com"})
    pm = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4000002760003184", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(pm.id, {"customer": cus.id})
    pi = client.v1.payment_intents.create(
        params={
            "amount": 900,
            "currency": "eur",
            "customer": cus.id,
            "payment_method": pm.id,
            "confirm": True,
            "return_url": f"{shop}/done",
        }
    )
    assert pi.next_action.type == "redirect_to_url"
    open_page(page, shop, pi.client_secret)
    page.evaluate("() => { nextAction(); }")
    page.get_by_role("dialog", name="3D Secure authentication").get_by_role(
        "button", name=button
    ).click()
    answer = result(page)
    if outcome == "succeeded":
        assert answer["paymentIntent"]["status"] == "succeeded"
    else:
        assert answer["error"]["code"] == "payment_intent_authentication_failure"
        assert answer["error"]["message"] == AUTHENTICATION_FAILED
    assert "/cards" in page.url  # no navigation
    expected = "succeeded" if outcome == "succeeded" else "requires_payment_method"
    assert client.v1.payment_intents.retrieve(pi.id).status == expected
