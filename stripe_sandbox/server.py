"""The sandbox's HTTP server: localstripe's aiohttp app, adjusted.

On top of the resource changes in `patches` (imported first, see there):
- idempotency: `Idempotency-Key` on POSTs replays the first response
  (`Idempotent-Replayed: true`), or answers 400 `idempotency_error` when the
  key comes back with another endpoint or other parameters; kept 24 h, per
  API key. stripe-python sends a key with every POST and reuses it on retries.
- publishable keys: Stripe.js creates PaymentMethods, retrieves and confirms
  PaymentIntents and SetupIntents with a `pk_` key (+ the client_secret);
  localstripe refuses some and lets others through unchecked (it accepted a
  `pk_` key to cancel a SetupIntent, which Stripe does not).
- CORS: preflights are answered (localstripe refused them unauthenticated)
  and allow the headers browsers and SDKs send.
- the Stripe.js double (stripe-js-double.js) at /js.stripe.com/v3/, a
  3-D Secure page for `redirect_to_url` next actions of PaymentIntents and
  SetupIntents (back to the return_url with `payment_intent`... or
  `setup_intent`, `setup_intent_client_secret`, `redirect_status`), receipt
  pages.
- saved cards: `GET /v1/customers/{id}/payment_methods[/{payment_method}]`,
  and a sandbox-only test hook standing in for Stripe's card account
  updater, `POST /_sandbox/payment_methods/{id}/automatically_update`
  (secret key; exp_month, exp_year, optional last4), which sends
  `payment_method.automatically_updated`.
- refunds (see patches): Stripe.js cannot touch them (publishable key: 401
  secret_key_required); a sandbox-only test hook failing a pending or
  succeeded refund as a bank would, `POST /_sandbox/refunds/{id}/fail`
  (secret key; optional failure_reason, default expired_or_canceled_card),
  which sends `refund.updated`, `charge.refund.updated` and `refund.failed`;
  `--refund-delay SECONDS` (default 1): how long refunds of the test cards
  4000000000007726 (pending, then succeeded) and 4000000000005126
  (succeeded, then failed) take to change.
- Stripe Connect (see `connect`, whose `add_routes` this app calls):
  accounts, account links with an onboarding page at
  /connect/onboarding/{link} (like /3ds/, no API key: the link is the
  secret), transfers and reversals, `account.updated`, `transfer.*`; test
  hooks `POST /_sandbox/accounts/{id}/requirements`,
  `POST /_sandbox/account_links/{link}/expire` and
  `POST /_sandbox/fail_next_transfers`. Secret key only, like Stripe.
- events and webhooks (see `events`): every event is recorded when it is
  created, payload frozen, and
  - `GET /v1/events`: newest first; `limit` (1-100, default 10),
    `starting_after` / `ending_before` (event ids), `created` or
    `created[gt|gte|lt|lte]`, `type` (`*` is a wildcard:
    `payment_intent.*`, `*.updated`) or `types[]` (exact names, at most 20;
    not both), `delivery_success` (true: delivered to every endpoint; false:
    pending, queued, retrying, failed or dropped somewhere); `has_more`.
    `GET /v1/events/{id}` (404 resource_missing when unknown). Both only
    see the last 30 days, and the payloads are byte for byte those
    delivered. Connect events (`account` set: account.updated) are on the
    connected account, as at Stripe: listed and retrieved only with its
    `Stripe-Account: acct_...` header (403 account_invalid if unknown).
    Secret key only.
  - deliveries: to the endpoints registered and subscribed when the event
    is created (`--webhook-url`, `POST /_config/webhooks/{id}` with url,
    secret, events[]; `*` subscribes to all), `--webhook-delay` seconds
    later (default 1). Each attempt is signed at send time (`t=` is the
    time of sending, so a resend or retry carries a fresh timestamp);
    redirects are not followed; an attempt waits 10 s for an answer.
    A failed attempt (not 2xx, or no answer) is retried `--webhook-retries`
    times (default 3) after `--webhook-retry-delay` seconds (default 1),
    doubled before each next retry (1, 2, 4 s); then the delivery is
    `failed`. Retries stop once the event is delivered (e.g. resent).
  Sandbox-only test hooks (secret key; form or query parameters; every
  `endpoint` parameter is a registered endpoint id, `cli` for
  `--webhook-url`; without it a hook applies to every endpoint):
  - `POST /_sandbox/deliveries/hold` [endpoint]: from now on, deliveries
    (first attempts and retries) are queued instead of sent. Without
    endpoint, every endpoint is held, also those registered later, until a
    release (a release of one endpoint frees only that one).
  - `POST /_sandbox/deliveries/release` [endpoint] [order=sent|reverse|
    shuffle, default sent: the order the events were created in]
    [seed: with shuffle, makes it reproducible; answered back]
    [duplicates=N, 0-10: each event sent 1+N times, in N+1 rounds of the
    whole queue, so copies of an event are interleaved with the others]
    [concurrency=K, 1-100, default 1] [delay_ms, 0-60000, between starting
    deliveries]: stops holding, attempts every queued delivery (once per
    copy), and answers when all are answered: {deliveries (POSTs made),
    succeeded, failed, released (queued deliveries released), sequence
    ([{event, type, endpoint, status_code}] in sending order), seed (shuffle),
    held, hold_all, queued, drop_next}. A delivery no copy of which got a
    2xx is retried as above.
  - `POST /_sandbox/deliveries/drop` [count=N, default 1; 0 clears]
    [endpoint]: the next N events (for that endpoint: the next N it is
    subscribed to) are never delivered automatically (status `dropped`),
    as when Stripe gives up; they are still listed by /v1/events.
  - `POST /_sandbox/deliveries/redeliver` (event=evt_... | all_failed=true)
    [endpoint]: sends now, once each, as the Dashboard's "Resend" does: the
    event to every endpoint it went to (or to `endpoint`, even one it was
    not sent to), or every delivery whose last attempt failed (`failed`
    or `retrying`, not `dropped`). Ignores holds; a resend answered 2xx
    leaves the queue. Answers like release (deliveries, succeeded, failed,
    sequence).
  - `GET /_sandbox/deliveries` [endpoint] [event]: {data: one row per
    (event, endpoint) in the order the events were created: event, type,
    created, endpoint, status (pending, queued, retrying, delivered,
    failed, dropped), attempts, last_status_code, last_error, delivered,
    queued, dropped, next_retry_at, history ([{at, kind (automatic, retry,
    release, duplicate, redeliver), status_code, error}])}, endpoints ({id:
    {url, events, held}}), held, hold_all, queued ({endpoint: n}),
    drop_next ({endpoint or "*": n})}.
- no pickling of the store after each POST.
"""

import argparse
import base64
import html
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web
from localstripe.resources import Charge
from localstripe.webhooks import register_webhook

# isort: off
from . import patches  # must come before localstripe.server: see patches
from localstripe import server as localstripe
from . import connect, events
# isort: on

JS_DOUBLE = Path(__file__).with_name("stripe-js-double.js")


async def request_params(request):
    """The request's parameters as localstripe reads them (body and query)."""
    body = {}
    if request.method == "POST":
        body = await localstripe.get_post_data(request, remove_auth=False)
    return {**localstripe.unflatten_data(request.query), **(body or {})}


def api_key(request, params):
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme == "Bearer":
        return value
    if scheme == "Basic":
        return base64.b64decode(value).decode(errors="replace").split(":")[0]
    key = params.get("key")  # how Stripe.js passes its publishable key
    return key if isinstance(key, str) else None


# --- Front: CORS preflights and the Stripe.js double ---------------------


@web.middleware
async def front_middleware(request, handler):
    # Preflights carry no credentials, so they must not reach the auth
    # middleware; the CORS headers themselves are added by cors_headers.
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204)
    # localstripe registered its own stand-in at this path; routes cannot be
    # unregistered, so the double is served before routing matters.
    if request.method in ("GET", "HEAD") and request.path.rstrip("/") == "/js.stripe.com/v3":
        return web.Response(
            text=JS_DOUBLE.read_text(encoding="utf-8"),
            content_type="application/javascript",
            headers={"Cache-Control": "no-cache"},
        )
    return await handler(request)


async def cors_headers(request, response):
    """Let pages on any origin (the portal runs on another loopback port)
    call the API with fetch, as api.stripe.com does."""
    origin = request.headers.get("Origin")
    if origin:
        response.headers.update(
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": (
                    "Authorization, Content-Type, Accept, Idempotency-Key, Stripe-Version, "
                    "Stripe-Account"
                ),
                "Access-Control-Expose-Headers": "Idempotent-Replayed",
                "Access-Control-Max-Age": "300",
                "Vary": "Origin",
            }
        )


# --- Idempotency --------------------------------------------------------

IDEMPOTENCY_TTL = 24 * 3600


@dataclass
class SavedResponse:
    created: float
    path: str
    params: dict
    status: int = None  # None while the first request is running
    body: bytes = b""
    content_type: str = "application/json"


# (API key, Idempotency-Key) -> SavedResponse, oldest first.
saved_responses = {}


def idempotency_error(status, message):
    return patches.StripeError(status, "idempotency_error", message).to_response()


def endpoint_ran(status):
    # Stripe saves a result once the endpoint starts executing: not for
    # requests refused by validation (400, 404), authentication or conflicts.
    return status < 400 or status == 402 or status >= 500


@web.middleware
async def idempotency_middleware(request, handler):
    idempotency_key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not idempotency_key or not request.path.startswith("/v1/"):
        return await handler(request)
    params = await request_params(request)
    key = api_key(request, params)
    if not key:
        return await handler(request)  # refused later as unauthenticated
    if len(idempotency_key) > 255:
        return idempotency_error(
            400, "Keys for idempotent requests can be no longer than 255 characters."
        )
    now = time.monotonic()
    while saved_responses:
        oldest_slot, oldest = next(iter(saved_responses.items()))
        if now - oldest.created < IDEMPOTENCY_TTL:
            break
        del saved_responses[oldest_slot]

    slot = (key, idempotency_key)
    saved = saved_responses.get(slot)
    try_other_key = (
        f"Try using a key other than '{idempotency_key}' if "
        "you meant to execute a different request."
    )
    if saved is not None:
        if saved.path != request.path:
            return idempotency_error(
                400,
                "Keys for idempotent requests can only be used for the "
                "same endpoint they were first used for "
                f"('{saved.path}' vs '{request.path}'). {try_other_key}",
            )
        if saved.params != params:
            return idempotency_error(
                400,
                "Keys for idempotent requests can only be used with the "
                "same parameters they were first used with. " + try_other_key,
            )
        if saved.status is None:
            return idempotency_error(
                409,
                "There is currently another in-progress request using "
                "this Idempotent Key (that probably means you submitted "
                "twice, and the other request is still going through): "
                f"{idempotency_key}. Please try again later.",
            )
        return web.Response(
            status=saved.status,
            body=saved.body,
            content_type=saved.content_type,
            charset="utf-8",
            headers={"Idempotent-Replayed": "true"},
        )

    saved = saved_responses[slot] = SavedResponse(now, request.path, params)
    try:
        response = await handler(request)
    except BaseException:
        del saved_responses[slot]
        raise
    if isinstance(response, web.Response) and endpoint_ran(response.status):
        saved.status, saved.body = response.status, response.body
        saved.content_type = response.content_type
    else:
        del saved_responses[slot]
    return response


# --- Authentication -----------------------------------------------------

# What Stripe.js may do with a publishable key: (method, path, whether the
# PaymentIntent's or SetupIntent's client_secret must come along).
PUBLISHABLE_KEY_ROUTES = (
    ("POST", re.compile(r"/v1/payment_methods"), False),
    ("GET", re.compile(r"/v1/payment_intents/(?P<id>pi_\w+)"), True),
    ("POST", re.compile(r"/v1/payment_intents/(?P<id>pi_\w+)/confirm"), True),
    ("POST", re.compile(r"/v1/payment_intents/(?P<id>pi_\w+)/_authenticate"), True),
    ("GET", re.compile(r"/v1/setup_intents/(?P<id>seti_\w+)"), True),
    ("POST", re.compile(r"/v1/setup_intents/(?P<id>seti_\w+)/confirm"), True),
    ("POST", re.compile(r"/v1/setup_intents/(?P<id>seti_\w+)/_authenticate"), True),
)
# Calls localstripe would let through with a publishable key but Stripe
# refuses (only the routes above are open to Stripe.js here).
SECRET_KEY_ONLY = re.compile(
    r"/v1/(setup_intents|refunds|accounts|account_links|transfers|events)(/.*)?"
)


@web.middleware
async def auth_middleware(request, handler):
    """localstripe's, plus the publishable-key calls Stripe.js makes."""
    if request.path.startswith(("/3ds/", "/receipts/", "/connect/onboarding/")):
        # Pages for the customer's browser, like Stripe's hosted ones; the
        # 3-D Secure page checks the client secret itself, an onboarding
        # link's unguessable id is its secret.
        return await handler(request)
    params = await request_params(request)
    key = api_key(request, params) or ""
    if key.startswith("pk_"):
        for method, path, needs_client_secret in PUBLISHABLE_KEY_ROUTES:
            match = path.fullmatch(request.path)
            if match and request.method == method:
                if needs_client_secret:
                    patches.check_client_secret(
                        patches.retrieve_intent(match["id"]), params.get("client_secret")
                    )
                return await handler(request)
        if SECRET_KEY_ONLY.fullmatch(request.path):
            raise patches.StripeError(
                401,
                "invalid_request_error",
                "This API call cannot be made with a publishable API key. "
                "Please use a secret API key.",
                code="secret_key_required",
            )
    return await localstripe.auth_middleware(request, handler)


# --- Pages --------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<p><strong>Stripe sandbox</strong> (test mode, no real money)</p>
<h1>{title}</h1>
{body}
</body></html>"""


def page(title, body):
    return web.Response(
        text=PAGE.format(title=html.escape(title), body=body), content_type="text/html"
    )


def with_query(url, **params):
    parts = urlsplit(url)
    query = urlencode(parse_qsl(parts.query) + list(params.items()))
    return urlunsplit(parts._replace(query=query))


async def three_d_secure_page(request):
    """Where next_action.redirect_to_url points (and use_stripe_sdk's
    stripe_js): stands in for the bank's 3-D Secure page of a PaymentIntent
    or a SetupIntent, then returns to the return_url like Stripe does."""
    intent = patches.retrieve_intent(request.match_info["id"])
    setup = intent.object == "setup_intent"
    if request.method == "GET":
        patches.check_client_secret(intent, request.query.get("client_secret"))
        what = "saving this test card" if setup else "this test payment"
        return page(
            "3D Secure authentication",
            f'''
<form method="post">
<input type="hidden" name="client_secret" value="{html.escape(intent.client_secret)}">
<p>Authenticate {what}, or make the authentication fail.</p>
<button name="success" value="true">Complete authentication</button>
<button name="success" value="false">Fail authentication</button>
</form>''',
        )
    form = await request.post()
    client_secret = form.get("client_secret")
    patches.check_client_secret(intent, client_secret)
    authenticate = (
        patches.authenticate_setup_intent if setup else patches.authenticate_payment_intent
    )
    intent = authenticate(intent.id, client_secret=client_secret, success=form.get("success"))
    if not intent._return_url:
        return page("Authentication finished", "<p>You can close this page.</p>")
    succeeded = intent.status in patches.SUCCESSFUL
    raise web.HTTPSeeOther(
        with_query(
            intent._return_url,
            **{
                intent.object: intent.id,
                f"{intent.object}_client_secret": intent.client_secret,
                "redirect_status": "succeeded" if succeeded else "failed",
            },
        )
    )


async def receipt_page(request):
    """What Charge.receipt_url points at."""
    charge = Charge._api_retrieve(request.match_info["id"])
    decimals = 0 if charge.currency in patches.ZERO_DECIMAL_CURRENCIES else 2
    amount = f"{charge.amount / 10**decimals:.{decimals}f}"
    card = (charge.payment_method_details or {}).get("card") or {}
    return page(
        "Receipt",
        f"""<dl>
<dt>Amount</dt><dd>{amount} {html.escape(charge.currency.upper())}</dd>
<dt>Card</dt><dd>{html.escape(f"{card.get('brand')} ending in {card.get('last4')}")}</dd>
<dt>Status</dt><dd>{html.escape(charge.status)}</dd>
<dt>Charge</dt><dd>{html.escape(charge.id)}</dd></dl>""",
    )


# --- Saved cards --------------------------------------------------------


def json_response(obj, request):
    expand = localstripe.unflatten_data(request.query).get("expand")
    return localstripe.json_response(obj._export(expand=expand))


async def customer_payment_method(request):
    """GET /v1/customers/{id}/payment_methods/{payment_method}."""
    return json_response(
        patches.retrieve_customer_payment_method(
            request.match_info["id"], request.match_info["payment_method"]
        ),
        request,
    )


AUTOMATICALLY_UPDATE = "/_sandbox/payment_methods/{id}/automatically_update"
# Refunds: a sandbox-only test hook failing a refund (see patches.fail_refund).
FAIL_REFUND = "/_sandbox/refunds/{id}/fail"


# --- The app ------------------------------------------------------------

app = localstripe.app
# Same order as localstripe's, minus its save_store_middleware (pickling).
app.middlewares[:] = [
    front_middleware,
    idempotency_middleware,
    localstripe.error_middleware,
    auth_middleware,
    events.events_middleware,
]
app.on_response_prepare.remove(localstripe.add_cors_headers)
app.on_response_prepare.append(cors_headers)
app.router.add_get("/3ds/{id}", three_d_secure_page)
app.router.add_post("/3ds/{id}", three_d_secure_page)
app.router.add_get("/receipts/{id}", receipt_page)
app.router.add_get("/v1/customers/{id}/payment_methods/{payment_method}", customer_payment_method)
app.router.add_post(
    AUTOMATICALLY_UPDATE,
    localstripe.api_extra(patches.automatically_update_payment_method, AUTOMATICALLY_UPDATE),
)
app.router.add_post(FAIL_REFUND, localstripe.api_extra(patches.fail_refund, FAIL_REFUND))
connect.add_routes(app)
events.add_routes(app)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m stripe_sandbox",
        description="Offline Stripe API (localstripe + the portal's needs).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--webhook-url", help="where to send signed webhook events")
    parser.add_argument("--webhook-secret", help="their signing secret")
    parser.add_argument(
        "--refund-delay",
        type=float,
        default=patches.REFUND_DELAY,
        metavar="SECONDS",
        help="how long refunds of the test cards 4000000000007726 (pending, then "
        "succeeded) and 4000000000005126 (succeeded, then failed) take to change "
        f"(default {patches.REFUND_DELAY:g})",
    )
    parser.add_argument(
        "--webhook-delay",
        type=float,
        default=events.WEBHOOK_DELAY,
        metavar="SECONDS",
        help="how long after an event its first delivery is attempted "
        f"(default {events.WEBHOOK_DELAY:g})",
    )
    parser.add_argument(
        "--webhook-retries",
        type=int,
        default=events.WEBHOOK_RETRIES,
        metavar="N",
        help="how many times a failed delivery (not 2xx, or no answer) is retried "
        f"(default {events.WEBHOOK_RETRIES})",
    )
    parser.add_argument(
        "--webhook-retry-delay",
        type=float,
        default=events.WEBHOOK_RETRY_DELAY,
        metavar="SECONDS",
        help="wait before the first retry, doubled before each next one "
        f"(default {events.WEBHOOK_RETRY_DELAY:g})",
    )
    args = parser.parse_args(argv)
    for option in ("refund_delay", "webhook_delay", "webhook_retries", "webhook_retry_delay"):
        if getattr(args, option) < 0:
            parser.error(f"--{option.replace('_', '-')} must not be negative")
    patches.REFUND_DELAY = args.refund_delay
    events.WEBHOOK_DELAY = args.webhook_delay
    events.WEBHOOK_RETRIES = args.webhook_retries
    events.WEBHOOK_RETRY_DELAY = args.webhook_retry_delay
    if bool(args.webhook_url) != bool(args.webhook_secret):
        parser.error("--webhook-url and --webhook-secret go together")
    if args.webhook_url:
        if not args.webhook_url.startswith(("http://", "https://")):
            parser.error("--webhook-url must be an http(s) URL")
        register_webhook("cli", args.webhook_url, args.webhook_secret, None)

    host = f"[{args.host}]" if ":" in args.host else args.host
    patches.PUBLIC_URL = f"http://{host}:{args.port}"
    # localstripe reports webhook deliveries on this logger. Requests are not
    # logged: query strings carry client secrets.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=None,
        shutdown_timeout=1,
        # run_app calls this once the socket listens.
        print=lambda _: print("Stripe sandbox listening on " + patches.PUBLIC_URL, flush=True),
    )
