"""Events and webhook deliveries, as Stripe does them, plus test hooks to hold, reorder,
duplicate, drop and resend deliveries.

- `emit(type, obj)` makes an event of an object (frozen: the bytes delivered are the bytes
  listed, for every attempt), with `data.previous_attributes` for updates, `account` for
  Connect events, `request` (the API request that caused it: id and Idempotency-Key) and
  `pending_webhooks`; each event is checked against the contract like any answer.
- Webhook endpoints (`POST /_config/webhooks/{id}`: url, secret, events[], connect; or
  `--webhook-url`, `--webhook-secret` and `--connect-webhook-secret` on the command line) are
  either the account's own or Connect endpoints, as at Stripe: events about a connected
  account (`account` set, e.g. account.updated) go only to Connect endpoints, every other
  event only to the others. Each endpoint signs with its own secret.
- `GET /v1/events` and `GET /v1/events/{id}` answer from the record: newest first, the last
  30 days only (RETENTION), Connect events only with that account's `Stripe-Account` header.
- Each event goes to the endpoints registered and subscribed when it is created,
  WEBHOOK_DELAY seconds later (1 s); each attempt is signed when it is sent
  (`Stripe-Signature: t=<now>,v1=...`), redirects are not followed (a 3xx is a failure, as
  at Stripe), an attempt gives up after WEBHOOK_TIMEOUT seconds; a failed attempt (not 2xx,
  or no answer) is retried WEBHOOK_RETRIES times (3) after WEBHOOK_RETRY_DELAY seconds (1),
  doubling each time: Stripe's retries, over seconds instead of three days. Every attempt is
  recorded per (event, endpoint) for the test hooks (the HTTP surface: app's docstring).
"""

import asyncio
import copy
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import time
from dataclasses import dataclass, field

import aiohttp

from . import core
from .core import invalid_request, invalid_value, no_such, random_id

RETENTION = 30 * 24 * 3600  # seconds: Stripe lists and retrieves 30 days of events
WEBHOOK_DELAY = 1.0  # seconds between an event and its first delivery attempt
WEBHOOK_RETRIES = 3  # retries of a failed delivery
WEBHOOK_RETRY_DELAY = 1.0  # seconds before the first retry, doubling
WEBHOOK_TIMEOUT = 10.0  # seconds an attempt waits for an answer
MAX_TYPES = 20  # Stripe's limit on types[]

ORDERS = ("sent", "reverse", "shuffle")
# Delivery statuses, per (event, endpoint).
PENDING = "pending"  # waiting for its first attempt (WEBHOOK_DELAY), or being released
QUEUED = "queued"  # held: sent on release
RETRYING = "retrying"  # the last attempt failed; another is scheduled
DELIVERED = "delivered"  # an attempt was answered 2xx
FAILED = "failed"  # every automatic attempt failed: Stripe gave up
DROPPED = "dropped"  # the drop hook: never sent automatically

logger = logging.getLogger("stripe_sandbox.webhooks")


@dataclass
class Attempt:
    at: float
    kind: str  # automatic, retry, release, duplicate, redeliver
    status_code: int = None
    error: str = None

    @property
    def succeeded(self):
        return self.status_code is not None and 200 <= self.status_code < 300

    def export(self):
        return {
            "at": self.at,
            "kind": self.kind,
            "status_code": self.status_code,
            "error": self.error,
        }


@dataclass
class Delivery:
    """An event's deliveries to one endpoint."""

    sent: "Sent"
    endpoint: str
    status: str = PENDING
    dropped: bool = False
    attempts: list = field(default_factory=list)
    next_retry_at: float = None

    def export(self):
        last = self.attempts[-1] if self.attempts else None
        return {
            "event": self.sent.id,
            "type": self.sent.type,
            "created": self.sent.created,
            "endpoint": self.endpoint,
            "status": self.status,
            "attempts": len(self.attempts),
            "last_status_code": last and last.status_code,
            "last_error": last and last.error,
            "delivered": self.status == DELIVERED,
            "queued": self.status == QUEUED,
            "dropped": self.dropped,
            "next_retry_at": self.next_retry_at,
            "history": [attempt.export() for attempt in self.attempts],
        }


@dataclass
class Sent:
    """An event the sandbox sent, and its payload as delivered and listed."""

    index: int  # creation order
    id: str
    type: str
    created: int
    account: str  # Connect events: the connected account
    body: bytes
    deliveries: dict = field(default_factory=dict)  # endpoint id -> Delivery

    def payload(self):
        return json.loads(self.body)

    @property
    def delivery_success(self):
        # Stripe: false while any endpoint's delivery is pending or failed.
        return all(d.status == DELIVERED for d in self.deliveries.values())


class State:
    """What the sandbox sent, and the test hooks' settings."""

    def __init__(self):
        self.sent = {}  # event id -> Sent, in creation order
        self.queues = {}  # endpoint id -> [Delivery], held
        self.held = set()  # endpoints held by name
        self.hold_all = False  # every endpoint held (but those in `released`)
        self.released = set()  # released by name while hold_all
        self.drop_next = {}  # endpoint id -> how many of its next events to drop
        self.drop_all_next = 0  # how many of the next events to drop everywhere
        self.tasks = set()  # running deliveries (kept: asyncio holds weak references)

    def is_held(self, endpoint):
        return endpoint in self.held or (self.hold_all and endpoint not in self.released)

    def hold(self, endpoint=None):
        if endpoint is None:
            self.hold_all = True
            self.released.clear()
        else:
            self.held.add(endpoint)
            self.released.discard(endpoint)

    def release(self, endpoint=None):
        """Stop holding and hand over the queue (of `endpoint`, or all)."""
        if endpoint is None:
            self.hold_all = False
            self.held.clear()
            self.released.clear()
            queues, self.queues = self.queues, {}
            return [d for queue in queues.values() for d in queue]
        self.held.discard(endpoint)
        if self.hold_all:
            self.released.add(endpoint)
        return self.queues.pop(endpoint, [])

    def enqueue(self, delivery):
        delivery.status = QUEUED
        delivery.next_retry_at = None
        queue = self.queues.setdefault(delivery.endpoint, [])
        if delivery not in queue:
            queue.append(delivery)

    def unqueue(self, delivery):
        queue = self.queues.get(delivery.endpoint, [])
        if delivery in queue:
            queue.remove(delivery)

    def take_drop(self, endpoint):
        left = self.drop_next.get(endpoint, 0)
        if left:
            self.drop_next[endpoint] = left - 1
        return bool(left)

    def spawn(self, coroutine):
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


state = State()


# --- Endpoints, recording and automatic delivery ------------------------------------------------


@dataclass
class Endpoint:
    url: str
    secret: str
    events: list | None  # None or "*": every type
    connect: bool = False  # a Connect endpoint: events of connected accounts only


endpoints = {}  # id -> Endpoint (the command line's: "cli", "cli-connect")


def register(id, url, secret, events=None, connect=False):
    endpoints[id] = Endpoint(url, secret, events, connect)


def subscribed(hook, type, account):
    return (hook.connect == (account is not None)) and (
        hook.events is None or "*" in hook.events or type in hook.events
    )


def emit(type, obj, previous_attributes=None, account=None):
    """Make, record and schedule the event `type` about `obj` (a Resource, exported as it is
    now), with what an update changed; `account`: a Connect event about that account."""
    request = core.current()
    event = {
        "id": "evt_" + random_id(24),
        "object": "event",
        "api_version": core.API_VERSION,
        "created": core.now(),
        "data": {"object": obj.export()},
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": request.request_id, "idempotency_key": request.idempotency_key},
        "type": type,
    }
    if previous_attributes:
        event["data"]["previous_attributes"] = copy.deepcopy(previous_attributes)
    if account is not None:
        event["account"] = account
    hooks = [e for e, hook in endpoints.items() if subscribed(hook, type, account)]
    event["pending_webhooks"] = len(hooks)
    core.check_answer(event, f"event {type}")
    return record(event, hooks)


def record(event, hooks):
    body = json.dumps(event, indent=2, sort_keys=True).encode("utf-8")
    sent = Sent(len(state.sent), event["id"], event["type"], event["created"],
                event.get("account"), body)
    state.sent[sent.id] = sent
    drop_everywhere = state.drop_all_next > 0
    if drop_everywhere:
        state.drop_all_next -= 1
    for endpoint in hooks:
        delivery = sent.deliveries[endpoint] = Delivery(sent, endpoint)
        if drop_everywhere or state.take_drop(endpoint):
            delivery.status, delivery.dropped = DROPPED, True
            logger.info('webhook "%s" %s to "%s" dropped (test hook)', sent.type, sent.id, endpoint)
        elif state.is_held(endpoint):
            state.enqueue(delivery)
        else:
            state.spawn(_deliver_later(delivery))
    return sent


async def _deliver_later(delivery):
    await asyncio.sleep(WEBHOOK_DELAY)
    await send_with_retries(delivery, "automatic")


async def send_with_retries(delivery, kind, failed_already=False):
    """Attempt, and retry with backoff while attempts fail. Stops once
    delivered (a resend may have succeeded meanwhile); held endpoints get
    the delivery queued instead."""
    retries, delay = WEBHOOK_RETRIES, WEBHOOK_RETRY_DELAY
    while True:
        if not failed_already:
            if delivery.status == DELIVERED:
                return
            if state.is_held(delivery.endpoint):
                state.enqueue(delivery)
                return
            if await attempt(delivery, kind):
                return
        failed_already = False
        if retries == 0:
            delivery.status, delivery.next_retry_at = FAILED, None
            return
        delivery.status, delivery.next_retry_at = RETRYING, time.time() + delay
        await asyncio.sleep(delay)
        delivery.next_retry_at = None
        retries, delay, kind = retries - 1, delay * 2, "retry"


def retry_later(delivery):
    """After a failed attempt outside send_with_retries (a release)."""
    if WEBHOOK_RETRIES == 0:
        delivery.status = FAILED
        return
    delivery.status, delivery.next_retry_at = RETRYING, time.time() + WEBHOOK_RETRY_DELAY
    state.spawn(send_with_retries(delivery, "retry", failed_already=True))


def signature_header(secret, body, timestamp):
    signed = b"%d.%s" % (timestamp, body)
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def attempt(delivery, kind):
    """One POST of the event to the endpoint, signed now; True if 2xx."""
    sent = delivery.sent
    hook = endpoints.get(delivery.endpoint)
    now = time.time()
    result = Attempt(now, kind)
    if hook is None:
        result.error = "the endpoint is no longer registered"
    else:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(hook.secret, sent.body, int(now)),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    hook.url, data=sent.body, headers=headers, allow_redirects=False
                ) as response,
            ):
                result.status_code = response.status
                await response.read()
        except TimeoutError:
            result.error = f"timed out after {WEBHOOK_TIMEOUT:g} s"
        except aiohttp.ClientError as error:
            result.error = f"{type(error).__name__}: {error}"
    delivery.attempts.append(result)
    if result.succeeded:
        delivery.status, delivery.next_retry_at = DELIVERED, None
        logger.info('webhook "%s" successfully delivered', sent.type)
    elif result.status_code is not None:
        logger.info('webhook "%s" failed with response code %d', sent.type, result.status_code)
    else:
        logger.info('webhook "%s" failed: %s', sent.type, result.error)
    return result.succeeded


# --- GET /v1/events ----------------------------------------------------------------------------


def type_filter(type, types):
    if type is not None and types is not None:
        raise invalid_request(
            "You may only specify one of these parameters: type, types.", param="types"
        )
    if type is not None:
        if not type:
            raise invalid_request("Invalid string", code="parameter_invalid_string", param="type")
        # `*` is Stripe's wildcard ("payment_intent.*", "*.updated").
        pattern = re.compile(".*".join(re.escape(part) for part in type.split("*")))
        return lambda name: pattern.fullmatch(name) is not None
    if types is not None:
        if len(types) > MAX_TYPES:
            raise invalid_request(
                f"Invalid array: types may contain at most {MAX_TYPES} items",
                code="parameter_invalid_array",
                param="types",
            )
        return set(types).__contains__
    return lambda name: True


def visible(events_state, account, now=None):
    """The events an API key (with `Stripe-Account`: that account's) can see: the last 30
    days, newest first."""
    cutoff = (time.time() if now is None else now) - RETENTION
    return [
        sent
        for sent in reversed(events_state.sent.values())
        if sent.created >= cutoff and sent.account == account
    ]


def list_events(
    events_state,
    account=None,
    now=None,
    limit=None,
    starting_after=None,
    ending_before=None,
    created=None,
    type=None,
    types=None,
    delivery_success=None,
):
    """GET /v1/events: newest first, Stripe's filters and cursors."""
    limit = 10 if limit is None else limit
    if not 1 <= limit <= 100:
        raise invalid_request(
            "Invalid integer: limit must be between 1 and 100",
            code="parameter_invalid_integer",
            param="limit",
        )
    if starting_after is not None and ending_before is not None:
        raise invalid_request(
            "You may only specify one of these parameters: ending_before, starting_after."
        )
    in_period = core.created_filter(created)
    of_type = type_filter(type, types)

    def keep(sent):
        return (
            in_period(sent.created)
            and of_type(sent.type)
            and delivery_success in (None, sent.delivery_success)
        )

    events = visible(events_state, account, now)
    cursor = starting_after if starting_after is not None else ending_before
    if cursor is not None:
        ids = [sent.id for sent in events]
        param = "starting_after" if starting_after is not None else "ending_before"
        if cursor not in ids:
            raise no_such("event", cursor, param)
        position = ids.index(cursor)
    if starting_after is not None:
        candidates = [sent for sent in events[position + 1 :] if keep(sent)]
        page, has_more = candidates[:limit], len(candidates) > limit
    elif ending_before is not None:
        candidates = [sent for sent in events[:position] if keep(sent)]
        page, has_more = candidates[-limit:], len(candidates) > limit
    else:
        candidates = [sent for sent in events if keep(sent)]
        page, has_more = candidates[:limit], len(candidates) > limit
    return {
        "object": "list",
        "data": [sent.payload() for sent in page],
        "has_more": has_more,
        "url": "/v1/events",
    }


def retrieve_event(events_state, id, account=None, now=None):
    """GET /v1/events/{id}: only the last 30 days, like Stripe."""
    for sent in visible(events_state, account, now):
        if sent.id == id:
            return sent.payload()
    raise no_such("event", id, status=404)


def connected_account():
    """The Stripe-Account of the request (checked: a live connected account), or None."""
    account = core.current().account
    if account is not None and not core.is_account(account):
        raise core.account_invalid(account)
    return account


def get_events(**params):
    return list_events(state, connected_account(), **params)


def get_event(id):
    return retrieve_event(state, id, connected_account())


# --- Test hooks: /_sandbox/deliveries... -----------------------------------------------------


def endpoint_param(endpoint):
    if endpoint is None:
        return None
    if not isinstance(endpoint, str) or endpoint not in endpoints:
        raise invalid_request(
            f"No such webhook endpoint: '{endpoint}'", code="resource_missing", param="endpoint"
        )
    return endpoint


def int_param(value, name, default, low, high):
    if value is None:
        return default
    converted = int(value) if isinstance(value, str) and re.fullmatch(r"-?\d+", value) else None
    if converted is None or not low <= converted <= high:
        raise invalid_request(
            f"Invalid integer: {name} must be between {low} and {high}",
            code="parameter_invalid_integer",
            param=name,
        )
    return converted


def bool_param(value, name):
    if value is None:
        return None
    if value not in ("true", "false"):
        raise invalid_request("Invalid boolean", code="parameter_invalid_boolean", param=name)
    return value == "true"


def hold_state():
    return {
        "hold_all": state.hold_all,
        "held": sorted(e for e in set(endpoints) | state.held if state.is_held(e)),
        "queued": {e: len(q) for e, q in sorted(state.queues.items()) if q},
        "drop_next": {
            **({"*": state.drop_all_next} if state.drop_all_next else {}),
            **{e: n for e, n in sorted(state.drop_next.items()) if n},
        },
    }


def get_deliveries(endpoint=None, event=None):
    """GET /_sandbox/deliveries[?endpoint=][&event=]."""
    if event is not None and event not in state.sent:
        raise no_such("event", event, "event")
    rows = [
        delivery.export()
        for sent in state.sent.values()
        if event in (None, sent.id)
        for delivery in sent.deliveries.values()
        if endpoint in (None, delivery.endpoint)
    ]
    hooks = {
        id: {"url": hook.url, "events": hook.events, "connect": hook.connect,
             "held": state.is_held(id)}
        for id, hook in sorted(endpoints.items())
    }
    return {"object": "list", "data": rows, "endpoints": hooks, **hold_state()}


def hold(endpoint=None):
    """POST /_sandbox/deliveries/hold [endpoint]."""
    state.hold(endpoint_param(endpoint))
    return hold_state()


def drop(endpoint=None, count=None):
    """POST /_sandbox/deliveries/drop [count=1] [endpoint]."""
    endpoint = endpoint_param(endpoint)
    count = int_param(count, "count", 1, 0, 1000)
    if endpoint is None:
        state.drop_all_next = count
    else:
        state.drop_next[endpoint] = count
    return hold_state()


async def send_all(sequence, concurrency=1, delay_ms=0, kinds=None):
    """Attempt each delivery of `sequence` once, in order, `concurrency` at once, `delay_ms`
    between starts; the attempts' results in order."""
    semaphore = asyncio.Semaphore(concurrency)
    results = [None] * len(sequence)

    async def send(i, delivery):
        try:
            results[i] = await attempt(delivery, kinds[i] if kinds else "redeliver")
        finally:
            semaphore.release()

    tasks = []
    for i, delivery in enumerate(sequence):
        await semaphore.acquire()
        if i and delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        tasks.append(asyncio.ensure_future(send(i, delivery)))
    await asyncio.gather(*tasks)
    return results


def sending_report(sequence, results, **more):
    return {
        "deliveries": len(sequence),
        "succeeded": sum(1 for ok in results if ok),
        "failed": sum(1 for ok in results if not ok),
        "sequence": [
            {
                "event": delivery.sent.id,
                "type": delivery.sent.type,
                "endpoint": delivery.endpoint,
                "status_code": delivery.attempts[-1].status_code if delivery.attempts else None,
            }
            for delivery in sequence
        ],
        **more,
    }


async def release(endpoint=None, order=None, seed=None, duplicates=None, concurrency=None,
                  delay_ms=None):
    """POST /_sandbox/deliveries/release [endpoint] [order=sent|reverse|shuffle] [seed]
    [duplicates=0] [concurrency=1] [delay_ms=0]."""
    endpoint = endpoint_param(endpoint)
    order = "sent" if order is None else order
    if order not in ORDERS:
        raise invalid_value("order", order, ORDERS)
    if seed is not None and order != "shuffle":
        raise invalid_request("seed goes with order=shuffle", param="seed")
    if seed is not None and (not isinstance(seed, str) or seed == ""):
        raise invalid_request("Invalid string", code="parameter_invalid_string", param="seed")
    duplicates = int_param(duplicates, "duplicates", 0, 0, 10)
    concurrency = int_param(concurrency, "concurrency", 1, 1, 100)
    delay_ms = int_param(delay_ms, "delay_ms", 0, 0, 60_000)

    released = sorted(state.release(endpoint), key=lambda d: (d.sent.index, d.endpoint))
    if order == "reverse":
        released.reverse()
    for delivery in released:
        delivery.status = PENDING
    sequence = released * (1 + duplicates)  # each round in order: duplicates interleaved
    more = {}
    if order == "shuffle":
        seed = str(secrets.randbelow(2**32)) if seed is None else str(seed)
        random.Random(seed).shuffle(sequence)  # nosec B311  # a test order, replayable by seed
        more["seed"] = seed
    seen, kinds = set(), []
    for delivery in sequence:
        kinds.append("duplicate" if id(delivery) in seen else "release")
        seen.add(id(delivery))
    results = await send_all(sequence, concurrency, delay_ms, kinds)
    for delivery in released:
        if delivery.status != DELIVERED:  # every copy failed: Stripe's retries
            retry_later(delivery)
    return sending_report(sequence, results, released=len(released), **more, **hold_state())


async def redeliver(endpoint=None, event=None, all_failed=None):
    """POST /_sandbox/deliveries/redeliver (event | all_failed=true) [endpoint]: one attempt
    each, now, like the Dashboard's "Resend"."""
    endpoint = endpoint_param(endpoint)
    all_failed = bool_param(all_failed, "all_failed")
    if (event is None) == (not all_failed):
        raise invalid_request("Give either event or all_failed=true.", param="event")
    if event is not None:
        if not isinstance(event, str) or event not in state.sent:
            raise no_such("event", event, "event")
        sent = state.sent[event]
        if endpoint is not None:
            if endpoint not in sent.deliveries:  # not subscribed, or registered later
                sent.deliveries[endpoint] = Delivery(sent, endpoint, status=FAILED)
            sequence = [sent.deliveries[endpoint]]
        else:
            sequence = list(sent.deliveries.values())
        if not sequence:
            raise invalid_request(
                f"{event} was sent to no webhook endpoint: name one with `endpoint`.",
                param="endpoint",
            )
    else:
        sequence = [
            delivery
            for sent in state.sent.values()
            for delivery in sent.deliveries.values()
            if delivery.status in (FAILED, RETRYING) and endpoint in (None, delivery.endpoint)
        ]
    results = await send_all(sequence)
    for delivery, ok in zip(sequence, results, strict=True):
        if ok:
            state.unqueue(delivery)
    return sending_report(sequence, results)


def configure_endpoint(id, url=None, secret=None, events=None, connect=None):
    """POST /_config/webhooks/{id}: url, secret, events[] (or every type), connect=true for
    a Connect endpoint. Registering an id again replaces that endpoint."""
    if not url or not secret or not re.match(r"https?://", url):
        raise invalid_request("url (http or https) and secret are required.", param="url")
    if events is not None and not isinstance(events, list):
        raise invalid_request("Invalid array", code="parameter_invalid_array", param="events")
    register(id, url, secret, events, bool_param(connect, "connect") or False)
    return {"id": id, "url": url, "events": events, "connect": endpoints[id].connect}


ROUTES = [
    ("GET", "/v1/events", get_events),
    ("GET", "/v1/events/{id}", get_event),
]
HOOKS = [
    ("POST", "/_config/webhooks/{id}", configure_endpoint),
    ("GET", "/_sandbox/deliveries", get_deliveries),
    ("POST", "/_sandbox/deliveries/hold", hold),
    ("POST", "/_sandbox/deliveries/release", release),
    ("POST", "/_sandbox/deliveries/drop", drop),
    ("POST", "/_sandbox/deliveries/redeliver", redeliver),
]
