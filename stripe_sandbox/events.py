"""Events and webhook deliveries in the sandbox, as Stripe does them, plus
test hooks to hold, reorder, duplicate, drop and resend deliveries.
Routed by `server` (`events_middleware`, `add_routes`); the HTTP surface is
documented in server's docstring.

localstripe recorded events in its store but listed them oldest first with
only `type` and `created[...]`, and sent each one once, about 1 s after it
was created, signed with the event's `created` as timestamp, to the
endpoints registered at that moment, never retrying. Here:

- every event the sandbox sends is recorded when it is created (in the
  order it was created), with its payload frozen: the bytes delivered are
  the bytes listed, for every attempt;
- `GET /v1/events` and `GET /v1/events/{id}` answer from that record:
  newest first, the last 30 days only (RETENTION), Connect events
  (`account` set) only with that account's `Stripe-Account` header, as
  Stripe keeps them on the connected account;
- each event goes to the endpoints registered (`/_config/webhooks/{id}`,
  `--webhook-url`) and subscribed when it is created, WEBHOOK_DELAY
  seconds later (1 s, as localstripe did); each attempt is signed when it
  is sent (`Stripe-Signature: t=<now>,v1=...`), redirects are not followed
  (a 3xx is a failure, as at Stripe), an attempt gives up after
  WEBHOOK_TIMEOUT seconds;
- a failed attempt (not 2xx, or no answer) is retried WEBHOOK_RETRIES times
  (3) after WEBHOOK_RETRY_DELAY seconds (1), doubling each time: Stripe's
  retries, over seconds instead of three days;
- every attempt is recorded per (event, endpoint) for the test hooks.

localstripe's `schedule_webhook(event)` runs
`asyncio.ensure_future(_send_webhook(event))`, and every module bound
`schedule_webhook` by name, so `_send_webhook` is the one place that sees
every event: it is replaced by `_record_and_schedule`.
"""

import asyncio
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
from aiohttp import web
from localstripe import webhooks

# isort: off
from . import patches  # noqa: F401 (must come before localstripe.server: see patches)
from .patches import (
    StripeError,
    boolean_param,
    created_filter,
    invalid_request,
    invalid_value,
    no_such,
    reject_unknown,
)
from localstripe.resources import try_convert_to_int
from localstripe.server import get_api_key, get_post_data, json_response, unflatten_data
from . import connect
# isort: on

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

logger = logging.getLogger("aiohttp.access")  # where localstripe logged deliveries


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

    def clear(self):
        """The store was flushed (DELETE /_config/data): forget the events."""
        for task in list(self.tasks):
            task.cancel()
        self.__init__()


state = State()


# --- Recording and automatic delivery ------------------------------------


def subscribed(hook, type):
    return hook.events is None or "*" in hook.events or type in hook.events


def _record_and_schedule(event):
    """Replaces localstripe.webhooks._send_webhook (see the docstring):
    records the event now and schedules its deliveries."""
    record(event)
    return asyncio.sleep(0)  # what schedule_webhook hands to ensure_future


def record(event):
    exported = event._export()
    body = json.dumps(exported, indent=2, sort_keys=True).encode("utf-8")
    sent = Sent(len(state.sent), event.id, event.type, event.created, exported.get("account"), body)
    state.sent[sent.id] = sent
    drop_everywhere = state.drop_all_next > 0
    if drop_everywhere:
        state.drop_all_next -= 1
    for endpoint, hook in list(webhooks._webhooks.items()):
        if not subscribed(hook, sent.type):
            continue
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
    hook = webhooks._webhooks.get(delivery.endpoint)
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


# Every module bound schedule_webhook by name; it calls this at each event.
webhooks._send_webhook = _record_and_schedule


# --- GET /v1/events -------------------------------------------------------


def type_filter(type, types):
    if type is not None and types is not None:
        raise invalid_request(
            "You may only specify one of these parameters: type, types.", param="types"
        )
    if type is not None:
        if not isinstance(type, str) or not type:
            raise invalid_request("Invalid string", code="parameter_invalid_string", param="type")
        # `*` is Stripe's wildcard ("payment_intent.*", "*.updated").
        pattern = re.compile(".*".join(re.escape(part) for part in type.split("*")))
        return lambda name: pattern.fullmatch(name) is not None
    if types is not None:
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise invalid_request("Invalid array", code="parameter_invalid_array", param="types")
        if len(types) > MAX_TYPES:
            raise invalid_request(
                f"Invalid array: types may contain at most {MAX_TYPES} items",
                code="parameter_invalid_array",
                param="types",
            )
        return set(types).__contains__
    return lambda name: True


def limit_param(limit):
    limit = 10 if limit is None else try_convert_to_int(limit)
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise invalid_request(
            "Invalid integer: limit must be between 1 and 100",
            code="parameter_invalid_integer",
            param="limit",
        )
    return limit


def visible(events_state, account, now=None):
    """The events an API key (with `Stripe-Account`: that account's) can
    see: the last 30 days, newest first."""
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
    **params,
):
    """GET /v1/events: newest first, Stripe's filters and cursors."""
    reject_unknown(params)
    limit = limit_param(limit)
    if starting_after is not None and ending_before is not None:
        raise invalid_request(
            "You may only specify one of these parameters: ending_before, starting_after."
        )
    in_period = created_filter(created)
    of_type = type_filter(type, types)
    if delivery_success is not None:
        delivery_success = boolean_param(delivery_success, "delivery_success")

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


def retrieve_event(events_state, id, account=None, now=None, **params):
    """GET /v1/events/{id}: only the last 30 days, like Stripe."""
    reject_unknown(params)
    for sent in visible(events_state, account, now):
        if sent.id == id:
            return sent.payload()
    raise StripeError(
        404, "invalid_request_error", f"No such event: '{id}'", code="resource_missing", param="id"
    )


EVENTS_PATH = re.compile(r"/v1/events(?:/(?P<id>[^/]+))?/?")


@web.middleware
async def events_middleware(request, handler):
    """Answers GET /v1/events[/{id}] (localstripe's routes cannot be
    replaced); after server's authentication, inside its error handling."""
    match = EVENTS_PATH.fullmatch(request.path)
    if request.method == "DELETE" and request.path == "/_config/data":
        response = await handler(request)
        state.clear()
        return response
    if request.method != "GET" or not match:
        return await handler(request)
    params = unflatten_data(request.query)
    params.pop("expand", None)  # nothing to expand in events
    account = request.headers.get("Stripe-Account") or None
    if account is not None:
        try:
            connect.retrieve_account(account)
        except connect.UnknownAccount:
            raise connect.account_invalid(account, get_api_key(request)) from None
    if match["id"] is not None:
        return json_response(retrieve_event(state, match["id"], account, **params))
    return json_response(list_events(state, account, **params))


# --- Test hooks: /_sandbox/deliveries... ----------------------------------


async def hook_params(request):
    params = unflatten_data(request.query)
    if request.method == "POST":
        params.update(await get_post_data(request) or {})
    return params


def endpoint_param(endpoint):
    if endpoint is None:
        return None
    if not isinstance(endpoint, str) or endpoint not in webhooks._webhooks:
        raise invalid_request(
            f"No such webhook endpoint: '{endpoint}'", code="resource_missing", param="endpoint"
        )
    return endpoint


def int_param(params, name, default, low, high):
    value = params.pop(name, None)
    if value is None:
        return default
    converted = try_convert_to_int(value)
    if not isinstance(converted, int) or not low <= converted <= high:
        raise invalid_request(
            f"Invalid integer: {name} must be between {low} and {high}",
            code="parameter_invalid_integer",
            param=name,
        )
    return converted


def hold_state():
    return {
        "hold_all": state.hold_all,
        "held": sorted(e for e in set(webhooks._webhooks) | state.held if state.is_held(e)),
        "queued": {e: len(q) for e, q in sorted(state.queues.items()) if q},
        "drop_next": {
            **({"*": state.drop_all_next} if state.drop_all_next else {}),
            **{e: n for e, n in sorted(state.drop_next.items()) if n},
        },
    }


async def get_deliveries(request):
    """GET /_sandbox/deliveries[?endpoint=][&event=]."""
    params = await hook_params(request)
    endpoint, event = params.pop("endpoint", None), params.pop("event", None)
    reject_unknown(params)
    if event is not None and event not in state.sent:
        raise no_such("event", event, "event")
    rows = [
        delivery.export()
        for sent in state.sent.values()
        if event in (None, sent.id)
        for delivery in sent.deliveries.values()
        if endpoint in (None, delivery.endpoint)
    ]
    endpoints = {
        id: {"url": hook.url, "events": hook.events, "held": state.is_held(id)}
        for id, hook in sorted(webhooks._webhooks.items())
    }
    return json_response({"object": "list", "data": rows, "endpoints": endpoints, **hold_state()})


async def hold(request):
    """POST /_sandbox/deliveries/hold [endpoint]."""
    params = await hook_params(request)
    endpoint = endpoint_param(params.pop("endpoint", None))
    reject_unknown(params)
    state.hold(endpoint)
    return json_response(hold_state())


async def drop(request):
    """POST /_sandbox/deliveries/drop [count=1] [endpoint]."""
    params = await hook_params(request)
    endpoint = endpoint_param(params.pop("endpoint", None))
    count = int_param(params, "count", 1, 0, 1000)
    reject_unknown(params)
    if endpoint is None:
        state.drop_all_next = count
    else:
        state.drop_next[endpoint] = count
    return json_response(hold_state())


async def send_all(sequence, concurrency=1, delay_ms=0, kinds=None):
    """Attempt each delivery of `sequence` once, in order, `concurrency` at
    once, `delay_ms` between starts; the attempts' results in order."""
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


async def release(request):
    """POST /_sandbox/deliveries/release [endpoint] [order=sent|reverse|
    shuffle] [seed] [duplicates=0] [concurrency=1] [delay_ms=0]."""
    params = await hook_params(request)
    endpoint = endpoint_param(params.pop("endpoint", None))
    order = params.pop("order", "sent")
    if order not in ORDERS:
        raise invalid_value("order", order, ORDERS)
    seed = params.pop("seed", None)
    if seed is not None and order != "shuffle":
        raise invalid_request("seed goes with order=shuffle", param="seed")
    if seed is not None and (not isinstance(seed, str | int) or seed == ""):
        raise invalid_request("Invalid string", code="parameter_invalid_string", param="seed")
    duplicates = int_param(params, "duplicates", 0, 0, 10)
    concurrency = int_param(params, "concurrency", 1, 1, 100)
    delay_ms = int_param(params, "delay_ms", 0, 0, 60_000)
    reject_unknown(params)

    released = sorted(state.release(endpoint), key=lambda d: (d.sent.index, d.endpoint))
    if order == "reverse":
        released.reverse()
    for delivery in released:
        delivery.status = PENDING
    sequence = released * (1 + duplicates)  # each round in order: duplicates interleaved
    more = {}
    if order == "shuffle":
        seed = str(secrets.randbelow(2**32)) if seed is None else str(seed)
        random.Random(seed).shuffle(sequence)
        more["seed"] = seed
    seen, kinds = set(), []
    for delivery in sequence:
        kinds.append("duplicate" if id(delivery) in seen else "release")
        seen.add(id(delivery))
    results = await send_all(sequence, concurrency, delay_ms, kinds)
    for delivery in released:
        if delivery.status != DELIVERED:  # every copy failed: Stripe's retries
            retry_later(delivery)
    return json_response(
        sending_report(sequence, results, released=len(released), **more, **hold_state())
    )


async def redeliver(request):
    """POST /_sandbox/deliveries/redeliver (event | all_failed=true)
    [endpoint]: one attempt each, now, like the Dashboard's "Resend"."""
    params = await hook_params(request)
    endpoint = endpoint_param(params.pop("endpoint", None))
    event = params.pop("event", None)
    all_failed = params.pop("all_failed", None)
    all_failed = None if all_failed is None else boolean_param(all_failed, "all_failed")
    reject_unknown(params)
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
    return json_response(sending_report(sequence, results))


def add_routes(app):
    router = app.router
    router.add_get("/_sandbox/deliveries", get_deliveries)
    router.add_post("/_sandbox/deliveries/hold", hold)
    router.add_post("/_sandbox/deliveries/release", release)
    router.add_post("/_sandbox/deliveries/drop", drop)
    router.add_post("/_sandbox/deliveries/redeliver", redeliver)
