"""Customers and their saved payment methods (cards), as Stripe keeps them.

Customers (`cus_`): create, retrieve, update, list (email, created). `invoice_settings` has all
its fields and merges on update; its `default_payment_method` must be attached to that
customer (400 "The customer does not have a payment method with the ID ..."), "" unsets it.
`customer.created`, `customer.updated` with previous_attributes.

PaymentMethods (`pm_`, cards only): created from a card number (Stripe.js does it with the
publishable key); Stripe's checks of the number (Luhn), expiry and CVC are card_errors (402).
Brand, country and funding follow Stripe's test cards (cards.py); `card.fingerprint` is the
same for the same number. Test ids such as `pm_card_visa` become a new PaymentMethod wherever
they are used, as at Stripe.
- attach (`payment_method.attached`): one customer per PaymentMethod ("... already been
  attached to a customer."); a card declined when saved is a 402 card_error; a detached
  PaymentMethod cannot be used again.
- detach (`payment_method.detached`, previous_attributes.customer): it stops being its
  customer's default (`customer.updated`).
- update (`payment_method.updated`): only card[exp_month], card[exp_year], billing_details,
  metadata, allow_redisplay, and only once saved to a customer.
- lists (`GET /v1/payment_methods?customer=`, `GET /v1/customers/{id}/payment_methods`),
  newest first, and `GET /v1/customers/{id}/payment_methods/{pm}` (404 unless its own).
- the card account updater's test hook, `POST /_sandbox/payment_methods/{id}/
  automatically_update` (exp_month, exp_year, optional last4):
  `payment_method.automatically_updated`.
"""

from __future__ import annotations

import time

from . import cards, core, events
from .core import (
    Page,
    Resource,
    StripeError,
    invalid_request,
    missing_parameter,
    newest_first,
    no_such,
)

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


def card_error(message: str, code: str, param: str | None = None, **fields) -> StripeError:
    return StripeError(402, "card_error", message, code=code, param=param, **fields)


def billing_details_shape(details: dict | None) -> dict:
    """Stripe always returns every billing_details field, null if unknown."""
    details = details or {}
    address = details.get("address") or {}
    return {
        "address": {key: address.get(key) or None
                    for key in ("city", "country", "line1", "line2", "postal_code", "state")},
        "email": details.get("email") or None,
        "name": details.get("name") or None,
        "phone": details.get("phone") or None,
        "tax_id": None,
    }


def card_expiry(month, year, current=None) -> tuple[int, int]:
    """Stripe's checks of an expiry date (2-digit years are 20xx)."""
    month = current[0] if month is None else month
    year = current[1] if year is None else year
    if not 1 <= month <= 12:
        raise card_error("Your card's expiration month is invalid.", "invalid_expiry_month",
                         "card[exp_month]")
    if 0 <= year < 100:
        year += 2000
    today = time.gmtime()
    if not today.tm_year <= year <= today.tm_year + 50:
        raise card_error("Your card's expiration year is invalid.", "invalid_expiry_year",
                         "card[exp_year]")
    if (year, month) < (today.tm_year, today.tm_mon):
        raise card_error("Your card's expiration date is in the past.", "invalid_expiry_month",
                         "card[exp_month]")
    return month, year


# --- Customers -----------------------------------------------------------------------------------


class Customer(Resource):
    object = "customer"
    prefix = "cus_"

    def __init__(self, email=None, name=None, description=None, phone=None, address=None,
                 metadata=None, preferred_locales=None):
        super().__init__()
        self.address = address
        self.description = description or None
        self.email = email or None
        self.invoice_settings = {"custom_fields": None, "default_payment_method": None,
                                 "footer": None, "rendering_options": None}
        self.metadata = core.merge_metadata({}, metadata)
        self.name = name or None
        self.phone = phone or None
        self.preferred_locales = preferred_locales or []

    def to_dict(self) -> dict:
        return {
            "id": self.id, "object": "customer", "address": self.address, "balance": 0,
            "created": self.created, "currency": None, "default_source": None,
            "delinquent": False, "description": self.description, "discount": None,
            "email": self.email, "invoice_prefix": self.id[4:12].upper(),
            "invoice_settings": self.invoice_settings, "livemode": False,
            "metadata": self.metadata, "name": self.name, "next_invoice_sequence": 1,
            "phone": self.phone, "preferred_locales": self.preferred_locales,
            "shipping": None, "tax_exempt": "none", "test_clock": None,
        }


def retrieve_customer(id, param="customer") -> Customer:
    return Customer.named(id, param)


def default_payment_method(customer_id, pm_id, param) -> str | None:
    """invoice_settings.default_payment_method, checked like Stripe: attached to this
    customer; "" unsets it."""
    if pm_id in (None, ""):
        return None
    pm = retrieve_payment_method(pm_id, param)
    if pm.customer is None or pm.customer != customer_id:
        raise invalid_request(
            f"The customer does not have a payment method with the ID {pm.id}. "
            "The payment method must be attached to the customer.", param=param)
    return pm.id


def create_customer(email=None, name=None, description=None, phone=None, address=None,
                    metadata=None, preferred_locales=None, invoice_settings=None,
                    payment_method=None):
    pm = retrieve_payment_method(payment_method) if payment_method else None
    default = (invoice_settings or {}).get("default_payment_method")
    if default not in (None, "") and (pm is None or default != pm.id):
        # A new customer has no PaymentMethod but the one it attaches.
        default_payment_method(None, default, "invoice_settings[default_payment_method]")
    customer = Customer(email, name, description, phone, address, metadata, preferred_locales)
    customer.invoice_settings.update(
        {k: v for k, v in (invoice_settings or {}).items() if k != "default_payment_method"})
    events.emit("customer.created", customer)
    if pm is not None:
        attach(pm, customer.id)
        if default:
            update_customer(customer.id, invoice_settings={"default_payment_method": pm.id})
    return customer


def update_customer(customer, invoice_settings=None, **changes):
    """POST /v1/customers/{id}: invoice_settings merge, and their default_payment_method
    must be attached to the customer."""
    obj = Customer.retrieve(customer)
    for name in changes:
        if name not in ("email", "name", "description", "phone", "address", "metadata",
                        "preferred_locales"):
            raise core.not_modelled(name)
    if invoice_settings is not None:
        settings = {**obj.invoice_settings, **invoice_settings}
        if "default_payment_method" in invoice_settings:
            settings["default_payment_method"] = default_payment_method(
                obj.id, invoice_settings["default_payment_method"],
                "invoice_settings[default_payment_method]")
        changes["invoice_settings"] = settings
    if "metadata" in changes:
        changes["metadata"] = core.merge_metadata(obj.metadata, changes["metadata"])
    for name in ("email", "name", "description", "phone"):
        if name in changes:
            changes[name] = changes[name] or None
    previous = core.previous_attributes(obj, changes)
    vars(obj).update(changes)
    events.emit("customer.updated", obj, previous_attributes=previous)
    return obj


def list_customers(email=None, created=None, limit=None, starting_after=None,
                   ending_before=None):
    in_period = core.created_filter(created)
    items = newest_first(Customer, lambda c: email in (None, c.email) and in_period(c.created))
    return Page("/v1/customers", items, limit, starting_after, ending_before)


# --- Payment methods ------------------------------------------------------------------------------


class PaymentMethod(Resource):
    object = "payment_method"
    prefix = "pm_"

    def __init__(self, number: str, exp_month: int, exp_year: int, billing_details=None,
                 metadata=None, allow_redisplay=None):
        super().__init__()
        self.number = number  # never answered: the sandbox's stand-in for the card network
        brand = cards.brand(number)
        self.card = {
            "brand": brand,
            "checks": {"address_line1_check": None, "address_postal_code_check": None,
                       "cvc_check": None},
            "country": cards.country(number),
            "display_brand": brand,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": core.fingerprint(number),
            "funding": cards.funding(number),
            "generated_from": None,
            "last4": number[-4:],
            "networks": {"available": [brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        }
        self.billing_details = billing_details_shape(billing_details)
        self.allow_redisplay = allow_redisplay or "unspecified"
        self.customer = None
        self.metadata = core.merge_metadata({}, metadata)
        self.detached = False  # a detached PaymentMethod cannot be used again
        self.set_up = False  # authenticated for later payments (SetupIntent, setup_future_usage)

    def to_dict(self) -> dict:
        return {
            "id": self.id, "object": "payment_method", "allow_redisplay": self.allow_redisplay,
            "billing_details": self.billing_details, "card": self.card,
            "created": self.created, "customer": self.customer, "livemode": False,
            "metadata": self.metadata, "type": "card",
        }


def new_card(number, exp_month, exp_year, cvc=None, **details) -> PaymentMethod:
    """A card PaymentMethod, with Stripe's checks of the number, expiry and CVC."""
    if not (number.isdigit() and 13 <= len(number) <= 19 and cards.luhn_valid(number)):
        raise card_error("Your card number is incorrect.", "incorrect_number", "number")
    month, year = card_expiry(exp_month, exp_year)
    if cvc is not None and not (cvc.isdigit() and len(cvc) in (3, 4)):
        raise card_error("Your card's security code is invalid.", "invalid_cvc", "cvc")
    return PaymentMethod(number, month, year, **details)


def create_payment_method(type=None, card=None, billing_details=None, metadata=None,
                          allow_redisplay=None):
    """POST /v1/payment_methods (cards; Stripe.js sends the number with a publishable key)."""
    if type != "card":
        raise invalid_request("The Stripe sandbox only creates `card` payment methods.",
                              param="type")
    if not card or "number" not in card:
        raise missing_parameter("card[number]")
    for field in ("exp_month", "exp_year"):
        if field not in card:
            raise missing_parameter(f"card[{field}]")
    return new_card(card["number"], card["exp_month"], card["exp_year"], card.get("cvc"),
                    billing_details=billing_details, metadata=metadata,
                    allow_redisplay=allow_redisplay)


def retrieve_payment_method(id, param="payment_method") -> PaymentMethod:
    """A PaymentMethod named in a parameter (test ids like pm_card_visa become a new one)."""
    if id in cards.TEST_PAYMENT_METHODS:
        return new_card(cards.TEST_PAYMENT_METHODS[id], 12, time.gmtime().tm_year + 3)
    return PaymentMethod.named(id, param, "PaymentMethod")


def get_payment_method(payment_method):
    return retrieve_payment_method(payment_method, "id")


def check_usable(pm: PaymentMethod, customer: str | None, kind: str, intent=None) -> None:
    """Stripe's rules for using `pm` on a PaymentIntent ("pi") or a SetupIntent ("seti") of
    `customer` (None: no customer). Errors raised while confirming carry the intent."""
    fields = {"param": "payment_method"}
    if intent is not None:
        fields[intent.object] = intent.export()
    if pm.detached:
        raise invalid_request(PAYMENT_METHOD_REUSED, **fields)
    if pm.customer is None or pm.customer == customer:
        return
    if customer is None:
        what = "PaymentIntent" if kind == "pi" else "SetupIntent"
        message = (f"The `payment_method` parameter supplied {pm.id} belongs to the Customer "
                   f"{pm.customer}. Please include the Customer in the `customer` parameter "
                   f"on the {what}.") if kind == "pi" else (
                   f"The payment method supplied ({pm.id}) belongs to the Customer "
                   f"{pm.customer}. Please include the Customer in the `customer` parameter "
                   f"on the {what}.")
    else:
        message = (f"The PaymentMethod {pm.id} does not belong to the Customer you supplied "
                   f"{customer}. Please use this PaymentMethod with the Customer that it "
                   "belongs to instead.")
    raise invalid_request(message, **fields)


def decline_error(decline, **fields) -> StripeError:
    code, decline_code, message = decline
    if code in DECLINE_PARAMS:
        fields.setdefault("param", DECLINE_PARAMS[code])
    return StripeError(402, "card_error", message, code=code, decline_code=decline_code,
                       **fields)


def attach(pm: PaymentMethod, customer_id: str, verify: bool = True) -> PaymentMethod:
    """Attach `pm` to a customer, as Stripe does (payment_method.attached)."""
    if pm.detached:
        raise invalid_request(ATTACH_AFTER_DETACH)
    if pm.customer == customer_id:
        return pm
    if pm.customer is not None:
        raise invalid_request(ALREADY_ATTACHED)
    decline = cards.decline_when_saved(pm.number) if verify else None
    if decline:
        raise decline_error(decline, payment_method=pm.export())
    pm.customer = customer_id
    events.emit("payment_method.attached", pm)
    return pm


def attach_payment_method(payment_method, customer=None):
    """POST /v1/payment_methods/{id}/attach."""
    pm = retrieve_payment_method(payment_method, "id")
    return attach(pm, retrieve_customer(customer).id)


def detach_payment_method(payment_method):
    """POST /v1/payment_methods/{id}/detach: the PaymentMethod cannot be used again; it stops
    being its customer's default."""
    pm = retrieve_payment_method(payment_method, "id")
    if pm.customer is None:
        raise invalid_request(NOT_ATTACHED)
    customer_id, pm.customer, pm.detached = pm.customer, None, True
    events.emit("payment_method.detached", pm, previous_attributes={"customer": customer_id})
    customer = Customer.get(customer_id)
    if customer is not None and customer.invoice_settings["default_payment_method"] == pm.id:
        customer.invoice_settings["default_payment_method"] = None
        events.emit("customer.updated", customer, previous_attributes={
            "invoice_settings": {"default_payment_method": pm.id}})
    return pm


def update_payment_method(payment_method, billing_details=None, metadata=None,
                          allow_redisplay=None, card=None):
    """POST /v1/payment_methods/{id}: on a card, Stripe only lets the expiry, billing
    details, metadata and allow_redisplay change, and only once it is saved to a customer."""
    pm = retrieve_payment_method(payment_method, "id")
    if pm.customer is None:
        raise invalid_request(UPDATE_UNATTACHED)
    changes = {}
    if card:
        month, year = card_expiry(card.get("exp_month"), card.get("exp_year"),
                                  (pm.card["exp_month"], pm.card["exp_year"]))
        changes["card"] = {**pm.card, "exp_month": month, "exp_year": year}
    if billing_details is not None:
        merged = {**pm.billing_details,
                  **{k: v or None for k, v in billing_details.items() if k != "address"}}
        merged["address"] = {**pm.billing_details["address"],
                             **{k: v or None for k, v in
                                (billing_details.get("address") or {}).items()}}
        changes["billing_details"] = billing_details_shape(merged)
    if metadata is not None:
        changes["metadata"] = core.merge_metadata(pm.metadata, metadata)
    if allow_redisplay is not None:
        changes["allow_redisplay"] = allow_redisplay
    previous = core.previous_attributes(pm, changes)
    vars(pm).update(changes)
    events.emit("payment_method.updated", pm, previous_attributes=previous)
    return pm


def automatically_update(id, exp_month=None, exp_year=None, last4=None):
    """POST /_sandbox/payment_methods/{id}/automatically_update (sandbox only): what Stripe's
    card account updater does when the bank issues a new expiry date (and maybe number)."""
    pm = retrieve_payment_method(id, "id")
    if pm.customer is None:
        raise invalid_request(
            "Only PaymentMethods attached to a customer are updated automatically.")
    if exp_month is None:
        raise missing_parameter("exp_month")
    if exp_year is None:
        raise missing_parameter("exp_year")
    if not (exp_month.isdigit() and exp_year.isdigit()):
        raise invalid_request("Invalid integer", code="parameter_invalid_integer",
                              param="exp_month" if not exp_month.isdigit() else "exp_year")
    month, year = card_expiry(int(exp_month), int(exp_year))
    card = {**pm.card, "exp_month": month, "exp_year": year}
    number = pm.number
    if last4 is not None:
        if not (len(last4) == 4 and last4.isdigit()):
            raise invalid_request("last4 must be 4 digits.", param="last4")
        number = number[:-4] + last4
        card.update(last4=last4, fingerprint=core.fingerprint(number))
    previous = core.previous_attributes(pm, {"card": card})
    pm.card, pm.number = card, number
    events.emit("payment_method.automatically_updated", pm, previous_attributes=previous)
    return pm


def list_payment_methods(customer=None, type=None, allow_redisplay=None, limit=None,
                         starting_after=None, ending_before=None):
    """GET /v1/payment_methods (customer, type): newest first."""
    if customer is not None:
        customer = retrieve_customer(customer).id
    items = newest_first(PaymentMethod, lambda pm: (
        customer in (None, pm.customer) and type in (None, "card")
        and allow_redisplay in (None, pm.allow_redisplay)))
    return Page("/v1/payment_methods", items, limit, starting_after, ending_before)


def list_customer_payment_methods(customer, type=None, allow_redisplay=None, limit=None,
                                  starting_after=None, ending_before=None):
    """GET /v1/customers/{id}/payment_methods: newest first."""
    owner = Customer.retrieve(customer)
    items = newest_first(PaymentMethod, lambda pm: (
        pm.customer == owner.id and type in (None, "card")
        and allow_redisplay in (None, pm.allow_redisplay)))
    return Page(f"/v1/customers/{owner.id}/payment_methods", items, limit, starting_after,
                ending_before)


def retrieve_customer_payment_method(customer, payment_method):
    """GET /v1/customers/{id}/payment_methods/{payment_method}."""
    owner = Customer.retrieve(customer)
    pm = PaymentMethod.get(payment_method)
    if pm is None or pm.customer != owner.id:
        raise no_such("PaymentMethod", payment_method, "payment_method", status=404)
    return pm


def get_customer(customer):
    return Customer.retrieve(customer)


ROUTES = [
    ("POST", "/v1/customers", create_customer),
    ("GET", "/v1/customers", list_customers),
    ("GET", "/v1/customers/{customer}", get_customer),
    ("POST", "/v1/customers/{customer}", update_customer),
    ("GET", "/v1/customers/{customer}/payment_methods", list_customer_payment_methods),
    ("GET", "/v1/customers/{customer}/payment_methods/{payment_method}",
     retrieve_customer_payment_method),
    ("POST", "/v1/payment_methods", create_payment_method),
    ("GET", "/v1/payment_methods", list_payment_methods),
    ("GET", "/v1/payment_methods/{payment_method}", get_payment_method),
    ("POST", "/v1/payment_methods/{payment_method}", update_payment_method),
    ("POST", "/v1/payment_methods/{payment_method}/attach", attach_payment_method),
    ("POST", "/v1/payment_methods/{payment_method}/detach", detach_payment_method),
]
HOOKS = [
    ("POST", "/_sandbox/payment_methods/{id}/automatically_update", automatically_update),
]
