"""Schemathesis over /api/payments/openapi.json with hostile strings (issue 15, the attack
suite): the approach of tests/integration/test_api_fuzz.py (in-process, on PostgreSQL and the
Stripe sandbox, its seeded customer, orders, payments and cards; each test rolled back), with
every generated body, query, path and header passed through ``_poison``: one of its strings
or numbers (most often; else all of them, or none) is replaced or wrapped with a hostile
value (NUL and other C0/C1 controls, a 1 MB string, RTL/bidi marks, U+2028/U+2029, lone
surrogates in JSON bodies), a number in a JSON body may become a very long one, a value a
deeply nested array. Valid bodies of the seeded rows are mixed in, so that a hostile value
next to valid ones reaches what would store it. What generation cannot express (raw bodies
nested 100,000 deep, numbers of 5,000 digits as JSON text, escaped lone surrogates in JSON
text, invalid UTF-8 in a URL, a body over the limit) is sent once per operation by
``test_raw_hostile_inputs``.

Every response must be: no 5xx; a documented status code and content type; a body matching
that status's schema; the documented headers (the checks of test_api_fuzz). After each test,
before its rollback, no text column of any table holds a control character (the portal
refuses them at one place; tab, line feed and carriage return are text).

Each operation runs as its documented caller: the seeded customer, the order service for
POST /api/orders, an admin for the refund endpoint, a vendor for vendor payouts. Bounded and
reproducible: fuzzing phase only (the coverage phase's boundary values are test_api_fuzz's),
MAX_EXAMPLES per operation, derandomized, no example database; rate limits off.
A longer hunt: HOSTILE_MAX_EXAMPLES=200 HOSTILE_RANDOM=1 pytest tests/security/test_hostile_api.py
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from urllib.parse import unquote

import hypothesis.strategies as st
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from schemathesis.core import NotSet
from schemathesis.core.failures import FailureGroup

from portal.extensions import db
from portal.hygiene import MAX_REQUEST_BYTES
from portal.ledger.models import Payment
from tests.helpers import bearer, make_user
from tests.integration.test_api_fuzz import (  # noqa: F401 - fixtures, requested by name
    CHECKS,
    KNOWN,
    SPEC,
    WHERE,
    _spec_app,
    seeded,
)
from tests.security.report import count

MAX_EXAMPLES = int(os.environ.get("HOSTILE_MAX_EXAMPLES", "25"))  # per operation
RANDOM = os.environ.get("HOSTILE_RANDOM") == "1"  # a longer hunt: new examples each run
ONE_MB = "A" * 1_000_000

# Strings nobody types into a payment form, each a way to break a parser, a log, a database
# or a page: C0/C1 control characters (refused), then text that is not a control character
# and may be stored (bidi overrides and marks, line and paragraph separators, zero-width and
# byte-order marks, combining and astral characters), then sizes.
CONTROLS = ["\x00", "a\x00b", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b[31mred\x1b[0m",
            "\x7f", "\x85", "\x9b31m", "\x9f", "x\x00" * 3]
TEXT = ["\u202e", "pay\u202eyap", "\u200f", "\u200e", "\u2066x\u2069", "\u2028", "a\u2029b",
        "\ufeff", "\u200b", "\ufffd", "\U0001f4b3", "e\u0301", "\u0130", "\t", "\r\n", "%00",
        "'; --", "${7*7}", "{{7*7}}", "../../etc/passwd", "<script>x</script>"]
SIZES = [ONE_MB, "\u00e9" * 100_000, "9" * 10_000, "\u202e" * 10_000]
SURROGATES = ["\ud800", "x\udfffy", "\udc00\ud800", "\udbff"]  # JSON bodies only: escaped
HEADER_SAFE = [s for s in CONTROLS + TEXT if "\n" not in s and "\r" not in s
               and all(ord(c) < 256 for c in s)]
NUMBERS = [10 ** 400, -(10 ** 400), 2 ** 63, 2 ** 64 + 1, 1e308, -1e308, 5e-324]
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
VALID_BODIES = ("POST /api/auth/token", "POST /api/orders", "POST /api/payments/refund")
CALLERS = {"POST /api/orders": "service", "POST /api/payments/refund": "admin",
           "GET /api/payments/vendor/payouts": "vendor"}

schema = schemathesis.openapi.from_wsgi(SPEC, _spec_app, config=schemathesis.Config.from_dict({
    "generation": {
        "max-examples": MAX_EXAMPLES, "deterministic": not RANDOM, "database": "none",
        "mode": "positive", "with-security-parameters": False,
    },
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
}))

SEEN: Counter = Counter()  # {"requests", "hostile"}: what reached the app


# --- poisoning generated values -------------------------------------------------------------

def _nested(depth: int, leaf):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _leaves(value, path: tuple = ()):
    """Paths of the strings and numbers in a JSON-like value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield path


def _poison(draw, value, where: str):
    """``value`` with one of its strings or numbers made hostile (most often: the rest stays
    valid, so the hostile one reaches what would store it), or all of them, or none; the
    choices are Hypothesis draws, so derandomized and shrinkable."""
    if not isinstance(value, dict | list | str | int | float | None):
        return value  # raw bytes of a negative case: not JSON, left as they are
    leaves = list(_leaves(value))
    how = draw(st.sampled_from(("none", "one", "one", "one", "one", "all", "all")))
    if not leaves or how == "none":
        return value
    chosen = set(leaves) if how == "all" else {
        leaves[draw(st.integers(0, len(leaves) - 1))]}
    return _rebuild(draw, value, where, (), chosen)


def _rebuild(draw, value, where: str, path: tuple, chosen: set):
    if isinstance(value, dict):
        return {k: _rebuild(draw, v, where, (*path, k), chosen) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebuild(draw, v, where, (*path, i), chosen) for i, v in enumerate(value)]
    return _hostile_leaf(draw, value, where) if path in chosen else value


def _hostile_leaf(draw, value, where: str):
    body = where == "body"
    if body and draw(st.integers(0, 9)) == 0:
        return _nested(draw(st.sampled_from([50, 500])), value)  # deep JSON
    if isinstance(value, int | float):
        if body and draw(st.booleans()):
            return draw(st.sampled_from(NUMBERS))
        value = str(value)  # in a body: a number as text; elsewhere text on the wire anyway
    pool = (CONTROLS + TEXT + SIZES + SURROGATES) if body else (
        HEADER_SAFE if where == "headers" else CONTROLS + TEXT + SIZES)
    hostile = draw(st.sampled_from(pool))
    made = [hostile, value + hostile, hostile + value, value[:1] + hostile + value[1:]][
        draw(st.integers(0, 3))]
    # A header value may not start with white space (HTTP clients refuse to send it).
    return f"k{made}" if where == "headers" else made


def _poisoned(value, where: str):
    @st.composite
    def poisoned(draw):
        return _poison(draw, value, where)

    return poisoned()


def valid_body(label: str) -> dict | None:
    """A body the operation accepts, on the seeded rows (KNOWN is filled by `seeded`)."""
    if label in KNOWN and WHERE[label] == "body":
        return KNOWN[label][0][0]
    if label == "POST /api/payments/refund":
        paid = db.session.scalar(sa.select(Payment.id).where(Payment.status == "succeeded"))
        return {"paymentId": str(paid), "amount": 100, "notes": "Returned"}
    return {
        "POST /api/auth/token": {"email": "fuzz-customer@example.test",
                                 "password": "correct-horse-battery"},
        "POST /api/orders": {"customerEmail": "fuzz-customer@example.test", "currency": "USD",
                             "items": [{"vendorEmail": "fuzz-vendor@example.test",
                                        "description": "Lamp", "quantity": 1,
                                        "unitAmount": 100}]},
    }.get(label)


def _known(label: str, where: str):
    """One of test_api_fuzz's seeded inputs of the operation, or a valid body of the seeded
    rows (looked up when drawn: the strategies are built before `seeded` runs), to be
    poisoned too: hostile values next to real ids and in bodies that would be stored."""
    if WHERE.get(label) == where:
        return st.integers(0, 63).map(lambda i: KNOWN[label][i % len(KNOWN[label])][0])
    if where == "body" and label in VALID_BODIES:
        valid = st.just(label).map(valid_body)
        return st.one_of(valid, valid, valid)  # mostly: the generated ones rarely pass
    return None


def _mix_known(where: str):
    def hook(context, strategy):
        known = _known(context.operation.label, where)
        return strategy if known is None else st.one_of(strategy, known)

    hook.__name__ = f"before_generate_{where}"
    return hook


def _poison_hook(where: str):
    """A flatmap hook: it sees the plain generated value (schemathesis unwraps it)."""
    def hook(context, value):
        return _poisoned(value, where)

    hook.__name__ = f"flatmap_{where}"
    return hook


for _where in ("body", "query", "path_parameters"):
    schema.hook(_mix_known(_where))
for _where in ("body", "query", "path_parameters", "headers"):
    schema.hook(_poison_hook(_where))


def is_hostile(value, *, quoted: bool = False) -> bool:
    """Whether a request's input carries one of the hostile values (``quoted``: path
    parameters, which schemathesis has percent-encoded by then)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += list(item.values())
        elif isinstance(item, list):
            if len(item) == 1 and isinstance(item[0], list):
                return True  # nested
            stack += item
        elif isinstance(item, str):
            item = unquote(item) if quoted else item
            if len(item) >= 10_000 or any(h in item for h in CONTROLS + TEXT) or any(
                    0xD800 <= ord(c) <= 0xDFFF for c in item):
                return True
        elif isinstance(item, int | float) and not isinstance(item, bool) and (
                item in NUMBERS):
            return True
    return False


# --- what is stored ------------------------------------------------------------------------

def stored_controls() -> list[str]:
    """Text and JSON columns of every table that hold a control character (JSON columns:
    written as \\u escapes). NUL cannot be stored in PostgreSQL text: trying is a 5xx."""
    found = []
    raw = "[\\x01-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]"
    escaped = r"\\u00(0[0-8bcef]|1[0-9a-f]|7f|[89][0-9a-f])"
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, sa.JSON):
                text = sa.cast(column, sa.Text)
                condition = sa.or_(text.op("~")(raw), text.op("~*")(escaped))
            elif isinstance(column.type, sa.String | sa.Text | sa.Enum):
                condition = column.op("~")(raw)
            else:
                continue
            n = db.session.scalar(sa.select(sa.func.count()).select_from(table)
                                  .where(condition))
            if n:
                found.append(f"{table.name}.{column.name}: {n} rows")
    return found


@pytest.fixture
def nothing_stored_with_controls():
    """After the test, before its rollback: no control character in any table."""
    assert stored_controls() == []  # the seeded rows are clean
    yield
    db.session.rollback()  # a failed example may leave the session in a failed transaction
    assert stored_controls() == []


@pytest.fixture
def callers(request) -> dict[str, dict]:
    """The Authorization header of each operation's caller: the seeded customer of
    test_api_fuzz (its `seeded` fixture: rows, cards, KNOWN), or the CALLERS role's."""
    customer = request.getfixturevalue("seeded")
    users = {role: make_user(f"hostile-{role}@example.test", role)
             for role in ("service", "admin", "vendor")}
    return {"customer": customer,
            **{label: bearer(users[role]) for label, role in CALLERS.items()}}


# --- the hostile run --------------------------------------------------------------------------

@pytest.fixture
def hostile_share():
    """Of the examples of one operation that had any input, a good share carried a hostile
    value (the poisoning works: 6 in 7 inputs get one or more)."""
    seen: Counter = Counter()
    yield seen
    if seen["with input"] >= 5:
        assert seen["hostile"] > seen["with input"] / 3, dict(seen)


@schema.parametrize()
@pytest.mark.usefixtures("no_rate_limits")
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large], deadline=None)
def test_hostile_strings_get_documented_answers(case, app, callers, hostile_share,
                                                nothing_stored_with_controls):
    headers = callers.get(case.operation.label, callers["customer"])
    case.call_and_validate(headers=headers, checks=CHECKS, app=app)
    parts = [p for p in (case.body, case.query, case.headers)
             if p and not isinstance(p, NotSet)]
    hostile = is_hostile(case.path_parameters, quoted=True) or any(map(is_hostile, parts))
    parts += [case.path_parameters] if case.path_parameters else []
    SEEN["requests"] += 1
    SEEN["hostile"] += hostile
    hostile_share["with input"] += bool(parts)
    hostile_share["hostile"] += hostile


# --- raw inputs generation cannot express ---------------------------------------------------

DOCUMENT = _spec_app.test_client().get(SPEC).json
OPERATIONS = {f"{method.upper()} {path}": item[method] for path, item in DOCUMENT["paths"].items()
              for method in item if path != "/api/payments/webhook"}
DEEP = 100_000
LONG_NUMBER = "1" + "0" * 5000


def _map(value, strings, numbers):
    if isinstance(value, dict):
        return {k: _map(v, strings, numbers) for k, v in value.items()}
    if isinstance(value, list):
        return [_map(v, strings, numbers) for v in value]
    if isinstance(value, str):
        return strings(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return numbers(value)
    return value


def with_long_numbers(body: dict) -> str:
    """The body as JSON text with every number a 5,000-digit one (as text: no float)."""
    marked = json.dumps(_map(body, lambda s: s, lambda n: "@@number@@"))
    return marked.replace('"@@number@@"', LONG_NUMBER)


def raw_cases(label: str) -> list[tuple[str, object]]:
    """(name, test-client arguments, or a function of the seeded rows giving them) of the
    raw hostile inputs of one operation."""
    method, path = label.split(" ", 1)
    operation = OPERATIONS[label]
    query = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
    json_headers = {"Content-Type": "application/json"}

    def at(value: str) -> str:
        return re.sub(r"\{[^}]+\}", value, path)

    cases: list[tuple[str, object]] = []
    if "{" in path:
        cases += [("nul-in-path", {"path": at("pm_a%00b")}),
                  ("rlo-and-lone-surrogate-utf8-in-path", {"path": at("pm_%E2%80%AE%ED%A0%80")}),
                  ("1mb-path", {"path": at(ONE_MB)})]
    if query:
        cases += [("nul-in-query", {"query_string": {q: "1\x00" for q in query}}),
                  ("1mb-query", {"query_string": {q: ONE_MB for q in query}}),
                  ("bidi-separators-bad-utf8-query", {"query_string": "&".join(
                      f"{q}=%E2%80%AE2024%E2%80%A8%FF%FE" for q in query)})]
    if "requestBody" in operation:
        cases += [
            ("deep-array", {"data": "[" * DEEP + "]" * DEEP, "headers": json_headers}),
            ("deep-object", {"data": '{"a":' * DEEP + "1" + "}" * DEEP,
                             "headers": json_headers}),
            ("lone-surrogates", lambda: {"data": json.dumps(_map(
                valid_body(label), lambda s: s + "\udc00\ud800", lambda n: n)),
                "headers": json_headers}),
            ("long-numbers", lambda: {"data": with_long_numbers(valid_body(label)),
                                      "headers": json_headers}),
            ("huge-exponent", {"data": '{"amount": 1e999999, "quantity": -1e-999999}',
                               "headers": json_headers}),
            ("over-the-limit", {"data": '{"notes": "' + "A" * MAX_REQUEST_BYTES + '"}',
                                "headers": json_headers}),
        ]
    return cases


@pytest.mark.parametrize("label", [label for label in OPERATIONS if raw_cases(label)])
@pytest.mark.usefixtures("no_rate_limits")
def test_raw_hostile_inputs(label, app, callers, nothing_stored_with_controls):
    """Each raw case of the operation: no 5xx, a documented answer; 413 over the limit, 400
    for NUL bytes and deep nesting."""
    method, path = label.split(" ", 1)
    headers = callers.get(label, callers["customer"])
    problems = []
    for name, kwargs in raw_cases(label):
        kwargs = dict(kwargs() if callable(kwargs) else kwargs)
        url = kwargs.pop("path", path)
        kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
        response = app.test_client().open(url, method=method, **kwargs)
        SEEN["requests"] += 1
        SEEN["hostile"] += 1
        try:
            schema[path][method].Case().validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            problems.append(f"{name}: {exc}")
            continue
        expected = {"over-the-limit": 413, "nul-in-path": 400, "nul-in-query": 400,
                    "deep-array": 400, "deep-object": 400}.get(name)
        if expected is not None and response.status_code != expected:
            problems.append(f"{name}: {response.status_code} {response.text[:300]}")
    assert problems == []


FREE_TEXT = {  # operation: (where its free text goes in a valid body, the row it is stored in)
    "POST /api/orders": (lambda body, text: body["items"][0].update(description=text),
                         "SELECT description FROM order_items"),
    "POST /api/payments/refund": (lambda body, text: body.update(notes=text),
                                  "SELECT notes FROM refund_requests"),
}


@pytest.mark.parametrize("label", list(FREE_TEXT))
@pytest.mark.usefixtures("no_rate_limits")
def test_free_text_is_stored_as_sent_and_control_characters_are_refused(
        label, app, callers, nothing_stored_with_controls):
    """The fields that are stored and shown to people, each hostile value in an otherwise
    valid body: control characters are a 400 (nothing stored), any other text is stored as
    sent (bidi marks, separators, astral and combining characters...)."""
    method, path = label.split(" ", 1)
    put, stored = FREE_TEXT[label]
    for text in CONTROLS + TEXT:
        body = json.loads(json.dumps(valid_body(label)))
        put(body, text)
        response = app.test_client().open(path, method=method, json=body,
                                          headers=callers[label])
        schema[path][method].Case().validate_response(response, checks=CHECKS)
        SEEN["requests"] += 1
        SEEN["hostile"] += 1
        if CONTROL.search(text):
            assert response.status_code == 400, (text, response.text)
            assert response.json["error"]["code"] == "control_characters"
        else:
            assert response.status_code in (200, 201), (text, response.text)
    # Stored as sent, but for the white space around it (which the portal strips).
    texts = [t.strip() for t in CONTROLS + TEXT if not CONTROL.search(t) and t.strip()]
    rows = [r[0] for r in db.session.execute(sa.text(stored))]
    missing = [t for t in texts if t not in rows]
    assert missing == [], ("not stored as sent", missing, [r for r in rows if r not in texts])


def test_stripe_webhook_answers_a_body_over_the_limit_as_documented(app):
    """Stripe's webhook endpoint (no Bearer, no JSON schema: the signed raw body) refuses a
    body over the limit with 413 before reading it: a status its document must list."""
    body = b'{"id": "evt_' + b"x" * MAX_REQUEST_BYTES + b'"}'
    response = app.test_client().post("/api/payments/webhook", data=body, headers={
        "Content-Type": "application/json", "Stripe-Signature": "t=1,v1=bad"})
    assert response.status_code == 413
    schema["/api/payments/webhook"]["POST"].Case().validate_response(response, checks=CHECKS)


@pytest.fixture(scope="module", autouse=True)
def _report():
    SEEN.clear()
    yield
    count("hostile API requests (schemathesis and raw)", SEEN["hostile"])
    count("API responses checked against the document", SEEN["requests"])
