"""Stripe Connect in the sandbox as Stripe does it (API 2026-10-28.endive),
through stripe-python 16.1.0 and raw requests: Express accounts, account
links and the onboarding page (in Chromium), transfers, reversals, their
errors, idempotent replays, events, and the test hooks (requirements later,
expired links, transfers failing on demand)."""

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import stripe

from . import test_stripe_js_double as js_double
from .sandbox_helpers import (
    CONNECT_WEBHOOK_SECRET,
    PUBLISHABLE_KEY,
    SECRET_KEY,
    WEBHOOK_SECRET,
    http,
)

# The same Chromium and browser contexts as the Stripe.js double's tests.
browser = js_double.browser
page = js_double.page

AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}
RETURN_URL = "http://127.0.0.1:9/vendor/payouts/return"
REFRESH_URL = "http://127.0.0.1:9/vendor/payouts/refresh"
# The fields the sandbox answers for an account (the contract holds each to stripe.Account;
# Account has neither `livemode` nor `login_links` in the pinned version).
ACCOUNT_FIELDS = {
    "business_profile",
    "business_type",
    "capabilities",
    "charges_enabled",
    "controller",
    "country",
    "created",
    "default_currency",
    "details_submitted",
    "email",
    "external_accounts",
    "future_requirements",
    "id",
    "metadata",
    "object",
    "payouts_enabled",
    "requirements",
    "settings",
    "tos_acceptance",
    "type",
}
TRANSFER_FIELDS = {
    "id",
    "object",
    "amount",
    "amount_reversed",
    "balance_transaction",
    "created",
    "currency",
    "description",
    "destination",
    "destination_payment",
    "livemode",
    "metadata",
    "reversals",
    "reversed",
    "source_transaction",
    "source_type",
    "transfer_group",
}
REVERSAL_FIELDS = {
    "id",
    "object",
    "amount",
    "balance_transaction",
    "created",
    "currency",
    "destination_payment_refund",
    "metadata",
    "source_refund",
    "transfer",
}
NO_CAPABILITY = (
    "Your destination account needs to have at least one of the following capabilities "
    "enabled: transfers, crypto_transfers, legacy_payments"
)
# A new DE Express account (business type not given yet), as Stripe lists it.
DE_DUE = [
    "business_profile.mcc",
    "business_profile.url",
    "business_type",
    "external_account",
    "representative.address.city",
    "representative.address.line1",
    "representative.address.postal_code",
    "representative.dob.day",
    "representative.dob.month",
    "representative.dob.year",
    "representative.email",
    "representative.first_name",
    "representative.last_name",
    "representative.phone",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]


def express(client, **params):
    return client.v1.accounts.create(
        params={
            "type": "express",
            "country": "DE",
            "email": "vendor@example.com",
            "capabilities": {
                "card_payments": {"requested": True},
                "transfers": {"requested": True},
            },
            **params,
        }
    )


def link(client, account_id, **params):
    return client.v1.account_links.create(
        params={
            "account": account_id,
            "refresh_url": REFRESH_URL,
            "return_url": RETURN_URL,
            "type": "account_onboarding",
            **params,
        }
    )


def onboard(client, account_id, outcome="complete", iban=""):
    """The onboarding page driven over HTTP (the browser tests drive it for real)."""
    url = link(client, account_id).url
    assert http("GET", url).status == 200
    form = {"outcome": outcome, "first_name": "Jenny", "last_name": "Rosen", "iban": iban}
    response = http("POST", url, form)
    assert (response.status, response.headers["Location"]) == (303, RETURN_URL)
    return client.v1.accounts.retrieve(account_id)


def onboarded(client, **params):
    return onboard(client, express(client, **params).id)


def fund(client, amount, currency="eur", number="4000000000000077"):
    """A paid charge: with 4000000000000077 its funds are available at once (as at Stripe),
    with another card they stay pending for the sandbox's --funds-delay."""
    pm = client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034,
                                 "cvc": "123"}})
    return client.v1.payment_intents.create(params={
        "amount": amount, "currency": currency, "payment_method": pm.id, "confirm": True,
        "allowed_payment_method_types": ["card"], "capture_method": "automatic"})


@pytest.fixture(scope="module", autouse=True)
def platform_funds(client):
    """Transfers need available funds: the platform took a large EUR payment first."""
    return fund(client, 50_000_000)


def transfer(client, destination, amount=1500, options=None, **params):
    return client.v1.transfers.create(
        params={"amount": amount, "currency": "eur", "destination": destination, **params},
        options=options or {},
    )


def refused(call, status=400, error=stripe.InvalidRequestError):
    with pytest.raises(error) as raised:
        call()
    assert raised.value.http_status == status
    return raised.value


def event(webhook_receiver, type, object_id, where=None):
    return webhook_receiver.wait_for_event(WEBHOOK_SECRET, type, object_id, where=where)


def account_updated(webhook_receiver, account_id, where):
    """Connect events come to the Connect endpoint, signed with its own secret."""
    return webhook_receiver.wait_for_event(CONNECT_WEBHOOK_SECRET, "account.updated",
                                           account_id, where=where)


def hook(sandbox, path, params=None, headers=AUTH):
    return http("POST", f"{sandbox.url}/_sandbox/{path}", params, headers)


def transfer_ids(client, **params):
    return [t.id for t in client.v1.transfers.list(params=params).data]


# --- Accounts ----------------------------------------------------------------


def test_new_express_account_is_not_enabled(client):
    acct = express(client, metadata={"vendor": "v_42"})

    assert set(acct.to_dict()) == ACCOUNT_FIELDS
    assert acct.id.startswith("acct_")
    assert (acct.object, acct.type, acct.country, acct.default_currency) == (
        "account",
        "express",
        "DE",
        "eur",
    )
    assert (acct.charges_enabled, acct.payouts_enabled, acct.details_submitted) == (
        False,
        False,
        False,
    )
    assert acct.capabilities.to_dict() == {"card_payments": "inactive", "transfers": "inactive"}
    assert acct.requirements.to_dict() == {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": DE_DUE,
        "disabled_reason": "requirements.past_due",
        "errors": [],
        "eventually_due": DE_DUE,
        "past_due": DE_DUE,
        "pending_verification": [],
    }
    assert acct.future_requirements.currently_due == []
    assert acct.controller.to_dict() == {
        "fees": {"payer": "application_express"},
        "is_controller": True,
        "losses": {"payments": "application"},
        "requirement_collection": "stripe",
        "stripe_dashboard": {"type": "express"},
        "type": "application",
    }
    assert acct.external_accounts.data == []
    assert acct.external_accounts.url == f"/v1/accounts/{acct.id}/external_accounts"
    assert acct.tos_acceptance.to_dict() == {"date": None, "ip": None, "user_agent": None}
    assert (acct.email, acct.business_type) == ("vendor@example.com", None)
    assert acct.metadata.to_dict() == {"vendor": "v_42"}
    assert client.v1.accounts.retrieve(acct.id).to_dict() == acct.to_dict()


def test_individual_account_in_the_platform_country(client):
    acct = client.v1.accounts.create(
        params={
            "type": "express",
            "business_type": "individual",
            "capabilities": {"transfers": {"requested": True}},
        }
    )
    assert (acct.country, acct.default_currency) == ("US", "usd")
    assert acct.capabilities.to_dict() == {"transfers": "inactive"}
    due = acct.requirements.currently_due
    assert {"individual.first_name", "external_account", "tos_acceptance.date"} <= set(due)
    assert not any(field.startswith("representative.") for field in due)
    assert due == sorted(due)
    # Accounts onboarded by Stripe request card_payments and transfers by default.
    default = client.v1.accounts.create(params={"type": "express", "country": "FR"})
    assert default.capabilities.to_dict() == {"card_payments": "inactive", "transfers": "inactive"}
    assert default.default_currency == "eur"


def test_controller_properties_instead_of_a_type(client):
    acct = client.v1.accounts.create(
        params={
            "country": "NL",
            "controller": {
                "fees": {"payer": "application"},
                "losses": {"payments": "application"},
                "stripe_dashboard": {"type": "express"},
            },
            "capabilities": {"transfers": {"requested": True}},
        }
    )
    assert acct.type == "none"
    assert acct.controller.to_dict() == {
        "fees": {"payer": "application"},
        "is_controller": True,
        "losses": {"payments": "application"},
        "requirement_collection": "stripe",
        "stripe_dashboard": {"type": "express"},
        "type": "application",
    }

    error = refused(
        lambda: client.v1.accounts.create(
            params={"type": "express", "controller": {"fees": {"payer": "application"}}}
        )
    )
    assert error.param == "type"
    error = refused(lambda: client.v1.accounts.create(params={"type": "premium"}))
    assert (error.code, error.param) == ("parameter_invalid_string", "type")
    assert error.user_message == "Invalid type: must be one of custom, express, standard"
    error = refused(
        lambda: client.v1.accounts.create(
            params={"controller": {"stripe_dashboard": {"type": "lite"}}}
        )
    )
    assert error.param == "controller[stripe_dashboard][type]"
    error = refused(
        lambda: client.v1.accounts.create(
            params={"type": "express", "capabilities": {"teleport_transfers": {"requested": True}}}
        )
    )
    assert (error.code, error.param) == ("parameter_unknown", "capabilities[teleport_transfers]")
    error = refused(lambda: client.v1.accounts.create(params={"type": "express", "email": "nope"}))
    assert (error.code, error.param) == ("email_invalid", "email")
    error = refused(lambda: client.v1.accounts.create(params={"type": "express", "country": "D"}))
    assert error.param == "country"
    # Stripe parameters the sandbox does not model are refused by name.
    error = refused(
        lambda: client.v1.accounts.create(
            params={"type": "express", "individual": {"first_name": "Jenny"}}
        )
    )
    assert error.param == "individual"
    assert "does not model `individual`" in error.user_message


def test_update_sends_account_updated(client, webhook_receiver):
    acct = express(client, metadata={"vendor": "v_1", "tier": "gold"})
    updated = client.v1.accounts.update(
        acct.id,
        params={
            "metadata": {"tier": "", "region": "eu"},
            "email": "billing@example.com",
            "business_profile": {"name": "Rosen Crafts"},
        },
    )
    assert updated.metadata.to_dict() == {"vendor": "v_1", "region": "eu"}
    assert (updated.email, updated.business_profile.name) == ("billing@example.com", "Rosen Crafts")
    assert client.v1.accounts.retrieve(acct.id).to_dict() == updated.to_dict()

    sent = account_updated(
        webhook_receiver, acct.id, lambda e: e.data.object.metadata.to_dict().get("region")
    )
    assert sent.account == acct.id  # a Connect event names the connected account
    assert sent.api_version == stripe.api_version
    assert sent.data.object.to_dict() == updated.to_dict()
    assert sent.data.previous_attributes.to_dict() == {
        "business_profile": {"name": None},
        "email": "vendor@example.com",
        "metadata": {"region": None, "tier": "gold"},
    }

    # The business type decides the requirements until details are submitted.
    individual = client.v1.accounts.update(acct.id, params={"business_type": "individual"})
    assert "individual.first_name" in individual.requirements.currently_due
    assert "business_type" not in individual.requirements.currently_due

    error = refused(lambda: client.v1.accounts.update(acct.id, params={"country": "FR"}))
    assert (error.code, error.user_message) == (
        "parameter_unknown",
        "Received unknown parameter: country",
    )
    error = refused(
        lambda: client.v1.accounts.update(acct.id, params={"tos_acceptance": {"date": 1}})
    )
    assert error.param == "tos_acceptance"


def test_unknown_and_deleted_accounts(client, sandbox):
    with pytest.raises(stripe.PermissionError) as raised:
        client.v1.accounts.retrieve("acct_nope")
    error = raised.value
    assert error.http_status == 403
    assert error.json_body["error"]["code"] == "account_invalid"
    assert error.json_body["error"]["type"] == "invalid_request_error"
    assert error.user_message == (
        "The provided key 'sk_test_*********ests' does not have access to account 'acct_nope' "
        "(or that account does not exist). Application access may have been revoked."
    )

    acct = onboarded(client)
    deleted = client.v1.accounts.delete(acct.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (acct.id, "account", True)
    for call in (
        lambda: client.v1.accounts.retrieve(acct.id),
        lambda: client.v1.accounts.update(acct.id, params={"metadata": {"a": "b"}}),
        lambda: client.v1.accounts.delete(acct.id),
    ):
        assert refused(call, 403, stripe.PermissionError).json_body["error"]["code"] == (
            "account_invalid"
        )
    assert acct.id not in [a.id for a in client.v1.accounts.list(params={"limit": 100}).data]
    error = refused(lambda: transfer(client, acct.id))
    assert (error.code, error.param) == ("resource_missing", "destination")
    assert error.user_message == f"No such destination: '{acct.id}'"

    # Connect calls need the secret key.
    response = http(
        "POST",
        f"{sandbox.url}/v1/accounts",
        {"type": "express"},
        {"Authorization": f"Bearer {PUBLISHABLE_KEY}"},
    )
    assert response.status == 401
    assert response.json()["error"]["code"] == "secret_key_required"


def test_list_accounts_newest_first(client):
    ids = [express(client).id for _ in range(3)]
    newest = ids[::-1]
    listed = [a.id for a in client.v1.accounts.list(params={"limit": 100}).data]
    assert listed[:3] == newest
    page = client.v1.accounts.list(params={"limit": 2})
    assert ([a.id for a in page.data], page.has_more) == (newest[:2], True)
    rest = client.v1.accounts.list(params={"limit": 2, "starting_after": newest[1]})
    assert rest.data[0].id == newest[2]
    created = client.v1.accounts.retrieve(ids[0]).created
    assert set(ids) <= {
        a.id for a in client.v1.accounts.list(params={"limit": 100, "created": {"gte": created}})
    }


def test_account_creation_is_idempotent(client, sandbox):
    key = f"vendor-{uuid.uuid4()}"
    params = {"type": "express", "country": "DE", "metadata": {"vendor": key}}
    first = client.v1.accounts.create(params=params, options={"idempotency_key": key})
    again = client.v1.accounts.create(params=params, options={"idempotency_key": key})
    assert again.to_dict() == first.to_dict()
    raw = http(
        "POST",
        f"{sandbox.url}/v1/accounts",
        {"type": "express", "country": "DE", "metadata[vendor]": key},
        {**AUTH, "Idempotency-Key": key},
    )
    assert (raw.status, raw.headers["Idempotent-Replayed"]) == (200, "true")
    assert raw.json()["id"] == first.id
    listed = client.v1.accounts.list(params={"limit": 100}).data
    assert [a.id for a in listed if a.metadata.to_dict().get("vendor") == key] == [first.id]
    with pytest.raises(stripe.IdempotencyError):
        client.v1.accounts.create(
            params={**params, "country": "FR"}, options={"idempotency_key": key}
        )


# --- Account links ----------------------------------------------------------------


def test_account_link_shape_and_errors(client, sandbox):
    acct = express(client)
    created = link(client, acct.id, collect="eventually_due")
    assert set(created.to_dict()) == {"object", "created", "expires_at", "url"}
    assert created.object == "account_link"
    assert created.expires_at == created.created + 300
    assert created.url.startswith(f"{sandbox.url}/connect/onboarding/")
    assert link(client, acct.id).url != created.url  # a new link each time

    error = refused(lambda: link(client, acct.id, type="account_update"))
    assert (error.param, error.user_message) == (
        "type",
        'Invalid type: must be one of ["account_onboarding"]',
    )
    custom = client.v1.accounts.create(
        params={
            "type": "custom",
            "country": "DE",
            "capabilities": {"transfers": {"requested": True}},
        }
    )
    assert custom.controller.requirement_collection == "application"
    assert link(client, custom.id, type="account_update").object == "account_link"

    error = refused(lambda: link(client, acct.id, type="account_signup"))
    assert (error.code, error.param) == ("parameter_invalid_string", "type")
    error = refused(lambda: link(client, "acct_nope"))
    assert (error.code, error.param) == ("resource_missing", "account")
    error = refused(lambda: link(client, acct.id, return_url="vendor/payouts"))
    assert (error.code, error.param) == ("url_invalid", "return_url")
    error = refused(
        lambda: client.v1.account_links.create(
            params={"account": acct.id, "type": "account_onboarding", "return_url": RETURN_URL}
        )
    )
    assert (error.code, error.param, error.user_message) == (
        "parameter_missing",
        "refresh_url",
        "Missing required param: refresh_url.",
    )
    error = refused(lambda: link(client, acct.id, collect="everything"))
    assert error.param == "collect"


def test_onboarding_over_http_both_ways(client, webhook_receiver):
    later = onboard(client, express(client).id, outcome="later")
    assert (later.details_submitted, later.payouts_enabled, later.charges_enabled) == (
        True,
        False,
        False,
    )
    assert later.requirements.currently_due == ["external_account"]
    assert later.requirements.past_due == ["external_account"]
    assert later.requirements.disabled_reason == "requirements.past_due"
    assert later.capabilities.transfers == "inactive"
    assert later.external_accounts.data == []

    # A new link finishes it, with the bank account given.
    done = onboard(client, later.id, iban="FR14 2004 1010 0505 0001 3M02 606")
    assert (done.details_submitted, done.payouts_enabled, done.charges_enabled) == (
        True,
        True,
        True,
    )
    assert done.requirements.to_dict() == {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": [],
        "disabled_reason": None,
        "errors": [],
        "eventually_due": [],
        "past_due": [],
        "pending_verification": [],
    }
    assert done.capabilities.to_dict() == {"card_payments": "active", "transfers": "active"}
    [bank] = done.external_accounts.data
    assert (bank.object, bank.last4, bank.country, bank.currency) == (
        "bank_account",
        "2606",
        "FR",
        "eur",
    )
    assert bank.account_holder_name == "Jenny Rosen"
    assert done.tos_acceptance.date is not None
    sent = account_updated(webhook_receiver, done.id, lambda e: e.data.object.payouts_enabled)
    assert sent.data.previous_attributes.payouts_enabled is False
    assert sent.data.previous_attributes.capabilities.to_dict() == {
        "card_payments": "inactive",
        "transfers": "inactive",
    }
    assert sent.data.previous_attributes.requirements.currently_due == ["external_account"]


def test_requirements_hook(client, sandbox, webhook_receiver):
    acct = onboarded(client)
    path = f"accounts/{acct.id}/requirements"
    assert hook(sandbox, path, {"key": PUBLISHABLE_KEY}, headers={}).status == 401
    assert hook(sandbox, "accounts/acct_nope/requirements").status == 403

    # Stripe wants more, and pauses payouts meanwhile.
    deadline = acct.created + 30 * 86400
    response = hook(
        sandbox,
        path,
        {
            "currently_due[0]": "individual.verification.document",
            "current_deadline": deadline,
            "payouts_enabled": "false",
        },
    )
    assert response.status == 200
    body = response.json()
    assert (body["payouts_enabled"], body["charges_enabled"]) == (False, True)
    assert body["requirements"]["currently_due"] == ["individual.verification.document"]
    assert body["requirements"]["eventually_due"] == ["individual.verification.document"]
    assert body["requirements"]["current_deadline"] == deadline
    assert body["requirements"]["disabled_reason"] is None
    sent = account_updated(webhook_receiver, acct.id, lambda e: not e.data.object.payouts_enabled)
    assert sent.data.previous_attributes.to_dict() == {
        "payouts_enabled": True,
        "requirements": {"current_deadline": None, "currently_due": [], "eventually_due": []},
    }
    # As at Stripe, only the transfers capability decides transfers: still active.
    assert transfer(client, acct.id).destination == acct.id

    # The deadline passes: everything stops.
    body = hook(sandbox, path, {"past_due[0]": "individual.verification.document"}).json()
    assert (body["payouts_enabled"], body["charges_enabled"]) == (False, False)
    assert body["capabilities"] == {"card_payments": "inactive", "transfers": "inactive"}
    assert body["requirements"]["disabled_reason"] == "requirements.past_due"
    error = refused(lambda: transfer(client, acct.id))
    assert (error.code, error.user_message) == (
        "insufficient_capabilities_for_transfer",
        NO_CAPABILITY,
    )

    # Provided: back to normal.
    body = hook(
        sandbox,
        path,
        {
            "currently_due": "",
            "eventually_due": "",
            "past_due": "",
            "current_deadline": "",
            "payouts_enabled": "true",
            "charges_enabled": "true",
            "capabilities[transfers]": "active",
            "capabilities[card_payments]": "active",
        },
    ).json()
    assert body["requirements"]["currently_due"] == []
    assert (body["payouts_enabled"], body["capabilities"]["transfers"]) == (True, "active")
    assert transfer(client, acct.id).amount == 1500
    bad = hook(sandbox, path, {"capabilities[transfers]": "on"})
    assert (bad.status, bad.json()["error"]["param"]) == (400, "capabilities[transfers]")


# --- The onboarding page in a browser ----------------------------------------------


@pytest.fixture(scope="module")
def platform():
    """The portal's return and refresh pages, on their own loopback origin."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(f"<title>Platform</title><h1>{self.path}</h1>".encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def browser_link(client, platform, account_id):
    base, _ = platform
    return client.v1.account_links.create(
        params={
            "account": account_id,
            "refresh_url": f"{base}/refresh?vendor=7",
            "return_url": f"{base}/return?vendor=7",
            "type": "account_onboarding",
        }
    )


def test_onboarding_page_complete(page, client, platform, webhook_receiver):
    acct = express(client)
    page.goto(browser_link(client, platform, acct.id).url)
    assert page.get_by_role("heading", name="Set up payouts").is_visible()
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Last name").fill("Lovelace")
    page.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 00")
    page.get_by_role("button", name="Complete onboarding").click()
    page.wait_for_url(f"{platform[0]}/return?vendor=7")

    done = client.v1.accounts.retrieve(acct.id)
    assert (done.charges_enabled, done.payouts_enabled, done.details_submitted) == (
        True,
        True,
        True,
    )
    assert done.requirements.currently_due == [] and done.requirements.disabled_reason is None
    assert done.capabilities.transfers == "active"
    assert done.external_accounts.data[0].last4 == "3000"
    assert done.external_accounts.data[0].account_holder_name == "Ada Lovelace"
    assert done.business_type == "individual"
    sent = account_updated(webhook_receiver, acct.id, lambda e: e.data.object.details_submitted)
    assert sent.data.object.payouts_enabled is True
    assert sent.data.previous_attributes.details_submitted is False
    assert sent.data.previous_attributes.requirements.currently_due == DE_DUE
    assert transfer(client, acct.id).destination == acct.id


def test_onboarding_page_save_and_finish_later(page, client, platform, webhook_receiver):
    acct = express(client)
    page.goto(browser_link(client, platform, acct.id).url)
    page.get_by_role("button", name="Save and finish later").click()
    page.wait_for_url(f"{platform[0]}/return?vendor=7")

    later = client.v1.accounts.retrieve(acct.id)
    assert (later.details_submitted, later.payouts_enabled) == (True, False)
    assert later.requirements.currently_due == ["external_account"]
    assert later.capabilities.transfers == "inactive"
    sent = account_updated(webhook_receiver, acct.id, lambda e: e.data.object.details_submitted)
    assert sent.data.object.requirements.currently_due == ["external_account"]
    error = refused(lambda: transfer(client, acct.id))
    assert error.code == "insufficient_capabilities_for_transfer"


def test_onboarding_page_requires_names_to_complete(page, client, platform):
    acct = express(client)
    page.goto(browser_link(client, platform, acct.id).url)
    page.get_by_label("First name").fill("")
    page.get_by_role("button", name="Complete onboarding").click()
    assert page.get_by_role("alert").text_content() == "Enter your first and last name."
    assert client.v1.accounts.retrieve(acct.id).details_submitted is False
    page.get_by_label("First name").fill("Ada")
    page.get_by_role("button", name="Complete onboarding").click()
    page.wait_for_url(f"{platform[0]}/return?vendor=7")
    assert client.v1.accounts.retrieve(acct.id).payouts_enabled is True


def test_expired_and_used_links_go_to_refresh_url(page, client, platform, sandbox):
    base, seen = platform
    acct = express(client)
    expired = browser_link(client, platform, acct.id)
    link_id = urlsplit(expired.url).path.rsplit("/", 1)[1]
    assert hook(sandbox, f"account_links/{link_id}/expire").status == 200
    assert hook(sandbox, "account_links/nope/expire").status == 404
    page.goto(expired.url)
    page.wait_for_url(f"{base}/refresh?vendor=7")
    assert page.get_by_role("heading", name="/refresh?vendor=7").is_visible()

    # A link works once: a second visit (reload, back button) is sent away too.
    used = browser_link(client, platform, acct.id)
    page.goto(used.url)
    assert page.get_by_role("button", name="Complete onboarding").is_visible()
    page.goto(used.url)
    page.wait_for_url(f"{base}/refresh?vendor=7")
    assert seen.count("/refresh?vendor=7") == 2
    assert client.v1.accounts.retrieve(acct.id).details_submitted is False


# --- Transfers ---------------------------------------------------------------------


def test_transfer_to_an_onboarded_account(client, webhook_receiver):
    acct = onboarded(client)
    payout = f"payout_{uuid.uuid4().hex}"
    tr = transfer(
        client,
        acct.id,
        amount=4250,
        transfer_group=f"order_{payout}",
        description="Vendor payout",
        metadata={"payout": payout},
        options={"idempotency_key": payout},
    )
    assert set(tr.to_dict()) == TRANSFER_FIELDS
    assert tr.id.startswith("tr_")
    assert (tr.object, tr.amount, tr.currency, tr.destination) == ("transfer", 4250, "eur", acct.id)
    assert (tr.amount_reversed, tr.reversed) == (0, False)
    assert tr.reversals.to_dict() == {
        "object": "list",
        "data": [],
        "has_more": False,
        "total_count": 0,
        "url": f"/v1/transfers/{tr.id}/reversals",
    }
    assert (tr.transfer_group, tr.description) == (f"order_{payout}", "Vendor payout")
    assert tr.metadata.to_dict() == {"payout": payout}
    assert (tr.source_type, tr.source_transaction, tr.livemode) == ("card", None, False)
    assert tr.destination_payment.startswith("py_")
    txn = client.v1.balance_transactions.retrieve(tr.balance_transaction)
    assert (txn.amount, txn.type, txn.source, txn.reporting_category) == (
        -4250,
        "transfer",
        tr.id,
        "transfer",
    )
    assert client.v1.transfers.retrieve(tr.id).to_dict() == tr.to_dict()
    expanded = client.v1.transfers.retrieve(tr.id, params={"expand": ["destination"]})
    assert (expanded.destination.id, expanded.destination.object) == (acct.id, "account")

    created = event(webhook_receiver, "transfer.created", tr.id)
    assert created.data.object.to_dict() == tr.to_dict()
    assert "account" not in created  # a platform event

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.transfers.retrieve("tr_nope")
    assert (raised.value.http_status, raised.value.code) == (404, "resource_missing")
    assert raised.value.user_message == "No such transfer: 'tr_nope'"


def test_transfers_refused_like_stripe(client, sandbox):
    ready = onboarded(client)
    pending = express(client)
    error = refused(lambda: transfer(client, pending.id))
    assert (error.code, error.param, error.user_message) == (
        "insufficient_capabilities_for_transfer",
        None,
        NO_CAPABILITY,
    )
    assert error.json_body["error"]["type"] == "invalid_request_error"
    error = refused(lambda: transfer(client, "acct_nope"))
    assert (error.code, error.param, error.user_message) == (
        "resource_missing",
        "destination",
        "No such destination: 'acct_nope'",
    )
    for amount, message in (
        (0, "This value must be greater than or equal to 1."),
        (-500, "Invalid positive integer"),
    ):
        error = refused(lambda amount=amount: transfer(client, ready.id, amount=amount))
        assert (error.code, error.param, error.user_message) == (
            "parameter_invalid_integer",
            "amount",
            message,
        )
    for missing in ("amount", "currency", "destination"):
        params = {"amount": 100, "currency": "eur", "destination": ready.id}
        del params[missing]
        error = refused(lambda params=params: client.v1.transfers.create(params=params))
        assert (error.code, error.param) == ("parameter_missing", missing)
        assert error.user_message == f"Missing required param: {missing}."
    error = refused(lambda: transfer(client, ready.id, application_fee_amount=10))
    assert error.code == "parameter_unknown"
    response = http(
        "POST",
        f"{sandbox.url}/v1/transfers",
        {"amount": 100, "currency": "eur", "destination": ready.id},
        {"Authorization": f"Bearer {PUBLISHABLE_KEY}"},
    )
    assert (response.status, response.json()["error"]["code"]) == (401, "secret_key_required")
    assert transfer_ids(client, destination=ready.id) == []
    assert transfer_ids(client, destination=pending.id) == []


def test_transfer_idempotency_key_is_the_payout(client, sandbox, webhook_receiver):
    acct = onboarded(client)
    payout = f"payout_{uuid.uuid4().hex}"
    params = {"transfer_group": f"group_{payout}", "metadata": {"payout": payout}}
    options = {"idempotency_key": payout}
    first = transfer(client, acct.id, options=options, **params)
    again = transfer(client, acct.id, options=options, **params)
    assert again.to_dict() == first.to_dict()
    raw = http(
        "POST",
        f"{sandbox.url}/v1/transfers",
        {
            "amount": 1500,
            "currency": "eur",
            "destination": acct.id,
            "transfer_group": f"group_{payout}",
            "metadata[payout]": payout,
        },
        {**AUTH, "Idempotency-Key": payout},
    )
    assert (raw.status, raw.headers["Idempotent-Replayed"], raw.json()["id"]) == (
        200,
        "true",
        first.id,
    )
    with pytest.raises(stripe.IdempotencyError):
        transfer(client, acct.id, amount=1600, options=options, **params)
    assert transfer_ids(client, transfer_group=f"group_{payout}") == [first.id]
    event(webhook_receiver, "transfer.created", first.id)


def test_transfer_lists_and_updates(client, webhook_receiver):
    one, two = onboarded(client), onboarded(client)
    group = f"order_{uuid.uuid4().hex}"
    a = transfer(client, one.id, amount=100, transfer_group=group)
    b = transfer(client, two.id, amount=200, transfer_group=group)
    c = transfer(client, one.id, amount=300)
    assert transfer_ids(client, destination=one.id) == [c.id, a.id]
    assert transfer_ids(client, transfer_group=group) == [b.id, a.id]
    assert transfer_ids(client, destination=one.id, transfer_group=group) == [a.id]
    assert transfer_ids(client, limit=3) == [c.id, b.id, a.id]
    page = client.v1.transfers.list(params={"destination": one.id, "limit": 1})
    assert ([t.id for t in page.data], page.has_more) == ([c.id], True)
    assert [t.id for t in page.auto_paging_iter()] == [c.id, a.id]

    updated = client.v1.transfers.update(
        a.id, params={"description": "Order 17", "metadata": {"payout": "p_17"}}
    )
    assert (updated.description, updated.metadata.payout) == ("Order 17", "p_17")
    sent = event(webhook_receiver, "transfer.updated", a.id)
    assert sent.data.previous_attributes.to_dict() == {
        "description": None,
        "metadata": {"payout": None},
    }
    error = refused(lambda: client.v1.transfers.update(a.id, params={"amount": 1}))
    assert error.code == "parameter_unknown"


# --- Reversals ---------------------------------------------------------------------


def test_reversals_partial_then_the_rest(client, webhook_receiver):
    acct = onboarded(client)
    tr = transfer(client, acct.id, amount=2599)
    first = client.v1.transfers.reversals.create(
        tr.id, params={"amount": 1000, "metadata": {"refund": "r_1"}}
    )
    assert set(first.to_dict()) == REVERSAL_FIELDS
    assert first.id.startswith("trr_")
    assert (first.object, first.amount, first.currency, first.transfer) == (
        "transfer_reversal",
        1000,
        "eur",
        tr.id,
    )
    assert first.metadata.to_dict() == {"refund": "r_1"}
    txn = client.v1.balance_transactions.retrieve(first.balance_transaction)
    assert (txn.amount, txn.type, txn.reporting_category) == (
        1000,
        "transfer_refund",
        "transfer_reversal",
    )
    after = client.v1.transfers.retrieve(tr.id)
    assert (after.amount_reversed, after.reversed, after.reversals.total_count) == (1000, False, 1)
    reversed_event = event(webhook_receiver, "transfer.reversed", tr.id)
    assert reversed_event.data.object.amount_reversed == 1000

    error = refused(lambda: client.v1.transfers.reversals.create(tr.id, params={"amount": 1600}))
    assert error.param == "amount"
    assert error.user_message == (
        "Transfer reversal amount (€16.00) is greater than unreversed amount on transfer (€15.99)"
    )
    rest = client.v1.transfers.reversals.create(tr.id)  # no amount: what is left
    assert rest.amount == 1599
    after = client.v1.transfers.retrieve(tr.id)
    assert (after.amount_reversed, after.reversed) == (2599, True)
    assert [r.id for r in after.reversals.data] == [rest.id, first.id]
    event(
        webhook_receiver,
        "transfer.reversed",
        tr.id,
        where=lambda e: e.data.object.reversed,
    )

    for params in ({}, {"amount": 1}):
        error = refused(
            lambda params=params: client.v1.transfers.reversals.create(tr.id, params=params)
        )
        assert error.user_message == f"The transfer {tr.id} is already fully reversed."
    listed = client.v1.transfers.reversals.list(tr.id)
    assert [r.id for r in listed.data] == [rest.id, first.id]
    assert listed.url == f"/v1/transfers/{tr.id}/reversals"
    assert client.v1.transfers.reversals.retrieve(tr.id, first.id).to_dict() == first.to_dict()
    updated = client.v1.transfers.reversals.update(
        tr.id, first.id, params={"metadata": {"note": "dispute"}}
    )
    assert updated.metadata.to_dict() == {"refund": "r_1", "note": "dispute"}
    error = refused(lambda: client.v1.transfers.reversals.create("tr_nope"), status=404)
    assert error.code == "resource_missing"
    error = refused(lambda: client.v1.transfers.reversals.create(tr.id, params={"amount": 0}))
    assert error.param == "amount"


# --- Transfers failing on demand ---------------------------------------------------


def fail_next(sandbox, **params):
    response = hook(sandbox, "fail_next_transfers", params)
    assert response.status == 200, response.body
    return response.json()


def test_fail_next_transfers_with_a_refusal(client, sandbox):
    acct = onboarded(client)
    assert hook(sandbox, "fail_next_transfers", {"key": PUBLISHABLE_KEY}, headers={}).status == 401
    assert fail_next(sandbox, count=2, status="balance_insufficient")["pending"] == 2
    for _ in range(2):
        error = refused(
            lambda: transfer(client, acct.id, options={"idempotency_key": uuid.uuid4().hex})
        )
        assert error.code == "balance_insufficient"
        assert error.user_message.startswith(
            "You have insufficient available funds in your Stripe account."
        )
    assert transfer_ids(client, destination=acct.id) == []
    # As at Stripe, the endpoint's refusal is kept under its key (24 h): the same key answers
    # it again once the cause is gone; a new key runs.
    key = uuid.uuid4().hex
    fail_next(sandbox, status="insufficient_capabilities_for_transfer")
    for _ in range(2):
        error = refused(lambda: transfer(client, acct.id, options={"idempotency_key": key}))
        assert (error.code, error.user_message) == (
            "insufficient_capabilities_for_transfer",
            NO_CAPABILITY,
        )
    tr = transfer(client, acct.id, options={"idempotency_key": uuid.uuid4().hex})
    assert transfer_ids(client, destination=acct.id) == [tr.id]

    fail_next(sandbox, count=1, status="account_closed", message="The account is closed.")
    error = refused(lambda: transfer(client, acct.id))
    assert (error.code, error.user_message) == ("account_closed", "The account is closed.")
    bad = hook(sandbox, "fail_next_transfers", {"status": "teapot_error"})
    assert (bad.status, bad.json()["error"]["param"]) == (400, "message")
    assert fail_next(sandbox, count=3, status="429")["pending"] == 3
    assert fail_next(sandbox, count=0)["pending"] == 0
    assert transfer(client, acct.id).amount == 1500


def test_fail_next_transfers_rate_limited_then_retried(client, sandbox):
    acct = onboarded(client)
    key = uuid.uuid4().hex
    fail_next(sandbox, status=429)
    with pytest.raises(stripe.RateLimitError) as raised:
        transfer(client, acct.id, options={"idempotency_key": key})
    assert raised.value.http_status == 429
    assert raised.value.json_body["error"]["code"] == "rate_limit"
    # Not saved: the retry with the same key creates the transfer.
    tr = transfer(client, acct.id, options={"idempotency_key": key})
    assert transfer_ids(client, destination=acct.id) == [tr.id]


def test_fail_next_transfers_server_error_is_replayed_under_its_key(client, sandbox):
    acct = onboarded(client)
    key = uuid.uuid4().hex
    params = {"amount": 1500, "currency": "eur", "destination": acct.id}
    fail_next(sandbox, status=500)
    with pytest.raises(stripe.APIError) as raised:
        transfer(client, acct.id, options={"idempotency_key": key})
    assert raised.value.http_status == 500
    assert raised.value.json_body["error"]["type"] == "api_error"
    # Stripe saves a 500 under its key and replays it; another key runs.
    replay = http("POST", f"{sandbox.url}/v1/transfers", params, {**AUTH, "Idempotency-Key": key})
    assert (replay.status, replay.headers["Idempotent-Replayed"]) == (500, "true")
    assert transfer_ids(client, destination=acct.id) == []
    tr = transfer(client, acct.id, options={"idempotency_key": f"{key}-2"})
    assert transfer_ids(client, destination=acct.id) == [tr.id]
    # The first answer says not to retry (the SDK obeys it).
    fail_next(sandbox, status=503)
    first = http("POST", f"{sandbox.url}/v1/transfers", params, AUTH)
    assert (first.status, first.headers["Stripe-Should-Retry"]) == (503, "false")
