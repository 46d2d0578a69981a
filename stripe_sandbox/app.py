"""The sandbox's HTTP server: each resource module's routes, installed here in one place
(`MODULES`), behind what every Stripe request goes through, and `python -m stripe_sandbox`.

Every request to /v1 is checked against the contract of the pinned API version before its
handler runs, and every object answered is checked against its resource class
(`core.api`, `contract.py`); a /v1 route missing from the contract's table stops the sandbox
from starting. Around the routes:
- idempotency: `Idempotency-Key` on POSTs replays the first response
  (`Idempotent-Replayed: true`), or answers 400 `idempotency_error` when the key comes back
  with another endpoint or other parameters, 409 while the first request runs; kept 24 h,
  per API key and Stripe-Account. What the endpoint answered once it ran is kept, a refusal
  such as balance_insufficient included; refusals of the request itself (its parameters,
  authentication, 404s), conflicts and rate limits are not.
- authentication: a secret key (`sk_...`) for the API and the test hooks; Stripe.js's calls
  with the publishable key (`pk_...`: stripe_js.PUBLISHABLE_KEY_ROUTES) and the intents'
  client_secret; 401 otherwise, as Stripe answers.
- CORS: preflights are answered and pages on any origin may call the API with fetch.
- the pages of each module: the Stripe.js double and the 3-D Secure page (stripe_js), receipts
  (payment_intents), Connect onboarding (connect).

Test hooks (a secret key; `/_sandbox/...`), each documented in its module: deliveries
(events: hold, release, drop, redeliver, list), `/_config/webhooks/{id}` (register an
endpoint), refunds failing (refunds), the card account updater (payment_methods), pending
funds made available (balance), account requirements, expired account links and transfer
failures (connect); and here, the API's latency (`/_sandbox/latency`, below).

Latency: every API request (`/v1/...`) can be made to wait LATENCY seconds before it is
handled, as Stripe takes 100-300 ms to answer a call (more to confirm a card), so that a
benchmark's callers really wait on "Stripe" (bench/webhook_isolation.py). Off (0) by default.
`--latency SECONDS` sets it at start; `POST /_sandbox/latency` with `seconds` changes it at
any time (`GET`: the current value). Hooks, pages, the Stripe.js double's files and webhook
deliveries are never delayed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from . import (
    balance,
    connect,
    contract,
    core,
    events,
    payment_intents,
    payment_methods,
    refunds,
    setup_intents,
    stripe_js,
)
from .core import StripeError

# Each module's ROUTES (Stripe endpoints of the contract), HOOKS (sandbox-only, secret key)
# and PAGES (for a browser, no key).
MODULES = (payment_methods, payment_intents, setup_intents, refunds, balance, connect, events,
           stripe_js)
IDEMPOTENCY_TTL = 24 * 3600


# --- Front: CORS preflights ----------------------------------------------------------------------


@web.middleware
async def front_middleware(request, handler):
    # Preflights carry no credentials, so they must not reach authentication; the CORS
    # headers themselves are added by cors_headers.
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204)
    return await handler(request)


async def cors_headers(request, response):
    """Let pages on any origin (the portal runs on another loopback port) call the API with
    fetch, as api.stripe.com does."""
    origin = request.headers.get("Origin")
    if origin:
        response.headers.update({
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": ("Authorization, Content-Type, Accept, "
                                             "Idempotency-Key, Stripe-Version, Stripe-Account"),
            "Access-Control-Expose-Headers": "Idempotent-Replayed, Request-Id",
            "Access-Control-Max-Age": "300",
            "Vary": "Origin",
        })


# --- Latency -------------------------------------------------------------------------------------

LATENCY = 0.0  # seconds each /v1/ request waits before it is handled (module docstring)
MAX_LATENCY = 60.0


@web.middleware
async def latency_middleware(request, handler):
    if LATENCY and request.path.startswith("/v1/"):
        await asyncio.sleep(LATENCY)
    return await handler(request)


def latency_hook(seconds=None):
    """POST /_sandbox/latency (sandbox only): each API request waits `seconds` (0 to 60)
    from now on; without `seconds` (and GET), only the current value."""
    global LATENCY
    if seconds is not None:
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not 0 <= value <= MAX_LATENCY:  # NaN fails both
            raise core.invalid_param(f"seconds must be a number from 0 to {MAX_LATENCY:g}",
                                     param="seconds")
        LATENCY = value
    return {"object": "sandbox.latency", "seconds": LATENCY}


# --- Idempotency ---------------------------------------------------------------------------------


@dataclass
class SavedResponse:
    created: float
    path: str
    params: dict
    status: int | None = None  # None while the first request is running
    body: bytes = b""
    headers: dict | None = None


# (API key, Stripe-Account, Idempotency-Key) -> the first response, oldest first.
saved_responses: dict[tuple, SavedResponse] = {}


def idempotency_error(status, message):
    return StripeError(status, "idempotency_error", message).response()


def endpoint_ran(request, response):
    """Stripe saves a result once the endpoint starts executing, a refusal included (a
    transfer refused for lack of funds is refused again under that key for 24 h): not for
    requests refused by validation of their parameters, authentication or conflicts."""
    status = response.status
    if status in (409, 429):  # a conflict, a rate limit: the endpoint did not run
        return False
    return status < 400 or status == 402 or status >= 500 or request.get(KEEP, False)


KEEP = web.RequestKey("keep_refusal", bool)


@web.middleware
async def idempotency_middleware(request, handler):
    idempotency_key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not idempotency_key or not request.path.startswith("/v1/"):
        return await handler(request)
    params = await core.request_params(request)
    key = core.api_key(request, params)
    if not key:
        return await handler(request)  # refused later as unauthenticated
    if len(idempotency_key) > 255:
        return idempotency_error(
            400, "Keys for idempotent requests can be no longer than 255 characters.")
    now = time.monotonic()
    while saved_responses:
        oldest_slot, oldest = next(iter(saved_responses.items()))
        if now - oldest.created < IDEMPOTENCY_TTL:
            break
        del saved_responses[oldest_slot]

    slot = (key, request.headers.get("Stripe-Account"), idempotency_key)
    saved = saved_responses.get(slot)
    try_other_key = (f"Try using a key other than '{idempotency_key}' if you meant to "
                     "execute a different request.")
    if saved is not None:
        if saved.path != request.path:
            return idempotency_error(
                400, "Keys for idempotent requests can only be used for the same endpoint "
                f"they were first used for ('{saved.path}' vs '{request.path}'). "
                + try_other_key)
        if saved.params != params:
            return idempotency_error(
                400, "Keys for idempotent requests can only be used with the same parameters "
                "they were first used with. " + try_other_key)
        if saved.status is None:
            return idempotency_error(
                409, "There is currently another in-progress request using this Idempotent "
                "Key (that probably means you submitted twice, and the other request is still "
                f"going through): {idempotency_key}. Please try again later.")
        return web.Response(status=saved.status, body=saved.body,
                            content_type="application/json", charset="utf-8",
                            headers={**(saved.headers or {}), "Idempotent-Replayed": "true"})

    saved = saved_responses[slot] = SavedResponse(now, request.path, params)
    try:
        response = await handler(request)
    except BaseException:
        del saved_responses[slot]
        raise
    if isinstance(response, web.Response) and endpoint_ran(request, response):
        saved.status, saved.body = response.status, response.body
        saved.headers = {k: v for k, v in response.headers.items()
                         if k.lower() == "stripe-should-retry"}
    else:
        del saved_responses[slot]
    return response


# --- Errors and authentication -------------------------------------------------------------------


@web.middleware
async def error_middleware(request, handler):
    try:
        return await handler(request)
    except StripeError as error:
        core.check_answer({"error": error.body}, f"error answer to {request.method} "
                          f"{request.path}", error=True)
        request[KEEP] = request.get(core.RAN, False) and not error.validation
        return error.response()


NO_KEY = ("You did not provide an API key. You need to provide your API key in the "
          "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
          "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or "
          "we can help at https://support.stripe.com/.")


@web.middleware
async def auth_middleware(request, handler):
    """A secret key for the API and the test hooks; what Stripe.js may do with a publishable
    key; nothing for the pages a browser opens."""
    if not request.path.startswith(("/v1/", "/_sandbox/")):
        return await handler(request)
    params = await core.request_params(request)
    key = core.api_key(request, params)
    if not key:
        raise StripeError(401, "invalid_request_error", NO_KEY)
    if key.startswith("pk_") and request.path.startswith("/v1/"):
        stripe_js.publishable_key_allows(request.method, request.path,
                                         params.get("client_secret"))
    elif not key.startswith("sk_") or len(key) <= 8:
        raise StripeError(
            401, "invalid_request_error",
            f"Invalid API Key provided: {key[:8]}{'*' * max(len(key) - 12, 0)}{key[-4:]}"
            if key.startswith("pk_") else f"Invalid API Key provided: {key}")
    return await handler(request)


# --- The app -------------------------------------------------------------------------------------


def build_app() -> web.Application:
    """The sandbox: every module's routes, each Stripe endpoint checked by the contract."""
    app = web.Application(middlewares=[front_middleware, latency_middleware,
                                       idempotency_middleware, error_middleware,
                                       auth_middleware])
    app.on_response_prepare.append(cors_headers)
    for module in MODULES:
        for method, path, handler in getattr(module, "ROUTES", ()):
            if (method, path) not in contract.ENDPOINT_BY_ROUTE:
                raise RuntimeError(f"{method} {path} ({module.__name__}) is not in the "
                                   "contract's table (stripe_sandbox/contract.py ENDPOINTS)")
            app.router.add_route(method, path, core.api(handler, route=f"{method} {path}"))
        for method, path, handler in getattr(module, "HOOKS", ()):
            app.router.add_route(method, path, core.api(handler))
        for method, path, handler in getattr(module, "PAGES", ()):
            app.router.add_route(method, path, handler)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/_sandbox/latency", core.api(latency_hook))
    return app


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m stripe_sandbox",
                                     description="Offline Stripe API for the portal.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--webhook-url", help="where to send signed webhook events")
    parser.add_argument("--webhook-secret", help="their signing secret")
    parser.add_argument("--connect-webhook-secret",
                        help="signing secret of a Connect endpoint at --webhook-url: events "
                        "of connected accounts go there (without it, nowhere)")

    def seconds(name, default, text):
        parser.add_argument(f"--{name}", type=float, default=default, metavar="SECONDS",
                            help=f"{text} (default {default:g})")

    seconds("refund-delay", refunds.REFUND_DELAY,
            "how long refunds of the test cards 4000000000007726 (pending, then succeeded) "
            "and 4000000000005126 (succeeded, then failed) take to change")
    seconds("funds-delay", balance.FUNDS_DELAY,
            "how long a charge's funds stay pending before they are available for transfers "
            "(4000000000000077: at once)")
    seconds("webhook-delay", events.WEBHOOK_DELAY,
            "how long after an event its first delivery is attempted")
    seconds("latency", 0.0,
            "how long every API request (/v1/...) waits before it is answered, as Stripe's "
            "own time to answer; POST /_sandbox/latency changes it later")
    parser.add_argument("--webhook-retries", type=int, default=events.WEBHOOK_RETRIES,
                        metavar="N", help="how many times a failed delivery (not 2xx, or no "
                        f"answer) is retried (default {events.WEBHOOK_RETRIES})")
    seconds("webhook-retry-delay", events.WEBHOOK_RETRY_DELAY,
            "wait before the first retry, doubled before each next one")
    parser.add_argument("--log-level", type=str.upper, default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                        help="INFO (the default) logs every webhook delivery; WARNING only "
                        "what goes wrong, such as contract violations (`make run`'s default)")
    args = parser.parse_args(argv)
    for option in ("refund_delay", "funds_delay", "webhook_delay", "webhook_retries",
                   "webhook_retry_delay", "latency"):
        if getattr(args, option) < 0:
            parser.error(f"--{option.replace('_', '-')} must not be negative")
    if args.latency > MAX_LATENCY:
        parser.error(f"--latency must be at most {MAX_LATENCY:g}")
    global LATENCY
    LATENCY = args.latency
    refunds.REFUND_DELAY = args.refund_delay
    balance.FUNDS_DELAY = args.funds_delay
    events.WEBHOOK_DELAY = args.webhook_delay
    events.WEBHOOK_RETRIES = args.webhook_retries
    events.WEBHOOK_RETRY_DELAY = args.webhook_retry_delay
    if bool(args.webhook_url) != bool(args.webhook_secret):
        parser.error("--webhook-url and --webhook-secret go together")
    if args.connect_webhook_secret and not args.webhook_url:
        parser.error("--connect-webhook-secret needs --webhook-url")
    if args.webhook_url:
        if not args.webhook_url.startswith(("http://", "https://")):
            parser.error("--webhook-url must be an http(s) URL")
        events.register("cli", args.webhook_url, args.webhook_secret)
        if args.connect_webhook_secret:
            events.register("cli-connect", args.webhook_url, args.connect_webhook_secret,
                            connect=True)

    host = f"[{args.host}]" if ":" in args.host else args.host
    core.PUBLIC_URL = f"http://{host}:{args.port}"
    # Deliveries (INFO) and contract violations (ERROR) are logged. Requests are not: query
    # strings carry client secrets.
    logging.basicConfig(level=args.log_level, format="%(message)s")
    web.run_app(build_app(), host=args.host, port=args.port, access_log=None,
                shutdown_timeout=1,
                print=lambda _: print("Stripe sandbox listening on " + core.PUBLIC_URL,
                                      flush=True))
