"""The Stripe.js double and the pages it sends customers to.

- `/js.stripe.com/v3/`: stripe-js-double.js, what the portal's pages load instead of
  js.stripe.com when STRIPE_JS_URL points here (the Payment Element with plain inputs,
  confirmPayment, confirmSetup, handleNextAction, retrievePaymentIntent...).
- What Stripe.js may do with a publishable key (PUBLISHABLE_KEY_ROUTES): create
  PaymentMethods, retrieve and confirm PaymentIntents and SetupIntents with their
  client_secret; everything else is refused with Stripe's 401 secret_key_required.
- `/3ds/{id}`: the bank's 3-D Secure page of a PaymentIntent or a SetupIntent (where
  next_action.redirect_to_url and use_stripe_sdk.stripe_js point): "Complete authentication"
  or "Fail authentication", then back to the return_url with `payment_intent`... or
  `setup_intent`, `..._client_secret` and `redirect_status`, as Stripe does.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from . import core, payment_intents, setup_intents

JS_DOUBLE = Path(__file__).with_name("stripe-js-double.js")

# (method, path, whether the intent's client_secret must come along).
PUBLISHABLE_KEY_ROUTES = (
    ("POST", re.compile(r"/v1/payment_methods"), False),
    ("GET", re.compile(r"/v1/payment_intents/(?P<id>pi_\w+)"), True),
    ("POST", re.compile(r"/v1/payment_intents/(?P<id>pi_\w+)/confirm"), True),
    ("POST", re.compile(r"/v1/payment_intents/(?P<id>pi_\w+)/_authenticate"), True),
    ("GET", re.compile(r"/v1/setup_intents/(?P<id>seti_\w+)"), True),
    ("POST", re.compile(r"/v1/setup_intents/(?P<id>seti_\w+)/confirm"), True),
    ("POST", re.compile(r"/v1/setup_intents/(?P<id>seti_\w+)/_authenticate"), True),
)


def publishable_key_allows(method: str, path: str, client_secret) -> None:
    """Raise Stripe's 401 unless Stripe.js may make this call with a publishable key."""
    for allowed_method, pattern, needs_client_secret in PUBLISHABLE_KEY_ROUTES:
        match = pattern.fullmatch(path)
        if match and method == allowed_method:
            if needs_client_secret:
                core.check_client_secret(intent(match["id"]), client_secret)
            return
    raise core.StripeError(
        401, "invalid_request_error",
        "This API call cannot be made with a publishable API key. Please use a secret API key.",
        code="secret_key_required")


def intent(id: str):
    """A PaymentIntent or a SetupIntent, by id (404 resource_missing)."""
    if id.startswith("seti_"):
        return setup_intents.retrieve_setup_intent(id)
    return payment_intents.retrieve_payment_intent(id, "id")


async def stripe_js(request: web.Request) -> web.Response:
    return web.Response(text=JS_DOUBLE.read_text(encoding="utf-8"),
                        content_type="application/javascript",
                        headers={"Cache-Control": "no-cache"})


def with_query(url: str, **params) -> str:
    parts = urlsplit(url)
    query = urlencode(parse_qsl(parts.query) + list(params.items()))
    return urlunsplit(parts._replace(query=query))


# As on Stripe's own test page, the two outcomes look different: completing is the filled
# primary button, failing an outlined one in red (both with 4.5:1 contrast or more).
_BUTTON = ("font: inherit; font-weight: bold; padding: .6em 1.2em; border-radius: 6px; "
           "cursor: pointer")
PRIMARY = f"{_BUTTON}; background: #3d32c8; color: #fff; border: 2px solid #3d32c8"
FAIL = f"{_BUTTON}; background: #fff; color: #a3122e; border: 2px solid #a3122e"


async def three_d_secure_page(request: web.Request) -> web.Response:
    """Stands in for the bank's 3-D Secure page of a PaymentIntent or a SetupIntent, then
    returns to the return_url like Stripe does."""
    found = intent(request.match_info["id"])
    setup = found.object == "setup_intent"
    if request.method == "GET":
        core.check_client_secret(found, request.query.get("client_secret"))
        what = "saving this test card" if setup else "this test payment"
        return core.page("3D Secure authentication", f'''
<form method="post">
<input type="hidden" name="client_secret" value="{html.escape(found.client_secret)}">
<p>Authenticate {what}, or make the authentication fail.</p>
<p style="display: flex; flex-wrap: wrap; gap: 1em">
<button type="submit" name="success" value="true" style="{PRIMARY}">Complete authentication</button>
<button type="submit" name="success" value="false" style="{FAIL}">Fail authentication</button>
</p>
</form>''')
    form = await request.post()
    client_secret = form.get("client_secret")
    core.check_client_secret(found, client_secret)
    authenticate = (setup_intents.authenticate_setup_intent if setup
                    else payment_intents.authenticate_payment_intent)
    found = authenticate(found.id, client_secret=client_secret, success=form.get("success"))
    if not found.return_url:
        return core.page("Authentication finished", "<p>You can close this page.</p>")
    succeeded = found.status in payment_intents.SUCCESSFUL
    raise web.HTTPSeeOther(with_query(found.return_url, **{
        found.object: found.id,
        f"{found.object}_client_secret": found.client_secret,
        "redirect_status": "succeeded" if succeeded else "failed",
    }))


PAGES = [
    ("GET", "/js.stripe.com/v3/", stripe_js),
    ("GET", "/js.stripe.com/v3", stripe_js),
    ("GET", "/3ds/{id}", three_d_secure_page),
    ("POST", "/3ds/{id}", three_d_secure_page),
]
