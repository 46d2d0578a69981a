"""The access matrix of the attack suite (issue 15).

Every route of the URL map (but ``static``), every method of it, every role (anonymous,
customer A, customer B, vendor 1, vendor 2, admin, service): the route is asked for ANOTHER
party's objects (customer A for B's order, payment, saved card, refund request; vendor 1 for
vendor 2's payout and customer B's payment; admins and service users for ids that do not
exist). The answer must be a refusal (404/403; 401 or the login page for anonymous; 400/405
where the input is refused before any lookup), never a 5xx, with none of the other parties'
data in it, and the database unchanged. The list is generated from ``app.url_map``: a new
route is tried without editing this file, and a new URL parameter name fails the test until it
is added to PARAMETER_KINDS.

Parameterless pages (lists, dashboards, history, the CSV statement, the API's lists) are asked
by every role too: a customer's list shows nothing of the other customer's, a vendor's nothing
of the other vendor's. And, with CSRF protection on (as in production), every state-changing
page route refuses a POST without a CSRF token from a signed-in user.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import quote, unquote, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.api.openapi import OPERATIONS
from portal.auth.services import issue_token
from portal.cards import services as cards
from portal.config import Config
from portal.documents.invoices import invoice_of
from portal.extensions import csrf, db, limiter
from portal.models_base import utcnow
from portal.orders.services import ItemIn, OrderIn, create_order
from portal.outbox.models import OutboxMessage
from portal.payments.services import confirm_with_card, start_checkout
from portal.payouts import services as payouts
from portal.refunds import services as refunds
from portal.webhooks.models import StripeEvent
from tests.conftest import PG_URL, portal_env
from tests.helpers import PASSWORD, committed, csrf_token, make_user, truncate_all
from tests.integration.api_support import card_pm
from tests.security.report import count

ROLES = ("anonymous", "customer_a", "customer_b", "vendor_1", "vendor_2", "admin", "service")
SIGNED_IN = ROLES[1:]

# Every URL parameter name of the URL map (and the body/query fields below) -> the kind of
# object it names. A route with a name not listed here fails test_route_refuses_... .
PARAMETER_KINDS = {
    "order_id": "order", "orderId": "order",
    "payment_id": "payment", "paymentId": "payment",
    "payment_method_id": "card", "paymentMethodId": "card",
    "payout_id": "payout",
    "run_id": "payout_run",
    "request_id": "refund_request",
    "event_id": "event",
    "message_id": "outbox_message",
    "number": "document",  # an invoice's or credit note's number, e.g. CN-2026-000001
}

# Routes that take object ids in the body or the query: the request naming the foreign objects
# (kinds as above, plus the intent and the SetupIntent).
BODY_IDS = {
    "api.confirm": lambda o: {"json": {"paymentIntentId": o["intent"],
                                       "paymentMethodId": o["card"]}},
    "api.refund": lambda o: {"json": {"paymentId": o["payment"], "amount": 100,
                                      "reason": "requested_by_customer"}},
    "api.create_intent": lambda o: {"json": {"orderId": o["order"], "amount": o["total"],
                                             "currency": "USD"}},
    "api.add_method": lambda o: {"json": {"paymentMethodId": o["card"], "setAsDefault": True}},
    "cards.add": lambda o: {"form": {"setup_intent": o["setup_intent"]}},
    "cards.added": lambda o: {"query": {"setup_intent": o["setup_intent"]}},
    "admin.refunds_bulk": lambda o: {"form": {"action": "approve", "ids": o["refund_request"],
                                        "note": "ok"}},
}


def filled_form(o: dict) -> dict:
    """A plausible form for any page POST, naming the foreign objects: what a request that
    passed the ownership check would need to act (pay with their card, ask for a refund,
    approve their request...)."""
    return {"amount": "1.00", "reason": "customer_request", "notes": "matrix", "note": "matrix",
            "payment_method": o["card"], "save": "true", "setup_intent": o["setup_intent"],
            "action": "approve", "ids": o["refund_request"]}


# Refusals that are not a 4xx by design, with the statuses and the text that says "refused"
# (in the answer, or flashed on the page it redirects to, which must not show foreign data
# either): Stripe's return URL after saving a card flashes its error on the cards page; the
# cards page answers htmx with 200 and the error in the list (htmx swaps only a 2xx); the
# queue's bulk form reports each row's outcome ("0 of 1 approved.").
NOT_YOUR_CARD = "That card is not among your saved cards."
DESIGNED_REFUSALS = {
    "cards.added": ((302,), "Setup not found."),
    "cards.add": ((200,), "Setup not found."),
    "cards.make_default": ((200,), NOT_YOUR_CARD),
    "cards.remove": ((200,), NOT_YOUR_CARD),
    "admin.refunds_bulk": ((200, 302), "0 of "),
}

# Open to anonymous visitors.
PUBLIC = {"auth.login", "healthz", "api.openapi_json", "api.docs", "api.auth_token",
          "api.stripe_webhook"}

# Page areas and the roles they are for (first match); others get 403 (or 404).
WEB_GATES = (("/admin/", ("admin",)), ("/vendor/payouts/", ("vendor", "admin")),
             ("/vendor", ("vendor",)), ("/cards", ("customer",)))

ROLE_OF = {"customer_a": "customer", "customer_b": "customer", "vendor_1": "vendor",
           "vendor_2": "vendor", "admin": "admin", "service": "service"}

# Whose objects each role asks for (admins and service users: ids that do not exist).
TARGET = {"anonymous": ("A", "V1"), "customer_a": ("B", "V2"), "customer_b": ("A", "V1"),
          "vendor_1": ("B", "V2"), "vendor_2": ("A", "V1")}

# The marker groups each role must never see.
ALL_GROUPS = ("A", "A_card", "B", "B_card", "V1", "V1_payout", "V2", "V2_payout", "admin_only")
FOREIGN = {
    "anonymous": ALL_GROUPS,
    "customer_a": ("B", "B_card", "V2", "V1_payout", "V2_payout", "admin_only"),
    "customer_b": ("A", "A_card", "V1", "V1_payout", "V2_payout", "admin_only"),
    # A vendor sees the customers of its own sales, never their cards.
    "vendor_1": ("B", "B_card", "A_card", "V2", "V2_payout", "admin_only"),
    "vendor_2": ("A", "A_card", "B_card", "V1", "V1_payout", "admin_only"),
    "admin": (),
    # The order service registers and reads orders; cards, payouts and the event log are not
    # its business.
    "service": ("A_card", "B_card", "V1_payout", "V2_payout", "admin_only"),
}

VISA, MASTERCARD = "4242424242424242", "5555555555554444"
AVAILABLE_AT_ONCE = "4000000000000077"  # its funds are available: the sales can be paid out


# --- The URL map, read when the tests are collected ---------------------------------------------

def _url_map_routes() -> list[tuple[str, str, str]]:
    app = create_app(Config.from_env(portal_env(PG_URL, "http://127.0.0.1:9")))
    return sorted((rule.rule, method, rule.endpoint) for rule in app.url_map.iter_rules()
                  if rule.endpoint != "static"
                  for method in rule.methods - {"HEAD", "OPTIONS"})


ROUTES = _url_map_routes()


def _rule(app, path: str, endpoint: str):
    [rule] = [r for r in app.url_map.iter_rules() if (r.rule, r.endpoint) == (path, endpoint)]
    return rule


def _api_roles() -> dict[tuple[str, str], tuple[str, ...]]:
    """(method, rule) -> the roles an API operation is limited to (empty: any signed-in)."""
    return {(op.method, op.path.replace("{", "<").replace("}", ">")): op.roles
            for op in OPERATIONS if op.auth}


# --- The world: two customers, two vendors, an admin, a service user --------------------------

@dataclass
class World:
    users: dict[str, str] = field(default_factory=dict)  # role -> e-mail
    tokens: dict[str, str] = field(default_factory=dict)  # role -> Bearer token
    sessions: dict[str, str] = field(default_factory=dict)  # role -> session cookie
    objects: dict[str, dict] = field(default_factory=dict)  # party -> kind -> [ids]
    markers: dict[str, list[str]] = field(default_factory=dict)  # group -> strings

    def targets(self, role: str) -> list[dict]:
        """The object ids ``role`` asks for, one dict per variant; each kind is a list."""
        if role in ("admin", "service"):
            missing = str(uuid.uuid4())
            return [
                {k: [missing] for k in ("order", "payment", "payout", "payout_run",
                                         "refund_request", "outbox_message", "document")}
                | {"card": ["pm_nonexistent0000"], "intent": ["pi_nonexistent0000"],
                   "setup_intent": ["seti_nonexistent0000"], "event": ["evt_nonexistent0000"],
                   "total": [7731.0]},
                {k: ["1' OR '1'='1"] for k in ("order", "payment", "payout", "payout_run",
                                                "refund_request", "outbox_message", "card",
                                                "intent", "setup_intent", "event",
                                                "document")}
                | {"total": [1]},
            ]
        customer, vendor = TARGET[role]
        return [self.objects[customer] | self.objects[vendor] | self.objects["shared"]]

    def foreign(self, role: str) -> list[str]:
        return [m.lower() for group in FOREIGN[role] for m in self.markers[group]]


def _order(customer, vendor, description: str, amount: int):
    order = create_order(OrderIn(
        customerEmail=customer.email, currency="USD",
        items=[ItemIn(vendorEmail=vendor.email, description=description, quantity=1,
                      unitAmount=amount)]))
    db.session.commit()
    return order


def _customer_objects(stripe_client, customer, vendor, word: str, amount: int,
                      refund_amount: int, card_number: str) -> tuple[dict, dict]:
    """A paid order (with its saved card and a refund request) and an unpaid order with its
    PaymentIntent; the ids by kind, and the marker strings."""
    paid_order = _order(customer, vendor, f"{word} lamp", amount)
    payment = start_checkout(paid_order, source="api").payment
    payment, _ = confirm_with_card(customer, payment,
                                   card_pm(stripe_client, AVAILABLE_AT_ONCE))
    assert payment.status == "succeeded"
    unpaid_order = _order(customer, vendor, f"{word} mug", amount + 100)
    unpaid = start_checkout(unpaid_order, source="api").payment
    card = cards.save_card(customer, card_pm(stripe_client, card_number)).stripe_payment_method_id
    setup = stripe_client.v1.setup_intents.create(params={
        "customer": cards.customer_of(customer.id).stripe_customer_id,
        "payment_method": card_pm(stripe_client), "confirm": True,
        "allowed_payment_method_types": ["card"]})
    assert setup.status == "succeeded"
    note = f"{word} wants a refund"
    with committed():
        request = refunds.request_refund(customer, payment, amount=refund_amount,
                                         reason="customer_request", notes=note)
    objects = {"order": [str(paid_order.id), str(unpaid_order.id)],
               "total": [amount / 100, (amount + 100) / 100],
               "payment": [str(payment.id), str(unpaid.id)],
               "intent": [payment.stripe_payment_intent_id, unpaid.stripe_payment_intent_id],
               "card": [card], "setup_intent": [setup.id], "refund_request": [str(request.id)],
               "document": [invoice_of(payment).number]}
    markers = [word, customer.email, str(paid_order.id), str(unpaid_order.id), str(payment.id),
               str(unpaid.id), payment.stripe_payment_intent_id,
               unpaid.stripe_payment_intent_id, str(request.id), note,
               f"{amount // 100:,}.{amount % 100:02d}",
               f"{refund_amount // 100:,}.{refund_amount % 100:02d}"]
    return objects, {"ids": markers, "card": [card, setup.id]}


def _build_world(app, stripe_client) -> World:
    w = World()
    people = {
        "customer_a": make_user("cust-a-quokka@example.test"),
        "customer_b": make_user("cust-b-narwhal@example.test"),
        "vendor_1": make_user("vend-1-pangolin@example.test", "vendor"),
        "vendor_2": make_user("vend-2-axolotl@example.test", "vendor"),
        "admin": make_user("admin-matrix@example.test", "admin"),
        "service": make_user("service-matrix@example.test", "service"),
    }
    w.users = {role: u.email for role, u in people.items()}
    w.tokens = {role: issue_token(u)[0] for role, u in people.items()}

    a, a_markers = _customer_objects(stripe_client, people["customer_a"], people["vendor_1"],
                                     "Quokka", 773100, 51729, VISA)
    b, b_markers = _customer_objects(stripe_client, people["customer_b"], people["vendor_2"],
                                     "Narwhal", 864200, 43861, MASTERCARD)
    run = payouts.run_payouts(until=utcnow() + timedelta(seconds=5))
    by_vendor = {p.vendor_id: str(p.id) for p in run.payouts}
    v1, v2 = by_vendor[people["vendor_1"].id], by_vendor[people["vendor_2"].id]

    event = StripeEvent(id="evt_okapi_matrix_0001", type="payment_intent.succeeded",
                        object_id=a["intent"][0], api_version="2026-10-28.endive",
                        payload={"id": "evt_okapi_matrix_0001", "secret": "okapi-event-9137"},
                        status="processed")
    message = OutboxMessage(kind="receipt_email", dedupe_key="matrix:okapi",
                            payment_id=uuid.UUID(a["payment"][0]), status="given_up",
                            payload={"to": people["customer_a"].email,
                                     "subject": "okapi-outbox-2468"})
    db.session.add_all([event, message])
    db.session.commit()

    w.objects = {"A": a, "B": b, "V1": {"payout": [v1]}, "V2": {"payout": [v2]},
                 "shared": {"payout_run": [str(run.id)], "event": [event.id],
                            "outbox_message": [str(message.id)]}}
    w.markers = {
        "A": a_markers["ids"], "A_card": a_markers["card"],
        "B": b_markers["ids"], "B_card": b_markers["card"],
        "V1": ["pangolin", people["vendor_1"].email], "V1_payout": [v1],
        "V2": ["axolotl", people["vendor_2"].email], "V2_payout": [v2],
        "admin_only": [event.id, "okapi", str(message.id)],
    }

    cookie = app.config["SESSION_COOKIE_NAME"]
    for role, email in w.users.items():
        client = app.test_client()
        r = client.post("/login", data={"email": email, "password": PASSWORD})
        assert r.status_code == 302, (role, r.status_code)
        w.sessions[role] = client.get_cookie(cookie).value
    return w


@pytest.fixture(scope="module")
def world(app, test_app, stripe_client):
    """The parties and their objects, committed once for the module (each test's own
    transaction is rolled back as usual); every table is emptied after the module."""
    with test_app.app_context():
        limiter.reset()
        try:
            built = _build_world(app, stripe_client)
        except BaseException:
            db.session.rollback()
            truncate_all()
            raise
    yield built
    with test_app.app_context():
        truncate_all()


# --- Requests and what is acceptable ------------------------------------------------------------

@dataclass
class Attempt:
    role: str
    method: str
    url: str
    foreign: bool  # names another party's object (or, for admins, one that does not exist)
    form: dict | None = None
    json: dict | None = None
    htmx: bool = False
    cookie: bool = False  # an API request with the role's web session instead of its token

    @property
    def api(self) -> bool:
        return self.url.startswith("/api/")

    def describe(self) -> str:
        body = self.json if self.json is not None else self.form
        return (f"{self.role}: {self.method} {self.url}"
                + (f" body={body}" if body else "") + (" (htmx)" if self.htmx else "")
                + (" (session cookie, no token)" if self.cookie else ""))

    def sent(self) -> str:
        """What the request itself says (an echo of it is not a leak)."""
        return unquote(self.url + json.dumps(self.json) + urlencode(self.form or {},
                                                                    doseq=True)).lower()


def _client(app, world: World, role: str):
    client = app.test_client()
    if role != "anonymous":
        client.set_cookie(app.config["SESSION_COOKIE_NAME"], world.sessions[role])
    return client


def _client_for(app, world: World, a: Attempt):
    """The role's web session for pages (and for the cookie variant of API requests)."""
    return _client(app, world, "anonymous" if a.api and not a.cookie else a.role)


def send(app, world: World, a: Attempt, client=None):
    client = client or _client_for(app, world, a)
    headers = {"HX-Request": "true"} if a.htmx else {}
    if a.api:
        if a.role != "anonymous" and not a.cookie:
            headers["Authorization"] = f"Bearer {world.tokens[a.role]}"
        kwargs = {}
        if a.method != "GET" and a.json is not None:
            kwargs = {"data": json.dumps(a.json), "content_type": "application/json"}
        return client.open(a.url, method=a.method, headers=headers, **kwargs)
    kwargs = {"data": a.form or {}} if a.method != "GET" else {}
    return client.open(a.url, method=a.method, headers=headers, **kwargs)


def _fill(path: str, values: dict[str, str]) -> str:
    """The rule with its parameters (``<name>``, ``<converter:name>``) replaced by values."""
    for name, value in values.items():
        path = re.sub(rf"<(?:[^<>:]+:)?{name}>", quote(value, safe=""), path)
    return path


def attempts_for(rule, method: str, role: str, world: World) -> list[Attempt]:
    """The requests ``role`` makes of the route: with the other party's ids in the path (each
    variant), in the body or query where the route takes them there, and (parameterless
    routes) with an empty body."""
    names = sorted(rule.arguments)
    unknown = [n for n in names if n not in PARAMETER_KINDS]
    if unknown:
        pytest.fail(f"{rule.rule}: URL parameter(s) {unknown} are not in PARAMETER_KINDS of "
                    f"{__name__}: add each with the kind of object it names, so the access "
                    "matrix can ask this route for another user's object", pytrace=False)
    api = rule.rule.startswith("/api/")
    body_method = method != "GET"
    found: list[Attempt] = []
    for objects in world.targets(role):
        first = {kind: ids[0] for kind, ids in objects.items()}
        if names:
            kinds = [PARAMETER_KINDS[n] for n in names]
            combos = [{}]
            for name, kind in zip(names, kinds, strict=True):
                combos = [c | {name: v} for c in combos for v in objects[kind]]
            for values in combos:
                url = _fill(rule.rule, values)
                named = first | {PARAMETER_KINDS[n]: v for n, v in values.items()}
                if api:
                    found.append(Attempt(role, method, url, True,
                                         json={} if body_method else None))
                    continue
                for htmx in (False, True):
                    found.append(Attempt(role, method, url, True, form={} if body_method
                                         else None, htmx=htmx))
                    if body_method:
                        found.append(Attempt(role, method, url, True, form=filled_form(named),
                                             htmx=htmx))
        if rule.endpoint in BODY_IDS:
            for i in range(max(len(v) for v in objects.values())):
                named = {kind: ids[min(i, len(ids) - 1)] for kind, ids in objects.items()}
                spec = BODY_IDS[rule.endpoint](named)
                url = rule.rule + ("?" + urlencode(spec["query"]) if "query" in spec else "")
                variants = (False,) if api else (False, True)
                for htmx in variants:
                    found.append(Attempt(role, method, url, True, form=spec.get("form"),
                                         json=spec.get("json"), htmx=htmx))
    if not names:
        found.append(Attempt(role, method, rule.rule, False,
                             json={} if api and body_method else None,
                             form={} if not api and body_method else None))
    if api and role != "anonymous" and rule.endpoint not in PUBLIC:
        # The API authenticates its Bearer token only, never the browser's session cookie.
        found += [Attempt(a.role, a.method, a.url, a.foreign, json=a.json, cookie=True)
                  for a in list(found)]
    # One request per distinct (url, body, htmx): a role's variants may coincide.
    unique = {a.describe(): a for a in found}
    return list(unique.values())


def _gate(rule, method: str, role: str) -> tuple[str, ...] | None:
    """The roles the route is limited to, or None when any signed-in role may use it."""
    if rule.rule.startswith("/api/"):
        return _api_roles().get((method, rule.rule)) or None
    for prefix, roles in WEB_GATES:
        if rule.rule.startswith(prefix):
            return roles
    return None


def judge(app, world: World, rule, a: Attempt, response, client) -> list[str]:
    """What is wrong with ``response`` to ``a`` (nothing: [])."""
    problems = []
    status = response.status_code
    where = f"{a.describe()} -> {status}"
    if status >= 500:
        problems.append(f"{where}: a server error")
    texts = [response.get_data(as_text=True)] + [
        f"{k}: {v}" for k, v in response.headers.items()]
    if (a.role == "anonymous" or a.cookie) and rule.endpoint not in PUBLIC:
        if a.api and status != 401:
            problems.append(f"{where}: an API request without a valid token must get 401")
        elif not a.api and (status != 302 or urlsplit(
                response.headers.get("Location", "")).path != "/login"):
            problems.append(f"{where}: an anonymous page request must be sent to /login")
    elif a.role != "anonymous":
        allowed = _gate(rule, a.method, ROLE_OF[a.role])
        refused = status in (400, 403, 404, 405)
        if allowed is not None and ROLE_OF[a.role] not in allowed and status not in (403, 404):
            problems.append(f"{where}: the route is for {'/'.join(allowed)} only: 403 or 404")
        elif a.foreign and not refused:
            statuses, says = DESIGNED_REFUSALS.get(rule.endpoint, ((), ""))
            if status in statuses and (status != 200 or a.htmx):
                page = response
                if status == 302:
                    page = client.get(response.headers["Location"])
                    texts.append(page.get_data(as_text=True))
                if page.status_code != 200 or says not in page.get_data(as_text=True):
                    problems.append(f"{where}: the refusal ({says!r}) is not shown")
            else:
                problems.append(f"{where}: another user's object (or a missing one) must be "
                                "refused with 404/403 (or 400/405)")
    sent = a.sent()
    seen = "\n".join(texts).lower()
    foreign = world.foreign(a.role)
    leaked = sorted({m for m in foreign if m in seen and m not in sent})
    if foreign:
        count("bodies checked for foreign data")
    if leaked:
        problems.append(f"{where}: foreign data in the answer: {leaked}")
    return problems


def digest() -> dict[str, str]:
    """A fingerprint of every table's rows (as this test's transaction sees them)."""
    parts = [f"SELECT '{t.name}' AS name, md5(coalesce(string_agg(md5(x::text), ',' "
             f"ORDER BY md5(x::text)), '')) AS rows FROM \"{t.name}\" x"
             for t in db.metadata.sorted_tables]
    return dict(db.session.execute(sa.text(" UNION ALL ".join(parts))).all())


# --- The matrix ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "method", "endpoint"), ROUTES,
                         ids=[f"{m} {p}" for p, m, _ in ROUTES])
def test_route_refuses_other_users_objects_to_every_role(path, method, endpoint, app, world,
                                                         no_rate_limits):
    rule = _rule(app, path, endpoint)
    problems: list[str] = []
    attempts = [a for role in ROLES for a in attempts_for(rule, method, role, world)]
    count("routes x roles tried", len(ROLES))
    before = digest()
    # Requests naming another party's objects first, each checked to change nothing; then
    # the route's own parameterless requests (which may legitimately act, e.g. log out).
    for a in sorted(attempts, key=lambda a: not a.foreign):
        client = _client_for(app, world, a)
        response = send(app, world, a, client)
        count("requests sent")
        problems += judge(app, world, rule, a, response, client)
        if a.foreign:
            count("foreign-object requests")
            after = digest()
            changed = sorted(name for name in after if after[name] != before[name])
            if changed:
                problems.append(f"{a.describe()} -> {response.status_code}: it changed the "
                                f"database (tables {changed})")
            before = after
    assert not problems, "\n".join(problems)


def test_every_route_of_the_url_map_is_in_the_matrix(app):
    """The parametrization above was read from the same URL map the fixture app has."""
    live = sorted((r.rule, m, r.endpoint) for r in app.url_map.iter_rules()
                  if r.endpoint != "static" for m in r.methods - {"HEAD", "OPTIONS"})
    assert live == ROUTES
    assert len({p for p, _, _ in ROUTES}) > 40


def test_owners_see_their_own_objects(app, world, no_rate_limits):
    """The control: the same requests with one's own ids succeed and show the markers, so the
    refusals above are about ownership (not a broken session, token or world)."""
    a, b, v1 = world.objects["A"], world.objects["B"], world.objects["V1"]
    own = [
        ("customer_a", f"/payments/{a['payment'][0]}", "7,731.00"),
        ("customer_a", f"/api/payments/payments/{a['payment'][0]}", a["payment"][0]),
        ("customer_a", f"/api/orders/{a['order'][0]}", "quokka"),
        ("customer_a", "/cards", "4242"),
        ("customer_a", "/api/payments/methods", a["card"][0]),
        ("customer_b", "/api/payments/history", b["payment"][0]),
        ("vendor_1", f"/vendor/payouts/{v1['payout'][0]}", "6,957.90"),
        ("vendor_1", "/api/payments/vendor/payouts", v1["payout"][0]),
        ("vendor_1", "/vendor/sales", "7,731.00"),
        ("vendor_1", "/vendor/statement.csv", a["payment"][0]),
        ("admin", f"/admin/events/{world.objects['shared']['event'][0]}", "okapi-event-9137"),
        ("admin", "/admin/refunds", "narwhal wants a refund"),
        ("admin", f"/api/payments/payments/{b['payment'][0]}", b["payment"][0]),
        ("service", f"/api/orders/{b['order'][0]}", "narwhal"),
    ]
    for role, url, marker in own:
        r = send(app, world, Attempt(role, "GET", url, False))
        assert r.status_code == 200 and marker.lower() in r.get_data(as_text=True).lower(), (
            role, url, r.status_code)


# --- CSRF ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def csrf_app(pg_url, sandbox):
    """The app as production configures it: CSRF protection on."""
    return create_app(Config.from_env(portal_env(pg_url, sandbox.url)))


STATE_CHANGING = [(p, m, e) for p, m, e in ROUTES
                  if m in ("POST", "PUT", "PATCH", "DELETE") and not p.startswith("/api/")]


@pytest.mark.parametrize(("path", "method", "endpoint"), STATE_CHANGING,
                         ids=[f"{m} {p}" for p, m, _ in STATE_CHANGING])
def test_page_route_refuses_a_post_without_csrf_token(path, method, endpoint, csrf_app, world,
                                                      no_rate_limits, monkeypatch):
    rule = _rule(csrf_app, path, endpoint)
    problems = []
    before = digest()
    refusals: list[str] = []
    refuse = csrf._error_response

    def spy(reason: str):
        """Flask-WTF's refusal, noted: the 400 must be the CSRF check's, not another one."""
        refusals.append(reason)
        refuse(reason)

    monkeypatch.setattr(csrf, "_error_response", spy)
    for role in SIGNED_IN:
        refusals.clear()
        # The role's own ids where it has them, else the first target: the CSRF check must
        # come first whatever the ids.
        objects = world.targets(role)[0]
        url = _fill(rule.rule, {n: objects[PARAMETER_KINDS[n]][0] for n in rule.arguments
                                if n in PARAMETER_KINDS})
        client = _client(csrf_app, world, role)
        r = client.open(url, method=method, data=filled_form(
            {k: v[0] for k, v in objects.items()}))
        count("CSRF-less posts refused")
        if r.status_code != 400 or refusals != ["The CSRF token is missing."]:
            problems.append(f"{role}: {method} {url} without a CSRF token -> {r.status_code} "
                            f"(CSRF check: {refusals or 'passed or not run'})")
    assert digest() == before
    assert not problems, "\n".join(problems)


def test_the_csrf_app_accepts_a_post_with_its_token(csrf_app, world, no_rate_limits):
    """The control: the refusals above are about the missing token."""
    client = _client(csrf_app, world, "customer_a")
    token = csrf_token(client.get("/cards").get_data(as_text=True))
    assert client.post("/logout", data={}).status_code == 400
    r = client.post("/logout", data={"csrf_token": token})
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/login"

