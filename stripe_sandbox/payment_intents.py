"""PaymentIntents and the charges they make, as Stripe runs them for cards.

PaymentIntents (`pi_`):
- create (amount, currency, customer, payment_method, `allowed_payment_method_types` or
  `automatic_payment_methods` (cards only either way), capture_method, setup_future_usage,
  description, metadata, receipt_email, shipping, statement descriptors, transfer_group,
  payment_method_options[card][request_three_d_secure]; `confirm=true` confirms at once);
- confirm (payment_method or payment_method_data, return_url; from a server or from Stripe.js
  with the publishable key and the client_secret): statuses checked as Stripe does; a new
  attempt after a decline; 3-D Secure cards get a real `next_action` (redirect_to_url with a
  return_url, else use_stripe_sdk) and `requires_action`; a declined card is a 402
  card_error carrying the PaymentIntent, which goes back to `requires_payment_method` with
  `last_payment_error` and without its payment method;
- `_authenticate` (the 3-D Secure page's answer, sandbox only: client_secret, success);
- update (checked against the status; a new payment method means a new confirmation), cancel
  (cancellation_reason), capture (amount_to_capture), retrieve, list (customer, created);
- with setup_future_usage and a customer, the card is attached to the customer once the
  payment is authorized; 4000002500003155 then needs no more 3-D Secure.
Events: payment_intent.created, .requires_action, .payment_failed, .succeeded,
.amount_capturable_updated, .canceled; charge.succeeded (authorized, captured or not) or
charge.failed before the PaymentIntent's own event; charge.captured.

Charges (`ch_`): made by PaymentIntents (or by `POST /v1/charges` with a card `source`), with
the pinned version's fields (outcome, payment_method_details, billing_details, receipt_url,
`disputed`...); `refunds` only when expanded; captured funds enter the balance (balance.py).
With capture_method `automatic_async` (Stripe's default) a charge gets its balance
transaction a moment after it succeeds (charge.updated), as at Stripe; with `automatic` at
once.
`GET /v1/charges/{id}`, `GET /v1/charges` (payment_intent, customer, created), and a receipt
page at `receipt_url`.
"""

from __future__ import annotations

import html

from . import balance, cards, core, events, payment_methods
from .core import Page, Resource, StripeError, invalid_param, invalid_request, newest_first
from .payment_methods import PaymentMethod, check_usable, retrieve_customer

AUTHENTICATION_FAILURE = (
    "The provided PaymentMethod has failed authentication. You can provide "
    "payment_method_data or a new PaymentMethod to attempt to fulfill this "
    "PaymentIntent again."
)
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
              "requires_action")
SUCCESSFUL = ("succeeded", "processing", "requires_capture")
# What may still change once a PaymentIntent is final.
ALWAYS_UPDATABLE = ("description", "metadata")
# Statuses in which a refund counts in its charge's amount_refunded (refunds.py).
REFUND_COUNTED = ("pending", "requires_action", "succeeded")
# Seconds until an asynchronously captured charge has its balance transaction.
ASYNC_CAPTURE_DELAY = 0.5


# --- Charges -------------------------------------------------------------------------------------


class Charge(Resource):
    object = "charge"
    prefix = "ch_"
    expandable_only = {"refunds": "refunds_list"}

    def __init__(self, amount, currency, pm: PaymentMethod, *, customer=None,
                 payment_intent=None, capture=True, asynchronous=False, description=None,
                 metadata=None, receipt_email=None, statement_descriptor=None,
                 transfer_group=None):
        super().__init__()
        self.amount = amount
        self.currency = currency
        self.payment_method = pm.id
        self.number = pm.number
        self.card = dict(pm.card)
        self.billing_details = dict(pm.billing_details)
        self.customer = customer
        self.payment_intent = payment_intent
        self.description = description
        self.metadata = core.merge_metadata({}, metadata)
        self.receipt_email = receipt_email
        self.statement_descriptor = statement_descriptor
        self.transfer_group = transfer_group
        self.refunds: list = []  # Refund objects, oldest first (refunds.py)
        self.balance_transaction = None
        self.captured = False
        self.amount_captured = 0
        decline = cards.decline_when_charged(pm.number)
        if decline:
            self.status = "failed"
            self.failure_code, self.decline_code, self.failure_message = decline
        else:
            self.status = "succeeded"
            self.failure_code = self.decline_code = self.failure_message = None
            if capture:
                self.capture(amount, asynchronous)

    def capture(self, amount: int, asynchronous: bool = False) -> None:
        """Captured now; its funds (balance transaction) now, or, captured asynchronously
        (capture_method automatic_async, Stripe's default), a moment later, announced by
        charge.updated: until then `balance_transaction` is null, as at Stripe."""
        self.captured, self.amount_captured = True, amount
        if asynchronous:
            core.later(ASYNC_CAPTURE_DELAY, self.record_funds)
        else:
            self.record_funds(announce=False)

    def record_funds(self, announce: bool = True) -> None:
        """The captured charge's funds enter the balance (once: a refund or a transfer out of
        this charge that comes first brings it forward)."""
        if self.balance_transaction is not None or not self.captured:
            return
        self.balance_transaction = balance.charge_funds(
            self.id, self.amount_captured, self.currency,
            self.number == cards.AVAILABLE_AT_ONCE)
        if announce:
            events.emit("charge.updated", self,
                        previous_attributes={"balance_transaction": None})

    @property
    def amount_refunded(self) -> int:
        return sum(r.amount for r in self.refunds if r.status in REFUND_COUNTED)

    @property
    def refunded(self) -> bool:
        total = self.amount_captured if self.captured else self.amount
        return total > 0 and self.amount_refunded >= total

    def refunds_list(self, expand: list[str]) -> dict:
        url = f"/v1/charges/{self.id}/refunds"
        return Page(url, list(reversed(self.refunds)), 100).export(
            [f"data.{p}" for p in expand if p])

    def outcome(self) -> dict:
        if self.status == "failed":
            return {"advice_code": None, "network_advice_code": None,
                    "network_decline_code": None, "network_status": "declined_by_network",
                    "reason": self.decline_code, "risk_level": "normal", "risk_score": 20,
                    "seller_message": "The bank did not return any further details with this "
                                      "decline.", "type": "issuer_declined"}
        return {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                "network_status": "approved_by_network", "reason": None, "risk_level": "normal",
                "risk_score": 20, "seller_message": "Payment complete.", "type": "authorized"}

    def to_dict(self) -> dict:
        card = self.card
        return {
            "id": self.id, "object": "charge", "amount": self.amount,
            "amount_captured": self.amount_captured, "amount_refunded": self.amount_refunded,
            "application": None, "application_fee": None, "application_fee_amount": None,
            "balance_transaction": self.balance_transaction,
            "billing_details": self.billing_details,
            "calculated_statement_descriptor": self.statement_descriptor or "SHOPSPHERE",
            "captured": self.captured, "created": self.created, "currency": self.currency,
            "customer": self.customer, "description": self.description, "disputed": False,
            "failure_balance_transaction": None, "failure_code": self.failure_code,
            "failure_message": self.failure_message, "fraud_details": {}, "livemode": False,
            "metadata": self.metadata, "on_behalf_of": None, "outcome": self.outcome(),
            "paid": self.status == "succeeded", "payment_intent": self.payment_intent,
            "payment_method": self.payment_method,
            "payment_method_details": {"type": "card", "card": {
                "amount_authorized": self.amount if self.status == "succeeded" else None,
                "authorization_code": None, "brand": card["brand"],
                "checks": {"address_line1_check": None, "address_postal_code_check": None,
                           "cvc_check": "fail" if self.failure_code == "incorrect_cvc"
                           else "pass"},
                "country": card["country"], "exp_month": card["exp_month"],
                "exp_year": card["exp_year"], "fingerprint": card["fingerprint"],
                "funding": card["funding"], "last4": card["last4"], "network": card["brand"],
                "network_token": {"used": False}, "regulated_status": "unregulated",
                "three_d_secure": None, "wallet": None}},
            "receipt_email": self.receipt_email, "receipt_number": None,
            "receipt_url": f"{core.PUBLIC_URL}/receipts/{self.id}",
            "refunded": self.refunded, "review": None, "shipping": None,
            "source_transfer": None, "statement_descriptor": self.statement_descriptor,
            "statement_descriptor_suffix": None, "status": self.status, "transfer_data": None,
            "transfer_group": self.transfer_group,
        }


def retrieve_charge(id, param="charge") -> Charge:
    return Charge.named(id, param)


def get_charge(charge):
    return retrieve_charge(charge, "id")


def card_error(charge: Charge, **fields) -> StripeError:
    return StripeError(402, "card_error", charge.failure_message, code=charge.failure_code,
                       decline_code=charge.decline_code, charge=charge.id, **fields)


def create_charge(amount=None, currency=None, source=None, customer=None, capture=None,
                  description=None, metadata=None, receipt_email=None,
                  statement_descriptor=None, transfer_group=None):
    """POST /v1/charges with a card PaymentMethod as `source` (the legacy Charges API)."""
    pm = payment_methods.retrieve_payment_method(source, "source")
    core.positive(amount)
    charge = Charge(amount, currency, pm, customer=customer or pm.customer,
                    capture=capture is not False, description=description, metadata=metadata,
                    receipt_email=receipt_email, statement_descriptor=statement_descriptor,
                    transfer_group=transfer_group)
    if charge.status == "failed":
        events.emit("charge.failed", charge)
        raise card_error(charge)
    events.emit("charge.succeeded", charge)
    return charge


def list_charges(payment_intent=None, customer=None, created=None, limit=None,
                 starting_after=None, ending_before=None):
    in_period = core.created_filter(created)
    items = newest_first(Charge, lambda c: payment_intent in (None, c.payment_intent)
                         and customer in (None, c.customer) and in_period(c.created))
    return Page("/v1/charges", items, limit, starting_after, ending_before)


async def receipt_page(request):
    """What Charge.receipt_url points at."""
    charge = retrieve_charge(request.match_info["id"], "id")
    card = charge.card
    return core.page("Receipt", f"""<dl>
<dt>Amount</dt><dd>{html.escape(core.major_units(charge.amount, charge.currency))} \
{html.escape(charge.currency.upper())}</dd>
<dt>Card</dt><dd>{html.escape(f"{card['brand']} ending in {card['last4']}")}</dd>
<dt>Status</dt><dd>{html.escape(charge.status)}</dd>
<dt>Charge</dt><dd>{html.escape(charge.id)}</dd></dl>""")


# --- PaymentIntents -----------------------------------------------------------------------------


class PaymentIntent(Resource):
    object = "payment_intent"
    prefix = "pi_"

    def __init__(self, amount, currency, *, customer=None, description=None, metadata=None,
                 capture_method=None, setup_future_usage=None, receipt_email=None,
                 shipping=None, statement_descriptor=None, statement_descriptor_suffix=None,
                 transfer_group=None, allowed_payment_method_types=None,
                 automatic_payment_methods=None, request_three_d_secure=None):
        super().__init__()
        self.amount = amount
        self.currency = currency
        self.customer = customer
        self.description = description or None
        self.metadata = core.merge_metadata({}, metadata)
        self.capture_method = capture_method or "automatic_async"
        self.setup_future_usage = setup_future_usage or None
        self.receipt_email = receipt_email or None
        self.shipping = shipping
        self.statement_descriptor = statement_descriptor or None
        self.statement_descriptor_suffix = statement_descriptor_suffix or None
        self.transfer_group = transfer_group or None
        self.allowed_payment_method_types = allowed_payment_method_types
        self.automatic_payment_methods = automatic_payment_methods
        self.request_three_d_secure = request_three_d_secure or "automatic"
        self.client_secret = f"{self.id}_secret_{core.random_id(24)}"
        self.payment_method: str | None = None
        self.latest_charge: Charge | None = None
        self.next_action: dict | None = None
        self.status = "requires_payment_method"
        self.canceled_at = self.cancellation_reason = None
        self.return_url: str | None = None
        self.use_stripe_sdk = False
        self.authentication_failed = False
        self.failed_payment_method: str | None = None  # of the last failed attempt

    @property
    def amount_capturable(self) -> int:
        return self.amount if self.status == "requires_capture" else 0

    @property
    def amount_received(self) -> int:
        charge = self.latest_charge
        return charge.amount_captured if charge is not None and charge.captured else 0

    def last_payment_error(self) -> dict | None:
        charge = self.latest_charge
        if self.authentication_failed:
            error = {"code": "payment_intent_authentication_failure",
                     "message": AUTHENTICATION_FAILURE, "type": "invalid_request_error"}
        elif charge is not None and charge.status == "failed":
            error = {"charge": charge.id, "code": charge.failure_code,
                     "decline_code": charge.decline_code, "message": charge.failure_message,
                     "type": "card_error"}
        else:
            return None
        error["doc_url"] = core.doc_url(error["code"])
        pm = PaymentMethod.get(self.failed_payment_method or self.payment_method)
        error["payment_method"] = pm.export() if pm else None
        return error

    def to_dict(self) -> dict:
        return {
            "id": self.id, "object": "payment_intent", "amount": self.amount,
            "amount_capturable": self.amount_capturable,
            "amount_received": self.amount_received, "application": None,
            "application_fee_amount": None,
            "allowed_payment_method_types": self.allowed_payment_method_types,
            "automatic_payment_methods": self.automatic_payment_methods,
            "canceled_at": self.canceled_at, "cancellation_reason": self.cancellation_reason,
            "capture_method": self.capture_method, "client_secret": self.client_secret,
            "confirmation_method": "automatic", "created": self.created,
            "currency": self.currency, "customer": self.customer,
            "description": self.description, "excluded_payment_method_types": None,
            "last_payment_error": self.last_payment_error(),
            "latest_charge": self.latest_charge.id if self.latest_charge else None,
            "livemode": False, "metadata": self.metadata, "next_action": self.next_action,
            "on_behalf_of": None, "payment_method": self.payment_method,
            "payment_method_configuration_details": None,
            "payment_method_options": {"card": {
                "installments": None, "mandate_options": None, "network": None,
                "request_three_d_secure": self.request_three_d_secure}},
            "payment_method_types": ["card"], "processing": None,
            "receipt_email": self.receipt_email, "review": None,
            "setup_future_usage": self.setup_future_usage, "shipping": self.shipping,
            "source": None, "statement_descriptor": self.statement_descriptor,
            "statement_descriptor_suffix": self.statement_descriptor_suffix,
            "status": self.status, "transfer_data": None, "transfer_group": self.transfer_group,
        }


def retrieve_payment_intent(id, param="payment_intent") -> PaymentIntent:
    return PaymentIntent.named(id, param)


def card_types(allowed, automatic) -> None:
    """The sandbox takes cards only (the Dashboard of its account enables nothing else)."""
    if allowed is not None and "card" not in allowed:
        raise invalid_request(
            "The Stripe sandbox only takes card payments: allowed_payment_method_types must "
            "include `card`.", param="allowed_payment_method_types")
    if automatic is not None and not automatic.get("enabled") and allowed is None:
        raise invalid_request(
            "Specify allowed_payment_method_types or automatic_payment_methods[enabled]=true.",
            param="automatic_payment_methods[enabled]")


def card_options(options) -> str | None:
    card = (options or {}).get("card") or {}
    return card.get("request_three_d_secure")


def create_payment_intent(amount=None, currency=None, customer=None, payment_method=None,
                          description=None, metadata=None, capture_method=None,
                          setup_future_usage=None, receipt_email=None, shipping=None,
                          statement_descriptor=None, statement_descriptor_suffix=None,
                          transfer_group=None, allowed_payment_method_types=None,
                          automatic_payment_methods=None, payment_method_options=None,
                          confirm=None, return_url=None, use_stripe_sdk=None,
                          payment_method_data=None):
    """POST /v1/payment_intents."""
    core.positive(amount)
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
        check_usable(pm, customer, "pi")
    if automatic_payment_methods is not None:
        automatic_payment_methods = {
            "allow_redirects": automatic_payment_methods.get("allow_redirects", "always"),
            "enabled": automatic_payment_methods["enabled"]}
    pi = PaymentIntent(
        amount, currency, customer=customer, description=description, metadata=metadata,
        capture_method=capture_method, setup_future_usage=setup_future_usage,
        receipt_email=receipt_email, shipping=shipping,
        statement_descriptor=statement_descriptor,
        statement_descriptor_suffix=statement_descriptor_suffix, transfer_group=transfer_group,
        allowed_payment_method_types=allowed_payment_method_types,
        automatic_payment_methods=automatic_payment_methods,
        request_three_d_secure=card_options(payment_method_options))
    if pm is not None:
        pi.payment_method, pi.status = pm.id, "requires_confirmation"
    events.emit("payment_intent.created", pi)
    if confirm:
        confirm_payment_intent(pi.id, payment_method_data=payment_method_data,
                               return_url=return_url, use_stripe_sdk=use_stripe_sdk)
    return pi


def unexpected_state(pi, action, allowed) -> StripeError:
    return invalid_request(
        f"You cannot {action} this PaymentIntent because it has a status of {pi.status}. "
        f"Only a PaymentIntent with one of the following statuses may be {action}ed: "
        f"{', '.join(allowed)}.", code="payment_intent_unexpected_state",
        payment_intent=pi.export())


def confirm_payment_intent(intent, payment_method=None, payment_method_data=None,
                           client_secret=None, return_url=None, use_stripe_sdk=None,
                           setup_future_usage=None, receipt_email=None, shipping=None,
                           payment_method_options=None):
    """POST /v1/payment_intents/{id}/confirm, from a server (secret key) or from Stripe.js
    (publishable key and client_secret)."""
    pi = retrieve_payment_intent(intent, "id")
    if client_secret is not None:
        core.check_client_secret(pi, client_secret)
    if pi.status not in CONFIRMABLE:
        raise unexpected_state(pi, "confirm", CONFIRMABLE)
    if payment_method_data is not None:
        payment_method = payment_methods.create_payment_method(**payment_method_data).id
    payment_method = payment_method or pi.payment_method
    if payment_method is None:
        raise invalid_request(
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "Update the PaymentIntent with a payment method and then confirm it again.",
            code="payment_intent_unexpected_state", payment_intent=pi.export())
    pm = payment_methods.retrieve_payment_method(payment_method)
    check_usable(pm, pi.customer, "pi", intent=pi)
    if setup_future_usage is not None:
        pi.setup_future_usage = setup_future_usage or None
    if receipt_email is not None:
        pi.receipt_email = receipt_email or None
    if shipping is not None:
        pi.shipping = shipping or None
    if card_options(payment_method_options):
        pi.request_three_d_secure = card_options(payment_method_options)
    if return_url is not None:
        pi.return_url = return_url
    pi.use_stripe_sdk = use_stripe_sdk is True
    # A new attempt: a declined charge goes (it stays retrievable by its id).
    pi.payment_method, pi.latest_charge, pi.next_action = pm.id, None, None
    pi.failed_payment_method, pi.authentication_failed = None, False
    if cards.needs_three_d_secure(pm.number, pm.set_up) or pi.request_three_d_secure == "any":
        pi.status, pi.next_action = "requires_action", core.three_d_secure_action(pi)
        events.emit("payment_intent.requires_action", pi)
    else:
        charge(pi)
    return pi


def charge(pi: PaymentIntent) -> None:
    """Charge the PaymentIntent's card; a decline is raised as Stripe's 402."""
    pm = PaymentMethod.get(pi.payment_method)
    capture = pi.capture_method != "manual"
    pi.latest_charge = Charge(pi.amount, pi.currency, pm, customer=pi.customer,
                              payment_intent=pi.id, capture=capture,
                              asynchronous=pi.capture_method == "automatic_async",
                              description=pi.description, receipt_email=pi.receipt_email,
                              statement_descriptor=pi.statement_descriptor,
                              transfer_group=pi.transfer_group)
    if pi.latest_charge.status == "failed":
        events.emit("charge.failed", pi.latest_charge)
        pi.failed_payment_method, pi.payment_method = pi.payment_method, None
        pi.status = "requires_payment_method"
        events.emit("payment_intent.payment_failed", pi)
        raise card_error(pi.latest_charge, payment_intent=pi.export(),
                         payment_method=pi.last_payment_error()["payment_method"])
    events.emit("charge.succeeded", pi.latest_charge)
    save_payment_method(pi)
    if capture:
        pi.status = "succeeded"
        events.emit("payment_intent.succeeded", pi)
    else:
        pi.status = "requires_capture"
        events.emit("payment_intent.amount_capturable_updated", pi)


def save_payment_method(pi: PaymentIntent) -> None:
    """setup_future_usage with a customer: once the payment is authorized, Stripe attaches
    its PaymentMethod to the customer."""
    if not (pi.customer and pi.setup_future_usage and pi.payment_method):
        return
    pm = PaymentMethod.get(pi.payment_method)
    pm.set_up = True
    if pm.customer is None:
        payment_methods.attach(pm, pi.customer, verify=False)


def authenticate_payment_intent(id, client_secret=None, success=None):
    """The 3-D Secure page's answer (POST .../_authenticate with client_secret and
    success=true|false, sandbox only): the charge, or Stripe's authentication failure."""
    pi = retrieve_payment_intent(id, "id")
    core.check_client_secret(pi, client_secret)
    if success not in ("true", "false"):
        raise invalid_request("Invalid boolean", code="parameter_invalid_boolean",
                              param="success")
    if pi.status != "requires_action":
        raise unexpected_state(pi, "authenticate", ("requires_action",))
    pi.next_action = None
    if success == "true":
        try:
            charge(pi)
        except StripeError as error:
            if error.status != 402:
                raise  # authenticated, then declined: see last_payment_error
    else:
        pi.authentication_failed = True
        pi.failed_payment_method, pi.payment_method = pi.payment_method, None
        pi.status = "requires_payment_method"
        events.emit("payment_intent.payment_failed", pi)
    return pi


def update_payment_intent(intent, **changes):
    """POST /v1/payment_intents/{id}, with Stripe's checks of the status."""
    pi = retrieve_payment_intent(intent, "id")
    updatable = ("amount", "currency", "customer", "description", "metadata",
                 "payment_method", "setup_future_usage", "receipt_email", "shipping",
                 "statement_descriptor", "statement_descriptor_suffix", "transfer_group",
                 "capture_method")
    for name in changes:
        if name not in updatable:
            raise core.not_modelled(name)
    if pi.status not in CONFIRMABLE:
        for key in sorted(set(changes) - set(ALWAYS_UPDATABLE)):
            raise invalid_request(
                f"This PaymentIntent's {key} could not be updated because it has a status "
                f"of {pi.status}. You may only update the {key} of a PaymentIntent with "
                f"one of the following statuses: {', '.join(CONFIRMABLE)}.",
                code="payment_intent_unexpected_state", payment_intent=pi.export())
    if "amount" in changes:
        core.positive(changes["amount"])
    if "customer" in changes:
        changes["customer"] = retrieve_customer(changes["customer"]).id
    if "metadata" in changes:
        changes["metadata"] = core.merge_metadata(pi.metadata, changes["metadata"])
    for name in ("setup_future_usage", "description", "receipt_email", "transfer_group",
                 "statement_descriptor", "statement_descriptor_suffix"):
        if name in changes:
            changes[name] = changes[name] or None
    customer = changes.get("customer", pi.customer)
    pm_id = changes.pop("payment_method", None) or pi.payment_method
    if pm_id:
        pm = payment_methods.retrieve_payment_method(pm_id)
        check_usable(pm, customer, "pi", intent=pi)
        if pm.id != pi.payment_method:  # a new payment method: to be confirmed
            pi.payment_method, pi.next_action, pi.latest_charge = pm.id, None, None
            pi.status = "requires_confirmation"
    vars(pi).update(changes)
    return pi


def cancel_payment_intent(intent, cancellation_reason=None):
    pi = retrieve_payment_intent(intent, "id")
    if pi.status not in CANCELABLE:
        raise unexpected_state(pi, "cancel", CANCELABLE)
    pi.status, pi.next_action = "canceled", None
    pi.canceled_at, pi.cancellation_reason = core.now(), cancellation_reason
    events.emit("payment_intent.canceled", pi)
    return pi


def capture_payment_intent(intent, amount_to_capture=None):
    """POST /v1/payment_intents/{id}/capture: all or part of what was authorized."""
    pi = retrieve_payment_intent(intent, "id")
    if pi.status != "requires_capture":
        raise unexpected_state(pi, "capture", ("requires_capture",))
    amount = pi.amount if amount_to_capture is None else amount_to_capture
    if not 1 <= amount <= pi.amount:
        raise invalid_request(
            f"The amount to capture must be between 1 and {pi.amount}.",
            code="parameter_invalid_integer", param="amount_to_capture")
    pi.latest_charge.capture(amount)
    pi.status = "succeeded"
    events.emit("charge.captured", pi.latest_charge)
    events.emit("payment_intent.succeeded", pi)
    return pi


def get_payment_intent(intent, client_secret=None):
    pi = retrieve_payment_intent(intent, "id")
    if client_secret is not None:
        core.check_client_secret(pi, client_secret)
    return pi


def list_payment_intents(customer=None, created=None, limit=None, starting_after=None,
                         ending_before=None):
    in_period = core.created_filter(created)
    items = newest_first(PaymentIntent, lambda p: customer in (None, p.customer)
                         and in_period(p.created))
    return Page("/v1/payment_intents", items, limit, starting_after, ending_before)


ROUTES = [
    ("POST", "/v1/payment_intents", create_payment_intent),
    ("GET", "/v1/payment_intents", list_payment_intents),
    ("GET", "/v1/payment_intents/{intent}", get_payment_intent),
    ("POST", "/v1/payment_intents/{intent}", update_payment_intent),
    ("POST", "/v1/payment_intents/{intent}/confirm", confirm_payment_intent),
    ("POST", "/v1/payment_intents/{intent}/cancel", cancel_payment_intent),
    ("POST", "/v1/payment_intents/{intent}/capture", capture_payment_intent),
    ("POST", "/v1/charges", create_charge),
    ("GET", "/v1/charges", list_charges),
    ("GET", "/v1/charges/{charge}", get_charge),
]
HOOKS = [
    ("POST", "/v1/payment_intents/{id}/_authenticate", authenticate_payment_intent),
]
PAGES = [
    ("GET", "/receipts/{id}", receipt_page),
]
