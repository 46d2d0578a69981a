"""Benchmark: Stripe webhook intake on gunicorn, against a minimal floor, and the worker's rate.

Issue 7, acceptance item: "Webhook intake on gunicorn (2 processes) on this machine, PostgreSQL
+ Redis: throughput and p50/p99 latency at a steady 200 req/s, and the same load against a
minimal Flask endpoint that only verifies the signature and inserts one row (the floor).
Target: >= 60 % of the floor's throughput, p99 < 25 ms at 200 req/s. Also: events processed
per second by one worker (target >= 200/s; say how the worker avoids a fork per job if it
does)."

What it does (see bench/README.md, section "webhooks.py"):

1. drops and creates its own databases (default ``portal_bench_webhooks``, built with the
   project's Alembic migrations, and ``portal_bench_webhooks_floor`` with the floor's one
   table), flushes its own Redis database (default 11, and only that one), starts a Stripe
   sandbox (``stripe_sandbox.testing.Sandbox``);
2. starts the portal (``gunicorn -c gunicorn.conf.py --workers 2 wsgi:app``, REDIS_URL set, so
   intake stores the event "received" for a worker's dispatcher to queue: the real path) and
   the floor
   (``bench/webhook_floor.py`` under the same gunicorn settings: verify the signature with
   ``stripe.Webhook.construct_event``, insert one row with psycopg, commit), each with an
   explicit environment (nothing from the developer's shell);
3. sends each one unique, signed ``payment_intent.succeeded`` events open-loop at a steady
   200 req/s (a fixed schedule; latency counted from each request's *scheduled* send time, so
   a stall cannot hide queued requests), then closed-loop with N concurrent connections for
   the maximum throughput; then the portal again at 200 req/s while one worker processes
   the events as they arrive (information: the worker shares the cores);
4. times one worker (``flask --app wsgi worker --burst --queue webhooks``; portal.rqworker's
   PortalWorker, an RQ SimpleWorker: no fork per job; and ``--fork`` for comparison)
   draining stored and queued events of three kinds: an unknown type (stored and marked
   ignored: pure dispatch), payment_intent.succeeded for a payment the portal has not
   settled yet (the handler re-reads the intent from the sandbox and settles the payment),
   and payment_intent.succeeded for a payment already settled (no Stripe call; the common
   case, as confirm settles synchronously);
5. times the intake in-process (Flask's test client) to show where a request's time goes;
6. prints markdown tables and exits 0 when the targets are met, 1 otherwise.

Run: ``.venv/bin/python bench/webhooks.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import gc
import io
import math
import os
import platform
import pstats
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from benchdb import drop_database, plain_url, recreate_database  # noqa: E402

WEBHOOK_PATH = "/api/payments/webhook"
WHSEC = "whsec_bench_webhooks"
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
TICK = os.sysconf("SC_CLK_TCK")
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy


# --------------------------------------------------------------------------------------------
# Helpers: percentiles, CPU accounting from /proc


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)] if s else float("nan")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(rest[11]) + int(rest[12])) / TICK


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (gunicorn master + workers)."""
    return proc_cpu(pid) + sum(proc_cpu(c) for c in children(pid))


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / TICK, sum(v) / TICK


def pg_backends(url: str) -> list[int]:
    """Pids of the PostgreSQL backends connected to that database (other than ours)."""
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]


# --------------------------------------------------------------------------------------------
# Events and requests


def intent_object(intent_id: str, amount: int = 4999) -> dict:
    """A PaymentIntent as Stripe sends it in an event (about 1.5 KB of JSON)."""
    return {
        "id": intent_id, "object": "payment_intent", "amount": amount,
        "amount_capturable": 0, "amount_details": {"tip": {}}, "amount_received": amount,
        "application": None, "application_fee_amount": None, "automatic_payment_methods": None,
        "canceled_at": None, "cancellation_reason": None, "capture_method": "automatic",
        "client_secret": f"{intent_id}_secret_bench", "confirmation_method": "automatic",
        "created": int(time.time()), "currency": "usd", "customer": None,
        "description": "ShopSphere order ORD-BENCH", "last_payment_error": None,
        "latest_charge": "ch_" + intent_id[3:], "livemode": False,
        "metadata": {"orderId": str(uuid.uuid4()), "paymentId": str(uuid.uuid4()),
                     "userId": str(uuid.uuid4())},
        "next_action": None, "on_behalf_of": None, "payment_method": "pm_" + intent_id[3:],
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"installments": None, "mandate_options": None,
                                            "network": None,
                                            "request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"], "processing": None, "receipt_email": None,
        "review": None, "setup_future_usage": None, "shipping": None, "source": None,
        "statement_descriptor": None, "statement_descriptor_suffix": None,
        "status": "succeeded", "transfer_data": None, "transfer_group": None,
    }


class Requests:
    """Unique signed webhook requests (raw HTTP/1.1 bytes) for one target."""

    def __init__(self, host: str, port: int, prefix: str):
        from tests.helpers import event_body

        self.event_body = event_body
        self.head = (f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     "User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
                     "Content-Type: application/json; charset=utf-8\r\n")
        self.prefix = prefix
        self.n = 0

    def next(self) -> bytes:
        from tests.helpers import sign

        self.n += 1
        key = f"{self.prefix}{self.n:07d}"
        body = self.event_body(f"evt_{key}", "payment_intent.succeeded",
                               intent_object(f"pi_{key}"))
        return (self.head + f"Stripe-Signature: {sign(body, WHSEC)}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


async def send(host: str, port: int, req: bytes) -> int:
    """One request on a new connection (gunicorn's sync workers close it after the answer);
    the HTTP status."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(req)
        data = await reader.read()
    finally:
        writer.close()
    return int(data[9:12]) if data[:5] == b"HTTP/" else 0


# --------------------------------------------------------------------------------------------
# Servers


class Server:
    """gunicorn with the project's gunicorn.conf.py and 2 workers, on a free loopback port."""

    def __init__(self, name: str, app_spec: str, env: dict, logdir: Path, workers: int,
                 extra: tuple[str, ...] = ()):
        from stripe_sandbox.testing import free_port

        self.name, self.env, self.port = name, env, free_port()
        self.argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                     "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
                     *extra, app_spec]
        self.logpath = logdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        log = open(self.logpath, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError), _opener.open(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                if r.status == 200 and len(children(self.proc.pid)) >= 1:
                    return self
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not answer:\n{self.log_tail()}")
            time.sleep(0.1)

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.logpath.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------------------------
# Load


@dataclass
class Load:
    target: str
    mode: str
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    lat_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    due_s: list[float] = field(default_factory=list)  # open loop: scheduled time from start
    seconds: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    pg_cpu: float = 0.0
    busy: float = 0.0  # cores busy on the whole machine, on average
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def bad(self) -> int:
        return self.sent - self.ok

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def others(self) -> float:
        """Cores used by everything else: other processes, Redis, PostgreSQL's background."""
        own = (self.client_cpu + self.server_cpu + self.pg_cpu) / self.seconds
        return max(0.0, self.busy - own) if self.seconds else 0.0


async def open_loop(host: str, port: int, reqs: list[bytes], rate: float, res: Load,
                    max_outstanding: int) -> None:
    """Request i is due at start + i/rate, whatever happened to the earlier ones."""
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(max_outstanding)
    start = loop.time() + 0.05
    last = [start]

    async def fire(req: bytes, due: float) -> None:
        async with sem:
            sent = loop.time()
            try:
                status = await asyncio.wait_for(send(host, port, req), 30)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                status = -1
                res.errors[type(exc).__name__] += 1
        done = loop.time()
        res.statuses[status] += 1
        res.lat_ms.append((done - due) * 1000)
        res.lag_ms.append((sent - due) * 1000)
        res.due_s.append(due - start)
        last[0] = max(last[0], done)

    tasks = []
    for i, req in enumerate(reqs):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(fire(req, due)))
    await asyncio.gather(*tasks)
    res.sent = len(reqs)
    res.seconds = last[0] - start


async def closed_loop(host: str, port: int, make: Callable[[], bytes], conns: int,
                      seconds: float, res: Load) -> None:
    """``conns`` clients, each sending its next request as soon as the last one answered."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + seconds

    async def client() -> None:
        while loop.time() < deadline:
            req = make()
            t0 = loop.time()
            try:
                status = await asyncio.wait_for(send(host, port, req), 30)
            except Exception as exc:  # noqa: BLE001
                status = -1
                res.errors[type(exc).__name__] += 1
            res.statuses[status] += 1
            res.lat_ms.append((loop.time() - t0) * 1000)
            res.sent += 1

    await asyncio.gather(*(client() for _ in range(conns)))
    res.seconds = loop.time() - start


def measured(res: Load, server: Server, pg_url: str, run, extra_pids=()) -> Load:
    """Run the load coroutine; record the CPU of the client, the server, its PostgreSQL
    backends and the whole machine over the same interval."""
    backends = pg_backends(pg_url)
    pids = list(extra_pids)
    c0, s0 = time.process_time(), server.cpu() + sum(tree_cpu(p) for p in pids)
    p0 = sum(proc_cpu(p) for p in backends)
    m0, t0 = machine_busy()
    # The client's own garbage collector off during the run: a full collection of this
    # process's heap (the portal is imported here too) stalls the event loop for ~100 ms and
    # would show as server latency. Reference counting still frees everything here.
    gc.collect()
    gc.disable()
    try:
        asyncio.run(run)
    finally:
        gc.enable()
    m1, t1 = machine_busy()
    res.client_cpu = time.process_time() - c0
    res.server_cpu = server.cpu() + sum(tree_cpu(p) for p in pids) - s0
    res.pg_cpu = sum(proc_cpu(p) for p in backends) - p0
    res.busy = (m1 - m0) / (t1 - t0) * (os.cpu_count() or 1) if t1 > t0 else 0.0
    return res


# --------------------------------------------------------------------------------------------
# The worker


@dataclass
class WorkerRun:
    label: str
    kind: str
    n: int
    statuses: dict = field(default_factory=dict)
    rate: float = 0.0  # events/s, first -> last processed_at
    wall: float = 0.0  # the process, start-up included
    jobs: int = 0
    cpu: float = 0.0
    busy: float = 0.0
    lag_p50: float = float("nan")
    lag_p99: float = float("nan")
    job_ms: float = float("nan")  # median time RQ reports for the job itself
    requeued: int = 0  # queued again by the start-up sweep (still "received")
    ok: bool = False


def worker_argv(fork: bool, burst: bool) -> list[str]:
    return ([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--queue", "webhooks"]
            + (["--burst"] if burst else []) + (["--fork"] if fork else []))


def store_events(app, events: list[dict]) -> None:
    """Store events as the intake does (status received)."""
    import sqlalchemy as sa

    from portal.extensions import db
    from portal.models_base import utcnow
    from portal.webhooks.models import StripeEvent

    with app.app_context():
        for i in range(0, len(events), 1000):
            chunk = events[i:i + 1000]
            db.session.execute(sa.insert(StripeEvent), [{
                "id": e["id"], "type": e["type"], "object_id": e["data"]["object"].get("id"),
                "api_version": e["api_version"], "stripe_created": e["created"], "payload": e,
                "status": "received", "attempts": 0, "received_at": utcnow()}
                for e in chunk])
            db.session.commit()
        db.session.remove()


def store_and_enqueue(app, events: list[dict]) -> None:
    """Store events as the intake does, then queue their jobs as a worker's dispatcher does
    (the portal's dispatch_received: status queued)."""
    from portal import jobs
    from portal.extensions import db
    from portal.webhooks.jobs import dispatch_received

    store_events(app, events)
    with app.app_context():
        if app.config.get("REDIS_URL"):
            jobs.redis_connection().ping()  # unreachable: fail here, not wait for the jobs
        if dispatch_received() != len(events):
            raise SystemExit("the dispatcher did not queue every stored event")
        db.session.remove()


def event_dict(event_id: str, event_type: str, obj: dict) -> dict:
    return {"id": event_id, "object": "event", "type": event_type,
            "api_version": "2026-10-28.endive", "created": int(time.time()), "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
            "data": {"object": obj}}


def event_results(db_url: str, prefix: str) -> tuple[dict, float, float, list[float]]:
    """(count by status, first and last processed_at as epoch seconds, lags in ms)."""
    with psycopg.connect(db_url) as conn:
        statuses = dict(conn.execute(
            "SELECT status, count(*) FROM stripe_events WHERE id LIKE %s GROUP BY status",
            (prefix + "%",)).fetchall())
        first, last = conn.execute(
            "SELECT extract(epoch FROM min(processed_at)), extract(epoch FROM max(processed_at))"
            " FROM stripe_events WHERE id LIKE %s", (prefix + "%",)).fetchone()
        lags = [float(r[0]) for r in conn.execute(
            "SELECT extract(epoch FROM processed_at - received_at) * 1000 FROM stripe_events "
            "WHERE id LIKE %s AND processed_at IS NOT NULL", (prefix + "%",))]
    return statuses, float(first or 0), float(last or 0), lags


def burst_worker(label: str, kind: str, prefix: str, n: int, expect: str, fork: bool,
                 env: dict, db_url: str, logdir: Path) -> WorkerRun:
    """Time one ``flask worker --burst`` process draining the queue."""
    run = WorkerRun(label, kind, n)
    logpath = logdir / f"worker-{prefix}.log"
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m0, t0m = machine_busy()
    t0 = time.perf_counter()
    with open(logpath, "wb") as log:
        proc = subprocess.run(worker_argv(fork, burst=True), cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=1800, check=False)
    run.wall = time.perf_counter() - t0
    m1, t1m = machine_busy()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    run.busy = (m1 - m0) / (t1m - t0m) * (os.cpu_count() or 1)
    text = logpath.read_text(errors="replace")
    run.jobs = text.count("Job OK")
    job_s = [int(h) * 3600 + int(m) * 60 + float(sec)
             for h, m, sec in re.findall(r"job in (\d+):(\d+):([\d.]+)s", text)]
    if job_s:
        run.job_ms = statistics.median(job_s) * 1000
    requeued = re.search(r"queued (\d+) [^\n]*webhook event", text)
    run.requeued = int(requeued.group(1)) if requeued else 0
    run.statuses, first, last, lags = event_results(db_url, prefix)
    run.rate = (n - 1) / (last - first) if last > first else 0.0
    if lags:
        run.lag_p50, run.lag_p99 = pct(lags, 50), pct(lags, 99)
    run.ok = proc.returncode == 0 and run.statuses == {expect: n}
    if not run.ok:
        print(f"   !! {label}: exit {proc.returncode}, statuses {run.statuses}\n"
              + "\n".join(text.splitlines()[-15:]))
    return run


def seed_payments(app, sandbox_url: str, n: int) -> list[dict]:
    """n orders with a Payment and its PaymentIntent made by the portal (start_checkout),
    then each intent confirmed at the sandbox directly with a 4242 card, as if the customer's
    browser had done it and the portal had not heard back yet. Returns the intents."""
    import stripe
    from werkzeug.security import generate_password_hash

    from portal.auth import models as auth_models
    from portal.auth.services import create_user
    from portal.extensions import db
    from portal.orders.services import ItemIn, OrderIn, create_order
    from portal.payments.services import start_checkout

    auth_models.generate_password_hash = functools.partial(
        generate_password_hash, method="pbkdf2:sha256:1000")
    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": sandbox_url},
                                 http_client=stripe.RequestsClient(timeout=10))
    intents = []
    with app.app_context():
        vendor = create_user("vendor@bench-webhooks.test", "vendor", "bench-pass-123", "Vendor")
        customer = create_user("customer@bench-webhooks.test", "customer", "bench-pass-123",
                               "Customer")
        db.session.commit()
        for i in range(n):
            order = create_order(OrderIn(
                customerEmail=customer.email, currency="USD", tax=0, shipping=0,
                items=[ItemIn(vendorEmail=vendor.email, description="Desk lamp", quantity=1,
                              unitAmount=2000 + i)]))
            db.session.commit()
            checkout = start_checkout(order, source="api")
            pm = client.v1.payment_methods.create(params={"type": "card", "card": CARD})
            pi = client.v1.payment_intents.confirm(checkout.intent.id,
                                                   params={"payment_method": pm.id})
            if pi.status != "succeeded":
                raise SystemExit(f"seed: intent {pi.id} is {pi.status}")
            intents.append(pi.to_dict())
        db.session.remove()
    return intents


def loop_without_rq(app, prefix: str, n: int) -> WorkerRun:
    """Upper bound: the same job (portal.jobs.run -> process_event) called in a loop in this
    process, no RQ and no Redis: what one worker could do if dispatch cost nothing."""
    from portal.jobs import run as run_job

    run = WorkerRun("no RQ: portal.jobs.run in a loop", "unknown type (ignored): dispatch only",
                    n)
    events = [event_dict(f"{prefix}{i:07d}", "bench.unknown_type",
                         {"id": f"obj_{i}", "object": "bench"}) for i in range(n)]
    store_events(app, events)  # as the intake stores them; nothing queued
    c0 = time.process_time()
    m0, t0m = machine_busy()
    with app.app_context():
        app.extensions["pid"] = os.getpid()
        t0 = time.perf_counter()
        for e in events:
            run_job("portal.webhooks.jobs.process_event", e["id"])
        run.wall = time.perf_counter() - t0
    m1, t1m = machine_busy()
    run.busy = (m1 - m0) / (t1m - t0m) * (os.cpu_count() or 1) if t1m > t0m else 0.0
    run.cpu = time.process_time() - c0
    run.statuses, first, last, _ = event_results(plain_url_of(app), prefix)
    run.rate = n / run.wall
    run.job_ms = run.wall / n * 1000
    run.ok = run.statuses == {"ignored": n}
    return run


def plain_url_of(app) -> str:
    return app.config["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg://",
                                                         "postgresql://")


def profile_worker(app, prefix: str, n: int) -> str:
    """cProfile of the worker ``flask worker`` runs (portal.rqworker.PortalWorker, an RQ
    SimpleWorker) draining n dispatch-only events in this process (as ``flask worker`` runs
    it, minus the start-up sweep; RQ's logging at WARNING)."""
    from portal.jobs import redis_connection
    from portal.rqworker import PortalWorker

    store_and_enqueue(app, [event_dict(f"{prefix}{i:07d}", "bench.unknown_type",
                                       {"id": f"obj_{i}", "object": "bench"})
                            for i in range(n)])
    prof = cProfile.Profile()
    with app.app_context():
        app.extensions["pid"] = os.getpid()
        worker = PortalWorker(["webhooks"], connection=redis_connection())
        t0 = time.perf_counter()
        prof.enable()
        worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
        prof.disable()
        wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    job = sum(v[3] for k, v in stats.stats.items() if k[2] == "process_event")
    run = sum(v[3] for k, v in stats.stats.items()
              if k[2] == "run" and k[0].endswith("portal/jobs.py"))
    s = io.StringIO()
    print(f"   profiled PortalWorker (SimpleWorker), {n} events in {wall:.2f} s "
          f"({n / wall:.0f}/s under cProfile): portal.jobs.run {run / n * 1000:.2f} ms/event, "
          f"of which process_event {job / n * 1000:.2f} ms; the rest of the "
          f"{wall / n * 1000:.2f} ms is RQ", file=s)
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
    return s.getvalue()


# --------------------------------------------------------------------------------------------
# In-process breakdown


class Acc:
    """Per-request accumulators."""

    def __init__(self):
        self.v: dict[str, float] = Counter()

    def wrap(self, owner, name: str, key: str) -> None:
        method = getattr(owner, name)

        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.v[key] += (time.perf_counter() - t0) * 1000
                self.v[key + "#"] += 1

        setattr(owner, name, wrapper)
        return method


def breakdown(portal_env: dict, floor_url: str, n: int, profile: bool) -> dict:
    """Median ms per request in-process (Flask's test client; no gunicorn, no socket)."""
    import stripe
    from sqlalchemy import event

    import portal.api.views as views
    import portal.stripe_gateway as gateway
    import portal.webhooks.services as services
    from portal import create_app
    from portal.config import Config
    from portal.extensions import db
    from tests.helpers import event_body, sign

    def body(prefix: str, i: int) -> tuple[bytes, dict]:
        key = f"{prefix}{i:07d}"
        b = event_body(f"evt_{key}", "payment_intent.succeeded", intent_object(f"pi_{key}"))
        return b, {"Stripe-Signature": sign(b, WHSEC), "Content-Type": "application/json"}

    out: dict[str, dict] = {}
    acc = Acc()
    orig_commit = acc.wrap(psycopg.Connection, "commit", "sql")
    try:
        # The portal.
        app = create_app(Config.from_env(portal_env))
        with app.app_context():
            engine = db.engine

        def before(conn, cursor, statement, parameters, context, executemany):
            conn.info["bench_t0"] = time.perf_counter()

        def after(conn, cursor, statement, parameters, context, executemany):
            acc.v["sql"] += (time.perf_counter() - conn.info.pop("bench_t0")) * 1000
            acc.v["sql#"] += 1

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        saved = [(gateway, "verify_webhook", acc.wrap(gateway, "verify_webhook", "verify")),
                 (views, "receive_event", acc.wrap(views, "receive_event", "store")),
                 (services, "enqueue_processing",
                  acc.wrap(services, "enqueue_processing", "enqueue"))]
        client = app.test_client()
        rows: dict[str, list[float]] = {k: [] for k in
                                        ("total", "verify", "store", "sql", "trips", "enqueue")}
        prof = cProfile.Profile() if profile else None
        for i in range(n + 50):
            b, headers = body("inproc", i)
            acc.v.clear()
            if prof and i >= 50:
                prof.enable()
            t0 = time.perf_counter()
            resp = client.post(WEBHOOK_PATH, data=b, headers=headers)
            total = (time.perf_counter() - t0) * 1000
            if prof:
                prof.disable()
            if resp.status_code != 200:
                raise SystemExit(f"in-process intake: {resp.status_code} {resp.data[:200]}")
            if i >= 50:
                rows["total"].append(total)
                for k in ("verify", "store", "sql", "enqueue"):
                    rows[k].append(acc.v[k])
                rows["trips"].append(acc.v["sql#"])
        out["portal"] = {k: statistics.median(v) for k, v in rows.items()}
        for owner, name, method in saved:
            setattr(owner, name, method)
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()

        # The floor.
        os.environ["FLOOR_DATABASE_URL"] = floor_url
        os.environ["FLOOR_WEBHOOK_SECRET"] = WHSEC
        import webhook_floor

        orig_exec = acc.wrap(psycopg.Connection, "execute", "sql")
        orig_construct = acc.wrap(stripe.Webhook, "construct_event", "verify")
        client = webhook_floor.app.test_client()
        rows = {k: [] for k in ("total", "verify", "sql", "trips")}
        for i in range(n + 50):
            b, headers = body("inprocfloor", i)
            acc.v.clear()
            t0 = time.perf_counter()
            resp = client.post(WEBHOOK_PATH, data=b, headers=headers)
            total = (time.perf_counter() - t0) * 1000
            if resp.status_code != 200:
                raise SystemExit(f"in-process floor: {resp.status_code} {resp.data[:200]}")
            if i >= 50:
                rows["total"].append(total)
                rows["verify"].append(acc.v["verify"])
                rows["sql"].append(acc.v["sql"])
                rows["trips"].append(acc.v["sql#"])
        psycopg.Connection.execute = orig_exec
        stripe.Webhook.construct_event = orig_construct
        webhook_floor._connection().close()
        out["floor"] = {k: statistics.median(v) for k, v in rows.items()}
    finally:
        psycopg.Connection.commit = orig_commit
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(40)
        out["profile"] = s.getvalue()
    return out


# --------------------------------------------------------------------------------------------
# Output


def print_load_table(rows: list[Load], open_loop_mode: bool) -> None:
    if open_loop_mode:
        print("| target | sent | 2xx | not 2xx | req/s | p50 | p95 | p99 | max | client lag p99 "
              "| server CPU ms/req | PG CPU ms/req | machine busy (cores) | of which others |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r.target} | {r.sent} | {r.ok} | {r.bad} | {r.rate:.1f} "
                  f"| {pct(r.lat_ms, 50):.1f} | {pct(r.lat_ms, 95):.1f} "
                  f"| **{pct(r.lat_ms, 99):.1f}** | {max(r.lat_ms):.1f} "
                  f"| {pct(r.lag_ms, 99):.1f} | {r.server_cpu / r.sent * 1000:.2f} "
                  f"| {r.pg_cpu / r.sent * 1000:.2f} | {r.busy:.2f} | {r.others:.2f} |")
    else:
        print("| target | clients | requests | 2xx | not 2xx | req/s | p50 | p99 | max "
              "| server CPU ms/req | PG CPU ms/req | client CPU ms/req | machine busy (cores) "
              "| of which others |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r.target} | {r.mode} | {r.sent} | {r.ok} | {r.bad} | **{r.rate:.0f}** "
                  f"| {pct(r.lat_ms, 50):.1f} | {pct(r.lat_ms, 99):.1f} | {max(r.lat_ms):.1f} "
                  f"| {r.server_cpu / r.sent * 1000:.2f} | {r.pg_cpu / r.sent * 1000:.2f} "
                  f"| {r.client_cpu / r.sent * 1000:.2f} | {r.busy:.2f} | {r.others:.2f} |")
    for r in rows:
        if r.bad:
            print(f"   {r.target}: statuses {dict(r.statuses)}, errors {dict(r.errors)}")
    for r in rows:
        if r.due_s:
            windows: dict[int, list[float]] = {}
            for due, lat in zip(r.due_s, r.lat_ms, strict=True):
                windows.setdefault(int(due // 5), []).append(lat)
            print(f"   {r.target}: p99 per 5 s window: "
                  + " / ".join(f"{pct(v, 99):.0f}" for _, v in sorted(windows.items()))
                  + " ms")


def versions(pg_url: str, redis_conn) -> str:
    with psycopg.connect(pg_url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    return (f"Python {platform.python_version()}, gunicorn {version('gunicorn')}, Flask "
            f"{version('flask')}, SQLAlchemy {version('sqlalchemy')}, psycopg "
            f"{version('psycopg')}, rq {version('rq')}, redis-py {version('redis')}, Redis "
            f"{redis_conn.info('server')['redis_version']}, PostgreSQL {pg.split()[0]}, "
            f"stripe-python {version('stripe')}")


# --------------------------------------------------------------------------------------------
# The run


def prepare(args, floor_db: str, floor_url: str, redis_conn, cpus: int,
            load_before: tuple) -> None:
    """Print the run's header, (re)create the portal's database and the floor's (with its
    one table) and flush the benchmark's Redis database."""
    print(f"== {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {cpus} CPUs; load average "
          f"{' '.join(f'{x:.2f}' for x in load_before)}")
    print(f"   {versions(plain_url(args.pg, 'postgres'), redis_conn)}")
    print(f"== databases {args.db} (alembic upgrade) and {floor_db}; Redis {args.redis} "
          "flushed; Stripe sandbox")
    recreate_database(args.pg, args.db)
    recreate_database(args.pg, floor_db)
    redis_conn.flushdb()
    import webhook_floor

    with psycopg.connect(floor_url, autocommit=True) as conn:
        conn.execute(webhook_floor.SCHEMA)


def server_envs(db_url: str, floor_url: str, redis_url: str, sandbox) -> tuple[dict, dict]:
    """The explicit environments of the portal's servers (production) and of the floor's:
    nothing from the developer's shell."""
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                "HOME": os.environ.get("HOME", "/tmp")}
    portal_env = {
        **base_env, "PORTAL_ENV": "production", "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        # Production answers only its own host: the load is sent to 127.0.0.1.
        "SERVER_NAME": "127.0.0.1",
        "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
        "JWT_SECRET": "bench-jwt-secret-that-is-long-enough-0123456789",
        "STRIPE_SECRET_KEY": "sk_test_bench", "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
        "STRIPE_WEBHOOK_SECRET": WHSEC, "STRIPE_CONNECT_WEBHOOK_SECRET": WHSEC + "_connect",
        "STRIPE_API_BASE": sandbox.url, "STRIPE_JS_URL": sandbox.js_url,
    }
    return portal_env, {**base_env, "FLOOR_DATABASE_URL": floor_url,
                        "FLOOR_WEBHOOK_SECRET": WHSEC}


def clean_up(args, floor_db: str, redis_conn) -> None:
    """Flush the benchmark's Redis database; drop both databases unless --keep."""
    with contextlib.suppress(Exception):
        redis_conn.flushdb()
    if not args.keep:
        drop_database(args.pg, args.db)
        drop_database(args.pg, floor_db)


def print_load_average(before: tuple, after: tuple, cpus: int) -> None:
    print(f"Load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in before)}; "
          f"after: {' '.join(f'{x:.2f}' for x in after)}; {cpus} CPUs"
          f"{' (busy machine)' if max(before[0], after[0]) > cpus else ''}")


def stores_args(ap, default_db: str, redis_db: int) -> None:
    """The options of the portal's and the floor's databases and of the Redis database."""
    ap.add_argument("--pg", default=os.environ.get("BENCH_PG_URL",
                                                   "postgresql://postgres@127.0.0.1:5432"),
                    help="server URL without database (env BENCH_PG_URL)")
    ap.add_argument("--db", default=default_db,
                    help="database to (re)create; the floor's is <db>_floor")
    ap.add_argument("--redis", default=f"redis://127.0.0.1:6379/{redis_db}",
                    help="Redis URL with the database number the script may flush")
    ap.add_argument("--keep", action="store_true", help="keep the databases at the end")


def main(argv=None) -> int:  # noqa: PLR0915 - one linear script
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stores_args(ap, "portal_bench_webhooks", 11)
    ap.add_argument("--rate", type=float, default=200.0, help="open-loop rate, req/s")
    ap.add_argument("--seconds", type=float, default=25.0, help="open-loop seconds per target")
    ap.add_argument("--max-seconds", type=float, default=10.0,
                    help="closed-loop seconds per target")
    ap.add_argument("--clients", type=int, default=8, help="closed-loop connections")
    ap.add_argument("--gunicorn-workers", type=int, default=2)
    ap.add_argument("--gunicorn-arg", action="append", default=[],
                    help="extra gunicorn argument for both servers, e.g. --gunicorn-arg=--threads=4"
                         " (an experiment; the acceptance run uses none)")
    ap.add_argument("--events", type=int, default=5000,
                    help="events for the worker's dispatch-only (ignored type) run")
    ap.add_argument("--fork-events", type=int, default=500, help="events for the --fork run")
    ap.add_argument("--stripe-events", type=int, default=1000,
                    help="payments seeded for the payment_intent.succeeded runs")
    ap.add_argument("--inproc", type=int, default=500,
                    help="in-process requests for the breakdown (0: skip)")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the in-process portal requests (top 25 by own time)")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="first wait up to SECONDS for 5 s in which the machine is < 0.3 cores "
                         "busy (other work on the same cores distorts every figure)")
    ap.add_argument("--target-p99-ms", type=float, default=25.0)
    ap.add_argument("--target-ratio", type=float, default=0.60)
    ap.add_argument("--target-worker", type=float, default=200.0, help="events/s")
    args = ap.parse_args(argv)

    from redis import Redis

    from stripe_sandbox.testing import Sandbox

    cpus = os.cpu_count() or 1
    if args.wait_idle:
        waited = time.monotonic()
        while True:
            m0, t0 = machine_busy()
            time.sleep(5)
            m1, t1 = machine_busy()
            busy = (m1 - m0) / (t1 - t0) * cpus
            if busy < 0.3 or time.monotonic() - waited > args.wait_idle:
                print(f"== waited {time.monotonic() - waited:.0f} s; the last 5 s: {busy:.2f} "
                      "cores busy")
                break
    started = time.perf_counter()
    load_before = os.getloadavg()
    run_id = uuid.uuid4().hex[:6]
    floor_db = f"{args.db}_floor"
    db_url, floor_url = plain_url(args.pg, args.db), plain_url(args.pg, floor_db)
    redis_conn = Redis.from_url(args.redis)
    prepare(args, floor_db, floor_url, redis_conn, cpus, load_before)
    failures: list[str] = []
    servers: list[Server] = []
    logdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    try:
        with Sandbox() as sandbox:
            portal_env, floor_env = server_envs(db_url, floor_url, args.redis, sandbox)
            from flask_migrate import upgrade

            from portal import create_app
            from portal.config import Config

            app = create_app(Config.from_env(portal_env))
            with app.app_context():
                upgrade()

            w = args.gunicorn_workers
            extra = tuple(args.gunicorn_arg)
            portal = Server("portal", "wsgi:app", portal_env, logdir, w, extra).start()
            floor = Server("floor", "webhook_floor:app", floor_env, logdir, w,
                           ("--pythonpath", "bench", *extra)).start()
            servers += [portal, floor]
            targets = ((portal, db_url, "portal"), (floor, floor_url, "floor"))
            print(f"   gunicorn -c gunicorn.conf.py --workers {w} {' '.join(extra)}: portal "
                  f"wsgi:app on :{portal.port}, floor bench/webhook_floor.py on :{floor.port}; "
                  f"logs in {logdir}")

            # ---- open loop at the target rate
            print(f"== open loop: {args.rate:.0f} req/s for {args.seconds:.0f} s per target "
                  "(after 3 s of warm-up at 100 req/s)")
            n = int(args.rate * args.seconds)
            open_rows = []
            for server, _url, name in targets:
                gen = Requests("127.0.0.1", server.port, f"{run_id}{name[0]}w")
                warm = Load(name, "warm-up")
                asyncio.run(open_loop("127.0.0.1", server.port, [gen.next() for _ in range(300)],
                                      100, warm, 1024))
                if warm.bad:
                    raise SystemExit(f"{name} warm-up: {dict(warm.statuses)} "
                                     f"{dict(warm.errors)}\n{server.log_tail()}")
            for server, url, name in targets:
                gen = Requests("127.0.0.1", server.port, f"{run_id}{name[0]}o")
                reqs = [gen.next() for _ in range(n)]
                res = Load(name, "open")
                measured(res, server, url,
                         open_loop("127.0.0.1", server.port, reqs, args.rate, res, 1024))
                open_rows.append(res)
            with psycopg.connect(db_url) as conn:  # no worker yet: nothing queues them
                stored = conn.execute(
                    "SELECT count(*) FROM stripe_events WHERE id LIKE %s AND status = "
                    "'received'", (f"evt_{run_id}po%",)).fetchone()[0]

            # ---- closed loop: the maximum
            print(f"== closed loop: {args.clients} connections for {args.max_seconds:.0f} s "
                  "per target")
            max_rows = []
            for server, url, name in targets:
                gen = Requests("127.0.0.1", server.port, f"{run_id}{name[0]}m")
                res = Load(name, str(args.clients))
                measured(res, server, url, closed_loop("127.0.0.1", server.port, gen.next,
                                                       args.clients, args.max_seconds, res))
                max_rows.append(res)

            # ---- the portal at the target rate while one worker processes the events
            print(f"== open loop on the portal, {args.rate:.0f} req/s for {args.seconds:.0f} s, "
                  "with one worker (SimpleWorker) processing the events as they arrive")
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("TRUNCATE stripe_events")
            redis_conn.flushdb()
            wlog = open(logdir / "worker-live.log", "wb")  # noqa: SIM115
            worker = subprocess.Popen(worker_argv(False, burst=False), cwd=ROOT, env=portal_env,
                                      stdout=wlog, stderr=subprocess.STDOUT)
            wlog.close()
            try:
                deadline = time.monotonic() + 30
                while not redis_conn.smembers("rq:workers:webhooks"):
                    if worker.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the worker did not start:\n"
                                         + (logdir / "worker-live.log").read_text()[-2000:])
                    time.sleep(0.1)
                time.sleep(1)
                gen = Requests("127.0.0.1", portal.port, f"{run_id}pl")
                reqs = [gen.next() for _ in range(n)]
                live = Load("portal + worker", "open")
                w0 = tree_cpu(worker.pid)
                measured(live, portal, db_url,
                         open_loop("127.0.0.1", portal.port, reqs, args.rate, live, 1024))
                backlog = redis_conn.llen("rq:queue:webhooks")
                t_end = time.monotonic()
                while redis_conn.llen("rq:queue:webhooks") and time.monotonic() < t_end + 120:
                    time.sleep(0.2)
                # The last job may still be running: wait for its row.
                time.sleep(1)
                drain = time.monotonic() - t_end
                live.extra["worker_cpu"] = tree_cpu(worker.pid) - w0
            finally:
                worker.terminate()
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
            live_status, _, _, live_lags = event_results(db_url, f"evt_{run_id}pl")
            for s in servers:
                s.stop()

            # ---- the worker alone
            print("== worker: one `flask --app wsgi worker --burst --queue webhooks` draining "
                  "stored and queued events")
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("TRUNCATE stripe_events")
            redis_conn.flushdb()
            wruns: list[WorkerRun] = []
            for fork, count in ((False, args.events), (True, args.fork_events)):
                prefix = f"evt_{run_id}{'f' if fork else 's'}"
                store_and_enqueue(app, [event_dict(f"{prefix}{i:07d}", "bench.unknown_type",
                                                   {"id": f"obj_{i}", "object": "bench"})
                                        for i in range(count)])
                wruns.append(burst_worker(
                    f"{'Worker (--fork)' if fork else 'SimpleWorker'}",
                    "unknown type (ignored): dispatch only", prefix, count, "ignored", fork,
                    portal_env, db_url, logdir))
            wruns.append(loop_without_rq(app, f"evt_{run_id}n", min(args.events, 2000)))
            seeded = 0
            if args.stripe_events:
                t0 = time.perf_counter()
                intents = seed_payments(app, sandbox.url, args.stripe_events)
                seeded = time.perf_counter() - t0
                for tag, kind in (("c", "payment_intent.succeeded, payment not settled: "
                                        "re-read from Stripe, settle"),
                                  ("b", "payment_intent.succeeded, payment already settled: "
                                        "no Stripe call")):
                    prefix = f"evt_{run_id}{tag}"
                    store_and_enqueue(app, [event_dict(f"{prefix}{i:07d}",
                                                       "payment_intent.succeeded", pi)
                                            for i, pi in enumerate(intents)])
                    wruns.append(burst_worker("SimpleWorker", kind, prefix, len(intents),
                                              "processed", False, portal_env, db_url, logdir))
                with psycopg.connect(db_url) as conn:
                    settled = conn.execute(
                        "SELECT count(*) FROM payments WHERE status = 'succeeded' "
                        "AND stripe_payment_intent_id = ANY(%s)",
                        ([pi["id"] for pi in intents],)).fetchone()[0]
                if settled != len(intents):
                    failures.append(f"only {settled} of {len(intents)} payments settled")

            wprofile = profile_worker(app, f"evt_{run_id}p", min(args.events, 2000)) \
                if args.profile else ""

            # ---- in-process breakdown
            parts = breakdown(portal_env, floor_url, args.inproc, args.profile) \
                if args.inproc else None
    finally:
        for s in servers:
            s.stop()
        clean_up(args, floor_db, redis_conn)

    load_after = os.getloadavg()
    # ------------------------------------------------------------------ report
    print()
    print_load_average(load_before, load_after, cpus)
    print()
    print(f"**Open loop, {args.rate:.0f} req/s for {args.seconds:.0f} s** (latency in ms from "
          "each request's scheduled send time; a new connection per request, as gunicorn's "
          "sync workers close it):")
    print()
    print_load_table([*open_rows, live], True)
    print()
    print(f"   portal: {stored} events stored (\"received\", for a worker) for {n} sent. "
          f"portal + worker: the worker used {live.extra['worker_cpu']:.1f} CPU s; "
          f"{backlog} jobs were still queued when the load ended, drained "
          f"{drain:.1f} s later; events {live_status}; received -> processed p50 "
          f"{pct(live_lags, 50):.0f} ms, p99 {pct(live_lags, 99):.0f} ms")
    print()
    print(f"**Closed loop, maximum throughput** ({args.clients} connections, "
          f"{args.max_seconds:.0f} s):")
    print()
    print_load_table(max_rows, False)
    print()
    print("**Worker** (one process; rate = events / time from the first to the last "
          "processed_at; wall = the process, start-up included; CPU = the worker and its "
          "children):")
    print()
    print("| worker | events | n | result | events/s | ms/event | job p50 ms | wall s "
          "| jobs run (re-queued at start) | CPU ms/event | machine busy (cores) |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in wruns:
        result = ", ".join(f"{v} {k}" for k, v in sorted(r.statuses.items()))
        print(f"| {r.label} | {r.kind} | {r.n} | {result} | **{r.rate:.0f}** "
              f"| {1000 / r.rate if r.rate else float('nan'):.2f} | {r.job_ms:.2f} "
              f"| {r.wall:.1f} | {r.jobs} ({r.requeued}) | {r.cpu / r.n * 1000:.2f} "
              f"| {r.busy:.2f} |")
    print()
    print("   job p50 = the job's own time as RQ logs it (portal.jobs.run: app context, "
          "process_event, session removal); ms/event minus job p50 = RQ's own work per job "
          "(dequeue, status and result writes to Redis, logging).")
    if args.stripe_events:
        print(f"\n   seeding {args.stripe_events} payments (order, start_checkout, confirm at "
              f"the sandbox) took {seeded:.0f} s")
    if wprofile:
        print()
        print(wprofile)
    if parts:
        p, f = parts["portal"], parts["floor"]
        print()
        print(f"**In-process** (Flask's test client, {args.inproc} requests each, medians in ms; "
              "no gunicorn, no socket):")
        print()
        print("| target | total | verify signature | store (receive_event) | of which SQL "
              "| SQL round trips | enqueue (RQ) | rest (Flask, ORM, JSON) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        print(f"| portal | {p['total']:.2f} | {p['verify']:.2f} | {p['store']:.2f} "
              f"| {p['sql']:.2f} | {p['trips']:.0f} | {p['enqueue']:.2f} "
              f"| {p['total'] - p['verify'] - p['store']:.2f} |")
        print(f"| floor | {f['total']:.2f} | {f['verify']:.2f} | - | {f['sql']:.2f} "
              f"| {f['trips']:.0f} | - | {f['total'] - f['verify'] - f['sql']:.2f} |")
        if "profile" in parts:
            print()
            print(parts["profile"])

    # ------------------------------------------------------------------ targets
    po, fo = open_rows
    pm, fm = max_rows
    p99 = pct(po.lat_ms, 99)
    if po.bad or fo.bad:
        failures.append(f"not 2xx at {args.rate:.0f} req/s: portal {po.bad}, floor {fo.bad}")
    if p99 >= args.target_p99_ms:
        failures.append(f"portal p99 {p99:.1f} ms >= {args.target_p99_ms:.0f} ms at "
                        f"{args.rate:.0f} req/s")
    for what, a, b in (("at the fixed rate", po.rate, fo.rate), ("at the maximum", pm.rate,
                                                                  fm.rate)):
        ratio = a / b if b else 0.0
        print(f"   throughput {what}: portal {a:.0f} req/s / floor {b:.0f} req/s = "
              f"{ratio:.0%} (target >= {args.target_ratio:.0%})")
        if ratio < args.target_ratio:
            failures.append(f"throughput {what}: {ratio:.0%} of the floor")
    if stored != po.sent:
        failures.append(f"portal stored {stored} of {po.sent} events")
    for r in wruns:
        if not r.ok:
            failures.append(f"{r.label} ({r.kind}): not every event was processed")
        counted = r.label == "SimpleWorker" and "re-read from Stripe" not in r.kind
        if counted and r.rate < args.target_worker:
            failures.append(f"{r.label} ({r.kind}): {r.rate:.0f} events/s < "
                            f"{args.target_worker:.0f}")
    print()
    print(f"== {time.perf_counter() - started:.0f} s in all")
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print(f"PASS: portal p99 {p99:.1f} ms at {args.rate:.0f} req/s, throughput >= "
          f"{args.target_ratio:.0%} of the floor's, one SimpleWorker >= "
          f"{args.target_worker:.0f} events/s (events that need no Stripe call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
