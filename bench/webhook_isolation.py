"""Benchmark: webhook intake in its own gunicorn pool while checkouts wait on Stripe.

Issue 17, item 9: "Webhook intake shares gunicorn's threads with checkouts waiting on
Stripe [...] Isolate it (its own worker pool or process group [...]) and show the figures."
Its proof: "a load run on loopback - 2,000 signed deliveries with 30 % duplicates, shuffled,
from 8 senders, while 100 checkouts run against the sandbox - with intake p99 < 100 ms and
max < 250 ms in each of three runs, backlog drained, 0 duplicate effects; webhook intake's
maximum throughput >= 80 % of the bare floor (verify the signature + one INSERT, as
bench/webhooks.py already measures it) in the same run [...] with the portal's own p99 at a
steady 200 req/s within 1.5x the floor's".

What it does (see bench/README.md, section "webhook_isolation.py"):

1. drops and creates its own databases (default ``portal_bench_isolation``, Alembic
   migrations, and ``portal_bench_isolation_floor`` with the floor's one table), flushes its
   own Redis database (default 10, and only that one), starts a Stripe sandbox;
2. seeds, for every run, the customers, orders and cards of the checkouts
   (``api_latency.seed``) and the payments the deliveries are about
   (``webhooks.seed_payments``: a Payment and its PaymentIntent made by the portal, confirmed
   at the sandbox as a customer's browser would). Per payment Stripe sends four events
   (``payment_intent.created``, ``payment_intent.succeeded``, ``charge.succeeded``,
   ``charge.updated``); the portal has already settled most of these payments (the return
   page or the API's confirm came first: their ``succeeded`` event changes nothing), and the
   webhook settles the others (``--unsettled`` per run: the worker re-reads the intent);
3. makes the sandbox answer every API request after ``--stripe-latency`` seconds (Stripe's
   own time), then starts, each with an explicit production environment: the web pool
   (``gunicorn -c gunicorn.conf.py wsgi:app``, ``--web-workers`` sync workers), the intake
   pool (``wsgi_webhooks:app``, ``--intake-workers``; checked to answer nothing but the
   webhook and /healthz, and to refuse a forged signature), the floor (under the intake
   pool's settings) and one RQ worker (``flask --app wsgi worker --queue webhooks``,
   processing the events as they come);
4. per run: 100 checkouts (``POST /api/payments/create-intent`` then ``/confirm``, each a
   Stripe call) from ``--checkout-clients`` concurrent clients against the web pool; once they
   are under way, 2,000 signed deliveries (70 % distinct events, 30 % copies of them, in a
   shuffled order) from 8 senders, each sending its next delivery when the last one was
   answered, on a new connection as Stripe does, to the intake pool; latency per delivery
   from the connection to the answer. Then: the backlog drained (the queue, the worker's
   running job and its retries all empty, every event final), each distinct event stored
   once and taken by the worker once, each payment settled once (succeeded, one sale line,
   its two outbox messages: no more, no fewer);
5. with the worker stopped: the intake pool's maximum throughput (closed loop,
   ``--max-clients`` connections, rounds alternating with the floor served under the same
   gunicorn settings) and its latency at a steady 200 req/s (open loop, as bench/webhooks.py
   measures both, with its helpers);
6. prints markdown tables and PASS or FAIL; exits 0 when every target is met, 1 otherwise.

``--shared`` sends the deliveries (and the throughput loads) to the web pool instead: the
layout before issue 17, for comparison.

Run: ``.venv/bin/python bench/webhook_isolation.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from api_latency import seed as seed_checkouts  # noqa: E402
from benchdb import plain_url  # noqa: E402
from webhooks import (  # noqa: E402
    WEBHOOK_PATH,
    WHSEC,
    Load,
    Requests,
    Server,
    clean_up,
    closed_loop,
    event_dict,
    machine_busy,
    measured,
    open_loop,
    pct,
    pg_backends,
    prepare,
    print_load_average,
    print_load_table,
    seed_payments,
    send,
    server_envs,
    stores_args,
    tree_cpu,
    worker_argv,
)

HOST = "127.0.0.1"
QUEUE = "webhooks"
EVENTS_PER_PAYMENT = 4  # payment_intent.created / .succeeded, charge.succeeded / .updated


# --------------------------------------------------------------------------------------------
# Deliveries


def charge_object(pi: dict) -> dict:
    """The charge of a succeeded PaymentIntent as a charge.* event carries it (ids only)."""
    return {"id": pi.get("latest_charge") or "ch_" + pi["id"][3:], "object": "charge",
            "amount": pi["amount"], "amount_captured": pi["amount"], "amount_refunded": 0,
            "currency": pi["currency"], "captured": True, "paid": True, "refunded": False,
            "status": "succeeded", "payment_intent": pi["id"], "livemode": False,
            "payment_method": pi.get("payment_method") if isinstance(
                pi.get("payment_method"), str) else (pi.get("payment_method") or {}).get("id"),
            "balance_transaction": "txn_" + pi["id"][3:], "metadata": pi.get("metadata", {}),
            "created": pi.get("created", int(time.time()))}


def payment_events(prefix: str, i: int, pi: dict) -> list[dict]:
    """The four events Stripe sends about one card payment."""
    created = {**pi, "status": "requires_payment_method", "amount_received": 0,
               "latest_charge": None}
    return [event_dict(f"{prefix}{i:05d}c", "payment_intent.created", created),
            event_dict(f"{prefix}{i:05d}s", "payment_intent.succeeded", pi),
            event_dict(f"{prefix}{i:05d}h", "charge.succeeded", charge_object(pi)),
            event_dict(f"{prefix}{i:05d}u", "charge.updated", charge_object(pi))]


def run_events(prefix: str, intents: list[dict], distinct: int) -> list[dict]:
    """The run's ``distinct`` events: the four of each payment; when that is more, the last
    payments lose events other than their payment_intent.succeeded (every payment must still
    be settled)."""
    events = [e for i, pi in enumerate(intents) for e in payment_events(prefix, i, pi)]
    for i in range(len(events) - 1, -1, -1):
        if len(events) <= distinct:
            break
        if events[i]["type"] != "payment_intent.succeeded":
            del events[i]
    return events


def signed_request(port: int, body: bytes) -> bytes:
    """One delivery as Stripe sends it (raw HTTP/1.1, a new connection, signed now)."""
    from tests.helpers import sign

    return (f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Stripe-Signature: {sign(body, WHSEC)}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def deliveries(events: list[dict], total: int, rng: random.Random) -> list[bytes]:
    """``events`` (distinct), then copies of events drawn at random up to ``total`` (an event
    may come three times, as Stripe may redeliver more than once), in a shuffled order. The
    bodies; signed when the run starts."""
    bodies = [json.dumps(e).encode() for e in events]
    bodies += rng.choices(bodies, k=total - len(bodies))
    rng.shuffle(bodies)
    return bodies


# --------------------------------------------------------------------------------------------
# Clients


async def post_json(port: int, path: str, body: dict, token: str) -> tuple[int, dict | None]:
    """POST a JSON body with a Bearer token on a new connection; (status, JSON answer)."""
    data = json.dumps(body).encode()
    req = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
           "Connection: close\r\n\r\n").encode() + data
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(req)
        raw = await reader.read()
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head[9:12]) if head[:5] == b"HTTP/" else 0
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, None


@dataclass
class Checkouts:
    """What the checkout clients saw."""

    ok: int = 0
    failed: Counter = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)  # create-intent + confirm, each
    intents: list[str] = field(default_factory=list)
    start: float = math.inf  # loop time of the first request, of the last answer
    end: float = 0.0


async def checkout(port: int, slot, res: Checkouts) -> None:
    """One checkout through the JSON API: create the intent, confirm it with a saved card."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    res.start = min(res.start, t0)
    try:
        status, body = await asyncio.wait_for(post_json(
            port, "/api/payments/create-intent",
            {"orderId": slot.order_id, "amount": slot.amount, "currency": "USD"},
            slot.token), 300)
        if status != 200:
            res.failed[f"create-intent {status}"] += 1
            return
        intent = body["paymentIntent"]["id"]
        res.intents.append(intent)
        status, body = await asyncio.wait_for(post_json(
            port, "/api/payments/confirm",
            {"paymentIntentId": intent, "paymentMethodId": slot.portal_pm}, slot.token), 300)
        if status != 200 or body["payment"]["status"] != "succeeded":
            res.failed[f"confirm {status}"] += 1
            return
        res.ok += 1
    except Exception as exc:  # noqa: BLE001 - counted and reported
        res.failed[type(exc).__name__] += 1
    finally:
        res.end = max(res.end, loop.time())
        res.seconds.append(loop.time() - t0)


async def run_checkouts(port: int, slots: list, clients: int, res: Checkouts) -> None:
    """``clients`` customers' browsers, each paying its next order when the last is done."""
    todo = iter(slots)

    async def client() -> None:
        for slot in todo:
            await checkout(port, slot, res)

    await asyncio.gather(*(client() for _ in range(clients)))


async def run_senders(port: int, reqs: list[bytes], senders: int, res: Load) -> None:
    """``senders`` senders, each sending its next delivery as soon as the last was answered
    (all of them sharing one shuffled list); latency from the connection to the answer."""
    loop = asyncio.get_running_loop()
    todo = iter(enumerate(reqs))
    start = loop.time()
    res.extra["by_index"] = by_index = [math.nan] * len(reqs)  # latency of each delivery

    async def sender() -> None:
        for i, req in todo:
            t0 = loop.time()
            try:
                status = await asyncio.wait_for(send(HOST, port, req), 30)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                status = -1
                res.errors[type(exc).__name__] += 1
            res.statuses[status] += 1
            by_index[i] = (loop.time() - t0) * 1000
            res.lat_ms.append(by_index[i])
            res.sent += 1

    await asyncio.gather(*(sender() for _ in range(senders)))
    res.seconds = loop.time() - start
    res.extra["window"] = (start, loop.time())


# --------------------------------------------------------------------------------------------
# One load run


@dataclass
class Run:
    n: int
    intake: Load
    checkouts: Checkouts
    distinct: int
    intake_cpu: float = 0.0  # CPU s of the intake pool during the deliveries
    busy: float = 0.0  # cores busy on the machine during the deliveries
    cores: dict = field(default_factory=dict)  # cores used by each process during them
    drained_s: float = math.nan  # after the last delivery's answer
    drained: bool = False
    events: dict = field(default_factory=dict)  # (status, attempts) -> count
    stored: int = 0
    payments: int = 0
    duplicate_effects: int = 0
    missing_effects: int = 0
    overlap: bool = False  # the deliveries all ran while checkouts were running
    slowest: list = field(default_factory=list)  # (ms, event id, type, copy k of n, re-read)
    answered: float = 0.0  # time.monotonic() of the last delivery's answer


def cpu_by_process(target: Server, web: Server, pids: dict[str, int], db_url: str) -> dict:
    """CPU seconds so far of each process of the run (a gunicorn pool: master and workers;
    PostgreSQL: the backends of the run's database; client: this process)."""
    cpu = {"intake" if target is not web else "web (shared)": target.cpu()}
    if target is not web:
        cpu["web"] = web.cpu()
    cpu.update({name: tree_cpu(pid) for name, pid in pids.items()})
    cpu["PostgreSQL"] = sum(tree_cpu(pid) for pid in pg_backends(db_url))
    cpu["client"] = time.process_time()
    return cpu


def load_run(n: int, target: Server, web: Server, reqs_bodies: list[bytes], slots: list,
             args, distinct: int, pids: dict[str, int], db_url: str, reread: set[str]) -> Run:
    """Checkouts against the web pool and, once they are under way, the deliveries."""
    reqs = [signed_request(target.port, b) for b in reqs_bodies]
    run = Run(n, Load("intake" if not args.shared else "web (shared)", f"run {n}"),
              Checkouts(), distinct)
    marks: dict = {}

    async def scenario() -> None:
        shop = asyncio.create_task(run_checkouts(web.port, slots, args.checkout_clients,
                                                 run.checkouts))
        await asyncio.sleep(args.lead)  # the web pool's workers are all waiting on Stripe
        marks["cpu0"], marks["busy0"] = cpu_by_process(target, web, pids, db_url), \
            machine_busy()
        await run_senders(target.port, reqs, args.senders, run.intake)
        marks["cpu1"], marks["busy1"] = cpu_by_process(target, web, pids, db_url), \
            machine_busy()
        marks["answered"] = time.monotonic()
        await shop

    # As bench/webhooks.py: this process's own garbage collector off during the load, so a
    # full collection of its heap cannot stall the event loop and show as server latency.
    gc.collect()
    gc.disable()
    try:
        asyncio.run(scenario())
    finally:
        gc.enable()
    (m0, t0), (m1, t1) = marks["busy0"], marks["busy1"]
    run.busy = (m1 - m0) / (t1 - t0) * (os.cpu_count() or 1) if t1 > t0 else 0.0
    seconds = run.intake.seconds or 1.0
    run.cores = {k: (marks["cpu1"][k] - marks["cpu0"].get(k, 0.0)) / seconds
                 for k in marks["cpu1"]}
    run.intake_cpu = run.cores[run.intake.target] * seconds
    w0, w1 = run.intake.extra["window"]
    run.overlap = run.checkouts.start <= w0 and run.checkouts.end >= w1
    run.answered = marks["answered"]
    # The slowest deliveries: which event, which of its copies, and whether its job re-reads
    # Stripe (the job holds its event's row while Stripe answers).
    by_index = run.intake.extra["by_index"]
    for i in sorted(range(len(by_index)), key=lambda i: -by_index[i])[:5]:
        event = json.loads(reqs_bodies[i])
        copies = [j for j, b in enumerate(reqs_bodies) if b == reqs_bodies[i]]
        run.slowest.append((by_index[i], event["id"], event["type"],
                            f"{copies.index(i) + 1} of {len(copies)}", event["id"] in reread))
    return run


def wait_drained(run: Run, redis_conn, db_url: str, prefix: str, timeout: float) -> None:
    """Until the queue, the running job and the retries are empty and every event of the
    run is final; the time from the last delivery's answer."""
    from rq import Queue
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    queue = Queue(QUEUE, connection=redis_conn)
    registries = [StartedJobRegistry(queue=queue), ScheduledJobRegistry(queue=queue)]
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(db_url) as conn:
            waiting = conn.execute(
                "SELECT count(*) FROM stripe_events WHERE id LIKE %s AND status <> ALL(%s)",
                (prefix + "%", ["processed", "ignored"])).fetchone()[0]
        if not waiting and not queue.count and not any(r.count for r in registries):
            run.drained = True
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    run.drained_s = time.monotonic() - run.answered
    if FailedJobRegistry(queue=queue).count:
        run.drained = False


def check_effects(run: Run, db_url: str, prefix: str, intents: list[str]) -> None:
    """Each distinct event stored once and taken once; each payment settled once: succeeded,
    one sale line (one vendor) and two outbox messages (the order service's notification and
    the receipt). More is a duplicate effect, less a missing one."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT status, attempts, count(*) FROM stripe_events WHERE id LIKE %s "
            "GROUP BY 1, 2", (prefix + "%",)).fetchall()
        run.events = {(s, a): c for s, a, c in rows}
        run.stored = sum(run.events.values())
        payments = conn.execute(
            "SELECT p.status, (SELECT count(*) FROM split_lines s WHERE s.payment_id = p.id "
            "AND s.kind = 'sale'), (SELECT count(*) FROM outbox_messages o "
            "WHERE o.payment_id = p.id) FROM payments p "
            "WHERE p.stripe_payment_intent_id = ANY(%s)", (intents,)).fetchall()
    run.payments = len(payments)
    run.missing_effects = len(intents) - len(payments)
    for status, lines, messages in payments:
        run.duplicate_effects += max(0, lines - 1) + max(0, messages - 2)
        run.missing_effects += (status != "succeeded") + max(0, 1 - lines) \
            + max(0, 2 - messages)


# --------------------------------------------------------------------------------------------
# Output


def print_runs(runs: list[Run], args) -> None:
    print("| run | deliveries (distinct) | 2xx | intake p50 | **p99** | **max** | deliveries/s "
          "| intake CPU ms/delivery | machine busy (cores) | checkouts ok | checkout s p50 / max "
          "| backlog drained | events stored, taken once | duplicate effects "
          "| missing effects |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- "
          "| ---: | ---: | ---: |")
    for r in runs:
        lat = r.intake.lat_ms
        once = sum(c for (s, a), c in r.events.items() if a == 1)
        co = r.checkouts
        print(f"| {r.n} | {r.intake.sent} ({r.distinct}) | {r.intake.ok} "
              f"| {pct(lat, 50):.1f} | **{pct(lat, 99):.1f}** | **{max(lat):.1f}** "
              f"| {r.intake.rate:.0f} | {r.intake_cpu / max(1, r.intake.sent) * 1000:.2f} "
              f"| {r.busy:.2f} | {co.ok} / {args.checkouts} "
              f"| {statistics.median(co.seconds):.2f} / {max(co.seconds):.2f} "
              f"| {'yes' if r.drained else '**no**'}, {r.drained_s:.1f} s after the last answer "
              f"| {r.stored}, {once} | **{r.duplicate_effects}** | {r.missing_effects} |")
    for r in runs:
        statuses = ", ".join(f"{c} {s} (taken {a}x)" for (s, a), c in sorted(r.events.items()))
        w0, w1 = r.intake.extra["window"]
        co = r.checkouts
        print(f"   run {r.n}: events {statuses}; {r.payments} payments checked; deliveries "
              f"{w0 - co.start:.1f}-{w1 - co.start:.1f} s and checkouts 0-{co.end - co.start:.1f}"
              f" s after the first checkout{'' if r.overlap else ' (NOT all overlapping)'}"
              + (f"; not 2xx: {dict(r.intake.statuses)} {dict(r.intake.errors)}"
                 if r.intake.bad else "")
              + (f"; checkouts failed: {dict(co.failed)}" if co.failed else ""))
        print(f"   run {r.n}: slowest deliveries: " + "; ".join(
            f"{ms:.0f} ms {eid} ({etype}, copy {copy}"
            + (", its job re-reads Stripe)" if reread else ")")
            for ms, eid, etype, copy, reread in r.slowest))
        other = max(0.0, r.busy - sum(r.cores.values()))
        print(f"   run {r.n}: cores busy during the deliveries: "
              + ", ".join(f"{k} {v:.2f}" for k, v in r.cores.items())
              + f", everything else {other:.2f} (Redis, the kernel, other work)")


def add_round(total: Load, res: Load) -> None:
    """Add one round's requests, time and CPU to its target's total."""
    total.busy = ((total.busy * total.seconds + res.busy * res.seconds)
                  / ((total.seconds + res.seconds) or 1))
    total.seconds += res.seconds
    total.sent += res.sent
    total.statuses.update(res.statuses)
    total.errors.update(res.errors)
    total.lat_ms += res.lat_ms
    total.lag_ms += res.lag_ms
    for attr in ("client_cpu", "server_cpu", "pg_cpu"):
        setattr(total, attr, getattr(total, attr) + getattr(res, attr))


def warm_up(server: Server, prefix: str, n: int) -> None:
    """n unique deliveries at 100 a second, untimed (every 2xx, or stop here)."""
    gen = Requests(HOST, server.port, prefix)
    warm = Load(server.name, "warm-up")
    asyncio.run(open_loop(HOST, server.port, [gen.next() for _ in range(n)], 100, warm, 1024))
    if warm.bad:
        raise SystemExit(f"{server.name} warm-up: {dict(warm.statuses)} {dict(warm.errors)}\n"
                         f"{server.log_tail()}")


def intake_contract(server: Server) -> list[str]:
    """The intake pool answers the webhook and /healthz only, and refuses a bad signature;
    what differs from that, as failures."""
    import http.client

    body = json.dumps(event_dict("evt_contract", "payment_intent.created", {"id": "pi_x"}))
    cases = (("GET", "/healthz", None, {}, 200), ("GET", "/login", None, {}, 404),
             ("POST", "/api/auth/token", "{}", {"Content-Type": "application/json"}, 404),
             ("POST", WEBHOOK_PATH, body, {"Content-Type": "application/json",
                                           "Stripe-Signature": "t=1,v1=forged"}, 400))
    failures = []
    for method, path, data, headers, expected in cases:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=10)  # no proxy
        try:
            conn.request(method, path, body=data, headers={"Host": HOST, **headers})
            status = conn.getresponse().status
        finally:
            conn.close()
        if status != expected:
            failures.append(f"intake pool: {method} {path} answered {status}, not {expected}")
    return failures


def wait_idle(limit: float, what: str = "") -> None:
    """Up to ``limit`` seconds (0: not at all) for 5 s in which the machine is < 0.3 cores
    busy; said when it took longer than those 5 s."""
    if not limit:
        return
    cpus = os.cpu_count() or 1
    waited = time.monotonic()
    while True:
        m0, t0 = machine_busy()
        time.sleep(5)
        m1, t1 = machine_busy()
        busy = (m1 - m0) / (t1 - t0) * cpus
        if busy < 0.3 or time.monotonic() - waited > limit:
            break
    if time.monotonic() - waited > 6:
        print(f"   waited {time.monotonic() - waited:.0f} s for an idle machine{what}; the last "
              f"5 s: {busy:.2f} cores busy", flush=True)


# --------------------------------------------------------------------------------------------
# The run


def main(argv=None) -> int:  # noqa: PLR0915 - one linear script
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stores_args(ap, "portal_bench_isolation", 10)
    ap.add_argument("--runs", type=int, default=3, help="load runs")
    ap.add_argument("--deliveries", type=int, default=2000, help="deliveries per run")
    ap.add_argument("--duplicates", type=float, default=0.30,
                    help="share of the deliveries that repeat an event already in the run")
    ap.add_argument("--senders", type=int, default=8, help="concurrent senders")
    ap.add_argument("--unsettled", type=int, default=100,
                    help="payments per run the webhook settles (the rest: settled already)")
    ap.add_argument("--checkouts", type=int, default=100, help="checkouts per run")
    ap.add_argument("--checkout-clients", type=int, default=50,
                    help="concurrent checkout clients")
    ap.add_argument("--lead", type=float, default=1.0,
                    help="seconds the checkouts run before the first delivery")
    ap.add_argument("--stripe-latency", type=float, default=0.2,
                    help="seconds the sandbox waits before answering each API request")
    ap.add_argument("--web-workers", type=int, default=2, help="gunicorn workers, web pool")
    ap.add_argument("--intake-workers", type=int, default=2,
                    help="gunicorn workers, intake pool (and the floor)")
    ap.add_argument("--gunicorn-arg", action="append", default=[],
                    help="extra gunicorn argument for the intake pool and the floor, e.g. "
                         "--gunicorn-arg=--threads=4 (an experiment)")
    ap.add_argument("--shared", action="store_true",
                    help="send the deliveries and throughput loads to the web pool (wsgi:app),"
                         " as before the intake had its own pool")
    ap.add_argument("--warmup", type=int, default=300,
                    help="untimed deliveries to each server before it is timed")
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument("--max-clients", type=int, default=16, help="closed-loop connections")
    ap.add_argument("--max-seconds", type=float, default=5.0,
                    help="closed-loop seconds per round and target")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of each loop (closed, then open), intake and floor alternating")
    ap.add_argument("--rate", type=float, default=200.0, help="open-loop rate, req/s")
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="open-loop seconds per round and target")
    ap.add_argument("--seed", default="17", help="of the duplicates and the shuffle")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="before the start, each load run and each round, wait up to SECONDS "
                         "for 5 s with the machine < 0.3 cores busy (a shared machine)")
    ap.add_argument("--target-p99-ms", type=float, default=100.0)
    ap.add_argument("--target-max-ms", type=float, default=250.0)
    ap.add_argument("--target-ratio", type=float, default=0.80,
                    help="intake's maximum throughput / the floor's")
    ap.add_argument("--target-p99-factor", type=float, default=1.5,
                    help="intake's p99 at --rate / the floor's")
    args = ap.parse_args(argv)

    import stripe
    from redis import Redis

    from stripe_sandbox.testing import Sandbox

    wait_idle(args.wait_idle, " before starting")
    started = time.perf_counter()
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()
    run_id = uuid.uuid4().hex[:6]
    rng = random.Random(args.seed)
    floor_db = f"{args.db}_floor"
    db_url, floor_url = plain_url(args.pg, args.db), plain_url(args.pg, floor_db)
    redis_conn = Redis.from_url(args.redis)
    distinct = args.deliveries - round(args.deliveries * args.duplicates)
    per_run = math.ceil(distinct / EVENTS_PER_PAYMENT)  # payments the deliveries are about
    unsettled = min(args.unsettled, per_run)
    prepare(args, floor_db, floor_url, redis_conn, cpus, load_before)
    failures: list[str] = []
    servers: list[Server] = []
    worker: subprocess.Popen | None = None
    logdir = Path(tempfile.mkdtemp(prefix="bench-isolation-"))
    runs: list[Run] = []
    max_rows: list[Load] = []
    open_rows: list[Load] = []
    max_totals: dict[str, Load] = {}  # per target, its rounds added up
    open_totals: dict[str, Load] = {}
    try:
        with Sandbox() as sandbox:
            portal_env, floor_env = server_envs(db_url, floor_url, args.redis, sandbox)
            from flask_migrate import upgrade

            from portal import create_app
            from portal.config import Config
            from portal.database import unit_of_work
            from portal.extensions import db
            from portal.payments.services import sync_intent

            app = create_app(Config.from_env(portal_env))
            with app.app_context():
                upgrade()

            # ---- seed, the sandbox answering at once
            t0 = time.perf_counter()
            client = stripe.StripeClient("sk_test_bench", base_addresses={"api": sandbox.url},
                                         http_client=stripe.RequestsClient(timeout=10))
            slots = seed_checkouts(app, client, args.runs * args.checkouts)
            intents = seed_payments(app, sandbox.url, args.runs * per_run)
            # The payments the portal heard of first (return page, API confirm): settled now,
            # as the webhook job would (the intent re-read, then settled), in its own
            # transaction each.
            with app.app_context():
                for r in range(args.runs):
                    for pi in intents[r * per_run + unsettled:(r + 1) * per_run]:
                        with unit_of_work():
                            sync_intent(pi["id"])
                db.session.remove()
            print(f"   seeded in {time.perf_counter() - t0:.0f} s: {len(slots)} customers with "
                  f"an order and a card (the checkouts), {len(intents)} payments confirmed at "
                  f"the sandbox ({unsettled} per run not settled by the portal yet)")
            sandbox.set_latency(args.stripe_latency)

            # ---- the pools (and the floor, used at the end) and the worker
            extra = tuple(args.gunicorn_arg)
            web = Server("web", "wsgi:app", portal_env, logdir, args.web_workers)
            floor = Server("floor", "webhook_floor:app", floor_env, logdir,
                           args.intake_workers, ("--pythonpath", "bench", *extra))
            intake = web if args.shared else Server(
                "intake", "wsgi_webhooks:app", portal_env, logdir, args.intake_workers, extra)
            servers += list(dict.fromkeys((web, intake, floor)))
            wlog = open(logdir / "worker.log", "wb")  # noqa: SIM115 - closed below
            worker = subprocess.Popen(worker_argv(False, burst=False), cwd=ROOT, env=portal_env,
                                      stdout=wlog, stderr=subprocess.STDOUT)
            wlog.close()
            with ThreadPoolExecutor(len(servers)) as pool:  # all of them start at once
                list(pool.map(Server.start, servers))
            deadline = time.monotonic() + 60
            while not redis_conn.smembers(f"rq:workers:{QUEUE}"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the worker did not start:\n"
                                     + (logdir / "worker.log").read_text()[-2000:])
                time.sleep(0.1)
            print(f"   gunicorn -c gunicorn.conf.py: web wsgi:app ({args.web_workers} workers) "
                  f"on :{web.port}; "
                  + (f"intake wsgi_webhooks:app ({args.intake_workers} workers"
                     f"{' ' + ' '.join(extra) if extra else ''}) on :{intake.port}"
                     if not args.shared else "deliveries to the web pool (--shared)")
                  + f"; one RQ worker on '{QUEUE}'; the sandbox answers each API request "
                  f"after {args.stripe_latency * 1000:.0f} ms; logs in {logdir}")

            if not args.shared:
                failures += intake_contract(intake)
            # Every pool's workers have connected to PostgreSQL and Redis and run the code
            # once before anything is timed, as in a server that has been up for a while.
            warm_up(intake, f"{run_id}iw", args.warmup)

            # ---- the load runs
            pids = {"worker": worker.pid, "sandbox": sandbox.process.pid}
            print(f"== {args.runs} runs: {args.checkouts} checkouts from "
                  f"{args.checkout_clients} clients, and {args.deliveries} deliveries "
                  f"({distinct} events, {args.deliveries - distinct} repeated) from "
                  f"{args.senders} senders")
            for r in range(args.runs):
                prefix = f"evt_{run_id}{r}"
                group = intents[r * per_run:(r + 1) * per_run]
                events = run_events(prefix, group, distinct)
                wait_idle(args.wait_idle, f" before run {r + 1}")
                run = load_run(r + 1, intake, web, deliveries(events, args.deliveries, rng),
                               slots[r * args.checkouts:(r + 1) * args.checkouts], args,
                               len(events), pids, db_url,
                               {f"{prefix}{i:05d}s" for i in range(unsettled)})
                wait_drained(run, redis_conn, db_url, prefix, args.drain_timeout)
                check_effects(run, db_url, prefix, [pi["id"] for pi in group]
                              + run.checkouts.intents)
                runs.append(run)
                print(f"   run {r + 1}: intake p99 {pct(run.intake.lat_ms, 99):.1f} ms, max "
                      f"{max(run.intake.lat_ms):.1f} ms; drained {run.drained_s:.1f} s after",
                      flush=True)

            # ---- the maximum and the steady rate, against the floor (no worker: intake only)
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=30)
            targets = ((intake, db_url, "web (shared)" if args.shared else "intake"),
                       (floor, floor_url, "floor"))
            for server, _url, name in targets:
                warm_up(server, f"{run_id}{name[0]}w", args.warmup)
            # Rounds alternate between the targets, so that a drift of the machine's speed
            # falls on both; each target's rounds are then added up.
            print(f"== closed loop: {args.max_clients} connections, {args.rounds} rounds of "
                  f"{args.max_seconds:.0f} s per target, alternating")
            for rnd in range(args.rounds):
                for server, url, name in targets if rnd % 2 == 0 else targets[::-1]:
                    wait_idle(args.wait_idle, f" before {name}, round {rnd + 1}")
                    gen = Requests(HOST, server.port, f"{run_id}{name[0]}m{rnd}")
                    res = Load(name, f"{args.max_clients} (round {rnd + 1})")
                    measured(res, server, url, closed_loop(HOST, server.port, gen.next,
                                                           args.max_clients, args.max_seconds,
                                                           res))
                    max_rows.append(res)
                    add_round(max_totals.setdefault(
                        name, Load(name, f"{args.max_clients} (all rounds)")), res)
            print(f"== open loop: {args.rate:.0f} req/s, {args.rounds} rounds of "
                  f"{args.seconds:.0f} s per target, alternating")
            for rnd in range(args.rounds):
                for server, url, name in targets if rnd % 2 == 0 else targets[::-1]:
                    wait_idle(args.wait_idle, f" before {name}, round {rnd + 1}")
                    gen = Requests(HOST, server.port, f"{run_id}{name[0]}o{rnd}")
                    res = Load(f"{name}, round {rnd + 1}", "open")
                    measured(res, server, url, open_loop(
                        HOST, server.port,
                        [gen.next() for _ in range(int(args.rate * args.seconds))],
                        args.rate, res, 1024))
                    open_rows.append(res)
                    add_round(open_totals.setdefault(name, Load(f"{name}, all rounds", "open")),
                              res)
            max_rows += max_totals.values()
            open_rows += open_totals.values()
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        with ThreadPoolExecutor(max(1, len(servers))) as pool:
            list(pool.map(Server.stop, servers))
        clean_up(args, floor_db, redis_conn)

    load_after = os.getloadavg()
    # ------------------------------------------------------------------ report
    print()
    print_load_average(load_before, load_after, cpus)
    print()
    print(f"**Load runs** ({args.deliveries} deliveries from {args.senders} senders to the "
          f"{'web pool (--shared)' if args.shared else 'intake pool'}, while {args.checkouts} "
          f"checkouts from {args.checkout_clients} clients wait on the sandbox's "
          f"{args.stripe_latency * 1000:.0f} ms per call in the web pool; latency in ms from "
          "the connection to the answer):")
    print()
    print_runs(runs, args)
    print()
    print(f"**Maximum throughput** ({args.max_clients} connections, {args.rounds} rounds of "
          f"{args.max_seconds:.0f} s per target, alternating; gunicorn {args.intake_workers} "
          "workers for both):")
    print()
    print_load_table(max_rows, False)
    print()
    print(f"**Open loop, {args.rate:.0f} req/s**, {args.rounds} rounds of {args.seconds:.0f} s "
          "per target, alternating (latency in ms from each request's scheduled send time):")
    print()
    print_load_table(open_rows, True)
    print()

    # Work of other processes on the same cores slows every figure: say where it was.
    disturbed = [f"run {r.n} ({r.busy - sum(r.cores.values()):.2f})" for r in runs
                 if r.busy - sum(r.cores.values()) > 0.3]
    disturbed += [f"{res.target} {res.mode} ({res.others:.2f})" for res in (*max_rows, *open_rows)
                  if res.others > 0.3 and "all rounds" not in f"{res.target} {res.mode}"]
    if disturbed:
        print("   NOTE: other work used the cores (figures in cores) during " + ", ".join(
            disturbed) + ": compare with a run on an idle machine (--wait-idle)")

    # ------------------------------------------------------------------ targets
    for r in runs:
        p99, top = pct(r.intake.lat_ms, 99), max(r.intake.lat_ms)
        if p99 >= args.target_p99_ms or top >= args.target_max_ms:
            failures.append(f"run {r.n}: intake p99 {p99:.1f} ms / max {top:.1f} ms (targets "
                            f"< {args.target_p99_ms:.0f} / < {args.target_max_ms:.0f} ms)")
        if r.intake.bad:
            failures.append(f"run {r.n}: {r.intake.bad} deliveries not answered 2xx")
        if not r.drained:
            failures.append(f"run {r.n}: backlog not drained")
        if r.stored != r.distinct or any(a != 1 for _, a in r.events):
            failures.append(f"run {r.n}: {r.stored} of {r.distinct} events stored, "
                            f"taken {sorted({a for _, a in r.events})} times")
        if r.duplicate_effects or r.missing_effects:
            failures.append(f"run {r.n}: {r.duplicate_effects} duplicate and "
                            f"{r.missing_effects} missing effects")
        if r.checkouts.ok != args.checkouts:
            failures.append(f"run {r.n}: {r.checkouts.ok} of {args.checkouts} checkouts "
                            "succeeded")
        if not r.overlap:
            failures.append(f"run {r.n}: the deliveries did not all run during the checkouts")
    name = "web (shared)" if args.shared else "intake"
    rates = {k: v.rate for k, v in max_totals.items()}
    ratio = rates[name] / rates["floor"] if rates["floor"] else 0.0
    p99s = {k: pct(v.lat_ms, 99) for k, v in open_totals.items()}
    factor = p99s[name] / p99s["floor"] if p99s["floor"] else math.inf
    print(f"   maximum throughput: {name} {rates[name]:.0f} req/s / floor "
          f"{rates['floor']:.0f} req/s = {ratio:.0%} (target >= {args.target_ratio:.0%})")
    print(f"   p99 at {args.rate:.0f} req/s: {name} {p99s[name]:.1f} ms / floor "
          f"{p99s['floor']:.1f} ms = {factor:.2f}x (target <= {args.target_p99_factor:.2f}x)")
    if ratio < args.target_ratio:
        failures.append(f"maximum throughput {ratio:.0%} of the floor's")
    if factor > args.target_p99_factor:
        failures.append(f"p99 at {args.rate:.0f} req/s {factor:.2f}x the floor's")
    for res in (*max_totals.values(), *open_totals.values()):
        if res.bad:
            failures.append(f"{res.target} ({res.mode}): {res.bad} requests not 2xx")
    print()
    print(f"== {time.perf_counter() - started:.0f} s in all")
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print(f"PASS: in each of {args.runs} runs intake p99 < {args.target_p99_ms:.0f} ms and max "
          f"< {args.target_max_ms:.0f} ms, backlog drained, 0 duplicate effects; maximum "
          f"throughput {ratio:.0%} of the floor's, p99 at {args.rate:.0f} req/s {factor:.2f}x "
          "the floor's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
