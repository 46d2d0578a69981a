"""What every resource module of the sandbox builds on.

- the store: every object by id, in creation order (`store`, `Resource`, `newest_first`);
- Stripe's errors (`StripeError` and the helpers for its usual messages);
- parameters: form bodies decoded into nested hashes and arrays (`decode_form`), checked
  against the contract (and typed by it) before a handler sees them (`api`);
- answers: objects exported with `expand`, lists with cursors (`Page`), every object checked
  against its resource class before it leaves (`respond`);
- the request being served (`current`): its API key and `Stripe-Account`.

Resource modules register their routes with `api(handler)`: the handler gets the path's ids
and the request's parameters as keyword arguments, already checked against the endpoint's
parameter class and coerced (integers, booleans), and returns a Resource, a dict or an
aiohttp response. A parameter the contract allows but the handler does not name is refused
with a message saying the sandbox does not model it: nothing is silently ignored.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import copy
import hashlib
import html
import inspect
import json
import logging
import re
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlencode

from aiohttp import web

from . import contract

logger = logging.getLogger("stripe_sandbox")

# Where the sandbox is reachable (app.main sets it): in the URLs it hands out (receipts, the
# 3-D Secure page, onboarding links).
PUBLIC_URL = "http://127.0.0.1:8420"

API_VERSION = contract.API_VERSION
ZERO_DECIMAL_CURRENCIES = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL_CURRENCIES = frozenset("bhd jod kwd omr tnd".split())
CURRENCY_SYMBOLS = {"eur": "€", "gbp": "£", "inr": "₹", "jpy": "¥", "usd": "$"}


def now() -> int:
    return int(time.time())


def later(seconds: float, callback, *args) -> None:
    """Run callback(*args) in ``seconds``, in the server's loop (what Stripe does later), in
    no request's context: the events it sends were caused by no API request."""
    asyncio.get_running_loop().call_later(seconds, callback, *args,
                                          context=contextvars.Context())


def random_id(n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def fingerprint(text: str) -> str:
    """The same for the same card number or IBAN, as Stripe's fingerprints are."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def major_units(amount: int, currency: str) -> str:
    """25.99 for 2599 EUR, 500 for 500 JPY, 1.500 for 1500 KWD."""
    decimals = 0 if currency in ZERO_DECIMAL_CURRENCIES else \
        3 if currency in THREE_DECIMAL_CURRENCIES else 2
    whole, part = divmod(abs(amount), 10**decimals)
    sign = "-" if amount < 0 else ""
    return f"{sign}{whole}.{part:0{decimals}d}" if decimals else f"{sign}{whole}"


def format_amount(amount: int, currency: str) -> str:
    """An amount as Stripe writes it in messages: $25.99, €10.00, 1.500 KWD."""
    value = major_units(amount, currency)
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


# --- Errors ------------------------------------------------------------------------------------


class StripeError(Exception):
    """An error as Stripe answers it: {"error": {type, message, code, doc_url, param...}}."""

    def __init__(self, status: int, type: str, message: str, validation: bool = False,
                 **fields: Any):
        super().__init__(message)
        self.status = status
        # A refusal of the request's parameters, before the endpoint runs: Stripe keeps no
        # result under its Idempotency-Key (it keeps a refusal of what the endpoint did).
        self.validation = validation
        self.body = {"type": type, "message": message}
        if fields.get("code"):
            fields["doc_url"] = doc_url(fields["code"])
        self.body.update({k: v for k, v in fields.items() if v is not None})
        self.headers: dict[str, str] = {}

    @property
    def code(self) -> str | None:
        return self.body.get("code")

    def response(self) -> web.Response:
        return respond({"error": self.body}, status=self.status, headers=self.headers)


def doc_url(code: str) -> str:
    return "https://docs.stripe.com/error-codes/" + code.replace("_", "-")


def invalid_request(message: str, **fields: Any) -> StripeError:
    return StripeError(400, "invalid_request_error", message, **fields)


def invalid_param(message: str, **fields: Any) -> StripeError:
    """A refusal of the request's parameters themselves (Stripe keeps no result under the
    request's Idempotency-Key for it), as opposed to what the endpoint found doing its work."""
    return invalid_request(message, validation=True, **fields)


def missing_parameter(param: str) -> StripeError:
    return invalid_request(f"Missing required param: {param}.", code="parameter_missing",
                           param=param, validation=True)


def no_such(kind: str, id: Any, param: str = "id", status: int = 400) -> StripeError:
    return StripeError(status, "invalid_request_error", f"No such {kind}: '{id}'",
                       code="resource_missing", param=param, validation=True)


def invalid_value(param: str, value: Any, allowed: tuple) -> StripeError:
    return invalid_param(
        f"Invalid {param}: must be one of {', '.join(allowed)}",
        code="parameter_invalid_empty" if value == "" else "parameter_invalid_string",
        param=param)


def positive(amount: int, param: str = "amount") -> int:
    """An amount Stripe takes: 1 or more (its two messages for 0 and for less)."""
    if amount < 1:
        raise invalid_request(
            "This value must be greater than or equal to 1." if amount == 0
            else "Invalid positive integer", code="parameter_invalid_integer", param=param,
            validation=True)
    return amount


def not_modelled(param: str) -> StripeError:
    return invalid_request(
        f"The Stripe sandbox does not model `{param}` on this endpoint (Stripe takes it).",
        param=param, validation=True)


def violation_error(violation: contract.Violation) -> StripeError:
    """A request breaking the contract, refused with the message Stripe gives."""
    name, code = violation.where, violation.code
    if name == "expand":
        return invalid_param(violation.problem, param="expand")
    message = {
        "parameter_unknown": f"Received unknown parameter: {name}",
        "parameter_missing": f"Missing required param: {name}.",
        "parameter_invalid_integer": "Invalid integer",
        "parameter_invalid_boolean": "Invalid boolean",
        "parameter_invalid_array": "Invalid array",
        "parameter_invalid_object": "Invalid object",
    }.get(code)
    if message is None:
        problem = violation.problem
        allowed = re.match(r"must be one of: (.*) \(got", problem)
        message = f"Invalid {name}: must be one of {allowed[1]}" if allowed \
            else f"Invalid {name}: {problem}"
    return invalid_request(message, code=code, param=name, validation=True)


# --- The request being served ------------------------------------------------------------------


@dataclass
class Current:
    key: str = ""  # the API key (sk_..., pk_...)
    account: str | None = None  # Stripe-Account: acting on a connected account
    request_id: str | None = None  # answered as Request-Id, named by the events it causes
    idempotency_key: str | None = None

    @property
    def publishable(self) -> bool:
        return self.key.startswith("pk_")


_current: contextvars.ContextVar[Current | None] = contextvars.ContextVar("current",
                                                                         default=None)


def current() -> Current:
    """The request being served (outside one, as in a delayed refund: no key, no request)."""
    return _current.get() or Current()


def api_key(request: web.Request, params: dict) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme == "Bearer":
        return value
    if scheme == "Basic":
        return base64.b64decode(value).decode(errors="replace").split(":")[0]
    key = params.get("key")  # how Stripe.js passes its publishable key
    return key if isinstance(key, str) else ""


def is_account(id: Any) -> bool:
    """A connected account that exists (and is not deleted)."""
    obj = store.get(id) if isinstance(id, str) else None
    return getattr(obj, "object", None) == "account"


def account_invalid(id: Any) -> StripeError:
    """Stripe's 403 for an unknown (or deleted) connected account; it names the API key."""
    key = current().key
    redacted = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else key
    return StripeError(
        403, "invalid_request_error",
        f"The provided key '{redacted}' does not have access to account '{id}' (or that "
        "account does not exist). Application access may have been revoked.",
        code="account_invalid")


# --- Parameters --------------------------------------------------------------------------------


def decode_form(pairs) -> dict:
    """`card[exp_month]=12&expand[]=a&items[0][price]=p` as nested hashes and arrays: arrays
    from `name[]`; `items[0]` stays a hash keyed "0" until the contract, which knows where an
    array is expected, reads it as one (`metadata[123]` stays a key)."""
    tree: dict = {}
    for name, value in pairs:
        head = name.split("[", 1)[0]
        _put(tree, [head, *re.findall(r"\[([^\]]*)\]", name[len(head):])], value)
    return tree


def _put(node: dict | list, parts: list[str], value: Any) -> None:
    """Put `value` at `parts` under `node`; on a list, parts[0] is "" (`name[]`: append)."""
    key, rest = parts[0], parts[1:]
    if not rest:
        if isinstance(node, list):
            node.append(value)
        else:
            node[key] = value
        return
    if isinstance(node, list):
        child: dict | list = {}
        node.append(child)
    else:
        child = node.get(key)
        if not isinstance(child, dict | list):
            child = node[key] = [] if rest[0] == "" else {}
    _put(child, rest, value)


PARAMS = web.RequestKey("stripe_params", dict)
RAN = web.RequestKey("endpoint_ran", bool)  # the endpoint's handler started


async def request_params(request: web.Request) -> dict:
    """The request's parameters: its query and its (form or JSON) body (a copy each time:
    the middlewares and the handler each read them)."""
    if PARAMS not in request:
        params = decode_form(request.query.items())
        if request.method in ("POST", "DELETE") and request.body_exists:
            if request.content_type == "application/json":
                body = await request.json()
                params.update(body if isinstance(body, dict) else {})
            else:
                params.update(decode_form((await request.post()).items()))
        request[PARAMS] = params
    return copy.deepcopy(request[PARAMS])


def merge_metadata(current: dict | None, update: Any) -> dict:
    """Stripe merges metadata keys; an empty string deletes one ("" as a whole: all)."""
    if update in (None, ""):
        return {} if update == "" else dict(current or {})
    merged = dict(current or {})
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def previous_attributes(obj: Any, changes: dict) -> dict:
    """The `data.previous_attributes` of an *.updated event: the old values of what
    `changes` (attribute -> new value) modifies, hashes key by key (keys a change removes
    included)."""
    previous = {}
    for key, new in changes.items():
        old = getattr(obj, key, None)
        if isinstance(old, dict) and isinstance(new, dict):
            changed = {k: old.get(k) for k in set(old) | set(new) if old.get(k) != new.get(k)}
            if changed:
                previous[key] = changed
        elif old != new:
            previous[key] = copy.deepcopy(old)
    return previous


def created_filter(created: Any):
    """A test of `created` for a list (an integer, or gt/gte/lt/lte), already typed by the
    contract."""
    if created is None:
        return lambda value: True
    bounds = created if isinstance(created, dict) else {"eq": created}
    tests = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__,
             "eq": int.__eq__}
    return lambda value: all(tests[op](value, bound) for op, bound in bounds.items())


# --- The store and resources -------------------------------------------------------------------

store: dict[str, Resource] = {}  # id -> object, in creation order


class Resource:
    """A Stripe object kept in the store. Subclasses set `object` and `prefix` and return
    their whole shape from `to_dict` (the fields of the pinned API version)."""

    object: ClassVar[str]
    prefix: ClassVar[str]
    # Fields that are only there when expanded (a charge's refunds): name -> method(expand).
    expandable_only: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self.id = self.prefix + random_id(24)
        self.created = now()
        store[self.id] = self

    def to_dict(self) -> dict:
        raise NotImplementedError

    def export(self, expand: list[str] | None = None) -> dict:
        """The object as the API answers it, with `expand` paths (a.b.c) expanded."""
        data = copy.deepcopy(self.to_dict())
        for path in expand or ():
            head, _, rest = path.partition(".")
            if head in self.expandable_only:
                data[head] = getattr(self, self.expandable_only[head])(
                    [rest] if rest else [])
            else:
                expand_path(data, path, path)
        return data

    @classmethod
    def get(cls, id: Any) -> Any:
        """The object of this class with this id, or None."""
        obj = store.get(id) if isinstance(id, str) else None
        return obj if isinstance(obj, cls) else None

    @classmethod
    def named(cls, id: Any, param: str, kind: str | None = None) -> Any:
        """The object a parameter (or the path's id: param "id") names, or Stripe's refusal:
        parameter_missing, or resource_missing (404 for the path's id, else 400)."""
        if not id:
            raise missing_parameter(param)
        obj = cls.get(id)
        if obj is None:
            raise no_such(kind or cls.object, id, param, status=404 if param == "id" else 400)
        return obj

    @classmethod
    def retrieve(cls, id: Any, param: str = "id", status: int = 404) -> Any:
        """The object, or Stripe's resource_missing ("No such payment_intent: 'pi_x'")."""
        obj = cls.get(id)
        if obj is None:
            raise no_such(cls.object, id, param, status)
        return obj


def expand_path(data: Any, path: str, whole: str) -> None:
    """Expand `path` (a.b.c) inside an exported object, in place."""
    if isinstance(data, list):
        for item in data:
            expand_path(item, path, whole)
        return
    head, _, rest = path.partition(".")
    if not isinstance(data, dict) or head not in data:
        raise invalid_request(f"This property cannot be expanded ({whole}).")
    value = data[head]
    if isinstance(value, str):
        obj = store.get(value)
        if obj is None:
            raise invalid_request(f"This property cannot be expanded ({whole}).")
        data[head] = obj.export([rest] if rest else [])
    elif isinstance(value, dict) and rest:
        if value.get("object") == "list" and rest.startswith("data"):
            _, _, rest = rest.partition(".")
            if rest:
                expand_path(value["data"], rest, whole)
        else:
            expand_path(value, rest, whole)


def newest_first(cls: type, keep=lambda obj: True) -> list:
    """Objects of a class, newest first (the store keeps creation order, finer than the
    `created` seconds)."""
    return [obj for obj in reversed(store.values()) if isinstance(obj, cls) and keep(obj)]


class Page:
    """A Stripe list, newest first, with limit, starting_after and ending_before."""

    def __init__(self, url: str, items: list, limit: int | None = None,
                 starting_after: str | None = None, ending_before: str | None = None):
        limit = 10 if limit is None else limit
        if not 1 <= limit <= 100:
            raise invalid_param("Invalid integer: limit must be between 1 and 100",
                                code="parameter_invalid_integer", param="limit")
        if starting_after is not None and ending_before is not None:
            raise invalid_param(
                "You may only specify one of these parameters: ending_before, starting_after.")
        ids = [item.id for item in items]
        cursor = starting_after if starting_after is not None else ending_before
        if cursor is not None and cursor not in ids:
            param = "starting_after" if starting_after is not None else "ending_before"
            raise no_such(items[0].object if items else "object", cursor, param)
        if starting_after is not None:
            start = ids.index(starting_after) + 1
            self.items, self.has_more = items[start:start + limit], len(items) > start + limit
        elif ending_before is not None:
            end = ids.index(ending_before)
            self.items, self.has_more = items[max(0, end - limit):end], end > limit
        else:
            self.items, self.has_more = items[:limit], len(items) > limit
        self.url = url

    def export(self, expand: list[str] | None = None) -> dict:
        sub = [p[5:] for p in expand or () if p.startswith("data.")]
        return {"object": "list", "data": [item.export(sub) for item in self.items],
                "has_more": self.has_more, "url": self.url}


# --- Answers and the contract ------------------------------------------------------------------


recorder = contract.Recorder()


def check_answer(body: Any, what: str, endpoint: contract.Endpoint | None = None,
                 error: bool = False) -> list[contract.Violation]:
    """Check an answer (of ``endpoint``), an error body or an event against the contract;
    record what was checked and any violation (logged too: a violation is a bug of the
    sandbox)."""
    checked = contract.check_object(body, endpoint, error=error)
    for name, shape in checked.objects:
        recorder.write("objects", {"object": name, "shape": repr(shape)}, key=(name, shape))
    if checked.violations:
        message = (f"Stripe contract (API {API_VERSION}): the sandbox's {what} breaks it: "
                   + "; ".join(map(str, checked.violations)))
        recorder.write("violations", {"message": message})
        logger.error("%s", message)
    return checked.violations


def respond(body: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(text=json.dumps(body, indent=2, sort_keys=True) + "\n", status=status,
                        content_type="application/json", headers=headers)


def api(handler, *, route: str | None = None):
    """An aiohttp handler for a Stripe endpoint of the contract (route: "POST /v1/..."):
    parameters checked and coerced, then handler(**path ids, **parameters); the answer
    exported (`expand`) and checked. Without a route: a sandbox-only hook, unchecked."""
    takes = inspect.signature(handler).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in takes.values())

    async def handle(request: web.Request) -> web.StreamResponse:
        params = await request_params(request)
        key = api_key(request, params)
        request_id = "req_" + random_id(14)
        token = _current.set(Current(key, request.headers.get("Stripe-Account") or None,
                                     request_id, request.headers.get("Idempotency-Key")))
        try:
            if route is not None:
                method, path = route.split(" ", 1)
                check = contract.check_request(method, request.path, params, form=True,
                                               publishable=key.startswith("pk_"))
                recorder.write("requests", {"signature": list(check.signature)},
                               key=check.signature)
                if check.violations == [] and params.get("expand") and check.endpoint:
                    check.violations = contract.check_expand(check.endpoint,
                                                             check.params.get("expand") or [])
                if check.violations:
                    if key.startswith("pk_"):  # the Stripe.js double is ours: a bug of it
                        recorder.write("violations", {"message": (
                            f"Stripe contract (API {API_VERSION}): the Stripe.js double sent "
                            f"{route}: " + "; ".join(map(str, check.violations)))})
                    raise violation_error(check.violations[0])
                params = check.params
            params.pop("key", None)
            params.pop("payment_user_agent", None)
            expand = params.pop("expand", None)
            if not open_ended:
                for name in params:
                    if name not in takes:
                        raise not_modelled(name) if route else invalid_request(
                            f"Received unknown parameter: {name}", code="parameter_unknown",
                            param=name)
            request[RAN] = True  # from here on Stripe keeps even a refusal under the key
            result = handler(**request.match_info, **params)
            if inspect.isawaitable(result):
                result = await result
        finally:
            _current.reset(token)
        if isinstance(result, web.StreamResponse):
            return result
        body = result.export(expand) if hasattr(result, "export") else result
        if route is not None and check_answer(body, f"answer to {route}",
                                              contract.ENDPOINT_BY_ROUTE[method, path]):
            return StripeError(500, "api_error", "The Stripe sandbox's answer broke the "
                               f"contract of API {API_VERSION} (its log says how).").response()
        return respond(body, headers={"Request-Id": request_id})

    return handle


# --- Hosted pages (3-D Secure, receipts, onboarding) ----------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<p><strong>Stripe sandbox</strong> (test mode, no real money)</p>
<h1>{title}</h1>
{body}
</body></html>"""


def page(title: str, body: str) -> web.Response:
    return web.Response(text=PAGE.format(title=html.escape(title), body=body),
                        content_type="text/html")


def three_d_secure_action(intent: Any) -> dict:
    """The next_action of a PaymentIntent or SetupIntent that needs 3-D Secure: a redirect to
    the sandbox's 3-D Secure page when confirmed with a return_url (unless by Stripe.js,
    use_stripe_sdk), else an action for Stripe.js to handle."""
    url = f"{PUBLIC_URL}/3ds/{intent.id}?" + urlencode({"client_secret": intent.client_secret})
    if intent.return_url and not intent.use_stripe_sdk:
        return {"type": "redirect_to_url",
                "redirect_to_url": {"url": url, "return_url": intent.return_url}}
    return {"type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url}}


def check_client_secret(intent: Any, client_secret: Any) -> None:
    """For a PaymentIntent or a SetupIntent reached with a publishable key."""
    if client_secret != intent.client_secret:
        name = "PaymentIntent" if intent.object == "payment_intent" else "SetupIntent"
        raise invalid_request("The client_secret provided does not match the client_secret "
                              f"associated with the {name}.", param="client_secret")
