"""Stripe Connect: connected accounts, account links and the onboarding page, transfers
and their reversals, with the shapes of the pinned API version.

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
  Like Stripe, the sandbox delivers these only to Connect webhook endpoints
  (events.py), signed with their own secret.

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
A transfer needs that much available balance in its currency, unless it
names its `source_transaction` (balance.py): 400 balance_insufficient.
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
  other code needs `message`; kept under the key, as Stripe keeps a
  refusal). The next `count` POST /v1/transfers answer that error, once
  their parameters pass the contract, and create nothing.

Wording found in no public source, so the sandbox's own: the partial
over-reversal message above, refusing `type` with `controller`, an unknown
`account` in account links (400 resource_missing "No such account: ..."),
`type` none for accounts created with controller properties.
"""
from __future__ import annotations

import html
import re
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from . import balance, core, events
from .core import (
    Page,
    Resource,
    StripeError,
    invalid_param,
    invalid_request,
    invalid_value,
    missing_parameter,
    newest_first,
    no_such,
)
from .payment_intents import retrieve_charge

PLATFORM_COUNTRY = "US"  # where accounts are created when `country` is not given
ACCOUNT_LINK_TTL = 300  # seconds, like Stripe's account links
TEST_IBAN = "DE89370400440532013000"
# Countries whose requirements include the person's address and phone.
EUROPE = set(
    "AT BE BG CH CY CZ DE DK EE ES FI FR GB GR HR HU IE IT LI LT LU LV MT NL NO PL PT RO SE SI "
    "SK".split()
)
CURRENCY_OF_COUNTRY = {"AU": "aud", "BR": "brl", "CA": "cad", "CH": "chf", "DK": "dkk",
                       "GB": "gbp", "IN": "inr", "JP": "jpy", "NO": "nok", "PL": "pln",
                       "SE": "sek", "US": "usd"}
EURO_COUNTRIES = set("AT BE CY DE EE ES FI FR GR HR IE IT LT LU LV MT NL PT SI SK".split())
CAPABILITY_STATUSES = ("active", "inactive", "pending")
TRANSFER_CAPABILITIES = ("transfers", "crypto_transfers", "legacy_payments")
# What each legacy type means in controller properties (Stripe's mapping).
TYPE_CONTROLLERS = {
    "express": ("application_express", "application", "stripe", "express"),
    "standard": ("account", "stripe", "stripe", "full"),
    "custom": ("application_custom", "application", "application", "none"),
}
# Parameters of POST /v1/accounts Stripe takes and the sandbox does not model.
UNMODELLED_ACCOUNT_PARAMS = ("account_token", "company", "documents", "external_account",
                             "groups", "individual", "settings", "tos_acceptance")
NO_CAPABILITY = (
    "Your destination account needs to have at least one of the following capabilities "
    "enabled: transfers, crypto_transfers, legacy_payments"
)
RATE_LIMITED = (
    "Request rate limit exceeded. Learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)
API_ERROR = "An unknown error occurred. (Injected by the Stripe sandbox's test hook.)"
KNOWN_FAILURES = {
    "balance_insufficient": balance.BALANCE_INSUFFICIENT,
    "insufficient_capabilities_for_transfer": NO_CAPABILITY,
}
BUSINESS_PROFILE_FIELDS = ("annual_revenue", "estimated_worker_count", "mcc",
                           "minority_owned_business_designation", "name",
                           "product_description", "support_address", "support_email",
                           "support_phone", "support_url", "url")


# --- Accounts ------------------------------------------------------------------------------------


def retrieve_account(id) -> Account:
    """A connected account, or Stripe's 403 account_invalid."""
    account = Account.get(id)
    if account is None:
        raise core.account_invalid(id)
    return account


def empty_requirements() -> dict:
    return {"alternatives": [], "current_deadline": None, "currently_due": [],
            "disabled_reason": None, "errors": [], "eventually_due": [], "past_due": [],
            "pending_verification": []}


def person_fields(prefix, country):
    fields = ["dob.day", "dob.month", "dob.year", "email", "first_name", "last_name"]
    if country in EUROPE:
        fields += ["address.city", "address.line1", "address.postal_code", "phone"]
    return [f"{prefix}.{field}" for field in fields]


def due_fields(country, business_type):
    """What Stripe asks a new account for, roughly (test mode, one country or the other):
    every field is due at once."""
    fields = ["business_profile.mcc", "business_profile.url", "external_account"]
    fields += ["tos_acceptance.date", "tos_acceptance.ip"]
    if business_type == "individual":
        fields += person_fields("individual", country)
    else:
        fields += person_fields("representative", country)
        if business_type is None:
            fields.append("business_type")
        else:
            fields += ["company.address.city", "company.address.line1",
                       "company.address.postal_code", "company.name", "company.tax_id"]
    if country == "US":
        fields.append("settings.payments.statement_descriptor")
    return sorted(fields)


def all_due(fields, disabled_reason="requirements.past_due"):
    requirements = empty_requirements()
    requirements.update(currently_due=list(fields), eventually_due=list(fields),
                        past_due=list(fields), disabled_reason=disabled_reason if fields else None)
    return requirements


def capabilities_param(capabilities, current=None):
    """capabilities[NAME][requested]: the account's capabilities afterwards (a new one is
    inactive; requested=false removes one). The names are the contract's."""
    result = dict(current or {})
    for name, value in capabilities.items():
        if "requested" not in value:
            raise missing_parameter(f"capabilities[{name}][requested]")
        if value["requested"]:
            result.setdefault(name, "inactive")
        else:
            result.pop(name, None)
    return result


def controller_param(controller):
    """(fees payer, losses payments, requirement_collection, dashboard)."""
    return (
        (controller.get("fees") or {}).get("payer", "account"),
        (controller.get("losses") or {}).get("payments", "stripe"),
        controller.get("requirement_collection", "stripe"),
        (controller.get("stripe_dashboard") or {}).get("type", "full"),
    )


def country_param(country):
    if country is None:
        return PLATFORM_COUNTRY
    if not re.fullmatch(r"[A-Za-z]{2}", country):
        raise invalid_param(
            f"Country '{country}' is unknown. Try using a 2-character alphanumeric country "
            "code instead, such as 'US', 'EG', or 'GB'. A full list of country codes is "
            "available at https://www.iso.org/obp/ui/#search", param="country")
    return country.upper()


def currency_param(currency, param="currency"):
    if not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise invalid_param(f"Invalid currency: {currency}.",
                              code="parameter_invalid_string", param=param)
    return currency.lower()


def email_param(email):
    if email in (None, ""):
        return None
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise invalid_param(f"Invalid email address: {email}", code="email_invalid",
                              param="email")
    return email


def business_profile_param(profile, current=None):
    result = dict(current or dict.fromkeys(BUSINESS_PROFILE_FIELDS))
    if profile is None:
        return result
    for key in profile:
        if key not in result:
            raise core.not_modelled(f"business_profile[{key}]")
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
        "payments": {"statement_descriptor": None, "statement_descriptor_kana": None,
                     "statement_descriptor_kanji": None},
        "payouts": {
            "debit_negative_balances": dashboard != "full",
            "schedule": {"delay_days": 2 if country == "US" else 7, "interval": "daily"},
            "statement_descriptor": None,
        },
        "sepa_debit_payments": {},
    }


class Account(Resource):
    object = "account"
    prefix = "acct_"

    def __init__(self, fees, losses, collection, dashboard, type, country, email,
                 business_type, profile, default_currency, capabilities, metadata):
        super().__init__()
        self.business_profile = profile
        self.business_type = business_type
        self.capabilities = capabilities
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
        self.default_currency = default_currency
        self.details_submitted = False
        self.email = email
        self.external_accounts = {"object": "list", "data": [], "has_more": False,
                                  "total_count": 0,
                                  "url": f"/v1/accounts/{self.id}/external_accounts"}
        self.future_requirements = empty_requirements()
        self.metadata = metadata
        self.payouts_enabled = False
        self.requirements = all_due(due_fields(country, business_type))
        self.settings = settings_for(country, dashboard)
        self.tos_acceptance = {"date": None, "ip": None, "user_agent": None}
        self.type = type

    def to_dict(self) -> dict:
        return {
            "id": self.id, "object": "account", "business_profile": self.business_profile,
            "business_type": self.business_type, "capabilities": self.capabilities,
            "charges_enabled": self.charges_enabled, "controller": self.controller,
            "country": self.country, "created": self.created,
            "default_currency": self.default_currency,
            "details_submitted": self.details_submitted, "email": self.email,
            "external_accounts": self.external_accounts,
            "future_requirements": self.future_requirements, "metadata": self.metadata,
            "payouts_enabled": self.payouts_enabled, "requirements": self.requirements,
            "settings": self.settings, "tos_acceptance": self.tos_acceptance,
            "type": self.type,
        }


def refuse_unmodelled(params):
    for param in UNMODELLED_ACCOUNT_PARAMS:
        if param in params:
            raise invalid_param(
                f"The Stripe sandbox does not model `{param}` on accounts: onboarding "
                "(the account link's page) collects what is due.", param=param)


def create_account(type=None, controller=None, country=None, email=None, business_type=None,
                   business_profile=None, capabilities=None, default_currency=None,
                   metadata=None, **unmodelled):
    """POST /v1/accounts."""
    refuse_unmodelled(unmodelled)
    if type is not None and controller is not None:
        raise invalid_param(
            "You cannot specify both `type` and `controller`: the account type is "
            "deprecated in favour of controller properties.", param="type")
    if type is not None:
        fees, losses, collection, dashboard = TYPE_CONTROLLERS[type]
    else:
        fees, losses, collection, dashboard = controller_param(controller or {})
    country = country_param(country)
    default = "eur" if country in EURO_COUNTRIES else CURRENCY_OF_COUNTRY.get(country, "usd")
    if default_currency is not None:
        default = currency_param(default_currency, "default_currency")
    if capabilities is None and collection == "stripe":
        capabilities = {"card_payments": {"requested": True}, "transfers": {"requested": True}}
    account = Account(fees, losses, collection, dashboard, type or "none", country,
                      email_param(email), business_type or None,
                      business_profile_param(business_profile), default,
                      capabilities_param(capabilities or {}), core.merge_metadata({}, metadata))
    return account


def account_updated(account, changes):
    """Apply `changes` (attribute -> new value, replacing, never mutating) and send
    account.updated with what changed."""
    previous = core.previous_attributes(account, changes)
    vars(account).update(changes)
    if previous:
        events.emit("account.updated", account, previous_attributes=previous,
                    account=account.id)
    return account


def update_account(account, metadata=None, email=None, business_profile=None,
                   default_currency=None, capabilities=None, business_type=None,
                   **unmodelled):
    """POST /v1/accounts/{id}."""
    obj = retrieve_account(account)
    refuse_unmodelled(unmodelled)
    changes = {}
    if metadata is not None:
        changes["metadata"] = core.merge_metadata(obj.metadata, metadata)
    if email is not None:
        changes["email"] = email_param(email)
    if business_profile is not None:
        changes["business_profile"] = business_profile_param(business_profile,
                                                             obj.business_profile)
    if default_currency is not None:
        changes["default_currency"] = currency_param(default_currency, "default_currency")
    if capabilities is not None:
        changes["capabilities"] = capabilities_param(capabilities, obj.capabilities)
    if business_type is not None:
        changes["business_type"] = business_type or None
        if not obj.details_submitted:
            changes["requirements"] = all_due(due_fields(obj.country, business_type or None))
    return account_updated(obj, changes)


def get_account(account):
    return retrieve_account(account)


def delete_account(account):
    obj = retrieve_account(account)
    del core.store[obj.id]
    return {"id": obj.id, "object": "account", "deleted": True}


def list_accounts(created=None, limit=None, starting_after=None, ending_before=None):
    in_period = core.created_filter(created)
    items = newest_first(Account, lambda a: in_period(a.created))
    return Page("/v1/accounts", items, limit, starting_after, ending_before)


def list_param(value, param):
    if value in ("", None):
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, dict) and all(k.isdigit() for k in value):  # name[0]=...
        value = [value[k] for k in sorted(value, key=int)]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_param("Invalid array", code="parameter_invalid_array", param=param)
    return value


def union(*lists):
    return sorted(set().union(*lists))


def bool_param(value, name):
    if value not in ("true", "false"):
        raise invalid_param("Invalid boolean", code="parameter_invalid_boolean", param=name)
    return value == "true"


def set_requirements(id, currently_due=None, eventually_due=None, past_due=None,
                     pending_verification=None, current_deadline=None, disabled_reason=None,
                     payouts_enabled=None, charges_enabled=None, capabilities=None):
    """POST /_sandbox/accounts/{id}/requirements (sandbox only): what Stripe does when it
    needs more from a connected account later."""
    account = retrieve_account(id)
    old = account.requirements
    lists = {}
    for name, value in (("currently_due", currently_due), ("eventually_due", eventually_due),
                        ("past_due", past_due), ("pending_verification", pending_verification)):
        lists[name] = old[name] if value is None else list_param(value, name)
    requirements = dict(old)
    requirements["past_due"] = sorted(lists["past_due"])
    requirements["currently_due"] = union(lists["currently_due"], lists["past_due"])
    requirements["eventually_due"] = union(lists["eventually_due"], requirements["currently_due"])
    requirements["pending_verification"] = sorted(lists["pending_verification"])
    if current_deadline is not None:
        if current_deadline != "" and not re.fullmatch(r"\d+", current_deadline):
            raise invalid_param("Invalid integer", code="parameter_invalid_integer",
                                  param="current_deadline")
        requirements["current_deadline"] = int(current_deadline) if current_deadline else None
    past = bool(requirements["past_due"])
    if disabled_reason is not None:
        requirements["disabled_reason"] = disabled_reason or None
    else:
        requirements["disabled_reason"] = "requirements.past_due" if past else None

    changes = {"requirements": requirements}
    for name, value in (("payouts_enabled", payouts_enabled),
                        ("charges_enabled", charges_enabled)):
        if value is not None:
            changes[name] = bool_param(value, name)
        elif past:
            changes[name] = False
    caps = dict(account.capabilities)
    if past:
        caps = dict.fromkeys(caps, "inactive")
    if capabilities is not None:
        if not isinstance(capabilities, dict):
            raise invalid_param("Invalid object", code="parameter_invalid_object",
                                  param="capabilities")
        for name, status in capabilities.items():
            if status not in CAPABILITY_STATUSES:
                raise invalid_value(f"capabilities[{name}]", status, CAPABILITY_STATUSES)
            caps[name] = status
    changes["capabilities"] = caps
    return account_updated(account, changes)


# --- Account links and the onboarding page -----------------------------------------------------


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

    def export(self, expand=None):
        return {"object": "account_link", "created": self.created,
                "expires_at": self.expires_at,
                "url": f"{core.PUBLIC_URL}/connect/onboarding/{self.id}"}


account_links: dict[str, AccountLink] = {}  # link id -> AccountLink


def url_param(value, param):
    if value is None:
        raise missing_parameter(param)
    if not re.match(r"https?://[^\s/]+", value):
        raise invalid_param("Not a valid URL", code="url_invalid", param=param)
    return value


def create_account_link(account=None, type=None, refresh_url=None, return_url=None,
                        collect=None, collection_options=None):
    """POST /v1/account_links."""
    refresh_url = url_param(refresh_url, "refresh_url")
    return_url = url_param(return_url, "return_url")
    if collection_options is not None and collect is not None:
        raise invalid_param(
            "You may only specify one of these parameters: collect, collection_options.")
    acct = Account.get(account)
    if acct is None:
        raise no_such("account", account, "account")
    if type == "account_update" and acct.controller["stripe_dashboard"]["type"] != "none":
        # Stripe: only for accounts without a Stripe-hosted Dashboard.
        raise invalid_param('Invalid type: must be one of ["account_onboarding"]', param="type")
    now = core.now()
    link = AccountLink(id=secrets.token_urlsafe(18), account=acct.id, type=type,
                       refresh_url=refresh_url, return_url=return_url, created=now,
                       expires_at=now + ACCOUNT_LINK_TTL)
    account_links[link.id] = link
    return link


def expire_account_link(link):
    """POST /_sandbox/account_links/{link}/expire (sandbox only)."""
    found = account_links.get(link)
    if found is None:
        raise no_such("account link", link, "link", status=404)
    found.expired = True
    return {"object": "account_link", "expired": True, "url": found.export()["url"]}


def bank_account(account, iban, holder):
    return {
        "id": "ba_" + core.random_id(24),
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
        "fingerprint": core.fingerprint(iban),
        "future_requirements": {"currently_due": [], "errors": [], "past_due": [],
                                "pending_verification": []},
        "last4": iban[-4:],
        "metadata": {},
        "requirements": {"currently_due": [], "errors": [], "past_due": [],
                         "pending_verification": []},
        "routing_number": None,
        "status": "new",
    }


def onboarding_changes(account, outcome, iban, holder, user_agent):
    """What the onboarding page's two buttons do to the account."""
    changes = {
        "business_type": account.business_type or "individual",
        "details_submitted": True,
        "tos_acceptance": {"date": core.now(), "ip": "127.0.0.1", "user_agent": user_agent},
    }
    if outcome == "complete":
        caps = dict.fromkeys(account.capabilities, "active")
        changes.update(
            capabilities=caps,
            charges_enabled=caps.get("card_payments") == "active",
            payouts_enabled=True,
            requirements=empty_requirements(),
            external_accounts={**account.external_accounts,
                               "data": [bank_account(account, iban, holder)],
                               "total_count": 1},
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
    return core.page("Set up payouts", ONBOARDING_FORM.format(
        account=html.escape(link.account),
        error=f'<p role="alert">{html.escape(error)}</p>' if error else "",
        first_name=html.escape(first_name), last_name=html.escape(last_name),
        iban=html.escape(iban), test_iban=TEST_IBAN))


async def onboarding_page(request):
    """Where account links point: stands in for Stripe's hosted onboarding. A link works
    once; expired or used, it sends the user to refresh_url."""
    link = account_links.get(request.match_info["link"])
    if link is None:
        return core.page("Link not found", "<p>This onboarding link does not exist.</p>")
    account = Account.get(link.account)
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
    account_updated(account, onboarding_changes(
        account, outcome, iban, f"{first} {last}".strip(), request.headers.get("User-Agent")))
    raise web.HTTPSeeOther(link.return_url)


# --- Transfers and reversals ---------------------------------------------------------------------


class TransferReversal(Resource):
    object = "transfer_reversal"
    prefix = "trr_"

    def __init__(self, transfer, amount, metadata):
        super().__init__()
        self.amount = amount
        self.currency = transfer.currency
        self.transfer = transfer.id
        self.metadata = metadata
        self.balance_transaction = balance.record(
            amount, transfer.currency, "transfer_refund", "transfer_reversal", self.id).id
        balance.record(-amount, transfer.currency, "payment_refund", "refund", self.id,
                       account=transfer.destination)
        self.destination_payment_refund = "pyr_" + core.random_id(24)

    def to_dict(self) -> dict:
        return {"id": self.id, "object": "transfer_reversal", "amount": self.amount,
                "balance_transaction": self.balance_transaction, "created": self.created,
                "currency": self.currency,
                "destination_payment_refund": self.destination_payment_refund,
                "metadata": self.metadata, "source_refund": None, "transfer": self.transfer}


class Transfer(Resource):
    object = "transfer"
    prefix = "tr_"

    def __init__(self, amount, currency, destination, description, metadata, transfer_group,
                 source_transaction, source_type, available_on=None):
        super().__init__()
        self.amount = amount
        self.currency = currency
        self.destination = destination
        self.description = description
        self.metadata = metadata
        self.transfer_group = transfer_group
        self.source_transaction = source_transaction
        self.source_type = source_type
        self.reversals: list[TransferReversal] = []  # oldest first
        self.balance_transaction = balance.record(
            -amount, currency, "transfer", "transfer", self.id, available_on=available_on).id
        self.destination_payment = "py_" + core.random_id(24)
        balance.record(amount, currency, "payment", "charge", self.destination_payment,
                       account=destination, available_on=available_on)

    @property
    def amount_reversed(self) -> int:
        return sum(r.amount for r in self.reversals)

    def to_dict(self) -> dict:
        newest = list(reversed(self.reversals))
        return {
            "id": self.id, "object": "transfer", "amount": self.amount,
            "amount_reversed": self.amount_reversed,
            "balance_transaction": self.balance_transaction, "created": self.created,
            "currency": self.currency, "description": self.description,
            "destination": self.destination, "destination_payment": self.destination_payment,
            "livemode": False, "metadata": self.metadata,
            "reversals": {"object": "list", "data": [r.to_dict() for r in newest[:10]],
                          "has_more": len(newest) > 10, "total_count": len(newest),
                          "url": f"/v1/transfers/{self.id}/reversals"},
            "reversed": self.amount_reversed >= self.amount,
            "source_transaction": self.source_transaction, "source_type": self.source_type,
            "transfer_group": self.transfer_group,
        }


def retrieve_transfer(id) -> Transfer:
    transfer = Transfer.get(id)
    if transfer is None:
        raise no_such("transfer", id, status=404)
    return transfer


@dataclass
class Failure:
    status: int
    type: str
    code: str | None
    message: str


transfer_failures: list[Failure] = []  # what the next POST /v1/transfers answer


def source_funds(charge_id, amount, currency):
    """A transfer paid out of a charge (source_transaction), as Stripe allows it ahead of
    the charge's funds: up to what the charge has not transferred yet. The transfer's funds
    move when the charge's do."""
    charge = retrieve_charge(charge_id, "source_transaction")
    charge.record_funds()  # captured asynchronously a moment ago: its funds first
    if charge.currency != currency:
        raise invalid_request(
            f"The currency of source_transaction's balance transaction ({charge.currency}) "
            f"must be the same as the transfer currency ({currency})",
            param="source_transaction")
    done = sum(t.amount for t in newest_first(Transfer, lambda t:
                                              t.source_transaction == charge.id))
    if amount > charge.amount_captured - charge.amount_refunded - done:
        raise invalid_request(
            "Transfers using this transaction as a source must not exceed the source amount "
            f"of {charge.amount_captured}.", param="amount")
    txn = balance.BalanceTransaction.get(charge.balance_transaction)
    return charge.id, txn.available_on if txn else None


def create_transfer(amount=None, currency=None, destination=None, description=None,
                    metadata=None, transfer_group=None, source_transaction=None,
                    source_type=None):
    """POST /v1/transfers, or the next failure the test hook asked for."""
    if transfer_failures:
        failure = transfer_failures.pop(0)
        error = StripeError(failure.status, failure.type, failure.message, code=failure.code)
        if failure.status >= 500:
            error.headers["Stripe-Should-Retry"] = "false"
        raise error
    if amount is None:
        raise missing_parameter("amount")
    amount = core.positive(amount)
    currency = currency_param(currency)
    account = Account.get(destination)
    if account is None:
        raise no_such("destination", destination, "destination")
    if not any(account.capabilities.get(c) == "active" for c in TRANSFER_CAPABILITIES):
        raise invalid_request(NO_CAPABILITY, code="insufficient_capabilities_for_transfer")
    available_on = None
    if source_transaction is not None:
        source_transaction, available_on = source_funds(source_transaction, amount, currency)
    else:
        balance.require_available(amount, currency)
    transfer = Transfer(amount, currency, account.id, description or None,
                        core.merge_metadata({}, metadata), transfer_group or None,
                        source_transaction, source_type or "card", available_on)
    events.emit("transfer.created", transfer)
    return transfer


def update_transfer(transfer, description=None, metadata=None):
    """POST /v1/transfers/{id}: description and metadata, like Stripe."""
    obj = retrieve_transfer(transfer)
    changes = {}
    if description is not None:
        changes["description"] = description or None
    if metadata is not None:
        changes["metadata"] = core.merge_metadata(obj.metadata, metadata)
    previous = core.previous_attributes(obj, changes)
    vars(obj).update(changes)
    if previous:
        events.emit("transfer.updated", obj, previous_attributes=previous)
    return obj


def get_transfer(transfer):
    return retrieve_transfer(transfer)


def list_transfers(destination=None, transfer_group=None, created=None, limit=None,
                   starting_after=None, ending_before=None):
    in_period = core.created_filter(created)
    items = newest_first(Transfer, lambda t: destination in (None, t.destination)
                         and transfer_group in (None, t.transfer_group)
                         and in_period(t.created))
    return Page("/v1/transfers", items, limit, starting_after, ending_before)


def create_reversal(id, amount=None, description=None, metadata=None,
                    refund_application_fee=None):
    """POST /v1/transfers/{id}/reversals (description: taken, not kept, as the reversal
    object has none)."""
    transfer = retrieve_transfer(id)
    if amount is not None:
        amount = core.positive(amount)
    remaining = transfer.amount - transfer.amount_reversed
    if remaining <= 0:
        raise invalid_request(f"The transfer {transfer.id} is already fully reversed.")
    amount = remaining if amount is None else amount
    if amount > remaining:
        raise invalid_request(
            f"Transfer reversal amount ({core.format_amount(amount, transfer.currency)}) is "
            "greater than unreversed amount on transfer "
            f"({core.format_amount(remaining, transfer.currency)})", param="amount")
    reversal = TransferReversal(transfer, amount, core.merge_metadata({}, metadata))
    transfer.reversals.append(reversal)
    events.emit("transfer.reversed", transfer)
    return reversal


def retrieve_reversal(transfer, id):
    obj = retrieve_transfer(transfer)
    for item in obj.reversals:
        if item.id == id:
            return item
    raise no_such("transfer_reversal", id, status=404)


def update_reversal(transfer, id, metadata=None):
    item = retrieve_reversal(transfer, id)
    if metadata is not None:
        item.metadata = core.merge_metadata(item.metadata, metadata)
    return item


def list_reversals(id, limit=None, starting_after=None, ending_before=None):
    transfer = retrieve_transfer(id)
    return Page(f"/v1/transfers/{transfer.id}/reversals", list(reversed(transfer.reversals)),
                limit, starting_after, ending_before)


def fail_next_transfers(count=None, status=None, message=None):
    """POST /_sandbox/fail_next_transfers (sandbox only)."""
    count = 1 if count is None else count
    if not (re.fullmatch(r"\d+", str(count)) and 0 <= int(count) <= 100):
        raise invalid_request("count must be an integer from 0 to 100",
                              code="parameter_invalid_integer", param="count")
    count = int(count)
    if count == 0:
        transfer_failures.clear()
        return {"object": "sandbox.transfer_failures", "pending": 0}
    if status is None:
        raise missing_parameter("status")
    number = int(status) if re.fullmatch(r"\d+", status) else None
    if number is not None and 500 <= number <= 599:
        failure = Failure(number, "api_error", None, message or API_ERROR)
    elif number == 429:
        failure = Failure(429, "invalid_request_error", "rate_limit", message or RATE_LIMITED)
    elif number is None and re.fullmatch(r"[a-z][a-z0-9_]*", status):
        text = message or KNOWN_FAILURES.get(status)
        if not text:
            raise invalid_request(
                f"Give the `message` of a {status} error (known codes: "
                f"{', '.join(sorted(KNOWN_FAILURES))}).", param="message")
        failure = Failure(400, "invalid_request_error", status, text)
    else:
        raise invalid_request(
            "status must be 429, 5xx, or an error code such as balance_insufficient",
            param="status")
    transfer_failures.extend([failure] * count)
    return {"object": "sandbox.transfer_failures", "pending": len(transfer_failures),
            "status": failure.status, "code": failure.code, "message": failure.message}


ROUTES = [
    ("POST", "/v1/accounts", create_account),
    ("GET", "/v1/accounts", list_accounts),
    ("GET", "/v1/accounts/{account}", get_account),
    ("POST", "/v1/accounts/{account}", update_account),
    ("DELETE", "/v1/accounts/{account}", delete_account),
    ("POST", "/v1/account_links", create_account_link),
    ("POST", "/v1/transfers", create_transfer),
    ("GET", "/v1/transfers", list_transfers),
    ("GET", "/v1/transfers/{transfer}", get_transfer),
    ("POST", "/v1/transfers/{transfer}", update_transfer),
    ("POST", "/v1/transfers/{id}/reversals", create_reversal),
    ("GET", "/v1/transfers/{id}/reversals", list_reversals),
    ("GET", "/v1/transfers/{transfer}/reversals/{id}", retrieve_reversal),
    ("POST", "/v1/transfers/{transfer}/reversals/{id}", update_reversal),
]
HOOKS = [
    ("POST", "/_sandbox/accounts/{id}/requirements", set_requirements),
    ("POST", "/_sandbox/account_links/{link}/expire", expire_account_link),
    ("POST", "/_sandbox/fail_next_transfers", fail_next_transfers),
]
PAGES = [
    ("GET", "/connect/onboarding/{link}", onboarding_page),
    ("POST", "/connect/onboarding/{link}", onboarding_page),
]
