"""Changes to localstripe's resources, applied when this module is imported.

Import it before `localstripe.server`: that module registers the routes listed
in `localstripe.resources.extra_apis` as it is imported, so the PaymentIntent
routes replaced here (confirm, cancel, _authenticate) must be swapped first.

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
  `.requires_action`, `.processing`, `.canceled`, `.payment_failed` after 3DS.
"""

import time
from urllib.parse import urlencode

from localstripe.errors import UserError
from localstripe.resources import (
    Charge,
    Event,
    Invoice,
    PaymentIntent,
    PaymentMethod,
    Store,
    StripeObject,
    extra_apis,
    try_convert_to_bool,
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


def _pm_init_patched(self, type=None, card=None, billing_details=None, **data):
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
    if isinstance(stored["automatic_payment_methods"], dict):
        apm = stored["automatic_payment_methods"]
        apm["enabled"] = try_convert_to_bool(apm.get("enabled"))
        apm.setdefault("allow_redirects", "always")
    if isinstance(payment_method, str):
        # Test ids such as pm_card_visa become a new PaymentMethod, as in
        # Stripe; localstripe would build another one at each lookup.
        payment_method = PaymentMethod._api_retrieve(payment_method).id
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
    obj = StripeObject._export(self, expand=expand)
    # Since API 2022-11-15 latest_charge is an id unless expanded.
    expanded = any(path.split(".")[0] == "latest_charge" for path in expand or ())
    if not expanded and isinstance(obj.get("latest_charge"), dict):
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


def three_d_secure_page_url(pi):
    return f"{PUBLIC_URL}/3ds/{pi.id}?" + urlencode({"client_secret": pi.client_secret})


_pi_confirm = PaymentIntent._confirm


def _confirm(self, on_failure_now):
    _pi_confirm(self, on_failure_now)
    if self.next_action:
        # As Stripe: a redirect when confirmed with a return_url (unless by
        # Stripe.js, use_stripe_sdk), else an action for Stripe.js to handle.
        url = three_d_secure_page_url(self)
        if self._return_url and not self._use_stripe_sdk:
            self.next_action = {
                "type": "redirect_to_url",
                "redirect_to_url": {"url": url, "return_url": self._return_url},
            }
        else:
            self.next_action = {
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url},
            }
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


def check_client_secret(pi, client_secret):
    if client_secret != pi.client_secret:
        raise StripeError(
            400,
            "invalid_request_error",
            "The client_secret provided does not match the client_secret "
            "associated with the PaymentIntent.",
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
    if payment_method is not None:
        pi.payment_method = PaymentMethod._api_retrieve(payment_method).id
    elif not pi.payment_method:
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


# --- Events -------------------------------------------------------------

_event_init = Event.__init__


def _event_init_patched(self, type, data):
    _event_init(self, type, data)
    self.api_version = API_VERSION  # localstripe says 2017-08-15
    self.request = {"id": None, "idempotency_key": None}


Event.__init__ = _event_init_patched
