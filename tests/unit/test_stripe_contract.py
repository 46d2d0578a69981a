"""The Stripe contract (stripe_sandbox/contract.py): it refuses what the pinned API version
refuses, its table agrees with the SDK, and no Stripe call of the gateway escapes it."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import stripe

from portal import stripe_gateway
from stripe_sandbox import contract
from tests import stripe_contract

GATEWAY = Path(stripe_gateway.__file__)
# Public functions of the gateway that never call Stripe.
LOCAL_ONLY = {"verify_webhook"}


def where(check) -> list[tuple[str, str]]:
    return [(v.where, v.code) for v in check.violations]


# --- requests ------------------------------------------------------------------------------------

def test_the_old_payment_method_types_is_refused_and_its_replacement_taken():
    old = contract.check_request("POST", "/v1/payment_intents", {
        "amount": 2000, "currency": "usd", "payment_method_types": ["card"]})
    assert where(old) == [("payment_method_types", "parameter_unknown")]
    new = contract.check_request("POST", "/v1/setup_intents", {
        "customer": "cus_1", "allowed_payment_method_types": ["card"], "usage": "off_session"})
    assert new.violations == []


@pytest.mark.parametrize("params, found", [
    ({"amount": 1, "currency": "eur", "automatic_payment_methods": {"enabled": True, "x": 1}},
     [("automatic_payment_methods[x]", "parameter_unknown")]),
    ({"amount": "2000", "currency": "eur"}, [("amount", "parameter_invalid_integer")]),
    ({"amount": True, "currency": "eur"}, [("amount", "parameter_invalid_integer")]),
    ({"amount": 1, "currency": "eur", "capture_method": "later"},
     [("capture_method", "parameter_invalid_string")]),  # an open enum, closed
    ({"amount": 1, "currency": "eur", "metadata": {"a": 1}},
     [("metadata[a]", "parameter_invalid_string")]),
    ({"amount": 1, "currency": "eur", "expand": "latest_charge"},
     [("expand", "parameter_invalid_array")]),
    ({"currency": "eur"}, [("amount", "parameter_missing")]),
    ({"amount": 1, "currency": "eur", "shipping": {"name": "A"}},
     [("shipping[address]", "parameter_missing")]),
], ids=["unknown nested", "string for int", "bool for int", "outside the Literal",
        "metadata value", "expand not an array", "missing", "missing nested"])
def test_each_kind_of_violation_is_named_by_its_parameter(params, found):
    assert where(contract.check_request("POST", "/v1/payment_intents", params)) == found


def test_a_form_body_is_read_as_stripe_reads_it():
    check = contract.check_request("POST", "/v1/payment_intents", {
        "amount": "2599", "currency": "eur", "confirm": "true", "expand": ["latest_charge"],
        "payment_method_options": {"card": {"request_three_d_secure": "any"}},
        "metadata": {"gone": ""}}, form=True)
    assert check.violations == []
    assert (check.params["amount"], check.params["confirm"]) == (2599, True)
    # "" unsets: only where the SDK types it Literal[''] (and a metadata key).
    unset = contract.check_request("POST", "/v1/payment_intents/pi_1/confirm",
                                   {"receipt_email": ""}, form=True)
    assert unset.violations == []
    empty = contract.check_request("POST", "/v1/customers", {"name": ""}, form=True)
    assert where(empty) == [("name", "parameter_invalid_empty")]
    bad = contract.check_request("POST", "/v1/payment_intents",
                                 {"amount": "25.99", "currency": "eur", "confirm": "yes"},
                                 form=True)
    assert where(bad) == [("amount", "parameter_invalid_integer"),
                          ("confirm", "parameter_invalid_boolean")]


def test_stripe_js_extras_only_with_a_publishable_key():
    params = {"client_secret": "pi_1_secret_x", "payment_method": "pm_1", "key": "pk_test_x",
              "use_stripe_sdk": "true"}
    assert contract.check_request("POST", "/v1/payment_intents/pi_1/confirm", params,
                                  form=True, publishable=True).violations == []
    assert ("client_secret", "parameter_unknown") in where(contract.check_request(
        "POST", "/v1/payment_intents/pi_1/confirm", params, form=True))


def test_a_request_to_no_endpoint_of_the_table_is_a_violation():
    assert where(contract.check_request("POST", "/v1/charges/ch_1/dispute", {})) == [
        ("POST /v1/charges/ch_1/dispute", "resource_missing")]


# --- objects -------------------------------------------------------------------------------------

def intent(**changes) -> dict:
    return {"id": "pi_1", "object": "payment_intent", "amount": 100, "amount_capturable": 0,
            "amount_received": 0, "capture_method": "automatic_async",
            "confirmation_method": "automatic", "created": 1, "currency": "usd",
            "livemode": False, "metadata": {}, "payment_method_types": ["card"],
            "status": "requires_payment_method", **changes}


def test_an_object_is_held_to_its_resource_class():
    assert contract.check_object(intent()).violations == []
    without = intent()
    del without["amount_capturable"]
    found = {(v.where, v.problem) for v in contract.check_object(without).violations}
    assert ("payment_intent.amount_capturable", "missing field of PaymentIntent") in found
    assert [v.where for v in contract.check_object(intent(status="paid")).violations] == [
        "payment_intent.status"]
    assert [v.where for v in contract.check_object(intent(amount="100")).violations] == [
        "payment_intent.amount"]
    assert [v.where for v in contract.check_object(intent(charges={})).violations] == [
        "payment_intent.charges"]  # removed from the API in 2022-11-15


def test_objects_inside_objects_lists_events_and_errors_are_checked():
    charge = {"id": "ch_1", "object": "charge", "amount": 100}  # far from complete
    nested = contract.check_object(intent(latest_charge=charge)).violations
    assert "payment_intent.latest_charge.disputed" in {v.where for v in nested}
    listed = {"object": "list", "data": [intent(status="paid")], "has_more": False,
              "url": "/v1/payment_intents"}
    assert [v.where for v in contract.check_object(listed).violations] == [
        "list.data.0.status"]
    event = {"id": "evt_1", "object": "event", "created": 1, "livemode": False,
             "pending_webhooks": 1, "type": "payment_intent.succeeded",
             "data": {"object": intent(status="paid")}}
    assert [v.where for v in contract.check_object(event).violations] == [
        "event.data.object.status"]
    error = {"error": {"type": "card_error", "payment_intent": intent(status="paid")}}
    assert [v.where for v in contract.check_object(error, error=True).violations] == [
        "error.payment_intent.status"]
    assert [v.where for v in contract.check_object({"id": "pi_1"}).violations] == ["answer"]


def test_an_answer_is_what_its_endpoint_answers():
    refunds = contract.ENDPOINT_BY_ROUTE["GET", "/v1/refunds"]
    listed = {"object": "list", "data": [intent()], "has_more": False, "url": "/v1/refunds"}
    assert "list.data.0.object" in {
        v.where for v in contract.check_object(listed, refunds).violations}
    card_number = contract.check_request("POST", "/v1/payment_methods", {
        "type": "card", "card": {"number": 4242424242424242}})
    assert card_number.violations  # an integer for a string
    assert "4242" not in str(card_number.violations)  # card data is never echoed


# --- the table -----------------------------------------------------------------------------------

class Recording:
    """Stands in for the SDK's requestor: records the request a service method makes."""

    def __init__(self):
        self.made = None

    def request(self, method, url, params=None, options=None, **kwargs):
        self.made = (method.upper(), url)
        return stripe.StripeObject()


@pytest.mark.parametrize("endpoint", [e for e in contract.ENDPOINTS if e.sdk],
                         ids=lambda e: f"{e.method} {e.path}")
def test_each_row_is_what_its_sdk_method_requests_with_its_parameter_class(endpoint):
    recording = Recording()
    client = stripe.StripeClient("sk_test_table")
    service = client.v1
    for name in endpoint.sdk.split("."):
        service = getattr(service, name)
    owner = service.__self__
    owner._requestor = recording
    ids = ["ID"] * endpoint.path.count("{")
    service(*ids, params={})
    assert recording.made == (endpoint.method, re.sub(r"\{\w+\}", "ID", endpoint.path))
    annotation = inspect.signature(service).parameters["params"].annotation
    assert endpoint.params in str(annotation)


def sdk_calls(node: ast.AST) -> set[str]:
    """The `_client().v1.<service>.<method>` chains under a node: "payment_intents.create"."""
    found = set()
    inner = {id(n.value) for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    for sub in ast.walk(node):
        if id(sub) in inner:
            continue  # a part of a longer chain
        parts = []
        while isinstance(sub, ast.Attribute):
            parts.append(sub.attr)
            sub = sub.value
        if (isinstance(sub, ast.Call) and getattr(sub.func, "id", None) == "_client"
                and parts and parts[-1] == "v1"):
            found.add(".".join(reversed(parts[:-1])))
    return found


def test_every_stripe_call_of_the_gateway_goes_through_the_table():
    tree = ast.parse(GATEWAY.read_text())
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    direct = {name: sdk_calls(f) for name, f in functions.items()}
    calls = {name: {n.func.id for n in ast.walk(f) if isinstance(n, ast.Call)
                    and getattr(n.func, "id", None) in functions}
             for name, f in functions.items()}

    def reached(name, seen=()):
        if name in seen:
            return set()
        return direct[name].union(*(reached(c, (*seen, name)) for c in calls[name]))

    table = {e.sdk for e in contract.ENDPOINTS}
    public = [name for name in functions if not name.startswith("_")]
    assert public, "no public functions found in the gateway"
    for name in public:
        methods = reached(name)
        if name in LOCAL_ONLY:
            assert not methods, f"{name} calls Stripe: take it out of LOCAL_ONLY"
            continue
        assert methods, f"{name} makes no Stripe call the test can see"
        assert methods <= table, f"{name} calls {methods - table}, not in ENDPOINTS"


# --- the check at the gateway --------------------------------------------------------------------

def test_the_gateway_check_names_the_parameter_and_the_calling_line(tmp_path, monkeypatch):
    from portal import create_app
    from portal.config import Config
    from tests.conftest import portal_env

    session_dir = stripe_contract.os.environ.get("STRIPE_CONTRACT_DIR")
    monkeypatch.setenv("STRIPE_CONTRACT_DIR", str(tmp_path))
    stripe_contract.install(raise_violations=True)  # this test's findings stay here
    try:
        app = create_app(Config.from_env(portal_env("sqlite://", "http://127.0.0.1:9")))
        with app.app_context(), pytest.raises(stripe_contract.ContractViolation) as raised:
            stripe_gateway._call(stripe_gateway._client().v1.payment_intents.create, params={
                "amount": 100, "currency": "usd", "payment_method_types": ["card"]})
        line = inspect.currentframe().f_lineno - 2
    finally:
        monkeypatch.setenv("STRIPE_CONTRACT_DIR", session_dir or "")
        stripe_contract.install(raise_violations=True)
    message = str(raised.value)
    assert "POST /v1/payment_intents (PaymentIntentCreateParams)" in message
    assert "payment_method_types: unknown parameter" in message
    assert f"tests/unit/test_stripe_contract.py:{line}" in message
    assert "violations" in {p.name.split("-")[0] for p in tmp_path.iterdir()}


# --- the live suite ------------------------------------------------------------------------------

LIVE = Path(__file__).resolve().parent.parent / "live"


def test_the_live_suite_calls_every_public_function_of_the_gateway():
    called = set()
    for path in LIVE.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "gateway":
                called.add(node.attr)
    public = {name for name, f in inspect.getmembers(stripe_gateway, inspect.isfunction)
              if not name.startswith("_") and f.__module__ == stripe_gateway.__name__}
    assert public - called == set()


def test_the_live_suite_collects_cleanly():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "stripe_live",
         str(LIVE)], capture_output=True, text=True, timeout=120,
        cwd=LIVE.parent.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "15 tests collected" in done.stdout
