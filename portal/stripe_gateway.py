"""The only module that imports ``stripe``: every call to Stripe goes through here.

It hands back small typed results instead of Stripe objects, so the rest of the portal never
depends on the SDK's shapes, and it always passes an idempotency key on creates, so a retry
or a double click never makes a second object. Offline the same code talks to the Stripe
sandbox (``STRIPE_API_BASE``); nothing else knows the difference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import stripe
from flask import current_app

from .errors import DomainError, Unavailable

SignatureError = stripe.SignatureVerificationError
# The API version every request sends (the pinned SDK's); webhook endpoints are set to it too.
API_VERSION: str = stripe.api_version
# At DEBUG the SDK logs whole response bodies, client secrets included: never below INFO.
logging.getLogger("stripe").setLevel(logging.INFO)


class GatewayError(DomainError):
    """Stripe refused or could not be reached; ``code``/``message`` are safe to show.

    ``retryable`` (unreachable, rate limited, a 5xx, an idempotency key in use): an outage,
    answered 503 with Retry-After and code ``processor_unavailable`` by
    errors.handle_domain_error, with a message of ours (the SDK's text names hosts and ports:
    it stays in ``str(exc)``, for the logs). Otherwise Stripe refused the request: 400 with
    Stripe's code and message. ``stripe_status``/``stripe_code``: what Stripe answered."""

    UNREACHABLE = "The payment processor could not be reached; please try again in a moment."

    def __init__(self, message: str, *, code: str | None = None, decline_code: str | None = None,
                 stripe_status: int | None = None, retryable: bool = False):
        super().__init__(self.UNREACHABLE if retryable else message)
        self.args = (message,)
        self.stripe_code = code
        self.code = "processor_unavailable" if retryable else (code or "invalid_request")
        self.decline_code = decline_code
        self.stripe_status = stripe_status
        self.retryable = retryable
        if retryable:
            self.status, self.retry_after = Unavailable.status, Unavailable.retry_after

    def for_api(self) -> str:
        if self.retryable:
            return "the payment processor could not be reached; please retry"
        return self.message


@dataclass(frozen=True)
class CardDetails:
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    funding: str | None = None
    country: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class Intent:
    """What the portal needs of a PaymentIntent."""

    id: str
    status: str
    amount: int
    currency: str
    client_secret: str | None
    created: int
    metadata: dict
    payment_method_id: str | None = None
    payment_method_type: str | None = None
    card: CardDetails | None = None
    billing_details: dict | None = None
    receipt_url: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    customer: str | None = None
    setup_future_usage: str | None = None
    next_action: str | None = None  # e.g. "use_stripe_sdk" (3-D Secure), "redirect_to_url"
    # When Stripe makes the charge's funds available to transfer (its balance transaction's
    # available_on, Unix time); None before the charge is captured.
    funds_available_at: int | None = None
    charge_id: str | None = None  # the latest charge (ch_...; py_... for some methods)


@dataclass(frozen=True)
class Method:
    """What the portal needs of a PaymentMethod: ids and displayable card details."""

    id: str
    type: str
    customer: str | None
    card: CardDetails | None


@dataclass(frozen=True)
class Setup:
    """What the portal needs of a SetupIntent."""

    id: str
    status: str
    customer: str | None
    client_secret: str | None
    payment_method_id: str | None
    failure_message: str | None = None


class _HttpClient(stripe.RequestsClient):
    """The SDK's HTTP client, which also retries a 429 (a rate limit or a ``lock_timeout``).

    The SDK itself retries network errors, 409 (the same idempotency key still in use by a
    concurrent request) and 5xx, with backoff and the same Idempotency-Key, and obeys
    ``Stripe-Should-Retry``; but it retries a 429 only when Stripe says so in that header.
    Other 4xx are never retried. tests/integration/test_gateway_retries.py holds it to that.
    """

    def _should_retry(self, response, api_connection_error, num_retries, max_network_retries):
        if (response is not None and response[1] == 429
                and num_retries < (max_network_retries or 0)
                and (response[2] or {}).get("stripe-should-retry") != "false"):
            return True
        return super()._should_retry(response, api_connection_error, num_retries,
                                     max_network_retries)


def _client() -> stripe.StripeClient:
    app = current_app
    client = app.extensions.get("stripe_client")
    if client is None:
        client = stripe.StripeClient(
            app.config["STRIPE_SECRET_KEY"],
            base_addresses={"api": app.config["STRIPE_API_BASE"]},
            # One retry (after 0.5-1 s): 2 tries of at most 10 s stay well inside gunicorn's
            # request timeout (gunicorn.conf.py). A job that still fails is retried by RQ later
            # (refunds and transfers first adopt what an earlier attempt made at Stripe).
            max_network_retries=1,
            http_client=_HttpClient(timeout=10),
        )
        app.extensions["stripe_client"] = client
    return client


def _error(exc: stripe.StripeError) -> GatewayError:
    err = getattr(exc, "error", None)
    status = getattr(exc, "http_status", None)
    return GatewayError(
        getattr(err, "message", None) or getattr(exc, "user_message", None) or str(exc),
        code=getattr(err, "code", None),
        decline_code=getattr(err, "decline_code", None),
        stripe_status=status,
        # 409: an idempotency key still in use by a concurrent request, or a lock timeout.
        retryable=isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError))
        or (status or 0) >= 500 or status == 409,
    )


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    try:
        value = obj[key]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


def _options(idempotency_key: str, params: dict) -> dict:
    """Request options with the caller's idempotency key, made specific to these parameters:
    a retry of the same request reuses it (Stripe returns the first result), while a request
    whose parameters changed since a lost attempt (a customer who chose a saved card
    meanwhile, a vendor's new e-mail) gets a new one instead of Stripe's 400
    idempotency_error ("Keys for idempotent requests can only be used with the same
    parameters"). For creations that move no money (customers, accounts, unconfirmed intents
    and setup intents: at worst an unused object); refunds and transfers keep the caller's
    exact key, their parameters being fixed by the request or payout they carry out, so
    Stripe's protection against a concurrent or repeated attempt stays whole."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    return {"idempotency_key": f"{idempotency_key}-{digest.hexdigest()[:12]}"}


def _call(method, *args, **kwargs) -> dict:
    """Call the SDK; its errors become GatewayError; the result is plain nested dicts."""
    try:
        return method(*args, **kwargs).to_dict()
    except stripe.StripeError as exc:
        raise _error(exc) from exc


def _listed(method, params: dict) -> list[dict]:
    """Every item of a Stripe list, all pages, as plain dicts."""
    try:
        return [item.to_dict() for item in method(params=params).auto_paging_iter()]
    except stripe.StripeError as exc:
        raise _error(exc) from exc


def _card(src: Any) -> CardDetails | None:
    if src is None:
        return None
    return CardDetails(**{f: _get(src, f) for f in CardDetails.__dataclass_fields__})


def _intent(obj: Any) -> Intent:
    pi = obj if isinstance(obj, dict) else obj.to_dict()  # plain nested dicts from here on
    pm = _get(pi, "payment_method")
    charge = _get(pi, "latest_charge")
    pm_id = pm if isinstance(pm, str) else _get(pm, "id")
    card_src = _get(_get(charge, "payment_method_details"), "card") or _get(pm, "card")
    card = _card(card_src)
    billing = _get(charge, "billing_details") or _get(pm, "billing_details")
    err = _get(pi, "last_payment_error")
    txn = _get(charge, "balance_transaction") if not isinstance(charge, str) else None
    return Intent(
        id=pi["id"],
        status=pi["status"],
        amount=int(pi["amount"]),
        currency=str(pi["currency"]).upper(),
        client_secret=_get(pi, "client_secret"),
        created=int(_get(pi, "created", 0)),
        metadata=_get(pi, "metadata", {}),
        payment_method_id=pm_id,
        payment_method_type=_get(pm, "type") if not isinstance(pm, str) else None,
        card=card,
        billing_details=billing,
        receipt_url=_get(charge, "receipt_url") if not isinstance(charge, str) else None,
        failure_code=_get(err, "decline_code") or _get(err, "code"),
        failure_message=_get(err, "message"),
        customer=_get(pi, "customer") if isinstance(_get(pi, "customer"), str) else None,
        setup_future_usage=_get(pi, "setup_future_usage"),
        next_action=_get(_get(pi, "next_action"), "type"),
        funds_available_at=_get(txn, "available_on") if isinstance(txn, dict) else None,
        charge_id=charge if isinstance(charge, str) else _get(charge, "id"),
    )


# The charge with its balance transaction (when its funds become available: payouts wait
# for them) and the card.
_EXPAND = ["latest_charge.balance_transaction", "payment_method"]


def create_payment_intent(*, amount: int, currency: str, idempotency_key: str,
                          metadata: dict[str, str], customer: str | None = None,
                          payment_method: str | None = None,
                          description: str | None = None) -> Intent:
    """Create a card PaymentIntent; the same idempotency key (and parameters) always returns
    the same intent. Cards only: the portal keeps, shows and refunds cards (brand, last4,
    3-D Secure); a redirect-based method would settle days later through other states.
    Captured synchronously ("automatic"; Stripe's default, automatic_async, leaves the
    charge's balance transaction null when the payment succeeds): the payment then says at
    once when its funds become available, which payouts wait for."""
    params: dict[str, Any] = {
        "amount": amount,
        "currency": currency.lower(),
        "allowed_payment_method_types": ["card"],
        "capture_method": "automatic",
        "metadata": metadata,
        "expand": _EXPAND,
    }
    if description:
        params["description"] = description
    if customer:
        params["customer"] = customer
    if payment_method:
        params["payment_method"] = payment_method
    try:
        pi = _client().v1.payment_intents.create(
            params=params, options=_options(idempotency_key, params)
        )
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return _intent(pi)


def retrieve_payment_intent(intent_id: str) -> Intent:
    """The current state of a PaymentIntent, with its charge and card expanded."""
    try:
        pi = _client().v1.payment_intents.retrieve(intent_id, params={"expand": _EXPAND})
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return _intent(pi)


def update_payment_intent(intent_id: str, **params: Any) -> Intent:
    """Change an unconfirmed PaymentIntent (customer, payment_method, setup_future_usage)."""
    return _intent(_call(_client().v1.payment_intents.update, intent_id,
                         params={**params, "expand": _EXPAND}))


def confirm_payment_intent(intent_id: str, *, payment_method: str, return_url: str | None,
                           idempotency_key: str) -> Intent:
    """Confirm server-side with a payment method; a decline comes back as the failed intent.

    Without ``return_url`` a 3-D Secure challenge comes back as a ``use_stripe_sdk`` next
    action for Stripe.js (``handleNextAction``) on the customer's page."""
    params = {"payment_method": payment_method, "expand": _EXPAND}
    if return_url:
        params["return_url"] = return_url
    try:
        pi = _client().v1.payment_intents.confirm(
            intent_id, params=params, options={"idempotency_key": idempotency_key},
        )
    except stripe.CardError:
        # Stripe answers a decline with 402; the intent now holds the error and its code.
        return retrieve_payment_intent(intent_id)
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return _intent(pi)


def cancel_payment_intent(intent_id: str, *, reason: str, idempotency_key: str) -> Intent:
    """Cancel a PaymentIntent that can no longer be paid (``reason``: Stripe's
    cancellation_reason, e.g. "abandoned", "duplicate"); a held authorization is released.
    Stripe refuses (400 payment_intent_unexpected_state) once it succeeded or was canceled."""
    return _intent(_call(_client().v1.payment_intents.cancel, intent_id,
                         params={"cancellation_reason": reason, "expand": _EXPAND},
                         options={"idempotency_key": idempotency_key}))


def payment_intents_with(key: str, value: str, *, created_from: int,
                         created_to: int) -> list[Intent]:
    """The PaymentIntents created within [created_from, created_to] (Unix time) whose
    metadata ``key`` is ``value``: those made for one of our records whose id was lost.
    A plain list, read page by page (Stripe's list is consistent at once, unlike its Search
    API); the charge and card are not expanded (retrieve the one you keep)."""
    listed = _listed(_client().v1.payment_intents.list,
                     {"created": {"gte": created_from, "lte": created_to}, "limit": 100})
    return [_intent(pi) for pi in listed if (_get(pi, "metadata") or {}).get(key) == value]


# --- Customers and saved payment methods --------------------------------------------------

def create_customer(*, email: str, name: str, metadata: dict[str, str],
                    idempotency_key: str) -> str:
    """A Stripe customer; the same idempotency key (per user) always gives the same one."""
    # Stripe refuses "" for a field it cannot unset (a user without a name).
    params = {k: v for k, v in (("email", email), ("name", name)) if v}
    params["metadata"] = metadata
    return _call(_client().v1.customers.create, params=params,
                 options=_options(idempotency_key, params))["id"]


def set_default_payment_method(customer: str, payment_method: str) -> None:
    """The card Stripe (and our pages) use by default for this customer."""
    _call(_client().v1.customers.update, customer,
          params={"invoice_settings": {"default_payment_method": payment_method}})


def default_payment_method(customer: str) -> str | None:
    """The customer's default card at Stripe (invoice_settings.default_payment_method)."""
    found = _found(_client().v1.customers.retrieve, customer)
    default = _get(_get(found, "invoice_settings"), "default_payment_method")
    return default if isinstance(default, str) or default is None else _get(default, "id")


# What a Stripe object id can be (pm_..., seti_..., acct_...). Anything else (empty, a slash,
# a space: a hostile or broken form) is not asked for: it would change the request's path.
_OBJECT_ID = re.compile(r"[A-Za-z0-9_]{1,255}")


def _found(method, object_id: str) -> dict | None:
    """Retrieve an object; None when Stripe does not know it (or it cannot be an id)."""
    if not _OBJECT_ID.fullmatch(object_id or ""):
        return None
    try:
        return _call(method, object_id)
    except GatewayError as exc:
        if exc.stripe_status == 404 or exc.stripe_code == "resource_missing":
            return None
        raise


def _method(pm: dict) -> Method:
    customer = _get(pm, "customer")
    return Method(id=pm["id"], type=_get(pm, "type", "card"),
                  customer=customer if isinstance(customer, str) else _get(customer, "id"),
                  card=_card(_get(pm, "card")))


def retrieve_payment_method(payment_method: str) -> Method | None:
    """The PaymentMethod as Stripe holds it now; None if Stripe does not know it."""
    found = _found(_client().v1.payment_methods.retrieve, payment_method)
    return _method(found) if found else None


def attach_payment_method(payment_method: str, customer: str) -> Method:
    """Attach to the customer (Stripe may decline the card: GatewayError with its message)."""
    return _method(_call(_client().v1.payment_methods.attach, payment_method,
                         params={"customer": customer}))


def detach_payment_method(payment_method: str) -> None:
    """Remove the card from its customer at Stripe; already detached or gone is fine."""
    try:
        _call(_client().v1.payment_methods.detach, payment_method)
    except GatewayError as exc:
        if exc.stripe_status not in (400, 404):
            raise


def _setup(si: dict) -> Setup:
    pm, customer = _get(si, "payment_method"), _get(si, "customer")
    return Setup(id=si["id"], status=si["status"],
                 customer=customer if isinstance(customer, str) else _get(customer, "id"),
                 client_secret=_get(si, "client_secret"),
                 payment_method_id=pm if isinstance(pm, str) else _get(pm, "id"),
                 failure_message=_get(_get(si, "last_setup_error"), "message"))


def create_setup_intent(*, customer: str, metadata: dict[str, str],
                        idempotency_key: str) -> Setup:
    """A SetupIntent to save a card for later payments (the cards page's Payment Element)."""
    params = {"customer": customer, "allowed_payment_method_types": ["card"],
              "usage": "off_session", "metadata": metadata}
    return _setup(_call(_client().v1.setup_intents.create, params=params,
                        options=_options(idempotency_key, params)))


def retrieve_setup_intent(setup_intent: str) -> Setup | None:
    """The SetupIntent as Stripe holds it now; None if Stripe does not know it."""
    found = _found(_client().v1.setup_intents.retrieve, setup_intent)
    return _setup(found) if found else None


# --- Refunds --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refund:
    """What the portal needs of a Refund."""

    id: str
    status: str  # pending, requires_action, succeeded, failed, canceled
    amount: int
    currency: str
    payment_intent: str | None
    reason: str | None
    failure_reason: str | None
    metadata: dict
    created: int


def _refund(re: dict) -> Refund:
    pi = _get(re, "payment_intent")
    return Refund(id=re["id"], status=re["status"], amount=int(re["amount"]),
                  currency=str(re["currency"]).upper(),
                  payment_intent=pi if isinstance(pi, str) else _get(pi, "id"),
                  reason=_get(re, "reason"), failure_reason=_get(re, "failure_reason"),
                  metadata=_get(re, "metadata", {}), created=int(_get(re, "created", 0)))


def create_refund(*, payment_intent: str, amount: int, reason: str | None,
                  metadata: dict[str, str], idempotency_key: str) -> Refund:
    """Refund part or all of a payment. The idempotency key (the refund request's id) makes a
    retry after a timeout or a crash return the same refund, never a second one."""
    params: dict[str, Any] = {"payment_intent": payment_intent, "amount": amount,
                              "metadata": metadata}
    if reason:
        params["reason"] = reason
    return _refund(_call(_client().v1.refunds.create, params=params,
                         options={"idempotency_key": idempotency_key}))


def refunds_of(payment_intent: str) -> list[Refund]:
    """Every refund of a payment, as Stripe holds them now."""
    return [_refund(r) for r in _listed(_client().v1.refunds.list,
                                        {"payment_intent": payment_intent, "limit": 100})]


# --- Connect: vendors' accounts and transfers -------------------------------------------------

@dataclass(frozen=True)
class Account:
    """What the portal needs of a connected (Express) account."""

    id: str
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    requirements_due: list[str]  # currently due and past due
    disabled_reason: str | None
    # Stripe sends transfers only to an account whose `transfers` capability is active
    # (payouts_enabled is about the account's own payouts to its bank).
    transfers_active: bool = False


def _account(acct: dict) -> Account:
    req = _get(acct, "requirements") or {}
    due = list(dict.fromkeys([*(_get(req, "past_due") or []), *(_get(req, "currently_due") or [])]))
    return Account(id=acct["id"], charges_enabled=bool(_get(acct, "charges_enabled", False)),
                   payouts_enabled=bool(_get(acct, "payouts_enabled", False)),
                   details_submitted=bool(_get(acct, "details_submitted", False)),
                   requirements_due=due, disabled_reason=_get(req, "disabled_reason"),
                   transfers_active=_get(_get(acct, "capabilities"), "transfers") == "active")


# What Stripe calls an Express account, in controller properties (the `type` parameter is
# deprecated): Stripe onboards the vendor and hosts their Express Dashboard; the platform pays
# Stripe's fees and bears negative balances.
EXPRESS = {"fees": {"payer": "application"}, "losses": {"payments": "application"},
           "requirement_collection": "stripe", "stripe_dashboard": {"type": "express"}}


def create_account(*, email: str, metadata: dict[str, str], idempotency_key: str) -> Account:
    """A connected account for a vendor (Express), able to receive transfers."""
    params = {"controller": EXPRESS, "email": email, "metadata": metadata,
              "capabilities": {"transfers": {"requested": True}}}
    return _account(_call(_client().v1.accounts.create, params=params,
                          options=_options(idempotency_key, params)))


def retrieve_account(account: str) -> Account | None:
    found = _found(_client().v1.accounts.retrieve, account)
    return _account(found) if found else None


def onboarding_link(account: str, *, return_url: str, refresh_url: str) -> str:
    """A one-time URL of Stripe's hosted onboarding for the account."""
    return _call(_client().v1.account_links.create, params={
        "account": account, "type": "account_onboarding", "return_url": return_url,
        "refresh_url": refresh_url})["url"]


@dataclass(frozen=True)
class Transfer:
    id: str
    amount: int
    currency: str
    destination: str


def _transfer(tr: dict) -> Transfer:
    dest = _get(tr, "destination")
    return Transfer(id=tr["id"], amount=int(tr["amount"]), currency=str(tr["currency"]).upper(),
                    destination=dest if isinstance(dest, str) else _get(dest, "id"))


def create_transfer(*, amount: int, currency: str, destination: str, transfer_group: str,
                    description: str, idempotency_key: str) -> Transfer:
    """Send a payout to a connected account; the key (the payout id) makes it happen once.
    It needs that much available balance in the currency (payout runs wait for the funds of
    the sales they pay: payouts.services)."""
    params = {"amount": amount, "currency": currency.lower(), "destination": destination,
              "transfer_group": transfer_group, "description": description,
              "metadata": {"payoutId": transfer_group}}
    return _transfer(_call(_client().v1.transfers.create, params=params,
                           options={"idempotency_key": idempotency_key}))


def transfers_in_group(transfer_group: str) -> list[Transfer]:
    """Transfers already made for a payout (idempotency keys expire after 24 h; this does
    not)."""
    return [_transfer(t) for t in _listed(_client().v1.transfers.list,
                                          {"transfer_group": transfer_group, "limit": 10})]


def available_balance() -> dict[str, int]:
    """The platform's available balance by currency (lower case, minor units) as Stripe holds
    it now: what transfers can be paid out of."""
    balance = _call(_client().v1.balance.retrieve)
    return {str(_get(b, "currency")).lower(): int(_get(b, "amount"))
            for b in _get(balance, "available") or []}


@dataclass(frozen=True)
class TransferState:
    id: str
    amount: int
    amount_reversed: int


def retrieve_transfer(transfer_id: str) -> TransferState:
    tr = _call(_client().v1.transfers.retrieve, transfer_id)
    return TransferState(tr["id"], int(tr["amount"]), int(tr.get("amount_reversed") or 0))


@dataclass(frozen=True)
class Reversal:
    id: str
    amount: int
    metadata: dict[str, str]


def _reversal(trr: dict) -> Reversal:
    return Reversal(trr["id"], int(trr["amount"]), dict(_get(trr, "metadata") or {}))


def reverse_transfer(transfer_id: str, *, amount: int, idempotency_key: str,
                     metadata: dict[str, str]) -> Reversal:
    """Take ``amount`` back from a connected account (a partial reversal of the transfer).
    Stripe refuses more than the transfer still holds (400)."""
    return _reversal(_call(_client().v1.transfers.reversals.create, transfer_id,
                           params={"amount": amount, "metadata": metadata},
                           options={"idempotency_key": idempotency_key}))


def reversals_of(transfer_id: str) -> list[Reversal]:
    """The transfer's reversals (to adopt one an earlier attempt made)."""
    return [_reversal(r) for r in _listed(
        lambda params: _client().v1.transfers.reversals.list(transfer_id, params=params),
        {"limit": 100})]


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    api_version: str | None
    created: int
    object_id: str | None
    payload: dict


def verify_webhook(payload: bytes, signature: str | None) -> Event:
    """Check the Stripe-Signature of a raw webhook body (5-minute tolerance) and parse it.

    Raises SignatureError on a bad or stale signature, ValueError on a malformed body.
    """
    # The SDK's own check (HMAC-SHA256 of "t.body", constant-time compare, 5-minute
    # tolerance), then plain json.loads. Not Webhook.construct_event: it also builds a tree of
    # StripeObjects that would only be turned back into dicts here, about 15 % of an intake
    # request's time (bench/webhooks.py, in-process breakdown).
    # Events of connected accounts come to the Connect endpoint, signed with its own secret.
    connect = current_app.config.get("STRIPE_CONNECT_WEBHOOK_SECRET")
    try:
        stripe.WebhookSignature.verify_header(
            payload, signature, current_app.config["STRIPE_WEBHOOK_SECRET"], tolerance=300)
    except SignatureError:
        if not connect:
            raise
        stripe.WebhookSignature.verify_header(payload, signature, connect, tolerance=300)
    # The SDK only refuses old timestamps; one from the future is as suspect.
    stamp = dict(p.split("=", 1) for p in (signature or "").split(",") if "=" in p).get("t", "0")
    if not stamp.isdigit() or int(stamp) > time.time() + 300:
        raise SignatureError("timestamp outside the tolerance zone", signature)
    data = json.loads(payload)
    # As the SDK: a snapshot event (a JSON object), not a thin v2 event notification.
    if not isinstance(data, dict) or data.get("object") == "v2.core.event" \
            or not isinstance(data.get("data", {}), dict):
        raise ValueError("the body is not a Stripe snapshot event")
    return _event(data)


def list_events(since: int, account: str | None = None) -> Iterator[Event]:
    """The events Stripe still holds created at or after ``since`` (Unix time; Stripe keeps
    30 days), newest first as Stripe lists them, fetched a page (100) at a time as they are
    consumed: what `flask events backfill` stores when webhooks were missed. ``account``: those
    of that connected account (Connect events live on it: Stripe-Account)."""
    options = {"stripe_account": account} if account else {}
    try:
        for item in _client().v1.events.list(
                params={"created": {"gte": since}, "limit": 100},
                options=options).auto_paging_iter():
            yield _event(item.to_dict())
    except stripe.StripeError as exc:
        raise _error(exc) from exc


def _event(data: dict) -> Event:
    obj = _get(_get(data, "data"), "object")
    if not isinstance(obj, dict):
        obj = {}
    # A PaymentIntent's client_secret is a credential: it is not kept with the event.
    obj.pop("client_secret", None)
    return Event(
        id=data["id"],
        type=data["type"],
        api_version=data.get("api_version"),
        created=int(data.get("created") or 0),
        object_id=obj.get("id"),
        payload=data,
    )
