"""Changes to localstripe's resources, applied when this module is imported.

Import it before `localstripe.server`: that module registers the routes listed
in `localstripe.resources.extra_apis` as it is imported, so the routes
replaced or added here (PaymentIntent confirm/cancel/_authenticate,
PaymentMethod attach/detach, SetupIntent confirm/cancel/_authenticate, a
customer's payment methods, refund cancel, a charge's refunds) must be in
that list first.

What changes, and why (Stripe behaviour the portal relies on; DESIGN.md §8):
- no pickling of the store to /tmp (slow, and shared by parallel sandboxes);
- `confirm` accepts `payment_method` (localstripe answers 500), starts a new
  attempt after a decline, and checks the status like Stripe does;
- declines are 402 `card_error`s with Stripe's `decline_code`s; a declined
  PaymentIntent returns to `requires_payment_method` with `last_payment_error`;
- 3-D Secure: a real `next_action`, and a failed authentication is reported;
- shapes of the pinned API version: `latest_charge` is an id unless expanded,
  Charges carry `receipt_url`, `payment_method_details`, `billing_details`;
- events localstripe never sends: `payment_intent.created`,
  `.requires_action`, `.processing`, `.canceled`, `.payment_failed` after 3DS,
  `charge.succeeded` (authorized, captured or not) and `charge.failed`
  (declined), before the PaymentIntent's event;
  events can carry `data.previous_attributes` (what an update changed).
  How events are recorded, listed and delivered: see `events`.

Saved cards (localstripe has Customers, attach/detach and a bare SetupIntent,
with none of Stripe's checks or events):
- customers: `invoice_settings` has all its fields and is merged on update;
  `default_payment_method` must be attached to that customer (400 "The
  customer does not have a payment method with the ID ..."), "" unsets it;
  `customer.updated` carries previous_attributes.
- PaymentMethods: attach/detach send `payment_method.attached`/`.detached`
  (detached: object.customer null, previous_attributes.customer); one
  customer per PaymentMethod (400 "... already been attached to a
  customer."); attaching a declined test card is a 402 card_error; a
  detached one cannot be used again; detaching the default clears the
  customer's default. Updates (`POST /v1/payment_methods/{id}`) take only
  card[exp_month], card[exp_year], billing_details, metadata,
  allow_redisplay, on a PaymentMethod saved to a customer, and send
  `payment_method.updated`. Lists (`GET /v1/payment_methods?customer=`,
  `GET /v1/customers/{id}/payment_methods`) are newest first, with
  limit/starting_after/ending_before. `card.fingerprint` is localstripe's:
  the first 16 hex digits of SHA-1(card number), the same for the same number.
  `automatically_update_payment_method` is the card account updater's test
  hook (`payment_method.automatically_updated`; routed in `server`).
- PaymentIntents: a PaymentMethod of another customer (or of a customer, on
  a PaymentIntent without one) is refused like Stripe; updates check the
  status and `setup_future_usage` ("" unsets it); with setup_future_usage
  and a customer, the PaymentMethod is attached once the payment is
  authorized. 4000002500003155 asks for 3-D Secure until set up.
- SetupIntents, rewritten: create (customer, usage, metadata, description,
  payment_method, confirm, return_url, payment_method_data), update, list,
  confirm (declines: 402 and `last_setup_error`; 3-D Secure: a real
  `next_action`), `_authenticate` (as for PaymentIntents; failure:
  `setup_intent_authentication_failure`), cancel; success attaches the
  PaymentMethod to the customer. Events `setup_intent.created`,
  `.requires_action`, `.succeeded`, `.setup_failed`, `.canceled`.
  Not modelled: SetupAttempts (`latest_attempt` stays null), mandates.

Refunds (localstripe accepted any amount, even more than the charge and
again after a full refund, took no `reason`, refunded uncaptured and
unpaid PaymentIntents' charges, and sent no event):
- POST /v1/refunds: `payment_intent` and/or `charge`, `amount` (default:
  what is left), `reason` (duplicate, fraudulent, requested_by_customer),
  `metadata`; `refund_application_fee`/`reverse_transfer` are checked and
  ignored, customer-balance refunds (`origin`, `customer`, `currency`) are
  refused. Stripe's errors: amount_too_large ("Refund amount (€30.00) is
  greater than charge amount (€25.99)", or "... than unrefunded amount on
  charge (€15.99)" once partly refunded; param amount),
  charge_already_refunded ("Charge ch_... has already been refunded."),
  "This PaymentIntent (pi_...) does not have a successful charge to
  refund." (not succeeded, including requires_capture), the uncaptured
  charge of a PaymentIntent ("... You must cancel the PaymentIntent ..."),
  amount < 1, unknown objects (resource_missing) and parameters.
- Refunds have the pinned API version's fields (destination_details with
  a pending acquirer reference, failure_reason, failure_balance_transaction,
  pending_reason...); 404s are resource_missing. Charges: amount_refunded
  counts pending and succeeded refunds, `refunded` when all of it is;
  `refunds` only when expanded (`expand[]=refunds`, or
  `latest_charge.refunds` on a PaymentIntent), as since API 2022-11-15;
  GET /v1/charges/{id}/refunds.
- GET /v1/refunds (payment_intent, charge, created, limit, starting_after,
  ending_before), newest first; POST /v1/refunds/{id} takes only metadata;
  POST /v1/refunds/{id}/cancel cancels only `requires_action` refunds, as
  Stripe does, so card refunds are refused.
- Events: `charge.refunded` (the Charge, previous_attributes
  amount_refunded/refunded) and `refund.created` on creation;
  `refund.updated` + `charge.refund.updated` (previous_attributes) on every
  change (metadata, pending to succeeded, failure); `refund.failed`.
- Later (REFUND_DELAY, 1 s; `--refund-delay`): refunds of 4000000000007726
  begin `pending` (pending_reason processing) and then succeed; refunds of
  4000000000005126 begin `succeeded` and then fail with
  expired_or_canceled_card. A failed refund gets a failure balance
  transaction and stops counting in the charge's amount_refunded. The test
  hook `fail_refund` (POST /_sandbox/refunds/{id}/fail, routed in `server`)
  fails any pending or succeeded refund that way.

Stripe Connect (accounts, account links and the onboarding page, transfers,
reversals, `account.updated`, `transfer.*`) is not a patch: localstripe has
none of it. It lives in `connect`, which builds on the helpers here (Page,
StripeError and Stripe's error messages, merge_metadata,
previous_attributes, emit...) and is routed by `server`.
"""

import asyncio
import time
from urllib.parse import urlencode

from localstripe.errors import UserError
from localstripe.resources import (
    BalanceTransaction,
    Charge,
    Customer,
    Event,
    Invoice,
    PaymentIntent,
    PaymentMethod,
    Refund,
    SetupIntent,
    Store,
    StripeObject,
    extra_apis,
    fingerprint,
    random_id,
    store,
    try_convert_to_bool,
    try_convert_to_int,
)
from localstripe.webhooks import schedule_webhook

# The API version stripe==16.1.0 pins (`stripe.api_version`): the shapes below
# follow it and events say so.
API_VERSION = "2026-10-28.endive"

# Where the sandbox is reachable; server.main() sets it. Used in the URLs it
# hands out (receipts, the 3-D Secure page).
PUBLIC_URL = "http://127.0.0.1:8420"

# localstripe pickles the whole store to /tmp/localstripe.pickle on every
# write (in Store.__setitem__ and after every POST): a cost growing with the
# store, and a file parallel sandboxes would share. Keep it in memory only.
Store.dump_to_disk = lambda self: None
Store.try_load_from_disk = lambda self: None


class StripeError(UserError):
    """An error body of any Stripe `type` (UserError always says
    invalid_request_error), with `doc_url` when there is a `code`."""

    def __init__(self, status, type, message, **fields):
        if fields.get("code"):
            fields["doc_url"] = doc_url(fields["code"])
        super().__init__(status, message, fields)
        self.body["error"]["type"] = type


def doc_url(code):
    return "https://docs.stripe.com/error-codes/" + code.replace("_", "-")


# --- Cards --------------------------------------------------------------

GENERIC_DECLINE = ("card_declined", "generic_decline", "Your card was declined.")
ALLOW_REDISPLAY = ("always", "limited", "unspecified")

# Test cards that Stripe declines when charged: (code, decline_code, message).
# docs.stripe.com/testing#declined-payments; the last two decline after 3DS.
DECLINED_CARDS = {
    "4000000000000002": GENERIC_DECLINE,
    "4000000000000341": GENERIC_DECLINE,
    "4000000000009995": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "4000000000009987": ("card_declined", "lost_card", "Your card was declined."),
    "4000000000009979": ("card_declined", "stolen_card", "Your card was declined."),
    "4100000000000019": ("card_declined", "fraudulent", "Your card was declined."),
    "4000000000000069": ("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": (
        "incorrect_cvc",
        "incorrect_cvc",
        "Your card's security code is incorrect.",
    ),
    "4000000000000119": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    "4000008260003178": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "4000008400001629": GENERIC_DECLINE,
}

# Stripe's international test cards are 400000 + ISO 3166 numeric country.
CARD_COUNTRIES = {
    "036": "AU",
    "076": "BR",
    "124": "CA",
    "250": "FR",
    "276": "DE",
    "380": "IT",
    "392": "JP",
    "528": "NL",
    "724": "ES",
    "826": "GB",
    "840": "US",
}
CARD_FUNDING = {
    "4000056655665556": "debit",
    "5200828282828210": "debit",
    "5105105105105100": "prepaid",
}


def card_brand(number):
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("51", "52", "53", "54", "55") or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number[:2] in ("34", "37"):
        return "amex"
    if number.startswith(("6011", "65", "644", "645", "646", "647", "648", "649")):
        return "discover"
    if number[:2] in ("30", "36", "38", "39"):
        return "diners"
    return {"35": "jcb", "62": "unionpay"}.get(number[:2], "unknown")


def luhn_valid(number):
    digits = [int(d) for d in reversed(number)]
    return sum(digits[0::2] + [sum(divmod(2 * d, 10)) for d in digits[1::2]]) % 10 == 0


def billing_details_shape(details):
    """Stripe always returns every billing_details field, null if unknown."""
    details = details if isinstance(details, dict) else {}
    address = details.get("address")
    address = address if isinstance(address, dict) else {}
    return {
        "address": {
            key: address.get(key)
            for key in ("city", "country", "line1", "line2", "postal_code", "state")
        },
        "email": details.get("email"),
        "name": details.get("name"),
        "phone": details.get("phone"),
    }


_pm_init = PaymentMethod.__init__


def _pm_init_patched(
    self, type=None, card=None, billing_details=None, allow_redisplay=None, **data
):
    if allow_redisplay is not None and allow_redisplay not in ALLOW_REDISPLAY:
        raise invalid_value("allow_redisplay", allow_redisplay, ALLOW_REDISPLAY)
    number = card.get("number") if isinstance(card, dict) else None
    if isinstance(number, str) and number.isdigit() and not luhn_valid(number):
        raise StripeError(
            402,
            "card_error",
            "Your card number is incorrect.",
            code="incorrect_number",
            param="number",
        )
    _pm_init(self, type=type, card=card, billing_details=billing_details, **data)
    self.billing_details = billing_details_shape(billing_details)
    self.allow_redisplay = allow_redisplay or "unspecified"
    self._detached = False  # detached PaymentMethods cannot be used again
    self._set_up = False  # authenticated for future use (SetupIntent, setup_future_usage)
    if self.type == "card":
        # localstripe says every card is a French credit Visa.
        brand = card_brand(number)
        self.card.update(
            brand=brand,
            display_brand=brand,
            country=CARD_COUNTRIES.get(number[6:9], "US") if number.startswith("400000") else "US",
            funding=CARD_FUNDING.get(number, "credit"),
            networks={"available": [brand], "preferred": None},
            checks={
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": None,
            },
            generated_from=None,
            regulated_status="unregulated",
            wallet=None,
        )


PaymentMethod.__init__ = _pm_init_patched

_pm_charging_is_declined = PaymentMethod._charging_is_declined


def _charging_is_declined(self):
    return getattr(self, "_card_number", None) in DECLINED_CARDS or _pm_charging_is_declined(self)


PaymentMethod._charging_is_declined = _charging_is_declined


# --- Charges ------------------------------------------------------------

ZERO_DECIMAL_CURRENCIES = set(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)


def _charge_payment_method(charge):
    try:
        return PaymentMethod._api_retrieve(charge.payment_method)
    except UserError:  # deleted since
        return None


def _set_auth_failure(self):
    number = getattr(_charge_payment_method(self), "_card_number", None)
    self.failure_code, self._decline_code, self.failure_message = DECLINED_CARDS.get(
        number, GENERIC_DECLINE
    )
    self.status = "failed"


def card_error(charge, **fields):
    return StripeError(
        402,
        "card_error",
        charge.failure_message,
        code=charge.failure_code,
        decline_code=getattr(charge, "_decline_code", None),
        charge=charge.id,
        **fields,
    )


def _raise_failure(self):
    raise card_error(self)


def _payment_method_details(self):
    pm = _charge_payment_method(self)
    if pm is None:
        return None
    if not isinstance(getattr(pm, "card", None), dict):
        return {"type": pm.type}
    card = pm.card
    return {
        "type": "card",
        "card": {
            "brand": card["brand"],
            "network": card["brand"],
            "country": card["country"],
            "funding": card["funding"],
            "exp_month": card["exp_month"],
            "exp_year": card["exp_year"],
            "last4": card["last4"],
            "fingerprint": card["fingerprint"],
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "fail" if self.failure_code == "incorrect_cvc" else "pass",
            },
            "three_d_secure": None,
            "wallet": None,
        },
    }


def _outcome(self):
    if self.status == "failed":
        return {
            "network_status": "declined_by_network",
            "reason": getattr(self, "_decline_code", None),
            "risk_level": "normal",
            "type": "issuer_declined",
            "seller_message": "The bank did not return any further details with this decline.",
        }
    return {
        "network_status": "approved_by_network",
        "reason": None,
        "risk_level": "normal",
        "type": "authorized",
        "seller_message": "Payment complete.",
    }


Charge._set_auth_failure = _set_auth_failure
Charge._raise_failure = _raise_failure
Charge.payment_method_details = property(_payment_method_details)
Charge.billing_details = property(
    lambda self: billing_details_shape(
        getattr(_charge_payment_method(self), "billing_details", None)
    )
)
Charge.receipt_url = property(lambda self: f"{PUBLIC_URL}/receipts/{self.id}")
Charge.amount_captured = property(lambda self: self.amount if self.captured and self.paid else 0)
Charge.outcome = property(_outcome)


# --- PaymentIntents -----------------------------------------------------

AUTHENTICATION_FAILURE = (
    "The provided PaymentMethod has failed authentication. You can provide "
    "payment_method_data or a new PaymentMethod to attempt to fulfill this "
    "PaymentIntent again."
)
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
)
SUCCESSFUL = ("succeeded", "processing", "requires_capture")
# Create/confirm parameters localstripe rejects but Stripe only stores.
STORED_PARAMS = (
    "description",
    "receipt_email",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_group",
    "shipping",
    "setup_future_usage",
    "automatic_payment_methods",
)

_pi_init = PaymentIntent.__init__


def _pi_init_patched(
    self,
    payment_method=None,
    payment_method_types=None,
    return_url=None,
    use_stripe_sdk=None,
    **data,
):
    stored = {key: data.pop(key, None) for key in STORED_PARAMS}
    stored["setup_future_usage"] = setup_future_usage_param(stored["setup_future_usage"])
    if isinstance(stored["automatic_payment_methods"], dict):
        apm = stored["automatic_payment_methods"]
        apm["enabled"] = try_convert_to_bool(apm.get("enabled"))
        apm.setdefault("allow_redirects", "always")
    if isinstance(payment_method, str):
        # Test ids such as pm_card_visa become a new PaymentMethod, as in
        # Stripe; localstripe would build another one at each lookup.
        pm = PaymentMethod._api_retrieve(payment_method)
        customer = data.get("customer")
        check_payment_method_usable(pm, customer if isinstance(customer, str) else None, "pi")
        payment_method = pm.id
    _pi_init(self, payment_method=payment_method, payment_method_types=payment_method_types, **data)
    vars(self).update(stored)
    self.payment_method_types = payment_method_types or ["card"]
    self.confirmation_method = "automatic"
    self.canceled_at = self.cancellation_reason = None
    self._return_url = return_url
    self._use_stripe_sdk = try_convert_to_bool(use_stripe_sdk) is True
    self._failed_payment_method = None
    schedule_webhook(Event("payment_intent.created", self))


def _pi_export(self, expand=None):
    # Since API 2022-11-15 latest_charge is an id unless expanded; expanded,
    # it is exported with its own expansions (latest_charge.refunds).
    paths = expand if isinstance(expand, list) else None
    charge_paths = [
        p for p in paths or () if isinstance(p, str) and p.split(".")[0] == "latest_charge"
    ]
    if paths is not None:
        expand = [p for p in paths if p not in charge_paths]
    obj = StripeObject._export(self, expand=expand)
    if charge_paths and self.latest_charge is not None:
        obj["latest_charge"] = self.latest_charge._export(
            expand=[p.split(".", 1)[1] for p in charge_paths if "." in p]
        )
    elif isinstance(obj.get("latest_charge"), dict):
        obj["latest_charge"] = obj["latest_charge"]["id"]
    return obj


def _last_payment_error(self):
    charge = self.latest_charge
    if self._authentication_failed:
        error = {
            "code": "payment_intent_authentication_failure",
            "message": AUTHENTICATION_FAILURE,
            "type": "invalid_request_error",
        }
    elif charge is not None and charge.status == "failed":
        error = {
            "charge": charge.id,
            "code": charge.failure_code,
            "decline_code": getattr(charge, "_decline_code", None),
            "message": charge.failure_message,
            "type": "card_error",
        }
    else:
        return None
    error["doc_url"] = doc_url(error["code"])
    pm = getattr(self, "_failed_payment_method", None) or self.payment_method
    error["payment_method"] = PaymentMethod._api_retrieve(pm)._export() if pm else None
    return error


def _report_failure(self):
    """The charge was declined while confirming: Stripe answers 402 with the
    PaymentIntent, which gives up its payment method."""
    self._failed_payment_method, self.payment_method = self.payment_method, None
    schedule_webhook(Event("payment_intent.payment_failed", self))
    if self.invoice:
        Invoice._api_retrieve(self.invoice)._on_payment_failure_now()
    raise card_error(
        self.latest_charge,
        payment_intent=self._export(),
        payment_method=self.last_payment_error["payment_method"],
    )


def three_d_secure_page_url(intent):
    """The sandbox's 3-D Secure page for a PaymentIntent or a SetupIntent."""
    return f"{PUBLIC_URL}/3ds/{intent.id}?" + urlencode({"client_secret": intent.client_secret})


def three_d_secure_action(intent):
    """As Stripe: a redirect when confirmed with a return_url (unless by
    Stripe.js, use_stripe_sdk), else an action for Stripe.js to handle."""
    url = three_d_secure_page_url(intent)
    if intent._return_url and not intent._use_stripe_sdk:
        return {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": url, "return_url": intent._return_url},
        }
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url},
    }


_pi_confirm = PaymentIntent._confirm


def _confirm(self, on_failure_now):
    _pi_confirm(self, on_failure_now)
    if self.next_action:
        self.next_action = three_d_secure_action(self)
        schedule_webhook(Event("payment_intent.requires_action", self))
    elif self.status == "processing":
        schedule_webhook(Event("payment_intent.processing", self))


PaymentIntent.__init__ = _pi_init_patched
PaymentIntent._export = _pi_export
PaymentIntent._report_failure = _report_failure
PaymentIntent._confirm = _confirm
PaymentIntent.last_payment_error = property(_last_payment_error)
PaymentIntent.amount_received = property(
    lambda self: self.latest_charge.amount if self.status == "succeeded" else 0
)
del PaymentIntent.charges  # removed from the API in 2022-11-15


def unexpected_state(pi, action, allowed):
    return StripeError(
        400,
        "invalid_request_error",
        f"You cannot {action} this PaymentIntent because it has a status of "
        f"{pi.status}. Only a PaymentIntent with one of the following "
        f"statuses may be {action}ed: {', '.join(allowed)}.",
        code="payment_intent_unexpected_state",
        payment_intent=pi._export(),
    )


INTENT_NAMES = {"payment_intent": "PaymentIntent", "setup_intent": "SetupIntent"}


def check_client_secret(intent, client_secret):
    """For a PaymentIntent or a SetupIntent."""
    if client_secret != intent.client_secret:
        raise StripeError(
            400,
            "invalid_request_error",
            "The client_secret provided does not match the client_secret "
            f"associated with the {INTENT_NAMES[intent.object]}.",
            param="client_secret",
        )


def confirm_payment_intent(
    id,
    payment_method=None,
    payment_method_data=None,
    client_secret=None,
    return_url=None,
    use_stripe_sdk=None,
    **params,
):
    """POST /v1/payment_intents/{id}/confirm, from a server (secret key) or
    from Stripe.js (publishable key and client_secret)."""
    pi = PaymentIntent._api_retrieve(id)
    if client_secret is not None:
        check_client_secret(pi, client_secret)
    unexpected = set(params) - set(STORED_PARAMS)
    if unexpected:
        raise UserError(400, "Unexpected " + ", ".join(sorted(unexpected)))
    if pi.status not in CONFIRMABLE:
        raise unexpected_state(pi, "confirm", CONFIRMABLE)
    if isinstance(payment_method_data, dict):
        payment_method = PaymentMethod(**payment_method_data).id
    if payment_method is None and pi.payment_method:
        payment_method = pi.payment_method
    if payment_method is not None:
        pm = PaymentMethod._api_retrieve(payment_method)
        check_payment_method_usable(pm, pi.customer, "pi", intent=pi)
        pi.payment_method = pm.id
    else:
        raise StripeError(
            400,
            "invalid_request_error",
            "You cannot confirm this PaymentIntent because it's missing a "
            "payment method. Update the PaymentIntent with a payment method "
            "and then confirm it again.",
            code="payment_intent_unexpected_state",
            payment_intent=pi._export(),
        )
    vars(pi).update(params)
    if return_url is not None:
        pi._return_url = return_url
    pi._use_stripe_sdk = try_convert_to_bool(use_stripe_sdk) is True
    # A new attempt. localstripe derives the status from latest_charge, so a
    # declined charge must go (it stays retrievable by its id).
    pi.latest_charge = pi.next_action = pi._failed_payment_method = None
    pi._confirm(on_failure_now=pi._report_failure)
    return pi


def authenticate_payment_intent(id, **params):
    """localstripe's 3-D Secure stand-in (POST .../_authenticate with
    client_secret and success=true|false), reporting failures like Stripe."""
    pi = PaymentIntent._api_retrieve(id)
    payment_method = pi.payment_method
    try:
        PaymentIntent._api_authenticate(id, **params)
    except StripeError as e:
        if e.code != 402:  # UserError.code: the HTTP status
            raise
        return pi  # authenticated, then declined: see last_payment_error
    if pi._authentication_failed:
        pi._failed_payment_method = payment_method
        schedule_webhook(Event("payment_intent.payment_failed", pi))
    return pi


def cancel_payment_intent(id, cancellation_reason=None, **params):
    pi = PaymentIntent._api_retrieve(id)
    if pi.status not in CANCELABLE:
        raise unexpected_state(pi, "cancel", CANCELABLE)
    PaymentIntent._api_cancel(id, **params)
    pi.canceled_at = int(time.time())
    pi.cancellation_reason = cancellation_reason
    schedule_webhook(Event("payment_intent.canceled", pi))
    return pi


def _replace_route(method, url, func):
    for i, (route_method, route_url, _) in enumerate(extra_apis):
        if (route_method, route_url) == (method, url):
            extra_apis[i] = (method, url, func)
            return
    raise LookupError(f"localstripe has no route {method} {url}")


_replace_route("POST", "/v1/payment_intents/{id}/confirm", confirm_payment_intent)
_replace_route("POST", "/v1/payment_intents/{id}/cancel", cancel_payment_intent)
_replace_route("POST", "/v1/payment_intents/{id}/_authenticate", authenticate_payment_intent)


# --- Shared helpers for saved cards -------------------------------------


def emit(type, obj, previous_attributes=None):
    """Schedule a signed webhook, like localstripe's own events."""
    schedule_webhook(Event(type, obj, previous_attributes=previous_attributes))


def invalid_request(message, **fields):
    return StripeError(400, "invalid_request_error", message, **fields)


def unknown_parameters(params, prefix=""):
    """Stripe's answer to parameters an endpoint does not take."""
    if params:
        name = sorted(params)[0]
        name = f"{prefix}[{name}]" if prefix else name
        return invalid_request(
            f"Received unknown parameter: {name}", code="parameter_unknown", param=name
        )
    return None


def reject_unknown(params, prefix=""):
    error = unknown_parameters(params, prefix)
    if error:
        raise error


def invalid_value(param, value, allowed):
    return invalid_request(
        f"Invalid {param}: must be one of {', '.join(allowed)}",
        code="parameter_invalid_empty" if value == "" else "parameter_invalid_string",
        param=param,
    )


def missing_parameter(param):
    return invalid_request(
        f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def no_such(kind, id, param):
    return invalid_request(f"No such {kind}: '{id}'", code="resource_missing", param=param)


def retrieve_customer(id, param="customer"):
    if not isinstance(id, str) or not id:
        raise missing_parameter(param)
    try:
        return Customer._api_retrieve(id)
    except UserError:
        raise no_such("customer", id, param) from None


def retrieve_payment_method(id, param="payment_method"):
    """A PaymentMethod named in a parameter (test ids like pm_card_visa
    become a new one, as in Stripe)."""
    if not isinstance(id, str) or not id:
        raise missing_parameter(param)
    try:
        return PaymentMethod._api_retrieve(id)
    except UserError:
        raise no_such("PaymentMethod", id, param) from None


def merge_metadata(current, update):
    """Stripe merges metadata keys; an empty string deletes one."""
    if update in (None, ""):
        return {} if update == "" else dict(current or {})
    if not isinstance(update, dict):
        raise invalid_request("Invalid object", code="parameter_invalid_object", param="metadata")
    merged = dict(current or {})
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def previous_attributes(obj, changes):
    """The `data.previous_attributes` of an *.updated event: the old values
    of what `changes` (attribute -> new value) modifies."""
    previous = {}
    for key, new in changes.items():
        old = getattr(obj, key, None)
        if isinstance(old, dict) and isinstance(new, dict):
            changed = {k: old.get(k) for k, v in new.items() if old.get(k) != v}
            if changed:
                previous[key] = changed
        elif old != new:
            previous[key] = old
    return previous


def setup_future_usage_param(value):
    if value in (None, ""):
        return None
    if value not in ("off_session", "on_session"):
        raise invalid_value("setup_future_usage", value, ("off_session", "on_session"))
    return value


class Page:
    """A Stripe list, newest first, with limit/starting_after/ending_before."""

    def __init__(self, url, items, limit=None, starting_after=None, ending_before=None):
        limit = 10 if limit is None else try_convert_to_int(limit)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise invalid_request(
                "Invalid integer: limit must be between 1 and 100",
                code="parameter_invalid_integer",
                param="limit",
            )
        if starting_after is not None and ending_before is not None:
            raise invalid_request(
                "You may only specify one of these parameters: ending_before, starting_after."
            )
        ids = [item.id for item in items]
        cursor = starting_after if starting_after is not None else ending_before
        if cursor is not None and cursor not in ids:
            param = "starting_after" if starting_after is not None else "ending_before"
            raise no_such(items[0].object if items else "object", cursor, param)
        if starting_after is not None:
            start = ids.index(starting_after) + 1
            self._items = items[start : start + limit]
            self.has_more = len(items) > start + limit
        elif ending_before is not None:
            end = ids.index(ending_before)
            self._items = items[max(0, end - limit) : end]
            self.has_more = end > limit
        else:
            self._items = items[:limit]
            self.has_more = len(items) > limit
        self.url = url

    def _export(self, expand=None):
        item_expand = [path[5:] for path in expand or () if path.startswith("data.")]
        return {
            "object": "list",
            "data": [item._export(expand=item_expand) for item in self._items],
            "has_more": self.has_more,
            "url": self.url,
        }


def newest_first(cls, keep):
    """Objects of a class in the store, newest first (the store keeps
    creation order, finer than `created` seconds)."""
    prefix = cls.object + ":"
    return [obj for key, obj in reversed(store.items()) if key.startswith(prefix) and keep(obj)]


# --- PaymentMethods: ownership, attach, detach, update, lists -----------

PAYMENT_METHOD_REUSED = (
    "The provided PaymentMethod was previously used with a PaymentIntent without "
    "Customer attachment, shared with a connected account without Customer attachment, "
    "or was detached from a Customer. It may not be used again. To use a PaymentMethod "
    "multiple times, you must attach it to a Customer first."
)
ATTACH_AFTER_DETACH = (
    "This PaymentMethod was previously used without being attached to a Customer or "
    "was detached from a Customer, and may not be used again."
)
ALREADY_ATTACHED = "The payment method you provided has already been attached to a customer."
NOT_ATTACHED = (
    "The payment method you provided is not attached to a customer so detachment is impossible."
)
UPDATE_UNATTACHED = "You must save this PaymentMethod to a customer before you can update it."
# Test cards whose errors name a field (docs.stripe.com/testing#declined-payments).
DECLINE_PARAMS = {"expired_card": "exp_month", "incorrect_cvc": "cvc"}
# "Authenticate unless set up": 3-D Secure for one-time payments and for the
# setup itself, not for later payments with the set-up card.
SETUP_ONCE_CARD = "4000002500003155"


def check_payment_method_usable(pm, customer, kind, intent=None):
    """Stripe's rules for using `pm` on a PaymentIntent ("pi") or a
    SetupIntent ("seti") of `customer` (None: no customer). Errors raised
    while confirming carry the intent."""
    fields = {"param": "payment_method"}
    if intent is not None:
        fields[intent.object] = intent._export()
    if getattr(pm, "_detached", False):  # (card_ and src_ ids have none)
        raise invalid_request(PAYMENT_METHOD_REUSED, **fields)
    if pm.customer is None or pm.customer == customer:
        return
    if customer is None:
        if kind == "pi":
            message = (
                f"The `payment_method` parameter supplied {pm.id} belongs to the Customer "
                f"{pm.customer}. Please include the Customer in the `customer` parameter "
                "on the PaymentIntent."
            )
        else:
            message = (
                f"The payment method supplied ({pm.id}) belongs to the Customer "
                f"{pm.customer}. Please include the Customer in the `customer` parameter "
                "on the SetupIntent."
            )
    else:
        message = (
            f"The PaymentMethod {pm.id} does not belong to the Customer you supplied "
            f"{customer}. Please use this PaymentMethod with the Customer that it "
            "belongs to instead."
        )
    raise invalid_request(message, **fields)


def decline_of(pm):
    """(code, decline_code, message) when Stripe declines validating this
    card (attaching it, setting it up), else None."""
    if not pm._attaching_is_declined():
        return None
    return DECLINED_CARDS.get(getattr(pm, "_card_number", None), GENERIC_DECLINE)


def decline_error(decline, **fields):
    code, decline_code, message = decline
    if code in DECLINE_PARAMS:
        fields.setdefault("param", DECLINE_PARAMS[code])
    return StripeError(402, "card_error", message, code=code, decline_code=decline_code, **fields)


def attach(pm, customer_id, verify=True):
    """Attach `pm` to a customer, as Stripe does (payment_method.attached)."""
    if getattr(pm, "_detached", False):
        raise invalid_request(ATTACH_AFTER_DETACH)
    if pm.customer == customer_id:
        return pm
    if pm.customer is not None:
        raise invalid_request(ALREADY_ATTACHED)
    decline = decline_of(pm) if verify else None
    if decline:
        raise decline_error(decline, payment_method=pm._export())
    pm.customer = customer_id
    emit("payment_method.attached", pm)
    return pm


def attach_payment_method(id, customer=None, **params):
    """POST /v1/payment_methods/{id}/attach."""
    reject_unknown(params)
    pm = PaymentMethod._api_retrieve(id)
    return attach(pm, retrieve_customer(customer).id)


def detach_payment_method(id, **params):
    """POST /v1/payment_methods/{id}/detach: the PaymentMethod cannot be
    used again; it stops being its customer's default."""
    reject_unknown(params)
    pm = PaymentMethod._api_retrieve(id)
    if pm.customer is None:
        raise invalid_request(NOT_ATTACHED)
    customer_id, pm.customer, pm._detached = pm.customer, None, True
    emit("payment_method.detached", pm, previous_attributes={"customer": customer_id})
    customer = store.get("customer:" + customer_id)
    if customer is not None and customer.invoice_settings.get("default_payment_method") == pm.id:
        customer.invoice_settings["default_payment_method"] = None
        emit(
            "customer.updated",
            customer,
            previous_attributes={"invoice_settings": {"default_payment_method": pm.id}},
        )
    return pm


def _pm_api_attach(cls, id, customer=None, **params):
    # localstripe's Customer(payment_method=...) attaches through this.
    return attach_payment_method(id, customer=customer, **params)


def _card_expiry(card, month, year):
    """Validated (exp_month, exp_year) for a card update."""
    month = card["exp_month"] if month is None else try_convert_to_int(month)
    year = card["exp_year"] if year is None else try_convert_to_int(year)
    if not isinstance(month, int) or not 1 <= month <= 12:
        raise StripeError(
            402,
            "card_error",
            "Your card's expiration month is invalid.",
            code="invalid_expiry_month",
            param="card[exp_month]",
        )
    if isinstance(year, int) and 0 <= year < 100:
        year += 2000
    now = time.gmtime()
    if not isinstance(year, int) or not now.tm_year <= year <= now.tm_year + 50:
        raise StripeError(
            402,
            "card_error",
            "Your card's expiration year is invalid.",
            code="invalid_expiry_year",
            param="card[exp_year]",
        )
    if (year, month) < (now.tm_year, now.tm_mon):
        raise StripeError(
            402,
            "card_error",
            "Your card's expiration date is in the past.",
            code="invalid_expiry_month",
            param="card[exp_month]",
        )
    return month, year


def _pm_api_update(
    cls, id, billing_details=None, metadata=None, allow_redisplay=None, card=None, **params
):
    """POST /v1/payment_methods/{id}: on a card, Stripe only lets the
    expiry, billing details, metadata and allow_redisplay change, and only
    once it is saved to a customer."""
    reject_unknown(params)
    pm = cls._api_retrieve(id)
    if card is not None:
        if pm.type != "card" or not isinstance(card, dict):
            raise unknown_parameters({"card": card})
        reject_unknown(
            {k: v for k, v in card.items() if k not in ("exp_month", "exp_year")}, "card"
        )
    if billing_details is not None and not isinstance(billing_details, dict):
        raise invalid_request(
            "Invalid object", code="parameter_invalid_object", param="billing_details"
        )
    if allow_redisplay is not None and allow_redisplay not in ALLOW_REDISPLAY:
        raise invalid_value("allow_redisplay", allow_redisplay, ALLOW_REDISPLAY)
    if pm.customer is None:
        raise invalid_request(UPDATE_UNATTACHED)

    changes = {}
    if card:
        month, year = _card_expiry(pm.card, card.get("exp_month"), card.get("exp_year"))
        changes["card"] = {**pm.card, "exp_month": month, "exp_year": year}
    if billing_details is not None:
        current = pm.billing_details
        address = billing_details.get("address")
        merged = {**current, **{k: v or None for k, v in billing_details.items() if k != "address"}}
        merged["address"] = dict(current["address"])
        if isinstance(address, dict):
            merged["address"].update({k: v or None for k, v in address.items()})
        changes["billing_details"] = billing_details_shape(merged)
    if metadata is not None:
        changes["metadata"] = merge_metadata(pm.metadata, metadata)
    if allow_redisplay is not None:
        changes["allow_redisplay"] = allow_redisplay
    previous = previous_attributes(pm, changes)
    vars(pm).update(changes)
    emit("payment_method.updated", pm, previous_attributes=previous)
    return pm


def automatically_update_payment_method(id, exp_month=None, exp_year=None, last4=None, **params):
    """POST /_sandbox/payment_methods/{id}/automatically_update (sandbox
    only): what Stripe's card account updater does when the bank issues a
    new expiry date (and maybe number) for a saved card."""
    reject_unknown(params)
    pm = PaymentMethod._api_retrieve(id)
    if pm.type != "card":
        raise invalid_request("Only card PaymentMethods are updated automatically.")
    if pm.customer is None:
        raise invalid_request(
            "Only PaymentMethods attached to a customer are updated automatically."
        )
    if exp_month is None:
        raise missing_parameter("exp_month")
    if exp_year is None:
        raise missing_parameter("exp_year")
    month, year = _card_expiry(pm.card, exp_month, exp_year)
    card = {**pm.card, "exp_month": month, "exp_year": year}
    number = pm._card_number
    if last4 is not None:
        if not (isinstance(last4, str) and len(last4) == 4 and last4.isdigit()):
            raise invalid_request("last4 must be 4 digits.", param="last4")
        number = number[:-4] + last4
        card.update(last4=last4, fingerprint=fingerprint(number))
    previous = previous_attributes(pm, {"card": card})
    pm.card, pm._card_number = card, number
    emit("payment_method.automatically_updated", pm, previous_attributes=previous)
    return pm


def _pm_api_list_all(
    cls,
    url,
    customer=None,
    type=None,
    limit=None,
    starting_after=None,
    ending_before=None,
    **params,
):
    """GET /v1/payment_methods (customer, type): newest first."""
    reject_unknown(params)
    if type is not None and type not in ("card", "sepa_debit"):
        raise invalid_value("type", type, ("card", "sepa_debit"))
    if customer is not None:
        customer = retrieve_customer(customer).id
    items = newest_first(
        PaymentMethod,
        lambda pm: (customer is None or pm.customer == customer) and type in (None, pm.type),
    )
    return Page(url, items, limit, starting_after, ending_before)


def list_customer_payment_methods(
    id,
    type=None,
    allow_redisplay=None,
    limit=None,
    starting_after=None,
    ending_before=None,
    **params,
):
    """GET /v1/customers/{id}/payment_methods: newest first."""
    reject_unknown(params)
    customer = Customer._api_retrieve(id)
    if type is not None and type not in ("card", "sepa_debit"):
        raise invalid_value("type", type, ("card", "sepa_debit"))
    if allow_redisplay is not None and allow_redisplay not in ALLOW_REDISPLAY:
        raise invalid_value("allow_redisplay", allow_redisplay, ALLOW_REDISPLAY)
    items = newest_first(
        PaymentMethod,
        lambda pm: (
            pm.customer == customer.id
            and type in (None, pm.type)
            and allow_redisplay in (None, pm.allow_redisplay)
        ),
    )
    return Page(f"/v1/customers/{id}/payment_methods", items, limit, starting_after, ending_before)


def retrieve_customer_payment_method(id, payment_method):
    """GET /v1/customers/{id}/payment_methods/{payment_method}."""
    customer = Customer._api_retrieve(id)
    try:
        pm = PaymentMethod._api_retrieve(payment_method)
    except UserError:
        pm = None
    if pm is None or pm.customer != customer.id:
        raise StripeError(
            404,
            "invalid_request_error",
            f"No such PaymentMethod: '{payment_method}'",
            code="resource_missing",
            param="payment_method",
        )
    return pm


_pm_requires_authentication = PaymentMethod._requires_authentication


def _requires_authentication(self):
    if getattr(self, "_card_number", None) == SETUP_ONCE_CARD and self._set_up:
        return False
    return _pm_requires_authentication(self)


PaymentMethod._api_attach = classmethod(_pm_api_attach)
PaymentMethod._api_update = classmethod(_pm_api_update)
PaymentMethod._api_list_all = classmethod(_pm_api_list_all)
PaymentMethod._requires_authentication = _requires_authentication
_replace_route("POST", "/v1/payment_methods/{id}/attach", attach_payment_method)
_replace_route("POST", "/v1/payment_methods/{id}/detach", detach_payment_method)
extra_apis.append(("GET", "/v1/customers/{id}/payment_methods", list_customer_payment_methods))


# --- Customers ----------------------------------------------------------

INVOICE_SETTINGS = {
    "custom_fields": None,
    "default_payment_method": None,
    "footer": None,
    "rendering_options": None,
}

_customer_init = Customer.__init__


def _default_payment_method(customer_id, invoice_settings, param):
    """The default_payment_method of invoice_settings, checked like Stripe:
    a PaymentMethod attached to this customer ("" unsets it)."""
    pm_id = invoice_settings.get("default_payment_method")
    if pm_id in (None, ""):
        return None
    pm = retrieve_payment_method(pm_id, param)
    if pm.customer is None or pm.customer != customer_id:
        raise invalid_request(
            f"The customer does not have a payment method with the ID {pm.id}. "
            "The payment method must be attached to the customer.",
            param=param,
        )
    return pm.id


def _customer_init_patched(self, invoice_settings=None, payment_method=None, **data):
    param = "invoice_settings[default_payment_method]"
    if invoice_settings is not None and not isinstance(invoice_settings, dict):
        raise invalid_request(
            "Invalid object", code="parameter_invalid_object", param="invoice_settings"
        )
    default = (invoice_settings or {}).get("default_payment_method")
    if default not in (None, "") and default != payment_method:
        # A new customer has no PaymentMethod but the one it attaches.
        _default_payment_method(None, invoice_settings, param)
    settings = {**INVOICE_SETTINGS, **(invoice_settings or {})}
    settings["default_payment_method"] = default or None
    _customer_init(self, invoice_settings=settings, payment_method=payment_method, **data)


def _customer_api_update(cls, id, invoice_settings=None, **data):
    """POST /v1/customers/{id}: invoice_settings merge, and their
    default_payment_method must be attached to the customer."""
    customer = cls._api_retrieve(id)
    if invoice_settings is not None:
        if not isinstance(invoice_settings, dict):
            raise invalid_request(
                "Invalid object", code="parameter_invalid_object", param="invoice_settings"
            )
        reject_unknown(
            {k: v for k, v in invoice_settings.items() if k not in INVOICE_SETTINGS},
            "invoice_settings",
        )
        settings = {**INVOICE_SETTINGS, **customer.invoice_settings, **invoice_settings}
        if "default_payment_method" in invoice_settings:
            settings["default_payment_method"] = _default_payment_method(
                id, invoice_settings, "invoice_settings[default_payment_method]"
            )
        data["invoice_settings"] = settings
    for key in data:
        if key.startswith("_") or not hasattr(customer, key):
            raise unknown_parameters({key: None})
    if "metadata" in data:
        data["metadata"] = merge_metadata(customer.metadata, data["metadata"])
    previous = previous_attributes(customer, data)
    vars(customer).update(data)
    emit("customer.updated", customer, previous_attributes=previous)
    return customer


Customer.__init__ = _customer_init_patched
Customer._api_update = classmethod(_customer_api_update)


# --- PaymentIntents with customers --------------------------------------

PI_UPDATABLE = (
    "amount",
    "capture_method",
    "currency",
    "customer",
    "description",
    "metadata",
    "payment_method",
    "payment_method_options",
    "payment_method_types",
    "receipt_email",
    "setup_future_usage",
    "shipping",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_group",
)
# What may still change once a PaymentIntent is final.
ALWAYS_UPDATABLE = ("description", "metadata")


def _pi_api_update(cls, id, **data):
    """POST /v1/payment_intents/{id}, with Stripe's checks (localstripe sets
    any attribute, even status-deciding ones)."""
    reject_unknown({k: v for k, v in data.items() if k not in PI_UPDATABLE})
    pi = cls._api_retrieve(id)
    if pi.status not in CONFIRMABLE:
        for key in sorted(set(data) - set(ALWAYS_UPDATABLE)):
            raise invalid_request(
                f"This PaymentIntent's {key} could not be updated because it has a status "
                f"of {pi.status}. You may only update the {key} of a PaymentIntent with "
                f"one of the following statuses: {', '.join(CONFIRMABLE)}.",
                code="payment_intent_unexpected_state",
                payment_intent=pi._export(),
            )
    if "amount" in data:
        data["amount"] = try_convert_to_int(data["amount"])
        if not isinstance(data["amount"], int) or data["amount"] < 1:
            raise invalid_request(
                "This value must be greater than or equal to 1.",
                code="parameter_invalid_integer",
                param="amount",
            )
    if "setup_future_usage" in data:
        data["setup_future_usage"] = setup_future_usage_param(data["setup_future_usage"])
    if "customer" in data:
        data["customer"] = retrieve_customer(data["customer"]).id
    if "metadata" in data:
        data["metadata"] = merge_metadata(pi.metadata, data["metadata"])
    customer = data.get("customer", pi.customer)
    pm_id = data.pop("payment_method", None) or pi.payment_method
    if pm_id:
        pm = retrieve_payment_method(pm_id)
        check_payment_method_usable(pm, customer, "pi", intent=pi)
        if pm.id != pi.payment_method:
            # A new payment method: to be confirmed (localstripe derives the
            # status from latest_charge and next_action).
            pi.payment_method, pi.next_action, pi.latest_charge = pm.id, None, None
    vars(pi).update(data)
    return pi


def save_payment_method(pi):
    """setup_future_usage with a customer: once the payment is authorized,
    Stripe attaches its PaymentMethod to the customer."""
    if not (pi.customer and pi.setup_future_usage and pi.payment_method):
        return
    pm = PaymentMethod._api_retrieve(pi.payment_method)
    pm._set_up = True
    if pm.customer is None:
        attach(pm, pi.customer, verify=False)


_pi_on_success = PaymentIntent._on_success
_pi_create_charge = PaymentIntent._create_charge


def _pi_on_success_patched(self):
    save_payment_method(self)
    _pi_on_success(self)


def _pi_create_charge_patched(self, on_failure_now):
    _pi_create_charge(self, on_failure_now)
    if self.status == "requires_capture":  # authorized, not captured: no _on_success yet
        save_payment_method(self)


PaymentIntent._api_update = classmethod(_pi_api_update)
PaymentIntent._on_success = _pi_on_success_patched
PaymentIntent._create_charge = _pi_create_charge_patched


# --- SetupIntents -------------------------------------------------------

SETUP_CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
SETUP_CANCELLATION_REASONS = ("abandoned", "duplicate", "requested_by_customer")
SETUP_AUTHENTICATION_FAILURE = (
    "The latest attempt to set up the payment method has failed because authentication failed."
)
SETUP_UPDATABLE = (
    "customer",
    "description",
    "metadata",
    "payment_method",
    "payment_method_options",
    "payment_method_types",
)
CARD_OPTIONS = {"mandate_options": None, "network": None, "request_three_d_secure": "automatic"}


def _si_init(
    self,
    customer=None,
    usage=None,
    payment_method_types=None,
    metadata=None,
    description=None,
    payment_method=None,
    payment_method_options=None,
    automatic_payment_methods=None,
    **params,
):
    """localstripe's takes no payment_method, description..."""
    reject_unknown(params)
    if customer is not None:
        customer = retrieve_customer(customer).id
    usage = "off_session" if usage is None else usage
    if usage not in ("off_session", "on_session"):
        raise invalid_value("usage", usage, ("off_session", "on_session"))
    payment_method_types = ["card"] if payment_method_types is None else payment_method_types
    if not isinstance(payment_method_types, list) or not payment_method_types:
        raise invalid_request(
            "Invalid array", code="parameter_invalid_array", param="payment_method_types"
        )
    for type in payment_method_types:
        if type != "card":
            raise invalid_request(
                f'The payment method type "{type}" is invalid. The Stripe sandbox only '
                'sets up "card" payment methods.',
                param="payment_method_types",
            )
    pm = None
    if payment_method is not None:
        pm = retrieve_payment_method(payment_method)
        check_payment_method_usable(pm, customer, "seti")
    options = {"card": dict(CARD_OPTIONS)}
    if isinstance(payment_method_options, dict) and isinstance(
        payment_method_options.get("card"), dict
    ):
        options["card"].update(payment_method_options["card"])
    if isinstance(automatic_payment_methods, dict):
        automatic_payment_methods = {
            "allow_redirects": automatic_payment_methods.get("allow_redirects", "always"),
            "enabled": try_convert_to_bool(automatic_payment_methods.get("enabled")),
        }

    # All exceptions must be raised before this point.
    StripeObject.__init__(self)
    self.application = None
    self.automatic_payment_methods = automatic_payment_methods
    self.cancellation_reason = None
    self.client_secret = f"{self.id}_secret_{random_id(24)}"
    self.customer = customer
    self.description = description
    self.flow_directions = None
    self.last_setup_error = None
    self.latest_attempt = None
    self.mandate = None
    self.metadata = merge_metadata({}, metadata)
    self.next_action = None
    self.on_behalf_of = None
    self.payment_method = pm.id if pm else None
    self.payment_method_configuration_details = None
    self.payment_method_options = options
    self.payment_method_types = payment_method_types
    self.single_use_mandate = None
    self.status = "requires_confirmation" if pm else "requires_payment_method"
    self.usage = usage
    self._return_url = None
    self._use_stripe_sdk = False
    emit("setup_intent.created", self)


def _si_api_create(
    cls, confirm=None, return_url=None, use_stripe_sdk=None, payment_method_data=None, **data
):
    confirm = try_convert_to_bool(confirm)
    if confirm not in (None, True, False):
        raise invalid_request("Invalid boolean", code="parameter_invalid_boolean", param="confirm")
    if not confirm and (return_url is not None or payment_method_data is not None):
        param = "return_url" if return_url is not None else "payment_method_data"
        raise invalid_request(
            f"You can only specify `{param}` when `confirm` is true.", param=param
        )
    si = cls(**data)
    if confirm:
        confirm_setup_intent(
            si.id,
            payment_method_data=payment_method_data,
            return_url=return_url,
            use_stripe_sdk=use_stripe_sdk,
        )
    return si


def setup_unexpected_state(si, message):
    return invalid_request(message, code="setup_intent_unexpected_state", setup_intent=si._export())


def _si_api_update(cls, id, **data):
    """POST /v1/setup_intents/{id}."""
    reject_unknown({k: v for k, v in data.items() if k not in SETUP_UPDATABLE})
    si = cls._api_retrieve(id)
    if si.status in ("succeeded", "canceled") and set(data) - {"description", "metadata"}:
        state = "already succeeded" if si.status == "succeeded" else "been canceled"
        raise setup_unexpected_state(
            si, f"You cannot update this SetupIntent because it has {state}."
        )
    if "metadata" in data:
        data["metadata"] = merge_metadata(si.metadata, data["metadata"])
    if "customer" in data:
        data["customer"] = retrieve_customer(data["customer"]).id
    customer = data.get("customer", si.customer)
    pm_id = data.pop("payment_method", None) or si.payment_method
    if pm_id:
        pm = retrieve_payment_method(pm_id)
        check_payment_method_usable(pm, customer, "seti", intent=si)
        if pm.id != si.payment_method:
            si.payment_method, si.next_action = pm.id, None
            si.status = "requires_confirmation"
    if "payment_method_options" in data:
        options = data.pop("payment_method_options")
        if isinstance(options, dict) and isinstance(options.get("card"), dict):
            si.payment_method_options["card"].update(options["card"])
    vars(si).update(data)
    return si


def _si_api_list_all(
    cls,
    url,
    customer=None,
    payment_method=None,
    limit=None,
    starting_after=None,
    ending_before=None,
    **params,
):
    reject_unknown(params)
    items = newest_first(
        SetupIntent,
        lambda si: customer in (None, si.customer) and payment_method in (None, si.payment_method),
    )
    return Page(url, items, limit, starting_after, ending_before)


def setup_failed(si, pm, error):
    """The attempt failed: back to requires_payment_method, with
    last_setup_error (Stripe drops the payment method)."""
    si.status, si.payment_method, si.next_action = "requires_payment_method", None, None
    error["doc_url"] = doc_url(error["code"])
    error["payment_method"] = pm._export()
    si.last_setup_error = error
    emit("setup_intent.setup_failed", si)


def setup_succeeded(si, pm):
    if si.customer:
        attach(pm, si.customer, verify=False)  # payment_method.attached first
    pm._set_up = True
    si.status, si.next_action, si.last_setup_error = "succeeded", None, None
    emit("setup_intent.succeeded", si)


def confirm_setup_intent(
    id,
    payment_method=None,
    payment_method_data=None,
    client_secret=None,
    return_url=None,
    use_stripe_sdk=None,
    payment_method_options=None,
    mandate_data=None,
    **params,
):
    """POST /v1/setup_intents/{id}/confirm, from a server (secret key) or
    from Stripe.js (publishable key and client_secret)."""
    reject_unknown(params)
    si = SetupIntent._api_retrieve(id)
    if client_secret is not None:
        check_client_secret(si, client_secret)
    if si.status == "succeeded":
        raise setup_unexpected_state(
            si, "You cannot confirm this SetupIntent because it has already succeeded."
        )
    if si.status == "canceled":
        raise setup_unexpected_state(
            si, "You cannot confirm this SetupIntent because it has been canceled."
        )
    if isinstance(payment_method_data, dict):
        pm = PaymentMethod(**payment_method_data)
    elif payment_method is not None or si.payment_method:
        pm = retrieve_payment_method(payment_method or si.payment_method)
    else:
        raise setup_unexpected_state(
            si,
            "You cannot confirm this SetupIntent because it's missing a payment method. "
            "You can either update the SetupIntent with a payment method and then confirm "
            "it again, or confirm it again directly with a payment method or "
            "ConfirmationToken.",
        )
    check_payment_method_usable(pm, si.customer, "seti", intent=si)
    if isinstance(payment_method_options, dict) and isinstance(
        payment_method_options.get("card"), dict
    ):
        si.payment_method_options["card"].update(payment_method_options["card"])
    if return_url is not None:
        si._return_url = return_url
    si._use_stripe_sdk = try_convert_to_bool(use_stripe_sdk) is True
    si.payment_method, si.last_setup_error = pm.id, None

    decline = decline_of(pm)
    if decline:
        code, decline_code, message = decline
        error = {
            "code": code,
            "decline_code": decline_code,
            "message": message,
            "type": "card_error",
        }
        if code in DECLINE_PARAMS:
            error["param"] = DECLINE_PARAMS[code]
        setup_failed(si, pm, error)
        raise decline_error(decline, setup_intent=si._export(), payment_method=pm._export())
    if pm._requires_authentication():
        si.status = "requires_action"
        si.next_action = three_d_secure_action(si)
        emit("setup_intent.requires_action", si)
    else:
        setup_succeeded(si, pm)
    return si


def authenticate_setup_intent(id, client_secret=None, success=None, **params):
    """The 3-D Secure stand-in (POST .../_authenticate with client_secret and
    success=true|false), as for PaymentIntents."""
    reject_unknown(params)
    si = SetupIntent._api_retrieve(id)
    check_client_secret(si, client_secret)
    success = try_convert_to_bool(success)
    if success not in (True, False):
        raise invalid_request("Invalid boolean", code="parameter_invalid_boolean", param="success")
    if si.status != "requires_action":
        raise setup_unexpected_state(
            si,
            "This SetupIntent cannot be authenticated because it has a status of "
            f"{si.status}. Only a SetupIntent with the status requires_action may be "
            "authenticated.",
        )
    pm = PaymentMethod._api_retrieve(si.payment_method)
    if success:
        setup_succeeded(si, pm)
    else:
        setup_failed(
            si,
            pm,
            {
                "code": "setup_intent_authentication_failure",
                "message": SETUP_AUTHENTICATION_FAILURE,
                "type": "invalid_request_error",
            },
        )
    return si


def cancel_setup_intent(id, cancellation_reason=None, **params):
    reject_unknown(params)
    si = SetupIntent._api_retrieve(id)
    if si.status == "canceled":
        raise setup_unexpected_state(
            si, "You cannot cancel this SetupIntent because it is already canceled."
        )
    if si.status not in SETUP_CONFIRMABLE:
        raise setup_unexpected_state(
            si,
            f"You cannot cancel this SetupIntent because it has a status of {si.status}. "
            "Only a SetupIntent with one of the following statuses may be canceled: "
            "`requires_payment_method`, `requires_confirmation`, or `requires_action`.",
        )
    if cancellation_reason is not None and cancellation_reason not in SETUP_CANCELLATION_REASONS:
        raise invalid_value("cancellation_reason", cancellation_reason, SETUP_CANCELLATION_REASONS)
    si.status, si.next_action = "canceled", None
    si.cancellation_reason = cancellation_reason
    emit("setup_intent.canceled", si)
    return si


SetupIntent.__init__ = _si_init
SetupIntent._api_create = classmethod(_si_api_create)
SetupIntent._api_update = classmethod(_si_api_update)
SetupIntent._api_list_all = classmethod(_si_api_list_all)
_replace_route("POST", "/v1/setup_intents/{id}/confirm", confirm_setup_intent)
_replace_route("POST", "/v1/setup_intents/{id}/cancel", cancel_setup_intent)
extra_apis.append(("POST", "/v1/setup_intents/{id}/_authenticate", authenticate_setup_intent))


def retrieve_intent(id):
    """A PaymentIntent or a SetupIntent, by id."""
    cls = SetupIntent if id.startswith("seti_") else PaymentIntent
    return cls._api_retrieve(id)


# --- Refunds ------------------------------------------------------------

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# Refund.failure_reason values (stripe-python 16.1.0, API 2026-10-28.endive).
REFUND_FAILURE_REASONS = (
    "lost_or_stolen_card",
    "expired_or_canceled_card",
    "charge_for_pending_refund_disputed",
    "insufficient_funds",
    "declined",
    "merchant_request",
    "unknown",
)
# Statuses in which a refund counts in its charge's amount_refunded.
REFUND_COUNTED = ("pending", "requires_action", "succeeded")
# Stripe's asynchronous refund test cards (docs.stripe.com/testing): a refund
# of the first begins `pending` and succeeds later; one of the second begins
# `succeeded` and fails later with expired_or_canceled_card.
REFUND_PENDING_CARD = "4000000000007726"
REFUND_FAILS_CARD = "4000000000005126"
# "Later", in seconds (`python -m stripe_sandbox --refund-delay`).
REFUND_DELAY = 1.0
CURRENCY_SYMBOLS = {"eur": "€", "gbp": "£", "inr": "₹", "jpy": "¥", "usd": "$"}
UNCAPTURED_PI_CHARGE = (
    "This uncaptured Charge was created by a PaymentIntent ({}). You must cancel the "
    "PaymentIntent to reverse the authorization instead of refunding the Charge directly. "
    "For more information, see "
    "https://stripe.com/docs/payments/payment-intents/creating-payment-intents"
    "#separate-auth-capture"
)
PARTIAL_UNCAPTURED = (
    "You cannot partially refund an uncaptured charge. Instead, capture the charge for an "
    "amount less than the original amount"
)
# Parameters of POST /v1/refunds for refunds to a customer balance, which the
# sandbox does not model.
CUSTOMER_BALANCE_PARAMS = ("currency", "customer", "origin")


def format_amount(amount, currency):
    """An amount as Stripe writes it in refund errors: $25.99, €10.00."""
    decimals = 0 if currency in ZERO_DECIMAL_CURRENCIES else 2
    value = f"{amount / 10**decimals:.{decimals}f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


def refund_amount_param(amount):
    amount = try_convert_to_int(amount)
    if isinstance(amount, int) and amount == 0:
        message = "This value must be greater than or equal to 1."
    elif isinstance(amount, int) and amount > 0:
        return amount
    else:
        message = "Invalid positive integer"
    raise invalid_request(message, code="parameter_invalid_integer", param="amount")


def boolean_param(value, param):
    converted = try_convert_to_bool(value)
    if converted not in (True, False):
        raise invalid_request("Invalid boolean", code="parameter_invalid_boolean", param=param)
    return converted


def retrieve_charge(id, param="charge"):
    if not isinstance(id, str) or not id:
        raise missing_parameter(param)
    try:
        return Charge._api_retrieve(id)
    except UserError:
        raise no_such("charge", id, param) from None


def retrieve_payment_intent(id, param="payment_intent"):
    if not isinstance(id, str) or not id:
        raise missing_parameter(param)
    try:
        return PaymentIntent._api_retrieve(id)
    except UserError:
        raise no_such("payment_intent", id, param) from None


def charge_refunds(charge):
    """The refunds of a charge, newest first."""
    return list(reversed(getattr(charge, "_refunds", [])))


def _amount_refunded(self):
    return sum(r.amount for r in charge_refunds(self) if r.status in REFUND_COUNTED)


def _charge_export(self, expand=None):
    """`refunds` only when expanded (API 2022-11-15 and later)."""
    if not isinstance(expand, list):
        return StripeObject._export(self, expand=expand)  # its checks
    own = [p for p in expand if not (isinstance(p, str) and p.split(".")[0] == "refunds")]
    obj = StripeObject._export(self, expand=own)
    if len(own) != len(expand):
        sub = [p.split(".", 1)[1] for p in expand if p not in own and "." in p]
        obj["refunds"] = Page(f"/v1/charges/{self.id}/refunds", charge_refunds(self))._export(sub)
    return obj


Charge.amount_refunded = property(_amount_refunded)
Charge.refunded = property(lambda self: self.amount > 0 and self.amount_refunded >= self.amount)
Charge._export = _charge_export
del Charge.refunds  # a list only when expanded: see _charge_export


def destination_details(charge):
    pm = _charge_payment_method(charge)
    type = getattr(pm, "type", None) or "card"
    if type != "card":
        return {"type": type, type: {}}
    # The acquirer reference number comes from the network later; the
    # sandbox never gets one.
    return {
        "card": {
            "reference": None,
            "reference_status": "pending",
            "reference_type": "acquirer_reference_number",
            "type": "refund",
        },
        "type": "card",
    }


def _refund_init(
    self,
    charge=None,
    amount=None,
    payment_intent=None,
    metadata=None,
    reason=None,
    status="succeeded",
    pending_reason=None,
):
    """A refund of `charge` (an id), unchecked: POST /v1/refunds checks in
    _refund_api_create (localstripe also refunds what a partial capture
    leaves, with Refund(charge=..., amount=...))."""
    charge = Charge._api_retrieve(charge)
    if amount is None:
        amount = charge.amount - charge.amount_refunded
    StripeObject.__init__(self)
    del self.livemode  # Refunds have none
    self.amount = amount
    self.balance_transaction = None
    self.charge = charge.id
    self.currency = charge.currency
    self.destination_details = destination_details(charge)
    self.failure_balance_transaction = None
    self.failure_reason = None
    self.metadata = metadata or {}
    self.payment_intent = payment_intent or charge.payment_intent
    self.pending_reason = pending_reason
    self.reason = reason
    self.receipt_number = None
    self.source_transfer_reversal = None
    self.status = status
    self.transfer_reversal = None
    if charge.captured:  # refunding an uncaptured charge only releases it
        self.balance_transaction = BalanceTransaction(
            amount=-amount,
            currency=self.currency,
            description="REFUND FOR CHARGE",
            exchange_rate=1.0,
            reporting_category="refund",
            source=self.id,
            type="refund",
        ).id
    vars(charge).setdefault("_refunds", []).append(self)


def _refund_api_retrieve(cls, id):
    obj = store.get("refund:" + id)
    if obj is None:
        raise StripeError(
            404,
            "invalid_request_error",
            f"No such refund: '{id}'",
            code="resource_missing",
            param="id",
        )
    return obj


def refund_charge(charge, payment_intent):
    """The charge POST /v1/refunds refunds, checked like Stripe."""
    if charge is not None:
        charge = retrieve_charge(charge)
        if payment_intent is not None and charge.payment_intent != payment_intent.id:
            raise invalid_request(
                f"Charge {charge.id} does not belong to PaymentIntent {payment_intent.id}.",
                param="charge",
            )
        if charge.payment_intent:
            payment_intent = PaymentIntent._api_retrieve(charge.payment_intent)
    if payment_intent is not None and payment_intent.status != "succeeded":
        if charge is not None and payment_intent.status == "requires_capture":
            raise invalid_request(UNCAPTURED_PI_CHARGE.format(payment_intent.id))
        raise invalid_request(
            f"This PaymentIntent ({payment_intent.id}) does not have a successful charge to refund."
        )
    charge = charge or payment_intent.latest_charge
    if charge.status != "succeeded":
        raise invalid_request(f"Charge {charge.id} has not succeeded and cannot be refunded.")
    return charge


def _refund_api_create(
    cls,
    amount=None,
    charge=None,
    payment_intent=None,
    metadata=None,
    reason=None,
    instructions_email=None,
    refund_application_fee=None,
    reverse_transfer=None,
    **params,
):
    """POST /v1/refunds (localstripe's accepts any amount, even twice the
    charge, and sends no event)."""
    for param in CUSTOMER_BALANCE_PARAMS:
        if param in params:
            raise invalid_request(
                f"The Stripe sandbox does not refund to customer balances: `{param}` "
                "is not supported.",
                param=param,
            )
    reject_unknown(params)
    if amount is not None:
        amount = refund_amount_param(amount)
    if reason is not None and reason not in REFUND_REASONS:
        raise invalid_value("reason", reason, REFUND_REASONS)
    metadata = merge_metadata({}, metadata)
    for value, param in (
        (refund_application_fee, "refund_application_fee"),
        (reverse_transfer, "reverse_transfer"),
    ):
        if value is not None:
            boolean_param(value, param)  # Connect options: nothing to reverse here
    if charge is None and payment_intent is None:
        raise invalid_request(
            "One of the following params should be provided for this request: "
            "payment_intent or charge."
        )
    if payment_intent is not None:
        payment_intent = retrieve_payment_intent(payment_intent)
    charge = refund_charge(charge, payment_intent)

    remaining = charge.amount - charge.amount_refunded
    if remaining <= 0:
        raise invalid_request(
            f"Charge {charge.id} has already been refunded.", code="charge_already_refunded"
        )
    amount = remaining if amount is None else amount
    if amount > remaining:
        if charge.amount_refunded:
            limit = f"unrefunded amount on charge ({format_amount(remaining, charge.currency)})"
        else:
            limit = f"charge amount ({format_amount(charge.amount, charge.currency)})"
        raise invalid_request(
            f"Refund amount ({format_amount(amount, charge.currency)}) is greater than {limit}",
            code="amount_too_large",
            param="amount",
        )
    if not charge.captured and amount != charge.amount:
        raise invalid_request(PARTIAL_UNCAPTURED, param="amount")

    number = getattr(_charge_payment_method(charge), "_card_number", None)
    pending = number == REFUND_PENDING_CARD and charge.captured
    before = {"amount_refunded": charge.amount_refunded, "refunded": charge.refunded}
    refund = cls(
        charge=charge.id,
        amount=amount,
        metadata=metadata,
        reason=reason,
        status="pending" if pending else "succeeded",
        pending_reason="processing" if pending else None,
    )
    emit(
        "charge.refunded",
        charge,
        previous_attributes={k: v for k, v in before.items() if getattr(charge, k) != v},
    )
    emit("refund.created", refund)
    if pending:
        later(refund_processed, refund.id)
    elif number == REFUND_FAILS_CARD and charge.captured:
        later(refund_failed, refund.id, "expired_or_canceled_card")
    return refund


def later(callback, *args):
    """Run callback(*args) in REFUND_DELAY seconds, in the server's loop."""
    asyncio.get_running_loop().call_later(REFUND_DELAY, callback, *args)


def refund_updated(refund, changes):
    """Apply `changes` and send `refund.updated` and the legacy
    `charge.refund.updated` with what they changed."""
    previous = previous_attributes(refund, changes)
    vars(refund).update(changes)
    emit("refund.updated", refund, previous_attributes=previous)
    emit("charge.refund.updated", refund, previous_attributes=previous)


def refund_processed(id):
    """A pending refund succeeds (test card 4000000000007726)."""
    refund = Refund._api_retrieve(id)
    if refund.status == "pending":  # it may have failed meanwhile
        refund_updated(refund, {"status": "succeeded", "pending_reason": None})


def refund_failed(id, failure_reason):
    """A pending or succeeded refund fails: the money is back in the
    balance (failure_balance_transaction) and the charge no longer counts it
    in amount_refunded. Sends refund.updated, charge.refund.updated and
    refund.failed."""
    refund = Refund._api_retrieve(id)
    if refund.status not in ("pending", "succeeded"):
        return refund
    changes = {"status": "failed", "failure_reason": failure_reason, "pending_reason": None}
    if refund.balance_transaction is not None:
        txn = BalanceTransaction(
            amount=refund.amount,
            currency=refund.currency,
            description="REFUND FAILURE",
            exchange_rate=1.0,
            reporting_category="refund",
            source=refund.id,
            type="refund",
        )
        txn.type = txn.reporting_category = "refund_failure"
        changes["failure_balance_transaction"] = txn.id
    refund_updated(refund, changes)
    emit("refund.failed", refund)
    return refund


def fail_refund(id, failure_reason=None, **params):
    """POST /_sandbox/refunds/{id}/fail (sandbox only): what Stripe does when
    the bank returns a refund, to any pending or succeeded refund."""
    reject_unknown(params)
    refund = Refund._api_retrieve(id)
    failure_reason = "expired_or_canceled_card" if failure_reason is None else failure_reason
    if failure_reason not in REFUND_FAILURE_REASONS:
        raise invalid_value("failure_reason", failure_reason, REFUND_FAILURE_REASONS)
    if refund.status not in ("pending", "succeeded"):
        raise invalid_request(
            f"Only a pending or succeeded refund can fail; this one is {refund.status}."
        )
    return refund_failed(refund.id, failure_reason)


def _refund_api_update(cls, id, metadata=None, **params):
    """POST /v1/refunds/{id}: only metadata, like Stripe."""
    reject_unknown(params)
    refund = cls._api_retrieve(id)
    if metadata is not None:
        new = merge_metadata(refund.metadata, metadata)
        old = refund.metadata
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            previous = {"metadata": {k: old.get(k) for k in changed}}
            refund.metadata = new
            emit("refund.updated", refund, previous_attributes=previous)
            emit("charge.refund.updated", refund, previous_attributes=previous)
    return refund


def cancel_refund(id, **params):
    """POST /v1/refunds/{id}/cancel: Stripe cancels only refunds in
    `requires_action`, which card refunds never are."""
    reject_unknown(params)
    refund = Refund._api_retrieve(id)
    if refund.status != "requires_action":
        raise invalid_request(
            f"You cannot cancel this refund because it has a status of {refund.status}. "
            "Only a refund with a status of requires_action may be canceled."
        )
    refund_updated(refund, {"status": "canceled", "failure_reason": "merchant_request"})
    return refund


def created_filter(created):
    """A test of `created` for a list's created (an integer, or a dict of
    gt/gte/lt/lte)."""
    if created is None:
        return lambda value: True
    tests = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    bounds = created if isinstance(created, dict) else {"eq": created}
    checks = []
    for op, bound in bounds.items():
        param = "created" if op == "eq" else f"created[{op}]"
        if op != "eq" and op not in tests:
            raise unknown_parameters({op: bound}, "created")
        bound = try_convert_to_int(bound)
        if not isinstance(bound, int):
            raise invalid_request("Invalid integer", code="parameter_invalid_integer", param=param)
        checks.append((tests.get(op, lambda a, b: a == b), bound))
    return lambda value: all(test(value, bound) for test, bound in checks)


def _refund_api_list_all(
    cls,
    url,
    charge=None,
    payment_intent=None,
    created=None,
    limit=None,
    starting_after=None,
    ending_before=None,
    **params,
):
    """GET /v1/refunds (charge, payment_intent, created): newest first."""
    reject_unknown(params)
    if charge is not None:
        charge = retrieve_charge(charge).id
    if payment_intent is not None:
        payment_intent = retrieve_payment_intent(payment_intent).id
    in_period = created_filter(created)
    items = newest_first(
        Refund,
        lambda r: (
            charge in (None, r.charge)
            and payment_intent in (None, r.payment_intent)
            and in_period(r.created)
        ),
    )
    return Page(url, items, limit, starting_after, ending_before)


def list_charge_refunds(id, limit=None, starting_after=None, ending_before=None, **params):
    """GET /v1/charges/{id}/refunds: newest first."""
    reject_unknown(params)
    charge = Charge._api_retrieve(id)
    url = f"/v1/charges/{charge.id}/refunds"
    return Page(url, charge_refunds(charge), limit, starting_after, ending_before)


Refund.__init__ = _refund_init
Refund._api_create = classmethod(_refund_api_create)
Refund._api_retrieve = classmethod(_refund_api_retrieve)
Refund._api_update = classmethod(_refund_api_update)
Refund._api_list_all = classmethod(_refund_api_list_all)
extra_apis.append(("POST", "/v1/refunds/{id}/cancel", cancel_refund))
extra_apis.append(("GET", "/v1/charges/{id}/refunds", list_charge_refunds))


# --- Events -------------------------------------------------------------

_event_init = Event.__init__


def _event_init_patched(self, type, data, previous_attributes=None):
    _event_init(self, type, data)
    self.api_version = API_VERSION  # localstripe says 2017-08-15
    self.request = {"id": None, "idempotency_key": None}
    if previous_attributes:  # what an update changed, as Stripe sends it
        self.data["previous_attributes"] = previous_attributes


Event.__init__ = _event_init_patched


# Charges: Stripe sends charge.succeeded when a charge is authorized (captured
# or not) and charge.failed when it is declined, before the PaymentIntent's
# own event; localstripe sent neither.
_charge_initialize = Charge._initialize_charge


def _charge_initialize_patched(self, on_success=None, on_failure_now=None, on_failure_later=None):
    def succeeded():
        emit("charge.succeeded", self)
        if on_success:
            on_success()

    def failed(callback):
        def report():
            emit("charge.failed", self)
            if callback:
                callback()

        return report

    _charge_initialize(self, succeeded, failed(on_failure_now), failed(on_failure_later))
    if self.status == "succeeded" and not self.captured:  # authorized only: no payment yet
        emit("charge.succeeded", self)


Charge._initialize_charge = _charge_initialize_patched
