"""SetupIntents: saving a card for later payments, as Stripe does it.

- create (customer, usage, metadata, description, payment_method, `allowed_payment_method_types`
  or `automatic_payment_methods` (cards only), payment_method_options[card]
  [request_three_d_secure]; confirm with return_url or payment_method_data), update, list
  (customer, payment_method), retrieve (with a publishable key: the client_secret);
- confirm (payment_method or payment_method_data, return_url; server or Stripe.js): a card
  declined when saved is a 402 with `last_setup_error` (the SetupIntent goes back to
  `requires_payment_method`, without its payment method); 3-D Secure cards get a real
  `next_action` and `requires_action`; success attaches the card to the customer
  (payment_method.attached first) and marks it set up (4000002500003155 then needs no more
  3-D Secure for payments);
- `_authenticate` (the 3-D Secure page's answer; failure: setup_intent_authentication_failure),
  cancel (cancellation_reason).
Events: setup_intent.created, .requires_action, .succeeded, .setup_failed, .canceled.
Not modelled: SetupAttempts (`latest_attempt` stays null), mandates.
"""

from __future__ import annotations

from . import cards, core, events, payment_methods
from .core import Page, Resource, StripeError, invalid_param, invalid_request, newest_first, no_such
from .payment_intents import card_options, card_types
from .payment_methods import check_usable, retrieve_customer

CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
AUTHENTICATION_FAILURE = (
    "The latest attempt to set up the payment method has failed because authentication failed."
)


class SetupIntent(Resource):
    object = "setup_intent"
    prefix = "seti_"

    def __init__(self, customer=None, usage=None, metadata=None, description=None,
                 allowed_payment_method_types=None, automatic_payment_methods=None,
                 request_three_d_secure=None):
        super().__init__()
        self.customer = customer
        self.usage = usage or "off_session"
        self.metadata = core.merge_metadata({}, metadata)
        self.description = description or None
        self.allowed_payment_method_types = allowed_payment_method_types
        self.automatic_payment_methods = automatic_payment_methods
        self.request_three_d_secure = request_three_d_secure or "automatic"
        self.client_secret = f"{self.id}_secret_{core.random_id(24)}"
        self.payment_method = None
        self.status = "requires_payment_method"
        self.next_action = None
        self.last_setup_error = None
        self.cancellation_reason = None
        self.return_url = None
        self.use_stripe_sdk = False

    def to_dict(self) -> dict:
        return {
            "id": self.id, "object": "setup_intent", "application": None,
            "allowed_payment_method_types": self.allowed_payment_method_types,
            "automatic_payment_methods": self.automatic_payment_methods,
            "cancellation_reason": self.cancellation_reason,
            "client_secret": self.client_secret, "created": self.created,
            "customer": self.customer, "description": self.description,
            "excluded_payment_method_types": None, "flow_directions": None,
            "last_setup_error": self.last_setup_error, "latest_attempt": None,
            "livemode": False, "mandate": None, "metadata": self.metadata,
            "next_action": self.next_action, "on_behalf_of": None,
            "payment_method": self.payment_method,
            "payment_method_configuration_details": None,
            "payment_method_options": {"card": {
                "mandate_options": None, "network": None,
                "request_three_d_secure": self.request_three_d_secure}},
            "payment_method_types": ["card"], "single_use_mandate": None,
            "status": self.status, "usage": self.usage,
        }


def retrieve_setup_intent(id) -> SetupIntent:
    si = SetupIntent.get(id)
    if si is None:
        raise no_such("setup_intent", id, status=404)
    return si


def unexpected_state(si, message) -> StripeError:
    return invalid_request(message, code="setup_intent_unexpected_state",
                           setup_intent=si.export())


def create_setup_intent(customer=None, usage=None, metadata=None, description=None,
                        payment_method=None, allowed_payment_method_types=None,
                        automatic_payment_methods=None, payment_method_options=None,
                        confirm=None, return_url=None, use_stripe_sdk=None,
                        payment_method_data=None):
    """POST /v1/setup_intents."""
    card_types(allowed_payment_method_types, automatic_payment_methods)
    if not confirm and (return_url is not None or payment_method_data is not None):
        param = "return_url" if return_url is not None else "payment_method_data"
        raise invalid_param(f"You can only specify `{param}` when `confirm` is true.",
                              param=param)
    if customer is not None:
        customer = retrieve_customer(customer).id
    pm = None
    if payment_method is not None:
        pm = payment_methods.retrieve_payment_method(payment_method)
        check_usable(pm, customer, "seti")
    if automatic_payment_methods is not None:
        automatic_payment_methods = {
            "allow_redirects": automatic_payment_methods.get("allow_redirects", "always"),
            "enabled": automatic_payment_methods["enabled"]}
    si = SetupIntent(customer, usage, metadata, description, allowed_payment_method_types,
                     automatic_payment_methods, card_options(payment_method_options))
    if pm is not None:
        si.payment_method, si.status = pm.id, "requires_confirmation"
    events.emit("setup_intent.created", si)
    if confirm:
        confirm_setup_intent(si.id, payment_method_data=payment_method_data,
                             return_url=return_url, use_stripe_sdk=use_stripe_sdk)
    return si


def update_setup_intent(intent, customer=None, description=None, metadata=None,
                        payment_method=None, payment_method_options=None):
    """POST /v1/setup_intents/{id}."""
    si = retrieve_setup_intent(intent)
    changing = {k for k, v in (("customer", customer), ("payment_method", payment_method),
                               ("payment_method_options", payment_method_options))
                if v is not None}
    if si.status in ("succeeded", "canceled") and changing:
        state = "already succeeded" if si.status == "succeeded" else "been canceled"
        raise unexpected_state(si, f"You cannot update this SetupIntent because it has {state}.")
    if customer is not None:
        si.customer = retrieve_customer(customer).id
    pm_id = payment_method or si.payment_method
    if pm_id:
        pm = payment_methods.retrieve_payment_method(pm_id)
        check_usable(pm, si.customer, "seti", intent=si)
        if pm.id != si.payment_method:
            si.payment_method, si.next_action = pm.id, None
            si.status = "requires_confirmation"
    if card_options(payment_method_options):
        si.request_three_d_secure = card_options(payment_method_options)
    if metadata is not None:
        si.metadata = core.merge_metadata(si.metadata, metadata)
    if description is not None:
        si.description = description or None
    return si


def setup_failed(si: SetupIntent, pm, error: dict) -> None:
    """The attempt failed: back to requires_payment_method, with last_setup_error (Stripe
    drops the payment method)."""
    si.status, si.payment_method, si.next_action = "requires_payment_method", None, None
    error["doc_url"] = core.doc_url(error["code"])
    error["payment_method"] = pm.export()
    si.last_setup_error = error
    events.emit("setup_intent.setup_failed", si)


def setup_succeeded(si: SetupIntent, pm) -> None:
    if si.customer:
        payment_methods.attach(pm, si.customer, verify=False)  # payment_method.attached first
    pm.set_up = True
    si.status, si.next_action, si.last_setup_error = "succeeded", None, None
    events.emit("setup_intent.succeeded", si)


def confirm_setup_intent(intent, payment_method=None, payment_method_data=None,
                         client_secret=None, return_url=None, use_stripe_sdk=None,
                         payment_method_options=None, mandate_data=None):
    """POST /v1/setup_intents/{id}/confirm, from a server (secret key) or from Stripe.js
    (publishable key and client_secret)."""
    si = retrieve_setup_intent(intent)
    if client_secret is not None:
        core.check_client_secret(si, client_secret)
    if si.status == "succeeded":
        raise unexpected_state(
            si, "You cannot confirm this SetupIntent because it has already succeeded.")
    if si.status == "canceled":
        raise unexpected_state(
            si, "You cannot confirm this SetupIntent because it has been canceled.")
    if payment_method_data is not None:
        pm = payment_methods.create_payment_method(**payment_method_data)
    elif payment_method is not None or si.payment_method:
        pm = payment_methods.retrieve_payment_method(payment_method or si.payment_method)
    else:
        raise unexpected_state(
            si, "You cannot confirm this SetupIntent because it's missing a payment method. "
            "You can either update the SetupIntent with a payment method and then confirm "
            "it again, or confirm it again directly with a payment method or "
            "ConfirmationToken.")
    check_usable(pm, si.customer, "seti", intent=si)
    if card_options(payment_method_options):
        si.request_three_d_secure = card_options(payment_method_options)
    if return_url is not None:
        si.return_url = return_url
    si.use_stripe_sdk = use_stripe_sdk is True
    si.payment_method, si.last_setup_error = pm.id, None

    decline = cards.decline_when_saved(pm.number)
    if decline:
        code, decline_code, message = decline
        error = {"code": code, "decline_code": decline_code, "message": message,
                 "type": "card_error"}
        if code in payment_methods.DECLINE_PARAMS:
            error["param"] = payment_methods.DECLINE_PARAMS[code]
        setup_failed(si, pm, error)
        raise payment_methods.decline_error(decline, setup_intent=si.export(),
                                            payment_method=pm.export())
    if cards.needs_three_d_secure(pm.number, pm.set_up) or si.request_three_d_secure == "any":
        si.status, si.next_action = "requires_action", core.three_d_secure_action(si)
        events.emit("setup_intent.requires_action", si)
    else:
        setup_succeeded(si, pm)
    return si


def authenticate_setup_intent(id, client_secret=None, success=None):
    """The 3-D Secure page's answer (POST .../_authenticate with client_secret and
    success=true|false, sandbox only), as for PaymentIntents."""
    si = retrieve_setup_intent(id)
    core.check_client_secret(si, client_secret)
    if success not in ("true", "false"):
        raise invalid_request("Invalid boolean", code="parameter_invalid_boolean",
                              param="success")
    if si.status != "requires_action":
        raise unexpected_state(
            si, "This SetupIntent cannot be authenticated because it has a status of "
            f"{si.status}. Only a SetupIntent with the status requires_action may be "
            "authenticated.")
    pm = payment_methods.PaymentMethod.get(si.payment_method)
    if success == "true":
        setup_succeeded(si, pm)
    else:
        setup_failed(si, pm, {"code": "setup_intent_authentication_failure",
                              "message": AUTHENTICATION_FAILURE,
                              "type": "invalid_request_error"})
    return si


def cancel_setup_intent(intent, cancellation_reason=None):
    si = retrieve_setup_intent(intent)
    if si.status == "canceled":
        raise unexpected_state(
            si, "You cannot cancel this SetupIntent because it is already canceled.")
    if si.status not in CONFIRMABLE:
        raise unexpected_state(
            si, f"You cannot cancel this SetupIntent because it has a status of {si.status}. "
            "Only a SetupIntent with one of the following statuses may be canceled: "
            "`requires_payment_method`, `requires_confirmation`, or `requires_action`.")
    si.status, si.next_action = "canceled", None
    si.cancellation_reason = cancellation_reason
    events.emit("setup_intent.canceled", si)
    return si


def get_setup_intent(intent, client_secret=None):
    si = retrieve_setup_intent(intent)
    if client_secret is not None:
        core.check_client_secret(si, client_secret)
    return si


def list_setup_intents(customer=None, payment_method=None, created=None, limit=None,
                       starting_after=None, ending_before=None):
    in_period = core.created_filter(created)
    items = newest_first(SetupIntent, lambda si: customer in (None, si.customer)
                         and payment_method in (None, si.payment_method)
                         and in_period(si.created))
    return Page("/v1/setup_intents", items, limit, starting_after, ending_before)


ROUTES = [
    ("POST", "/v1/setup_intents", create_setup_intent),
    ("GET", "/v1/setup_intents", list_setup_intents),
    ("GET", "/v1/setup_intents/{intent}", get_setup_intent),
    ("POST", "/v1/setup_intents/{intent}", update_setup_intent),
    ("POST", "/v1/setup_intents/{intent}/confirm", confirm_setup_intent),
    ("POST", "/v1/setup_intents/{intent}/cancel", cancel_setup_intent),
]
HOOKS = [
    ("POST", "/v1/setup_intents/{id}/_authenticate", authenticate_setup_intent),
]
