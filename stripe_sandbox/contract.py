"""The Stripe API contract: what the pinned stripe-python says a request and an object are.

stripe-python ships, generated from Stripe's OpenAPI spec for exactly the API version it sends
(`stripe.api_version`), a typed parameter class for every request
(`stripe.params.PaymentIntentCreateParams`: a TypedDict with `NotRequired` and `Literal`) and a
typed resource class for every object (`stripe.PaymentIntent`: annotations with `Optional` and
`Literal`). This module reads those types as the contract:

- `ENDPOINTS` is the one table of the Stripe endpoints the portal calls and the sandbox
  serves: method, path as the SDK writes it, the SDK's service method, the parameter class.
- `check_request(method, path, params)` finds unknown keys at any depth, wrong types, values
  outside a `Literal` and missing required keys (`form=True`: the strings of a form-encoded
  body, as the sandbox receives them, coerced on the way).
- `check_object(value)` checks every object in a response (found by its `object`) against its
  resource class: unknown fields, missing non-Optional fields, wrong types, unknown enum values.

The SDK types its enums open (`Literal['automatic', 'manual']|str`) so that a value Stripe adds
later does not break old code; the contract closes them: a value outside the Literal fails.
The walk is hand-written rather than pydantic's because these types are not pydantic's: open
enums must be narrowed, forward references point at names imported only under TYPE_CHECKING,
resources are annotated classes rather than TypedDicts, `UntypedStripeObject` stands for any
hash, and a form body's values are all strings.

Nothing here is imported by the portal: the sandbox checks what it receives and returns, and
the test suite checks what the portal's gateway sends (tests/stripe_contract.py).
"""

from __future__ import annotations

import ast
import decimal
import functools
import importlib
import inspect
import json
import os
import re
import threading
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import stripe
import typing_extensions
from stripe import params as stripe_params
from stripe._list_object import ListObject
from stripe._object_classes import OBJECT_CLASSES
from stripe._request_options import RequestOptions
from stripe._stripe_object import StripeObject, UntypedStripeObject

API_VERSION = stripe.api_version


@dataclass(frozen=True)
class Endpoint:
    method: str  # GET, POST, DELETE
    path: str  # as the SDK writes it: /v1/payment_intents/{intent}/confirm
    sdk: str  # the StripeClient().v1 service method: "payment_intents.confirm"
    params: str  # the class in stripe.params

    @functools.cached_property
    def pattern(self) -> re.Pattern:
        return re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(self.path)))

    @property
    def params_class(self) -> type:
        return getattr(stripe_params, self.params)

    @property
    def returns(self) -> Any:
        """What the SDK method answers (ListObject[Refund]...), None without an SDK method."""
        return _returns(self.sdk) if self.sdk else None


@functools.cache
def _returns(sdk: str) -> Any:
    method = stripe.StripeClient("sk_test_contract").v1
    for name in sdk.split("."):
        method = getattr(method, name)
    func = method.__func__
    return typing.get_type_hints(func, globalns=_namespace(func.__module__))["return"]


def _e(method: str, path: str, sdk: str, params: str) -> Endpoint:
    return Endpoint(method, path, sdk, params)


# Every Stripe endpoint the portal calls, Stripe.js calls, or the sandbox serves (the
# sandbox refuses to start with a /v1 route missing here). tests/unit/test_stripe_contract.py
# holds the table to the SDK: each row's method and path are what its SDK method requests,
# and every Stripe call in portal/stripe_gateway.py goes to a row.
ENDPOINTS: tuple[Endpoint, ...] = (
    # Payment intents
    _e("POST", "/v1/payment_intents", "payment_intents.create", "PaymentIntentCreateParams"),
    _e("GET", "/v1/payment_intents", "payment_intents.list", "PaymentIntentListParams"),
    _e("GET", "/v1/payment_intents/{intent}", "payment_intents.retrieve",
       "PaymentIntentRetrieveParams"),
    _e("POST", "/v1/payment_intents/{intent}", "payment_intents.update",
       "PaymentIntentUpdateParams"),
    _e("POST", "/v1/payment_intents/{intent}/confirm", "payment_intents.confirm",
       "PaymentIntentConfirmParams"),
    _e("POST", "/v1/payment_intents/{intent}/cancel", "payment_intents.cancel",
       "PaymentIntentCancelParams"),
    _e("POST", "/v1/payment_intents/{intent}/capture", "payment_intents.capture",
       "PaymentIntentCaptureParams"),
    # Charges
    _e("POST", "/v1/charges", "charges.create", "ChargeCreateParams"),
    _e("GET", "/v1/charges", "charges.list", "ChargeListParams"),
    _e("GET", "/v1/charges/{charge}", "charges.retrieve", "ChargeRetrieveParams"),
    _e("GET", "/v1/charges/{charge}/refunds", "", "ChargeListRefundsParams"),
    # Customers and payment methods
    _e("POST", "/v1/customers", "customers.create", "CustomerCreateParams"),
    _e("GET", "/v1/customers", "customers.list", "CustomerListParams"),
    _e("GET", "/v1/customers/{customer}", "customers.retrieve", "CustomerRetrieveParams"),
    _e("POST", "/v1/customers/{customer}", "customers.update", "CustomerUpdateParams"),
    _e("GET", "/v1/customers/{customer}/payment_methods", "customers.payment_methods.list",
       "CustomerPaymentMethodListParams"),
    _e("GET", "/v1/customers/{customer}/payment_methods/{payment_method}",
       "customers.payment_methods.retrieve", "CustomerPaymentMethodRetrieveParams"),
    _e("POST", "/v1/payment_methods", "payment_methods.create", "PaymentMethodCreateParams"),
    _e("GET", "/v1/payment_methods", "payment_methods.list", "PaymentMethodListParams"),
    _e("GET", "/v1/payment_methods/{payment_method}", "payment_methods.retrieve",
       "PaymentMethodRetrieveParams"),
    _e("POST", "/v1/payment_methods/{payment_method}", "payment_methods.update",
       "PaymentMethodUpdateParams"),
    _e("POST", "/v1/payment_methods/{payment_method}/attach", "payment_methods.attach",
       "PaymentMethodAttachParams"),
    _e("POST", "/v1/payment_methods/{payment_method}/detach", "payment_methods.detach",
       "PaymentMethodDetachParams"),
    # Setup intents
    _e("POST", "/v1/setup_intents", "setup_intents.create", "SetupIntentCreateParams"),
    _e("GET", "/v1/setup_intents", "setup_intents.list", "SetupIntentListParams"),
    _e("GET", "/v1/setup_intents/{intent}", "setup_intents.retrieve",
       "SetupIntentRetrieveParams"),
    _e("POST", "/v1/setup_intents/{intent}", "setup_intents.update",
       "SetupIntentUpdateParams"),
    _e("POST", "/v1/setup_intents/{intent}/confirm", "setup_intents.confirm",
       "SetupIntentConfirmParams"),
    _e("POST", "/v1/setup_intents/{intent}/cancel", "setup_intents.cancel",
       "SetupIntentCancelParams"),
    # Refunds
    _e("POST", "/v1/refunds", "refunds.create", "RefundCreateParams"),
    _e("GET", "/v1/refunds", "refunds.list", "RefundListParams"),
    _e("GET", "/v1/refunds/{refund}", "refunds.retrieve", "RefundRetrieveParams"),
    _e("POST", "/v1/refunds/{refund}", "refunds.update", "RefundUpdateParams"),
    _e("POST", "/v1/refunds/{refund}/cancel", "refunds.cancel", "RefundCancelParams"),
    # Balance
    _e("GET", "/v1/balance", "balance.retrieve", "BalanceRetrieveParams"),
    _e("GET", "/v1/balance_transactions", "balance_transactions.list",
       "BalanceTransactionListParams"),
    _e("GET", "/v1/balance_transactions/{id}", "balance_transactions.retrieve",
       "BalanceTransactionRetrieveParams"),
    # Connect
    _e("POST", "/v1/accounts", "accounts.create", "AccountCreateParams"),
    _e("GET", "/v1/accounts", "accounts.list", "AccountListParams"),
    _e("GET", "/v1/accounts/{account}", "accounts.retrieve", "AccountRetrieveParams"),
    _e("POST", "/v1/accounts/{account}", "accounts.update", "AccountUpdateParams"),
    _e("DELETE", "/v1/accounts/{account}", "accounts.delete", "AccountDeleteParams"),
    _e("POST", "/v1/account_links", "account_links.create", "AccountLinkCreateParams"),
    _e("POST", "/v1/transfers", "transfers.create", "TransferCreateParams"),
    _e("GET", "/v1/transfers", "transfers.list", "TransferListParams"),
    _e("GET", "/v1/transfers/{transfer}", "transfers.retrieve", "TransferRetrieveParams"),
    _e("POST", "/v1/transfers/{transfer}", "transfers.update", "TransferUpdateParams"),
    _e("POST", "/v1/transfers/{id}/reversals", "transfers.reversals.create",
       "TransferReversalCreateParams"),
    _e("GET", "/v1/transfers/{id}/reversals", "transfers.reversals.list",
       "TransferReversalListParams"),
    _e("GET", "/v1/transfers/{transfer}/reversals/{id}", "transfers.reversals.retrieve",
       "TransferReversalRetrieveParams"),
    _e("POST", "/v1/transfers/{transfer}/reversals/{id}", "transfers.reversals.update",
       "TransferReversalUpdateParams"),
    # Events
    _e("GET", "/v1/events", "events.list", "EventListParams"),
    _e("GET", "/v1/events/{id}", "events.retrieve", "EventRetrieveParams"),
)

ENDPOINT_BY_ROUTE = {(e.method, e.path): e for e in ENDPOINTS}

# Stripe.js sends these with a publishable key, beside an endpoint's own parameters (the
# server-side SDK types do not list them).
STRIPE_JS_PARAMS = frozenset({"key", "client_secret", "payment_user_agent", "referrer",
                              "_stripe_version", "_stripe_account"})


def endpoint_for(method: str, path: str) -> Endpoint | None:
    """The table's row for a request (path with real ids), or None."""
    method = method.upper()
    for endpoint in ENDPOINTS:
        if endpoint.method == method and endpoint.pattern.fullmatch(path):
            return endpoint
    return None


class Recorder:
    """Findings of one process, written to $STRIPE_CONTRACT_DIR when the test suite set it:
    each distinct request signature and answer shape once (``key``), every violation.
    The sandbox and the suite's check of the gateway (tests/stripe_contract.py) both write
    here; the suite reads the files (tests/conftest.py)."""

    def __init__(self) -> None:
        directory = os.environ.get("STRIPE_CONTRACT_DIR")
        self.directory = Path(directory) if directory else None
        self.seen: set = set()
        self.lock = threading.Lock()

    def write(self, kind: str, record: dict, key: Any = None) -> None:
        if self.directory is None:
            return
        with self.lock:
            if key is not None:
                if key in self.seen:
                    return
                self.seen.add(key)
            with (self.directory / f"{kind}-{os.getpid()}.jsonl").open("a") as out:
                out.write(json.dumps(record) + "\n")


# --- Violations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One way a request or an object breaks the contract."""

    where: str  # parameter in Stripe's bracket syntax (card[exp_month]) or object.field path
    problem: str  # unknown, missing, or what was expected
    code: str  # Stripe's error code for a request: parameter_unknown, parameter_missing...

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


class _Walk:
    """One check: the violations found, the paths seen (for distinct counts)."""

    def __init__(self, form: bool, kind: Literal["request", "response"]):
        self.form = form  # values are the strings of a form body
        self.kind = kind
        self.violations: list[Violation] = []
        self.objects: list[tuple] = []  # (object type, shape) of every object checked

    def fail(self, where: str, problem: str, code: str = "parameter_invalid") -> None:
        self.violations.append(Violation(where or "(body)", problem, code))


# --- Reading the SDK's types ---------------------------------------------------------------------


# CPython 3.11's ast.parse is not safe from several threads at once ("SystemError: AST
# constructor recursion depth mismatch"): concurrent requests of the portal reach it together.
_PARSING = threading.Lock()


@functools.cache
def _namespace(module_name: str) -> dict:
    """A module's globals plus what it imports only under TYPE_CHECKING (forward references
    such as "Charge" in `ExpandableField["Charge"]` name those)."""
    module = importlib.import_module(module_name)
    namespace = dict(vars(module))
    with _PARSING:
        tree = ast.parse(inspect.getsource(module))
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            code = compile(ast.Module(body=node.body, type_ignores=[]), module.__file__, "exec")
            exec(code, namespace)  # noqa: S102  # nosec B102  # the SDK's own import statements
    return namespace


_REQUEST_OPTIONS = frozenset(RequestOptions.__annotations__)


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """(JSON field -> type, required fields) of a parameter TypedDict or a resource class."""
    if typing_extensions.is_typeddict(cls):
        annotations = {k: v for k, v in cls.__annotations__.items() if k not in _REQUEST_OPTIONS}
        required = frozenset(cls.__required_keys__) - _REQUEST_OPTIONS
        hints = typing.get_type_hints(types.SimpleNamespace(__annotations__=annotations),
                                      globalns=_namespace(cls.__module__))
        return hints, required
    annotations = {k: v for k, v in vars(cls).get("__annotations__", {}).items()
                   if not k.startswith("_") and k != "OBJECT_NAME"}
    hints = typing.get_type_hints(types.SimpleNamespace(__annotations__=annotations),
                                  globalns=_namespace(cls.__module__), localns=dict(vars(cls)))
    remap = getattr(cls, "_field_remappings", {}) or {}
    hints = {remap.get(k, k): v for k, v in hints.items()}
    required = frozenset(k for k, v in hints.items() if not _optional(v))
    return hints, required


def _optional(tp: Any) -> bool:
    return _is_union(tp) and type(None) in typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _narrow(args: tuple) -> tuple:
    """An open enum (`Literal['a', 'b'] | str`) closed to its Literal. (`Literal[''] | str`
    is not an enum: "" unsets a string.)"""
    if str in args and any(typing.get_origin(a) is Literal and typing.get_args(a) != ("",)
                           for a in args):
        return tuple(a for a in args if a is not str)
    return args


@functools.cache
def resource_class(object_name: str) -> type | None:
    """The SDK's class for an `object` value (payment_intent -> stripe.PaymentIntent)."""
    found = OBJECT_CLASSES.get(object_name)
    if found is None:
        return None
    return getattr(importlib.import_module(found[0]), found[1])


def describe(tp: Any) -> str:
    """A type as a message says it: "an integer", "one of: automatic, manual"."""
    origin = typing.get_origin(tp)
    if _is_union(tp):
        parts = [describe(a) for a in _narrow(typing.get_args(tp)) if a is not type(None)]
        return " or ".join(dict.fromkeys(parts))
    if origin is Literal:
        return "one of: " + ", ".join(repr(a) if a == "" else str(a) for a in typing.get_args(tp))
    if origin in (list, typing.List):  # noqa: UP006
        return "an array"
    if origin in (dict, typing.Dict) or tp is UntypedStripeObject or origin is UntypedStripeObject:  # noqa: UP006
        return "a hash"
    return {int: "an integer", bool: "a boolean", str: "a string", float: "a number",
            decimal.Decimal: "a decimal string"}.get(tp, "a hash")


def _shape(value: Any, depth: int = 0) -> Any:
    """What makes two objects "the same shape" for the distinct counts: the non-null fields,
    nested, with the keys of free-form hashes (metadata) left out."""
    if isinstance(value, dict):
        if depth and "object" not in value and len(value) > 12:
            return "{...}"
        return tuple(sorted((k, _shape(v, depth + 1)) for k, v in value.items()
                            if v is not None and k != "metadata"))
    if isinstance(value, list):
        return ("[]", _shape(value[0], depth + 1)) if value else ("[]",)
    return type(value).__name__


# --- The walk ------------------------------------------------------------------------------------


def _bracket(where: str, key: Any) -> str:
    return f"{where}[{key}]" if where else str(key)


def _dot(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


class _Checker:
    def __init__(self, walk: _Walk):
        self.walk = walk
        self.join = _bracket if walk.kind == "request" else _dot
        self.in_hash = False  # checking a free-form hash's values (metadata: "" deletes a key)

    def value(self, tp: Any, value: Any, where: str) -> Any:
        """Check `value` against `tp`; the value coerced (form strings to ints...)."""
        walk = self.walk
        if _untyped(tp):
            # A free-form hash (an event's object, an error body): the objects in it are
            # checked against their own classes.
            if isinstance(value, dict):
                if value.get("object") == "list":
                    return self.list_object(Any, value, where)
                cls = resource_class(str(value.get("object")))
                if cls is not None:
                    return self.resource(cls, value, where)
                return {k: self.value(Any, v, self.join(where, k)) for k, v in value.items()}
            if isinstance(value, list):
                return [self.value(Any, v, self.join(where, i)) for i, v in enumerate(value)]
            return value
        if _is_union(tp):
            return self.union(tp, value, where)
        origin = typing.get_origin(tp)
        if origin is Literal:
            allowed = typing.get_args(tp)
            for option in allowed:
                if value == option or (walk.form and isinstance(value, str)
                                       and value == _form_text(option)):
                    return option
            walk.fail(where, f"must be {describe(tp)} (got {_shown(where, value)})",
                      "parameter_invalid_empty" if value == "" else "parameter_invalid_string")
            return value
        if origin in (list, typing.List):  # noqa: UP006
            (item,) = typing.get_args(tp) or (Any,)
            if walk.form and isinstance(value, dict) and value \
                    and all(re.fullmatch(r"\d+", k) for k in value):
                value = [value[k] for k in sorted(value, key=int)]  # items[0][price]=...
            if not isinstance(value, list):
                walk.fail(where, f"must be an array (got {_shown(where, value)})",
                          "parameter_invalid_array")
                return value
            return [self.value(item, v, self.join(where, i)) for i, v in enumerate(value)]
        if origin in (dict, typing.Dict, typing.Mapping) or origin is UntypedStripeObject:  # noqa: UP006
            args = typing.get_args(tp)
            item = args[-1] if args else Any
            return self.hash(item, value, where)
        if tp is UntypedStripeObject:
            return self.hash(Any, value, where)
        if origin is not None and isinstance(origin, type) and issubclass(origin, ListObject):
            (item,) = typing.get_args(tp)
            return self.list_object(item, value, where)
        if isinstance(tp, type):
            if typing_extensions.is_typeddict(tp):
                return self.typed_dict(tp, value, where)
            if issubclass(tp, ListObject):
                return self.list_object(Any, value, where)
            if issubclass(tp, StripeObject):
                return self.resource(tp, value, where)
            return self.scalar(tp, value, where)
        raise TypeError(f"the contract cannot read the type {tp!r} (at {where})")

    def union(self, tp: Any, value: Any, where: str) -> Any:
        args = _narrow(typing.get_args(tp))
        if value is None:
            if type(None) not in args:
                self.walk.fail(where, f"must be {describe(tp)}, not null")
            return None
        candidates = [a for a in args if a is not type(None)]
        for option in candidates:
            trial = _Walk(self.walk.form, self.walk.kind)
            checker = _Checker(trial)
            checker.in_hash = self.in_hash
            coerced = checker.value(option, value, where)
            if not trial.violations:
                self.walk.objects.extend(trial.objects)
                return coerced
        # None fits. An option of the value's kind (a hash, an array) says more with its own
        # findings than "must be a string or a hash".
        same_kind = [a for a in candidates if _kind(a) == _kind_of(value)]
        if same_kind and _kind_of(value) != "scalar":
            return self.value(same_kind[0], value, where)
        self.walk.fail(where, f"must be {describe(tp)} (got {_shown(where, value)})",
                       _invalid_code(candidates))
        return value

    def hash(self, item: Any, value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            self.walk.fail(where, f"must be a hash (got {_shown(where, value)})",
                           "parameter_invalid_object")
            return value
        outer, self.in_hash = self.in_hash, True
        try:
            return {k: self.value(item, v, self.join(where, k)) for k, v in value.items()}
        finally:
            self.in_hash = outer

    def typed_dict(self, cls: type, value: Any, where: str) -> Any:
        outer, self.in_hash = self.in_hash, False
        try:
            return self._typed_dict(cls, value, where)
        finally:
            self.in_hash = outer

    def _typed_dict(self, cls: type, value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            self.walk.fail(where, f"must be a hash (got {_shown(where, value)})",
                           "parameter_invalid_object")
            return value
        hints, required = _fields(cls)
        if not where and self.walk.form:
            required = required - {"expand"}
        out = {}
        for key, item in value.items():
            if item is None and not self.walk.form:
                continue  # the SDK leaves None out of the request
            name = self.join(where, key)
            if key not in hints:
                self.walk.fail(name, "unknown parameter", "parameter_unknown")
                continue
            out[key] = self.value(hints[key], item, name)
        for key in sorted(required):
            if value.get(key) is None:
                self.walk.fail(self.join(where, key), "missing required parameter",
                               "parameter_missing")
        return out

    def resource(self, cls: type, value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            self.walk.fail(where, f"must be a {cls.__name__} object (got {_shown(where, value)})")
            return value
        if value.get("deleted") is True:  # a deleted object: id, object, deleted
            for key in sorted(set(value) - {"id", "object", "deleted"}):
                self.walk.fail(self.join(where, key), "unknown field of a deleted object")
            for key in ("id", "object"):
                if not isinstance(value.get(key), str):
                    self.walk.fail(self.join(where, key), "must be a string")
            name = getattr(cls, "OBJECT_NAME", None)
            if name and value.get("object") != name:
                self.walk.fail(self.join(where, "object"), f"must be {name!r}")
            return value
        hints, required = _fields(cls)
        name = getattr(cls, "OBJECT_NAME", None)
        for key, item in value.items():
            if key not in hints:
                self.walk.fail(self.join(where, key), f"unknown field of {cls.__qualname__}")
                continue
            self.value(hints[key], item, self.join(where, key))
        for key in sorted(required - set(value)):
            self.walk.fail(self.join(where, key), f"missing field of {cls.__qualname__}")
        if name and value.get("object") == name:
            self.walk.objects.append((name, _shape(value)))
        return value

    def list_object(self, item: Any, value: Any, where: str) -> Any:
        if not isinstance(value, dict) or value.get("object") != "list":
            self.walk.fail(where, f"must be a list object (got {_shown(where, value)})")
            return value
        for key in sorted(set(value) - {"object", "data", "has_more", "url", "total_count"}):
            self.walk.fail(self.join(where, key), "unknown field of a list")
        for key, tp in (("data", list), ("has_more", bool), ("url", str)):
            if not isinstance(value.get(key), tp):
                self.walk.fail(self.join(where, key), f"must be {describe(tp)}")
        if isinstance(value.get("data"), list):
            for i, entry in enumerate(value["data"]):
                self.value(item, entry, self.join(self.join(where, "data"), i))
        return value

    def scalar(self, tp: type, value: Any, where: str) -> Any:
        walk = self.walk
        if tp is str and value == "" and walk.kind == "request" and not self.in_hash:
            # Stripe reads "" as "unset", which only `Literal['']` parameters allow.
            walk.fail(where, "an empty string, but it cannot be unset",
                      "parameter_invalid_empty")
            return value
        if walk.form and isinstance(value, str):
            coerced = _from_form(tp, value)
            if coerced is not _NO:
                return coerced
        elif _is_python(tp, value):
            return value
        code = {int: "parameter_invalid_integer", bool: "parameter_invalid_boolean",
                float: "parameter_invalid_number"}.get(tp, "parameter_invalid_string")
        walk.fail(where, f"must be {describe(tp)} (got {_shown(where, value)})", code)
        return value


_NO = object()
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _from_form(tp: type, value: str) -> Any:
    """A form body's string as the type it stands for, or _NO."""
    if tp is str:
        return value
    if tp is int and re.fullmatch(r"-?\d+", value):
        return int(value)
    if tp is float and _NUMBER.fullmatch(value):
        return float(value)
    if tp is bool and value in ("true", "false"):
        return value == "true"
    if tp is decimal.Decimal and _NUMBER.fullmatch(value):
        return value
    return _NO


def _is_python(tp: type, value: Any) -> bool:
    """A JSON (or Python) value of the type; a bool is not an integer."""
    if isinstance(value, bool):
        return tp is bool
    if tp is int:
        return isinstance(value, int)
    if tp is float:
        return isinstance(value, int | float)
    if tp is decimal.Decimal:
        return isinstance(value, str | int | float | decimal.Decimal)
    return tp is str and isinstance(value, str)


_SECRET = re.compile(r"(number|cvc|client_secret|token|secret|password)\]?$")


def _shown(where: str, value: Any) -> str:
    """A value for a message, unless it is card data or a secret (messages are logged)."""
    return "(redacted)" if _SECRET.search(where) else repr(value)[:80]


def _untyped(tp: Any) -> bool:
    if tp is Any or tp is object or tp is UntypedStripeObject:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    return origin in (UntypedStripeObject, dict, typing.Dict) and (args or (Any,))[-1] is Any  # noqa: UP006


def _form_text(option: Any) -> str:
    return str(option).lower() if isinstance(option, bool) else str(option)


def _kind(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (list, typing.List):  # noqa: UP006
        return "array"
    if origin is Literal or tp in (str, int, bool, float, decimal.Decimal):
        return "scalar"
    return "hash"


def _kind_of(value: Any) -> str:
    return "array" if isinstance(value, list) else "hash" if isinstance(value, dict) else "scalar"


def _invalid_code(candidates: list) -> str:
    if all(typing.get_origin(a) is Literal or a is str for a in candidates):
        return "parameter_invalid_string"
    if int in candidates:
        return "parameter_invalid_integer"
    return "parameter_invalid"


# --- Entry points --------------------------------------------------------------------------------


@dataclass
class RequestCheck:
    endpoint: Endpoint | None
    params: dict  # coerced (form strings to ints, booleans)
    violations: list[Violation]

    @property
    def signature(self) -> tuple:
        """The same endpoint with the same parameter names (at every depth): one distinct
        request, whatever the values."""
        where = self.endpoint.path if self.endpoint else "?"
        return (self.endpoint.method if self.endpoint else "?", where,
                tuple(sorted(set(_param_names(self.params)))))


def _param_names(params: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(params, dict):
        for key, value in params.items():
            name = f"{prefix}[{key}]" if prefix else str(key)
            if key == "metadata" or prefix.endswith("metadata"):
                yield name if key == "metadata" else f"{prefix}[*]"
                continue
            yield from _param_names(value, name) if isinstance(value, dict | list) else [name]
    elif isinstance(params, list):
        for value in params[:1]:
            yield from _param_names(value, f"{prefix}[]") if isinstance(value, dict | list) \
                else [f"{prefix}[]"]


def check_request(method: str, path: str, params: dict | None, *, form: bool = False,
                  publishable: bool = False) -> RequestCheck:
    """Check a request's parameters against its endpoint's parameter class. `form`: the
    values are a form body's strings (the sandbox); else Python values as passed to the SDK.
    `publishable`: made by Stripe.js with a publishable key (its own extras are allowed)."""
    endpoint = endpoint_for(method, path)
    params = dict(params or {})
    if endpoint is None:
        return RequestCheck(None, params, [Violation(
            f"{method.upper()} {path}", "is not an endpoint of the contract (stripe_sandbox/"
            "contract.py ENDPOINTS)", "resource_missing")])
    extras = {}
    walk = _Walk(form=form, kind="request")
    if publishable:
        extras = {k: params.pop(k) for k in list(params) if k in STRIPE_JS_PARAMS}
        data = params.get("payment_method_data")
        if isinstance(data, dict) and data.get("type") == "card":
            # Stripe.js confirms with the card's details, as it would create a PaymentMethod
            # (the server-side types leave card data out: servers must not see it).
            extras["payment_method_data"] = _Checker(walk).typed_dict(
                stripe_params.PaymentMethodCreateParams, params.pop("payment_method_data"),
                "payment_method_data")
    checked = _Checker(walk).typed_dict(endpoint.params_class, params, "")
    checked.update(extras)
    return RequestCheck(endpoint, checked, walk.violations)


def check_expand(endpoint: Endpoint, paths: list) -> list[Violation]:
    """The `expand` paths an endpoint's answer cannot expand (Stripe refuses them before
    doing anything): each step is a field of the object reached, the last one expandable (an
    id or the object: `ExpandableField`) or included on request (a list such as a charge's
    refunds); `data` steps into a list's items."""
    found = []
    for path in paths:
        tp, parts = endpoint.returns, str(path).split(".")
        for i, part in enumerate(parts):
            tp = _expand_step(tp, part, last=i == len(parts) - 1)
            if tp is None:
                found.append(Violation("expand", f"This property cannot be expanded "
                                                 f"({path}).", "parameter_invalid"))
                break
    return found


def _expand_step(tp: Any, part: str, last: bool) -> Any:
    """What the expand step `part` reaches from `tp` (Any: no check beyond), or None."""
    if tp is None or tp is Any:
        return Any
    origin = typing.get_origin(tp)
    if origin is not None and isinstance(origin, type) and issubclass(origin, ListObject):
        return typing.get_args(tp)[0] if part == "data" and not last else None
    if not (isinstance(tp, type) and issubclass(tp, StripeObject)):
        return None
    field_type = _fields(tp)[0].get(part)
    if field_type is None:
        return None
    options = [a for a in typing.get_args(field_type) if a is not type(None)] \
        if _is_union(field_type) else [field_type]
    objects = [a for a in options if isinstance(a, type) and issubclass(a, StripeObject)]
    lists = [a for a in options if isinstance(typing.get_origin(a), type)
             and issubclass(typing.get_origin(a), ListObject)]
    if str in options and objects:  # ExpandableField: an id, or the object expanded
        return objects[0] if len(objects) == 1 else Any
    if last:
        return lists[0] if lists else None
    return (objects or lists or [None])[0]  # a nested object (invoice_settings.default_...)


@dataclass
class ObjectCheck:
    violations: list[Violation]
    objects: list[tuple] = field(default_factory=list)  # (object type, shape)


def check_object(value: Any, endpoint: Endpoint | None = None, *,
                 error: bool = False) -> ObjectCheck:
    """Check a response body: every Stripe object in it (objects nest: an expanded charge in
    a PaymentIntent, the object of an event, a list's data) against its resource class, and
    the whole against what ``endpoint``'s SDK method answers (a list of refunds must hold
    refunds). ``error``: an error body, whose objects (a PaymentIntent) are checked."""
    walk = _Walk(form=False, kind="response")
    checker = _Checker(walk)
    named = isinstance(value, dict) and isinstance(value.get("object"), str)
    where = value["object"] if named else "answer"
    returns = endpoint.returns if endpoint is not None else None
    if error:
        checker.value(Any, value, "")
    elif not named:
        walk.fail(where, "has no `object`: not a Stripe object")
    elif returns is not None:
        checker.value(returns, value, where)
    elif value["object"] == "list":
        checker.list_object(Any, value, where)
    elif resource_class(value["object"]) is None:
        walk.fail(where, "is not an object type of this API version")
    else:
        checker.resource(resource_class(value["object"]), value, where)
    return ObjectCheck(walk.violations, walk.objects)
