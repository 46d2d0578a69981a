"""Stripe Connect in the sandbox (localstripe has none: /v1/accounts and
/v1/transfers answered 404). Routed by `server` (`add_routes`); builds on the
helpers of `patches`, which must be imported first (it is, below).

Shapes are those of API 2026-10-28.endive as stripe-python 16.1.0 reads them.

Accounts (`acct_`):
- POST /v1/accounts: `type` (express, standard, custom) or `controller[...]`
  (fees[payer], losses[payments], requirement_collection,
  stripe_dashboard[type]; not both), country (default US), email,
  business_type, business_profile, default_currency, metadata,
  capabilities[NAME][requested]. A new account has charges_enabled,
  payouts_enabled and details_submitted false, every requested capability
  `inactive` (accounts onboarded by Stripe request card_payments and
  transfers when none are), and requirements like Stripe's for its country
  and business type (business_profile.mcc, external_account,
  individual.first_name or representative.first_name, tos_acceptance.date...)
  all currently_due, eventually_due and past_due, with disabled_reason
  `requirements.past_due`. `controller` is filled in as Stripe maps the
  legacy types (express: fees.payer application_express, losses.payments
  application, requirement_collection stripe, stripe_dashboard.type
  express); an account created with controller properties has `type` none.
  Parameters Stripe takes but the sandbox does not model (individual,
  company, external_account, settings, tos_acceptance...) are refused by
  name rather than ignored.
- GET /v1/accounts/{id}, POST /v1/accounts/{id} (metadata merged, email,
  business_type, business_profile, default_currency, capabilities),
  DELETE /v1/accounts/{id} (test mode: always allowed), GET /v1/accounts
  (created, limit, starting_after, ending_before; newest first). An unknown
  or deleted account is Stripe's 403 account_invalid ("The provided key
  'sk_test_***...' does not have access to account ...").
- `account.updated` (with data.previous_attributes, and the event's
  `account` set to the connected account as Stripe does for Connect events)
  on every change: an update, onboarding, the requirements test hook.
  Stripe delivers these only to Connect webhook endpoints; the sandbox has
  one kind of endpoint and sends them there.

Account links: POST /v1/account_links (account, refresh_url, return_url,
type account_onboarding or account_update, collect, collection_options)
-> {object: account_link, created, expires_at (+300 s), url}. The url is the
sandbox's onboarding page, /connect/onboarding/{link id}: single use like
Stripe's (a second visit, or a visit after expires_at, redirects to
refresh_url). `account_update` links are refused for accounts with a
Stripe-hosted Dashboard (Express, Standard), as Stripe does. The page has
"First name", "Last name" and "IBAN" fields and two buttons:
- "Complete onboarding" (both names needed, and an IBAN-shaped IBAN if
  one is given; else the page shows why, role=alert): requirements
  emptied, every requested capability `active`, charges_enabled (when
  card_payments is requested), payouts_enabled and details_submitted true,
  tos_acceptance dated, a bank account in external_accounts (last4 of the
  IBAN; empty: Stripe's test IBAN DE89370400440532013000);
- "Save and finish later": details_submitted true, but external_account
  stays due (currently_due, eventually_due and past_due), so
  disabled_reason requirements.past_due, payouts and charges disabled and
  capabilities inactive;
then back to return_url (303). Each sends account.updated.

Transfers (`tr_`): POST /v1/transfers (amount, currency, destination,
transfer_group, description, metadata, source_transaction, source_type) ->
a Transfer with amount_reversed, reversed, reversals (the 10 newest, with
total_count), balance_transaction (a `transfer` balance transaction),
destination_payment (`py_`, not retrievable: it lives on the connected
account). Refused like Stripe: unknown or deleted destination (400
resource_missing "No such destination: 'acct_...'"), a destination whose
transfers (or crypto_transfers, legacy_payments) capability is not active
(400 insufficient_capabilities_for_transfer "Your destination account needs
to have at least one of the following capabilities enabled: transfers,
crypto_transfers, legacy_payments"), amount < 1, missing parameters. As at
Stripe, payouts_enabled itself does not matter: only the capability does.
The platform balance is NOT modelled: no transfer is ever refused for
insufficient funds (use the test hook below for balance_insufficient).
`transfer.created`; POST /v1/transfers/{id} (description, metadata) sends
`transfer.updated` with previous_attributes. GET /v1/transfers/{id},
GET /v1/transfers (destination, transfer_group, created, limit,
starting_after, ending_before; newest first).

Reversals (`trr_`): POST /v1/transfers/{id}/reversals (amount, default
what is left; description; metadata; refund_application_fee) updates the
transfer's amount_reversed and reversed and sends `transfer.reversed`
(Stripe sends transfer.updated only for description and metadata changes).
A fully reversed transfer is refused with "The transfer tr_... is already
fully reversed."; more than what is left with "Transfer reversal amount
(€30.00) is greater than unreversed amount on transfer (€15.99)" (param
amount). GET /v1/transfers/{id}/reversals[/{reversal}], POST
.../reversals/{reversal} (metadata).

Sandbox-only test hooks (secret key):
- POST /_sandbox/accounts/{id}/requirements: currently_due[],
  eventually_due[], past_due[], pending_verification[] ("" for none),
  current_deadline, disabled_reason, payouts_enabled, charges_enabled,
  capabilities[NAME] (active, inactive, pending). Lists replace the
  account's (past_due is kept within currently_due, currently_due within
  eventually_due); a non-empty past_due disables charges, payouts and every
  capability (disabled_reason requirements.past_due) unless those are
  given; what is not given stays. Sends account.updated.
- POST /_sandbox/account_links/{link id}/expire: the link (last segment of
  its url) now redirects to refresh_url, as an expired one does.
- POST /_sandbox/fail_next_transfers: count (default 1; 0 clears), status:
  500 or another 5xx (api_error, Stripe-Should-Retry: false; saved under
  the Idempotency-Key and replayed, as Stripe replays 500s), 429
  (rate_limit, not saved: a retry with the same key runs), or a 400 error
  code (balance_insufficient and
  insufficient_capabilities_for_transfer come with Stripe's messages; any
  other code needs `message`). The next `count` POST /v1/transfers answer
  that error before anything else is checked, and create nothing.

Wording found in no public source, so the sandbox's own: the partial
over-reversal message above, refusing `type` with `controller`, an unknown
`account` in account links (400 resource_missing "No such account: ..."),
`type` none for accounts created with controller properties.
"""

import copy
import html
import re
import secrets
import time
from dataclasses import dataclass

from aiohttp import web
from localstripe.resources import (
    BalanceTransaction,
    Event,
    StripeObject,
    fingerprint,
    random_id,
    store,
    try_convert_to_int,
)
from localstripe.webhooks import schedule_webhook

# isort: off
from . import patches  # must come before localstripe.server: see patches
from .patches import (
    Page,
    StripeError,
    boolean_param,
    created_filter,
    emit,
    format_amount,
    invalid_request,
    invalid_value,
    merge_metadata,
    missing_parameter,
    newest_first,
    previous_attributes,
    reject_unknown,
    unknown_parameters,
)
from localstripe.server import get_api_key, get_post_data, json_response, unflatten_data
# isort: on

PLATFORM_COUNTRY = "US"  # where accounts are created when `country` is not given
ACCOUNT_LINK_TTL = 300  # seconds, like Stripe's account links
TEST_IBAN = "DE89370400440532013000"
# Countries whose requirements include the person's address and phone.
EUROPE = set(
    "AT BE BG CH CY CZ DE DK EE ES FI FR GB GR HR HU IE IT LI LT LU LV MT NL NO PL PT RO SE SI "
    "SK".split()
)
CURRENCY_OF_COUNTRY = {
    "AU": "aud",
    "BR": "brl",
    "CA": "cad",
    "CH": "chf",
    "DK": "dkk",
    "GB": "gbp",
    "IN": "inr",
    "JP": "jpy",
    "NO": "nok",
    "PL": "pln",
    "SE": "sek",
    "US": "usd",
}
EURO_COUNTRIES = set("AT BE CY DE EE ES FI FR GR HR IE IT LT LU LV MT NL PT SI SK".split())
ACCOUNT_TYPES = ("custom", "express", "standard")
BUSINESS_TYPES = ("company", "government_entity", "individual", "non_profit")
CAPABILITY_STATUSES = ("active", "inactive", "pending")
TRANSFER_CAPABILITIES = ("transfers", "crypto_transfers", "legacy_payments")
# Capabilities that are not `*_payments`.
OTHER_CAPABILITIES = {
    "app_distribution",
    "card_issuing",
    "crypto_transfers",
    "tax_reporting_us_1099_k",
    "tax_reporting_us_1099_misc",
    "transfers",
    "treasury",
}
# What each legacy type means in controller properties (Stripe's mapping).
TYPE_CONTROLLERS = {
    "express": ("application_express", "application", "stripe", "express"),
    "standard": ("account", "stripe", "stripe", "full"),
    "custom": ("application_custom", "application", "application", "none"),
}
CONTROLLER_VALUES = {
    ("fees", "payer"): ("account", "application"),
    ("losses", "payments"): ("application", "stripe"),
    ("stripe_dashboard", "type"): ("express", "full", "none"),
}
# Parameters of POST /v1/accounts Stripe takes and the sandbox does not model.
UNMODELLED_ACCOUNT_PARAMS = (
    "account_token",
    "company",
    "documents",
    "external_account",
    "groups",
    "individual",
    "settings",
    "tos_acceptance",
)
NO_CAPABILITY = (
    "Your destination account needs to have at least one of the following capabilities "
    "enabled: transfers, crypto_transfers, legacy_payments"
)
BALANCE_INSUFFICIENT = (
    "You have insufficient available funds in your Stripe account. Try adding funds directly "
    "to your available balance by creating Charges using the 4000000000000077 test card. "
    "See: https://stripe.com/docs/testing#available-balance"
)
RATE_LIMITED = (
    "Request rate limit exceeded. Learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)
API_ERROR = "An unknown error occurred. (Injected by the Stripe sandbox's test hook.)"
KNOWN_FAILURES = {
    "balance_insufficient": BALANCE_INSUFFICIENT,
    "insufficient_capabilities_for_transfer": NO_CAPABILITY,
}


def _copy_export(obj, expand):
    """StripeObject._export, deep-copied: events keep what the object was."""
    return copy.deepcopy(StripeObject._export(obj, expand=expand))


def new_balance_transaction(amount, currency, type, reporting_category, source):
    """A balance transaction of a type localstripe's constructor refuses."""
    txn = BalanceTransaction.__new__(BalanceTransaction)
    StripeObject.__init__(txn)
    vars(txn).update(
        amount=amount,
        available_on=txn.created,
        currency=currency,
        description=None,
        exchange_rate=None,
        fee=0,
        fee_details=[],
        reporting_category=reporting_category,
        source=source,
        status="available",
        type=type,
    )
    return txn.id


def emit_connect(type, account, previous=None):
    """A Connect event about a connected account (event.account is set)."""
    event = Event(type, account, previous_attributes=previous)
    event.account = account.id
    schedule_webhook(event)


# --- Accounts -----------------------------------------------------------


class UnknownAccount(Exception):
    """Answered as Stripe's 403 account_invalid, which names the API key."""

    def __init__(self, id):
        super().__init__(id)
        self.id = id


def account_invalid(id, key):
    key = key or ""
    redacted = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else key
    return StripeError(
        403,
        "invalid_request_error",
        f"The provided key '{redacted}' does not have access to account '{id}' (or that "
        "account does not exist). Application access may have been revoked.",
        code="account_invalid",
    )


def retrieve_account(id):
    account = store.get("account:" + id) if isinstance(id, str) else None
    if account is None:
        raise UnknownAccount(id)
    return account


def empty_requirements():
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": [],
        "disabled_reason": None,
        "errors": [],
        "eventually_due": [],
        "past_due": [],
        "pending_verification": [],
    }


def person_fields(prefix, country):
    fields = ["dob.day", "dob.month", "dob.year", "email", "first_name", "last_name"]
    if country in EUROPE:
        fields += ["address.city", "address.line1", "address.postal_code", "phone"]
    return [f"{prefix}.{field}" for field in fields]


def due_fields(country, business_type):
    """What Stripe asks a new account for, roughly (test mode, one country
    or the other): every field is due at once."""
    fields = ["business_profile.mcc", "business_profile.url", "external_account"]
    fields += ["tos_acceptance.date", "tos_acceptance.ip"]
    if business_type == "individual":
        fields += person_fields("individual", country)
    else:
        fields += person_fields("representative", country)
        if business_type is None:
            fields.append("business_type")
        else:
            fields += [
                "company.address.city",
                "company.address.line1",
                "company.address.postal_code",
                "company.name",
                "company.tax_id",
            ]
    if country == "US":
        fields.append("settings.payments.statement_descriptor")
    return sorted(fields)


def all_due(fields, disabled_reason="requirements.past_due"):
    requirements = empty_requirements()
    requirements.update(
        currently_due=list(fields),
        eventually_due=list(fields),
        past_due=list(fields),
        disabled_reason=disabled_reason if fields else None,
    )
    return requirements


def capabilities_param(capabilities, current=None):
    """capabilities[NAME][requested]: the account's capabilities afterwards
    (a new one is inactive; requested=false removes one)."""
    result = dict(current or {})
    if not isinstance(capabilities, dict):
        raise invalid_request(
            "Invalid object", code="parameter_invalid_object", param="capabilities"
        )
    for name, value in capabilities.items():
        if name not in OTHER_CAPABILITIES and not re.fullmatch(r"[a-z0-9_]+_payments", name):
            raise unknown_parameters({name: value}, "capabilities")
        param = f"capabilities[{name}][requested]"
        if not isinstance(value, dict) or "requested" not in value:
            raise missing_parameter(param)
        reject_unknown(
            {k: v for k, v in value.items() if k != "requested"}, f"capabilities[{name}]"
        )
        if boolean_param(value["requested"], param):
            result.setdefault(name, "inactive")
        else:
            result.pop(name, None)
    return result


def controller_param(controller):
    """(fees payer, losses payments, requirement_collection, dashboard)."""
    if not isinstance(controller, dict):
        raise invalid_request("Invalid object", code="parameter_invalid_object", param="controller")
    values = {}
    for key, value in controller.items():
        if key == "requirement_collection":
            if value not in ("application", "stripe"):
                raise invalid_value(
                    "controller[requirement_collection]", value, ("application", "stripe")
                )
            values[key] = value
            continue
        fields = {field for (group, field) in CONTROLLER_VALUES if group == key}
        if not fields:
            raise unknown_parameters({key: value}, "controller")
        if not isinstance(value, dict):
            raise invalid_request(
                "Invalid object", code="parameter_invalid_object", param=f"controller[{key}]"
            )
        for field, setting in value.items():
            if field not in fields:
                raise unknown_parameters({field: setting}, f"controller[{key}]")
            allowed = CONTROLLER_VALUES[key, field]
            if setting not in allowed:
                raise invalid_value(f"controller[{key}][{field}]", setting, allowed)
            values[key] = setting
    return (
        values.get("fees", "account"),
        values.get("losses", "stripe"),
        values.get("requirement_collection", "stripe"),
        values.get("stripe_dashboard", "full"),
    )


def country_param(country):
    if country is None:
        return PLATFORM_COUNTRY
    if not (isinstance(country, str) and re.fullmatch(r"[A-Za-z]{2}", country)):
        raise invalid_request(
            f"Country '{country}' is unknown. Try using a 2-character alphanumeric country "
            "code instead, such as 'US', 'EG', or 'GB'. A full list of country codes is "
            "available at https://www.iso.org/obp/ui/#search",
            param="country",
        )
    return country.upper()


def currency_param(currency, param="currency"):
    if not (isinstance(currency, str) and re.fullmatch(r"[A-Za-z]{3}", currency)):
        raise invalid_request(
            f"Invalid currency: {currency}.", code="parameter_invalid_string", param=param
        )
    return currency.lower()


def email_param(email):
    if email in (None, ""):
        return None
    if not isinstance(email, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise invalid_request(
            f"Invalid email address: {email}", code="email_invalid", param="email"
        )
    return email


def business_profile_param(profile, current=None):
    result = dict(
        current
        or dict.fromkeys(
            (
                "annual_revenue",
                "estimated_worker_count",
                "mcc",
                "minority_owned_business_designation",
                "name",
                "product_description",
                "support_address",
                "support_email",
                "support_phone",
                "support_url",
                "url",
            )
        )
    )
    if profile is None:
        return result
    if not isinstance(profile, dict):
        raise invalid_request(
            "Invalid object", code="parameter_invalid_object", param="business_profile"
        )
    reject_unknown({k: v for k, v in profile.items() if k not in result}, "business_profile")
    result.update({k: v or None for k, v in profile.items()})
    return result


def settings_for(country, dashboard):
    return {
        "bacs_debit_payments": {"display_name": None, "service_user_number": None},
        "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
        "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
        "card_payments": {
            "decline_on": {"avs_failure": False, "cvc_failure": False},
            "statement_descriptor_prefix": None,
            "statement_descriptor_prefix_kana": None,
            "statement_descriptor_prefix_kanji": None,
        },
        "dashboard": {"display_name": None, "timezone": "Etc/UTC"},
        "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": "always"},
        "payments": {
            "statement_descriptor": None,
            "statement_descriptor_kana": None,
            "statement_descriptor_kanji": None,
        },
        "payouts": {
            "debit_negative_balances": dashboard != "full",
            "schedule": {"delay_days": 2 if country == "US" else 7, "interval": "daily"},
            "statement_descriptor": None,
        },
        "sepa_debit_payments": {},
    }


def empty_list(url):
    return {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": url}


class Account(StripeObject):
    object = "account"
    _id_prefix = "acct_"

    def __init__(
        self,
        type=None,
        controller=None,
        country=None,
        email=None,
        business_type=None,
        business_profile=None,
        capabilities=None,
        default_currency=None,
        metadata=None,
        **params,
    ):
        for param in UNMODELLED_ACCOUNT_PARAMS:
            if param in params:
                raise invalid_request(
                    f"The Stripe sandbox does not model `{param}` on accounts: onboarding "
                    "(the account link's page) collects what is due.",
                    param=param,
                )
        reject_unknown(params)
        if type is not None and controller is not None:
            raise invalid_request(
                "You cannot specify both `type` and `controller`: the account type is "
                "deprecated in favour of controller properties.",
                param="type",
            )
        if type is not None:
            if type not in ACCOUNT_TYPES:
                raise invalid_value("type", type, ACCOUNT_TYPES)
            fees, losses, collection, dashboard = TYPE_CONTROLLERS[type]
        else:
            fees, losses, collection, dashboard = controller_param(controller or {})
        country = country_param(country)
        email = email_param(email)
        if business_type in ("", None):
            business_type = None
        elif business_type not in BUSINESS_TYPES:
            raise invalid_value("business_type", business_type, BUSINESS_TYPES)
        profile = business_profile_param(business_profile)
        default = "eur" if country in EURO_COUNTRIES else CURRENCY_OF_COUNTRY.get(country, "usd")
        if default_currency is not None:
            default = currency_param(default_currency, "default_currency")
        if capabilities is None and collection == "stripe":
            capabilities = {
                "card_payments": {"requested": "true"},
                "transfers": {"requested": "true"},
            }
        caps = capabilities_param(capabilities or {})
        metadata = merge_metadata({}, metadata)

        # All exceptions must be raised before this point.
        super().__init__()
        self.business_profile = profile
        self.business_type = business_type
        self.capabilities = caps
        self.charges_enabled = False
        self.controller = {
            "fees": {"payer": fees},
            "is_controller": True,
            "losses": {"payments": losses},
            "requirement_collection": collection,
            "stripe_dashboard": {"type": dashboard},
            "type": "application",
        }
        self.country = country
        self.default_currency = default
        self.details_submitted = False
        self.email = email
        self.external_accounts = empty_list(f"/v1/accounts/{self.id}/external_accounts")
        self.future_requirements = empty_requirements()
        self.metadata = metadata
        self.payouts_enabled = False
        self.requirements = all_due(due_fields(country, business_type))
        self.settings = settings_for(country, dashboard)
        self.tos_acceptance = {"date": None, "ip": None, "user_agent": None}
        self.type = type or "none"
        if dashboard == "express":
            self.login_links = empty_list(f"/v1/accounts/{self.id}/login_links")

    def _export(self, expand=None):
        return _copy_export(self, expand)

    @classmethod
    def _api_retrieve(cls, id):  # expand[]=destination on transfers
        return retrieve_account(id)


ACCOUNT_UPDATABLE = (
    "business_profile",
    "business_type",
    "capabilities",
    "default_currency",
    "email",
    "metadata",
)


def changed_from(obj, changes):
    """data.previous_attributes: as patches.previous_attributes, with the
    keys a change removes from a hash (metadata) too."""
    previous = previous_attributes(obj, changes)
    for key, new in changes.items():
        old = getattr(obj, key, None)
        if isinstance(old, dict) and isinstance(new, dict):
            gone = {k: v for k, v in old.items() if k not in new}
            if gone:
                previous[key] = {**previous.get(key, {}), **gone}
    return previous


def account_updated(account, changes):
    """Apply `changes` (attribute -> new value, replacing, never mutating)
    and send account.updated with what changed."""
    previous = changed_from(account, changes)
    vars(account).update(changes)
    if previous:
        emit_connect("account.updated", account, previous)
    return account


def create_account(**params):
    return Account(**params)


def update_account(id, **params):
    """POST /v1/accounts/{id}."""
    account = retrieve_account(id)
    for param in UNMODELLED_ACCOUNT_PARAMS:
        if param in params:
            raise invalid_request(
                f"The Stripe sandbox does not model `{param}` on accounts.", param=param
            )
    reject_unknown({k: v for k, v in params.items() if k not in ACCOUNT_UPDATABLE})
    changes = {}
    if "metadata" in params:
        changes["metadata"] = merge_metadata(account.metadata, params["metadata"])
    if "email" in params:
        changes["email"] = email_param(params["email"])
    if "business_profile" in params:
        changes["business_profile"] = business_profile_param(
            params["business_profile"], account.business_profile
        )
    if "default_currency" in params:
        changes["default_currency"] = currency_param(params["default_currency"], "default_currency")
    if "capabilities" in params:
        changes["capabilities"] = capabilities_param(params["capabilities"], account.capabilities)
    if "business_type" in params:
        business_type = params["business_type"] or None
        if business_type is not None and business_type not in BUSINESS_TYPES:
            raise invalid_value("business_type", business_type, BUSINESS_TYPES)
        changes["business_type"] = business_type
        if not account.details_submitted:
            changes["requirements"] = all_due(due_fields(account.country, business_type))
    return account_updated(account, changes)


def delete_account(id):
    account = retrieve_account(id)
    del store["account:" + account.id]
    return {"id": account.id, "object": "account", "deleted": True}


def list_accounts(created=None, limit=None, starting_after=None, ending_before=None, **params):
    reject_unknown(params)
    in_period = created_filter(created)
    items = newest_first(Account, lambda a: in_period(a.created))
    return Page("/v1/accounts", items, limit, starting_after, ending_before)


def list_param(value, param):
    if value in ("", None):
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_request("Invalid array", code="parameter_invalid_array", param=param)
    return value


def union(*lists):
    return sorted(set().union(*lists))


def set_requirements(
    id,
    currently_due=None,
    eventually_due=None,
    past_due=None,
    pending_verification=None,
    current_deadline=None,
    disabled_reason=None,
    payouts_enabled=None,
    charges_enabled=None,
    capabilities=None,
    **params,
):
    """POST /_sandbox/accounts/{id}/requirements (sandbox only): what Stripe
    does when it needs more from a connected account later."""
    reject_unknown(params)
    account = retrieve_account(id)
    old = account.requirements
    lists = {}
    for name, value in (
        ("currently_due", currently_due),
        ("eventually_due", eventually_due),
        ("past_due", past_due),
        ("pending_verification", pending_verification),
    ):
        lists[name] = old[name] if value is None else list_param(value, name)
    requirements = dict(old)
    requirements["past_due"] = sorted(lists["past_due"])
    requirements["currently_due"] = union(lists["currently_due"], lists["past_due"])
    requirements["eventually_due"] = union(lists["eventually_due"], requirements["currently_due"])
    requirements["pending_verification"] = sorted(lists["pending_verification"])
    if current_deadline is not None:
        deadline = None if current_deadline == "" else try_convert_to_int(current_deadline)
        if deadline is not None and not isinstance(deadline, int):
            raise invalid_request(
                "Invalid integer", code="parameter_invalid_integer", param="current_deadline"
            )
        requirements["current_deadline"] = deadline
    past_due = bool(requirements["past_due"])
    if disabled_reason is not None:
        requirements["disabled_reason"] = disabled_reason or None
    else:
        requirements["disabled_reason"] = "requirements.past_due" if past_due else None

    changes = {"requirements": requirements}
    for name, value in (("payouts_enabled", payouts_enabled), ("charges_enabled", charges_enabled)):
        if value is not None:
            changes[name] = boolean_param(value, name)
        elif past_due:
            changes[name] = False
    caps = dict(account.capabilities)
    if past_due:
        caps = dict.fromkeys(caps, "inactive")
    if capabilities is not None:
        if not isinstance(capabilities, dict):
            raise invalid_request(
                "Invalid object", code="parameter_invalid_object", param="capabilities"
            )
        for name, status in capabilities.items():
            if status not in CAPABILITY_STATUSES:
                raise invalid_value(f"capabilities[{name}]", status, CAPABILITY_STATUSES)
            caps[name] = status
    changes["capabilities"] = caps
    return account_updated(account, changes)


# --- Account links and the onboarding page ------------------------------


@dataclass
class AccountLink:
    id: str
    account: str
    type: str
    refresh_url: str
    return_url: str
    created: int
    expires_at: int
    visited: bool = False
    submitted: bool = False
    expired: bool = False

    def _export(self, expand=None):
        return {
            "object": "account_link",
            "created": self.created,
            "expires_at": self.expires_at,
            "url": f"{patches.PUBLIC_URL}/connect/onboarding/{self.id}",
        }


# link id -> AccountLink
account_links = {}


def url_param(value, param):
    if value is None:
        raise missing_parameter(param)
    if not isinstance(value, str) or not re.match(r"https?://[^\s/]+", value):
        raise invalid_request("Not a valid URL", code="url_invalid", param=param)
    return value


def create_account_link(
    account=None,
    type=None,
    refresh_url=None,
    return_url=None,
    collect=None,
    collection_options=None,
    **params,
):
    """POST /v1/account_links."""
    reject_unknown(params)
    if account is None:
        raise missing_parameter("account")
    if type is None:
        raise missing_parameter("type")
    if type not in ("account_onboarding", "account_update"):
        raise invalid_value("type", type, ("account_onboarding", "account_update"))
    refresh_url = url_param(refresh_url, "refresh_url")
    return_url = url_param(return_url, "return_url")
    if collect is not None and collect not in ("currently_due", "eventually_due"):
        raise invalid_value("collect", collect, ("currently_due", "eventually_due"))
    if collection_options is not None:
        if collect is not None:
            raise invalid_request(
                "You may only specify one of these parameters: collect, collection_options."
            )
        if not isinstance(collection_options, dict):
            raise invalid_request(
                "Invalid object", code="parameter_invalid_object", param="collection_options"
            )
        for key, allowed in (
            ("fields", ("currently_due", "eventually_due")),
            ("future_requirements", ("include", "omit")),
        ):
            value = collection_options.get(key)
            if value is not None and value not in allowed:
                raise invalid_value(f"collection_options[{key}]", value, allowed)
        reject_unknown(
            {
                k: v
                for k, v in collection_options.items()
                if k not in ("fields", "future_requirements")
            },
            "collection_options",
        )
    if not isinstance(account, str) or store.get("account:" + account) is None:
        raise invalid_request(
            f"No such account: '{account}'", code="resource_missing", param="account"
        )
    acct = store["account:" + account]
    if type == "account_update" and acct.controller["stripe_dashboard"]["type"] != "none":
        # Stripe: only for accounts without a Stripe-hosted Dashboard.
        raise invalid_request('Invalid type: must be one of ["account_onboarding"]', param="type")
    now = int(time.time())
    link = AccountLink(
        id=secrets.token_urlsafe(18),
        account=acct.id,
        type=type,
        refresh_url=refresh_url,
        return_url=return_url,
        created=now,
        expires_at=now + ACCOUNT_LINK_TTL,
    )
    account_links[link.id] = link
    return link


def expire_account_link(link, **params):
    """POST /_sandbox/account_links/{link}/expire (sandbox only)."""
    reject_unknown(params)
    found = account_links.get(link)
    if found is None:
        raise StripeError(
            404,
            "invalid_request_error",
            f"No such account link: '{link}'",
            code="resource_missing",
            param="link",
        )
    found.expired = True
    return {"object": "account_link", "expired": True, "url": found._export()["url"]}


def bank_account(account, iban, holder):
    return {
        "id": "ba_" + random_id(24),
        "object": "bank_account",
        "account": account.id,
        "account_holder_name": holder or None,
        "account_holder_type": None,
        "account_type": None,
        "available_payout_methods": ["standard"],
        "bank_name": "STRIPE TEST BANK",
        "country": iban[:2],
        "currency": account.default_currency,
        "default_for_currency": True,
        "fingerprint": fingerprint(iban),
        "future_requirements": {
            "currently_due": [],
            "errors": [],
            "past_due": [],
            "pending_verification": [],
        },
        "last4": iban[-4:],
        "metadata": {},
        "requirements": {
            "currently_due": [],
            "errors": [],
            "past_due": [],
            "pending_verification": [],
        },
        "routing_number": None,
        "status": "new",
    }


def onboarding_changes(account, outcome, iban, holder, user_agent):
    """What the onboarding page's two buttons do to the account."""
    changes = {
        "business_type": account.business_type or "individual",
        "details_submitted": True,
        "tos_acceptance": {"date": int(time.time()), "ip": "127.0.0.1", "user_agent": user_agent},
    }
    if outcome == "complete":
        caps = dict.fromkeys(account.capabilities, "active")
        bank = bank_account(account, iban, holder)
        changes.update(
            capabilities=caps,
            charges_enabled=caps.get("card_payments") == "active",
            payouts_enabled=True,
            requirements=empty_requirements(),
            external_accounts={
                **account.external_accounts,
                "data": [bank],
                "total_count": 1,
            },
        )
    else:  # save and finish later: no bank account yet
        changes.update(
            capabilities=dict.fromkeys(account.capabilities, "inactive"),
            charges_enabled=False,
            payouts_enabled=False,
            requirements=all_due(["external_account"]),
        )
    return changes


ONBOARDING_FORM = """<form method="post">
<p>Connected account <code>{account}</code> (test mode: use test data, nothing is
verified).</p>
{error}
<p><label for="first_name">First name</label>
<input id="first_name" name="first_name" value="{first_name}" autocomplete="off"></p>
<p><label for="last_name">Last name</label>
<input id="last_name" name="last_name" value="{last_name}" autocomplete="off"></p>
<p><label for="iban">IBAN</label>
<input id="iban" name="iban" value="{iban}" placeholder="{test_iban}" autocomplete="off">
<br><small>Empty: the test IBAN {test_iban}.</small></p>
<p><button name="outcome" value="complete">Complete onboarding</button>
<button name="outcome" value="later">Save and finish later</button></p>
</form>"""


def onboarding_form(link, error="", first_name="Jenny", last_name="Rosen", iban=""):
    from .server import page  # the sandbox's page layout (server imports this module)

    return page(
        "Set up payouts",
        ONBOARDING_FORM.format(
            account=html.escape(link.account),
            error=f'<p role="alert">{html.escape(error)}</p>' if error else "",
            first_name=html.escape(first_name),
            last_name=html.escape(last_name),
            iban=html.escape(iban),
            test_iban=TEST_IBAN,
        ),
    )


async def onboarding_page(request):
    """Where account links point: stands in for Stripe's hosted onboarding.
    A link works once; expired or used, it sends the user to refresh_url."""
    from .server import page

    link = account_links.get(request.match_info["link"])
    if link is None:
        return page("Link not found", "<p>This onboarding link does not exist.</p>")
    account = store.get("account:" + link.account)
    usable = not link.expired and account is not None
    if request.method == "GET":
        if not usable or link.visited or time.time() >= link.expires_at:
            raise web.HTTPSeeOther(link.refresh_url)
        link.visited = True
        return onboarding_form(link)
    if not usable or link.submitted or not link.visited:
        raise web.HTTPSeeOther(link.refresh_url)
    form = await request.post()
    outcome = form.get("outcome")
    if outcome not in ("complete", "later"):
        return onboarding_form(link, "Choose how to continue.")
    first, last = form.get("first_name", "").strip(), form.get("last_name", "").strip()
    iban = re.sub(r"\s+", "", form.get("iban", "")).upper() or TEST_IBAN
    if outcome == "complete":
        error = None
        if not first or not last:
            error = "Enter your first and last name."
        elif not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", iban):
            error = "Enter a valid IBAN."
        if error:
            return onboarding_form(link, error, first, last, form.get("iban", ""))
    link.submitted = True
    changes = onboarding_changes(
        account, outcome, iban, f"{first} {last}".strip(), request.headers.get("User-Agent")
    )
    account_updated(account, changes)
    raise web.HTTPSeeOther(link.return_url)


# --- Transfers and reversals --------------------------------------------


class TransferReversal(StripeObject):
    object = "transfer_reversal"
    _id_prefix = "trr_"

    def __init__(self, transfer, amount, metadata):
        super().__init__()
        del self.livemode  # reversals have none
        self.amount = amount
        self.balance_transaction = new_balance_transaction(
            amount, transfer.currency, "transfer_refund", "transfer_reversal", self.id
        )
        self.currency = transfer.currency
        self.destination_payment_refund = "pyr_" + random_id(24)
        self.metadata = metadata
        self.source_refund = None
        self.transfer = transfer.id

    def _export(self, expand=None):
        return _copy_export(self, expand)


class Transfer(StripeObject):
    object = "transfer"
    _id_prefix = "tr_"

    def __init__(
        self,
        amount,
        currency,
        destination,
        description,
        metadata,
        transfer_group,
        source_transaction,
        source_type,
    ):
        super().__init__()
        self.amount = amount
        self.balance_transaction = new_balance_transaction(
            -amount, currency, "transfer", "transfer", self.id
        )
        self.currency = currency
        self.description = description
        self.destination = destination
        self.destination_payment = "py_" + random_id(24)
        self.metadata = metadata
        self.source_transaction = source_transaction
        self.source_type = source_type
        self.transfer_group = transfer_group
        self._reversals = []  # oldest first

    @property
    def amount_reversed(self):
        return sum(r.amount for r in self._reversals)

    @property
    def reversed(self):
        return self.amount_reversed >= self.amount

    @property
    def reversals(self):
        newest = list(reversed(self._reversals))
        return {
            "object": "list",
            "data": [r._export() for r in newest[:10]],
            "has_more": len(newest) > 10,
            "total_count": len(newest),
            "url": f"/v1/transfers/{self.id}/reversals",
        }

    def _export(self, expand=None):
        return _copy_export(self, expand)

    @classmethod
    def _api_retrieve(cls, id):
        return retrieve_transfer(id)


def retrieve_transfer(id):
    transfer = store.get("transfer:" + id) if isinstance(id, str) else None
    if transfer is None:
        raise StripeError(
            404,
            "invalid_request_error",
            f"No such transfer: '{id}'",
            code="resource_missing",
            param="id",
        )
    return transfer


def positive_amount(amount):
    return patches.refund_amount_param(amount)  # the same rules and messages


@dataclass
class Failure:
    status: int
    type: str
    code: str
    message: str


# The errors the next POST /v1/transfers answer (fail_next_transfers).
transfer_failures = []


def failure_response(failure):
    error = StripeError(failure.status, failure.type, failure.message, code=failure.code)
    response = error.to_response()
    if failure.status >= 500:
        response.headers["Stripe-Should-Retry"] = "false"
    return response


def create_transfer(
    amount=None,
    currency=None,
    destination=None,
    description=None,
    metadata=None,
    transfer_group=None,
    source_transaction=None,
    source_type=None,
    **params,
):
    """POST /v1/transfers."""
    reject_unknown(params)
    if amount is None:
        raise missing_parameter("amount")
    amount = positive_amount(amount)
    if currency is None:
        raise missing_parameter("currency")
    currency = currency_param(currency)
    if destination is None:
        raise missing_parameter("destination")
    if source_type is not None and source_type not in ("bank_account", "card", "fpx"):
        raise invalid_value("source_type", source_type, ("bank_account", "card", "fpx"))
    if source_transaction is not None:
        source_transaction = patches.retrieve_charge(source_transaction, "source_transaction").id
    metadata = merge_metadata({}, metadata)
    account = store.get("account:" + destination) if isinstance(destination, str) else None
    if account is None:
        raise invalid_request(
            f"No such destination: '{destination}'", code="resource_missing", param="destination"
        )
    if not any(account.capabilities.get(c) == "active" for c in TRANSFER_CAPABILITIES):
        raise invalid_request(NO_CAPABILITY, code="insufficient_capabilities_for_transfer")
    transfer = Transfer(
        amount=amount,
        currency=currency,
        destination=account.id,
        description=description or None,
        metadata=metadata,
        transfer_group=transfer_group or None,
        source_transaction=source_transaction,
        source_type=source_type or "card",
    )
    emit("transfer.created", transfer)
    return transfer


def update_transfer(id, description=None, metadata=None, **params):
    """POST /v1/transfers/{id}: description and metadata, like Stripe."""
    reject_unknown(params)
    transfer = retrieve_transfer(id)
    changes = {}
    if description is not None:
        changes["description"] = description or None
    if metadata is not None:
        changes["metadata"] = merge_metadata(transfer.metadata, metadata)
    previous = changed_from(transfer, changes)
    vars(transfer).update(changes)
    if previous:
        emit("transfer.updated", transfer, previous_attributes=previous)
    return transfer


def list_transfers(
    destination=None,
    transfer_group=None,
    created=None,
    limit=None,
    starting_after=None,
    ending_before=None,
    **params,
):
    reject_unknown(params)
    in_period = created_filter(created)
    items = newest_first(
        Transfer,
        lambda t: (
            destination in (None, t.destination)
            and transfer_group in (None, t.transfer_group)
            and in_period(t.created)
        ),
    )
    return Page("/v1/transfers", items, limit, starting_after, ending_before)


def create_reversal(
    id, amount=None, description=None, metadata=None, refund_application_fee=None, **params
):
    """POST /v1/transfers/{id}/reversals (description: accepted, not kept,
    as the reversal object has none)."""
    reject_unknown(params)
    transfer = retrieve_transfer(id)
    if amount is not None:
        amount = positive_amount(amount)
    if refund_application_fee is not None:
        boolean_param(refund_application_fee, "refund_application_fee")
    metadata = merge_metadata({}, metadata)
    remaining = transfer.amount - transfer.amount_reversed
    if remaining <= 0:
        raise invalid_request(f"The transfer {transfer.id} is already fully reversed.")
    amount = remaining if amount is None else amount
    if amount > remaining:
        raise invalid_request(
            f"Transfer reversal amount ({format_amount(amount, transfer.currency)}) is greater "
            "than unreversed amount on transfer "
            f"({format_amount(remaining, transfer.currency)})",
            param="amount",
        )
    reversal = TransferReversal(transfer, amount, metadata)
    transfer._reversals.append(reversal)
    emit("transfer.reversed", transfer)
    return reversal


def retrieve_reversal(id, reversal):
    transfer = retrieve_transfer(id)
    for item in transfer._reversals:
        if item.id == reversal:
            return item
    raise StripeError(
        404,
        "invalid_request_error",
        f"No such transfer_reversal: '{reversal}'",
        code="resource_missing",
        param="id",
    )


def update_reversal(id, reversal, metadata=None, **params):
    reject_unknown(params)
    item = retrieve_reversal(id, reversal)
    if metadata is not None:
        item.metadata = merge_metadata(item.metadata, metadata)
    return item


def list_reversals(id, limit=None, starting_after=None, ending_before=None, **params):
    reject_unknown(params)
    transfer = retrieve_transfer(id)
    items = list(reversed(transfer._reversals))
    return Page(
        f"/v1/transfers/{transfer.id}/reversals", items, limit, starting_after, ending_before
    )


def fail_next_transfers(count=None, status=None, message=None, **params):
    """POST /_sandbox/fail_next_transfers (sandbox only)."""
    reject_unknown(params)
    count = 1 if count is None else try_convert_to_int(count)
    if not isinstance(count, int) or not 0 <= count <= 100:
        raise invalid_request(
            "count must be an integer from 0 to 100",
            code="parameter_invalid_integer",
            param="count",
        )
    if count == 0:
        transfer_failures.clear()
        return {"object": "sandbox.transfer_failures", "pending": 0}
    if status is None:
        raise missing_parameter("status")
    number = try_convert_to_int(status)
    if isinstance(number, int) and 500 <= number <= 599:
        failure = Failure(number, "api_error", None, message or API_ERROR)
    elif number == 429:
        failure = Failure(429, "invalid_request_error", "rate_limit", message or RATE_LIMITED)
    elif isinstance(status, str) and re.fullmatch(r"[a-z][a-z0-9_]*", status):
        text = message or KNOWN_FAILURES.get(status)
        if not text:
            raise invalid_request(
                f"Give the `message` of a {status} error (known codes: "
                f"{', '.join(sorted(KNOWN_FAILURES))}).",
                param="message",
            )
        failure = Failure(400, "invalid_request_error", status, text)
    else:
        raise invalid_request(
            "status must be 429, 5xx, or an error code such as balance_insufficient",
            param="status",
        )
    transfer_failures.extend([failure] * count)
    return {
        "object": "sandbox.transfer_failures",
        "pending": len(transfer_failures),
        "status": failure.status,
        "code": failure.code,
        "message": failure.message,
    }


# --- Routes -------------------------------------------------------------


def api(func):
    """An aiohttp handler calling func(**path parameters, **parameters)."""

    async def handle(request):
        params = unflatten_data(request.query)
        if request.method == "POST":
            params.update(await get_post_data(request) or {})
        expand = params.pop("expand", None)
        try:
            result = func(**{**params, **request.match_info})
        except UnknownAccount as e:
            raise account_invalid(e.id, get_api_key(request)) from None
        if isinstance(result, web.Response):
            return result
        if hasattr(result, "_export"):
            result = result._export(expand=expand)
        return json_response(result)

    return handle


async def transfers_create(request):
    """POST /v1/transfers, or the next failure the test hook asked for."""
    if transfer_failures:
        return failure_response(transfer_failures.pop(0))
    return await api(create_transfer)(request)


def add_routes(app):
    router = app.router
    router.add_post("/v1/accounts", api(create_account))
    router.add_get("/v1/accounts", api(list_accounts))
    router.add_get("/v1/accounts/{id}", api(lambda id, **params: retrieve_account_get(id, params)))
    router.add_post("/v1/accounts/{id}", api(update_account))
    router.add_delete("/v1/accounts/{id}", api(lambda id, **params: delete_account(id)))
    router.add_post("/v1/account_links", api(create_account_link))
    router.add_post("/v1/transfers", transfers_create)
    router.add_get("/v1/transfers", api(list_transfers))
    router.add_get(
        "/v1/transfers/{id}", api(lambda id, **params: retrieve_transfer_get(id, params))
    )
    router.add_post("/v1/transfers/{id}", api(update_transfer))
    router.add_post("/v1/transfers/{id}/reversals", api(create_reversal))
    router.add_get("/v1/transfers/{id}/reversals", api(list_reversals))
    router.add_get(
        "/v1/transfers/{id}/reversals/{reversal}",
        api(lambda id, reversal, **params: retrieve_reversal_get(id, reversal, params)),
    )
    router.add_post("/v1/transfers/{id}/reversals/{reversal}", api(update_reversal))
    router.add_get("/connect/onboarding/{link}", onboarding_page)
    router.add_post("/connect/onboarding/{link}", onboarding_page)
    router.add_post("/_sandbox/accounts/{id}/requirements", api(set_requirements))
    router.add_post("/_sandbox/account_links/{link}/expire", api(expire_account_link))
    router.add_post("/_sandbox/fail_next_transfers", api(fail_next_transfers))


def retrieve_account_get(id, params):
    reject_unknown(params)
    return retrieve_account(id)


def retrieve_transfer_get(id, params):
    reject_unknown(params)
    return retrieve_transfer(id)


def retrieve_reversal_get(id, reversal, params):
    reject_unknown(params)
    return retrieve_reversal(id, reversal)
