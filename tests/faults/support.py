"""Building blocks of the fault tests: processes (gunicorn, `flask worker`, redis-server), a
TCP proxy that can cut PostgreSQL off, a fake order service, signed event senders, waits.

Nothing here sleeps for a fixed time to "let things happen": every wait polls a condition
with a timeout (``wait_for``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import stripe

from portal.config import ROOT
from portal.extensions import db
from stripe_sandbox.testing import Sandbox, free_port
from tests.conftest import portal_env
from tests.helpers import event_body, sign
from tests.stripe_contract import command as contract_command

SECRET = portal_env("", "")["STRIPE_WEBHOOK_SECRET"]
CONNECT_SECRET = portal_env("", "")["STRIPE_CONNECT_WEBHOOK_SECRET"]
WEBHOOK_PATH = "/api/payments/webhook"
VISA = "4242424242424242"
DECLINED = "4000000000000341"  # attaches, then is declined when charged


def wait_for(predicate, *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition",
             diagnostics=None):
    """Poll ``predicate`` until it returns something truthy (returned), or fail after
    ``timeout`` seconds with ``what`` and whatever ``diagnostics()`` tells."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = diagnostics() if diagnostics else ""
            raise AssertionError(f"{what}: not met within {timeout} s\n{detail}")
        time.sleep(interval)  # polling interval


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


# --- processes ------------------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (graceful), SIGKILL if it is still there after ``timeout``."""
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def kill(self) -> list[int]:
        """SIGKILL this process only (as the OOM killer does): no cleanup of any kind.
        Returns the pids of its children, which live on (reparented)."""
        children = self.children()
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait()
        return children

    def children(self) -> list[int]:
        pids: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (task / "children").read_text().split()]
        return pids


def stop_orphan(pid: int, timeout: float = 5) -> None:
    """SIGTERM (then SIGKILL) a process a test's process left behind, if it is still ours."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"flask" not in cmdline:  # gone, and the pid reused by someone else
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling interval (not our child: no waitpid)
        if not Path(f"/proc/{pid}").exists():
            return


class RedisServer:
    """A redis-server of the test's own on a free port, without persistence: stopping it loses
    whatever was queued, as a crash of an unpersisted Redis does."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        from redis import Redis
        from redis.exceptions import RedisError

        try:
            return bool(Redis(port=self.port, socket_connect_timeout=1).ping())
        except RedisError:
            return False

    def start(self) -> RedisServer:
        self.starts += 1
        log = self.workdir / f"redis-{self.starts}.log"
        popen = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.proc = Proc("redis", popen, log)
        wait_for(lambda: self.ping() or (not self.proc.alive() and "exited"), timeout=10,
                 what=f"redis-server on port {self.port} answers PING")
        if not self.proc.alive():
            raise RuntimeError(f"redis-server exited:\n{tail(log)}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@dataclass
class Stack:
    """One test's portal: its own Redis, Stripe sandbox, gunicorn and RQ workers, all on the
    fault suite's database; ``app`` is an app in this process built from the same settings
    (to seed rows with the portal's own services and to call its jobs)."""

    db_url: str
    workdir: Path
    redis: RedisServer
    sandbox: Sandbox
    env_vars: dict
    web_port: int
    app: object = None
    procs: list[Proc] = field(default_factory=list)
    orphans: list[int] = field(default_factory=list)  # children of processes it SIGKILLed
    _count: int = 0

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def _env(self, **more) -> dict:
        return {**os.environ, **self.env_vars, **more}

    def _spawn(self, name: str, argv: list[str], **env_more) -> Proc:
        self._count += 1
        log = self.workdir / f"{self._count:02d}-{name}.log"
        popen = subprocess.Popen(argv, cwd=ROOT, env=self._env(**env_more),
                                 stdout=log.open("w"), stderr=subprocess.STDOUT)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_web(self, **env_more) -> Proc:
        """gunicorn with 2 workers (4 threads each), as deployed; waits for /healthz."""
        web = self._spawn("web", contract_command(
            "gunicorn", "--bind", f"127.0.0.1:{self.web_port}", "--workers", "2",
            "--threads", "4", "wsgi:app"), **env_more)

        def up():
            if not web.alive():
                raise RuntimeError(f"gunicorn exited:\n{tail(web.log)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=1)
                conn.request("GET", "/healthz")
                return conn.getresponse().status == 200
            except OSError:
                return False

        wait_for(up, timeout=30, what="gunicorn answers /healthz", diagnostics=self.diagnostics)
        return web

    def start_worker(self, **env_more) -> Proc:
        """`flask --app wsgi worker` (RQ SimpleWorker; sweeps `received` events at start)."""
        return self._spawn("worker", contract_command("flask", "--app", "wsgi", "worker"),
                           **env_more)

    def flask(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a `flask --app wsgi ...` command with the stack's settings."""
        return subprocess.run(contract_command("flask", "--app", "wsgi", *args), cwd=ROOT,
                              env=self._env(), capture_output=True, text=True, timeout=timeout)

    def diagnostics(self) -> str:
        parts = [f"--- {p.log.name} ({'running' if p.alive() else 'exited'})\n{tail(p.log)}"
                 for p in self.procs]
        return "\n".join(parts) + f"\n--- sandbox\n{self.sandbox.log()[-2000:]}"

    def kill(self, proc: Proc) -> None:
        """SIGKILL one process (not its children: they are stopped at the end of the test)."""
        self.orphans += proc.kill()

    def close(self) -> None:
        for proc in self.procs:  # all at once: each takes a moment to shut down cleanly
            if proc.alive():
                proc.popen.terminate()
        for pid in self.orphans:  # first: they may hold locks a worker's job waits on
            stop_orphan(pid)
        for proc in reversed(self.procs):
            proc.stop()
        self.sandbox.stop()
        self.redis.stop()


# --- PostgreSQL -----------------------------------------------------------------------------

class Db:
    """Reads what is committed right now, on an autocommit connection of its own."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)

    def rows(self, sql: str, params=()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params=()):
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def event_states(self, ids) -> dict[str, tuple[str, int]]:
        """{event id: (status, attempts)} of the stored events among ``ids``."""
        return {r[0]: (r[1], r[2]) for r in self.rows(
            "SELECT id, status, attempts FROM stripe_events WHERE id = ANY(%s)", (list(ids),))}

    def all_done(self, ids) -> bool:
        """Every one of ``ids`` is stored and processed or ignored."""
        ids = list(ids)
        return self.scalar("SELECT count(*) FROM stripe_events WHERE id = ANY(%s) "
                           "AND status IN ('processed', 'ignored')", (ids,)) == len(set(ids))

    def status_counts(self) -> dict[str, int]:
        return dict(self.rows("SELECT status, count(*) FROM stripe_events GROUP BY status"))

    def outbox(self) -> dict[str, dict[str, list[tuple]]]:
        """{payment id: {kind: [(message id, status, attempts, payload status), ...]}}"""
        out: dict[str, dict[str, list[tuple]]] = {}
        for pid, kind, mid, status, attempts, payload in self.rows(
                "SELECT payment_id::text, kind, id::text, status, attempts, payload "
                "FROM outbox_messages ORDER BY created_at"):
            out.setdefault(pid, {}).setdefault(kind, []).append(
                (mid, status, attempts, payload.get("status")))
        return out

    def payment_states(self) -> dict[str, str]:
        return dict(self.rows("SELECT id::text, status FROM payments"))

    def close(self) -> None:
        self.conn.close()


class TcpProxy:
    """127.0.0.1:<port> forwarded to a target (PostgreSQL). ``close()`` refuses new
    connections and cuts the open ones, as a network partition or a dead server does;
    ``open()`` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.accepted = 0
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)  # so the accept loop sees close() promptly
        self._listener, self._stop = listener, threading.Event()
        self._thread = threading.Thread(target=self._accept, args=(listener, self._stop),
                                        daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=3)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._socks.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            self._cut(s)

    def _cut(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.discard(s)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            self._cut(s)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._socks) // 2


# --- the order service ----------------------------------------------------------------------

class OrderService(ThreadingHTTPServer):
    """The ShopSphere order service: answers 500 to the first ``failures`` requests, then 200;
    records (path, Idempotency-Key, status, JSON body) of every request."""

    daemon_threads = True

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.requests: list[tuple[str, str, int, dict]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    status = 500 if server.failures > 0 else 200
                    server.failures -= 1
                    server.requests.append((self.path, self.headers.get("Idempotency-Key"),
                                            status, json.loads(body or b"{}")))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


# --- events ---------------------------------------------------------------------------------

# What an intent looked like when Stripe sent each type (the handlers re-read the intent, so
# a stale copy must not matter).
STALE_STATUS = {
    "payment_intent.created": "requires_payment_method",
    "payment_intent.processing": "processing",
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "requires_payment_method",
    "payment_intent.canceled": "canceled",
}


def new_event(event_type: str, obj: dict, event_id: str | None = None) -> tuple[str, bytes]:
    """(id, raw JSON body) of a Stripe event; signed only when sent."""
    event_id = event_id or f"evt_{uuid.uuid4().hex[:24]}"
    return event_id, event_body(event_id, event_type, obj)


def intent_event(event_type: str, intent: dict) -> tuple[str, bytes]:
    return new_event(event_type, {**intent, "status": STALE_STATUS[event_type]})


def post_events(base_url: str, events: list[tuple[str, bytes]], *, senders: int = 8,
                secret: str = SECRET) -> list[tuple[str, int, dict]]:
    """POST each event (signed now) to the webhook from ``senders`` threads, each on its own
    keep-alive connection; returns (event id, HTTP status, JSON answer) in sending order.
    A transport error is recorded as status 0 (the test then fails on it)."""
    host, port = base_url.removeprefix("http://").split(":")
    results: list[tuple[str, int, dict] | None] = [None] * len(events)
    position = iter(range(len(events)))
    lock = threading.Lock()

    def sender():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while True:
            with lock:
                i = next(position, None)
            if i is None:
                break
            event_id, body = events[i]
            try:
                conn.request("POST", WEBHOOK_PATH, body=body, headers={
                    "Content-Type": "application/json", "Stripe-Signature": sign(body, secret)})
                response = conn.getresponse()
                raw = response.read()
                results[i] = (event_id, response.status, json.loads(raw) if raw else {})
            except (OSError, http.client.HTTPException, ValueError) as exc:
                results[i] = (event_id, 0, {"transport_error": repr(exc)})
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results  # type: ignore[return-value]


# --- seeding with the portal's own services --------------------------------------------------

@dataclass(frozen=True)
class Pay:
    payment_id: str
    order_id: str
    intent_id: str


def seed_payments(stack: Stack, n: int) -> list[Pay]:
    """``n`` orders of one customer, each with its Payment and PaymentIntent made by the
    portal's checkout (`start_checkout`): the portal knows them, not yet paid."""
    from portal.payments.services import start_checkout
    from tests.helpers import committed, make_order, make_user

    tag = uuid.uuid4().hex[:8]
    out = []
    with stack.app.app_context():
        customer = make_user(f"buyer-{tag}@faults.test")
        vendor = make_user(f"maker-{tag}@faults.test", "vendor")
        for i in range(n):
            order = make_order(customer, vendor, amounts=(1000 + i,))
            with committed():
                payment = start_checkout(order, source="api").payment
            out.append(Pay(str(payment.id), str(order.id), payment.stripe_payment_intent_id))
        db.session.remove()
    return out


def stripe_client(stack: Stack) -> stripe.StripeClient:
    """Stripe's SDK on the stack's sandbox: what a customer or Stripe does 'at Stripe'."""
    return stripe.StripeClient(stack.env_vars["STRIPE_SECRET_KEY"],
                               base_addresses={"api": stack.sandbox.url})


def drive(client: stripe.StripeClient, intent_id: str, outcome: str) -> dict:
    """Bring an intent to ``outcome`` at Stripe only (the portal is not told); returns it."""
    if outcome in ("succeeded", "failed"):
        pm = client.v1.payment_methods.create(params={"type": "card", "card": {
            "number": VISA if outcome == "succeeded" else DECLINED, "exp_month": 12,
            "exp_year": 2034, "cvc": "123"}}).id
        try:
            client.v1.payment_intents.confirm(intent_id, params={"payment_method": pm})
        except stripe.CardError:
            assert outcome == "failed"
    elif outcome == "canceled":
        client.v1.payment_intents.cancel(intent_id)
    else:
        assert outcome == "untouched", outcome
    return client.v1.payment_intents.retrieve(intent_id).to_dict()


def expected_states(stack: Stack, pays: list[Pay]) -> dict[str, str]:
    """{payment id: the portal status of its intent as Stripe holds it now}."""
    from portal import stripe_gateway as gateway
    from portal.payments.services import status_from_intent

    with stack.app.app_context():
        return {p.payment_id: status_from_intent(gateway.retrieve_payment_intent(p.intent_id))
                for p in pays}


def outbox_problems(pg: Db, expected: dict[str, str]) -> list[str]:
    """What differs from: one order notification (carrying the final state) per succeeded or
    canceled payment, one receipt e-mail per succeeded payment, nothing for the others."""
    box = pg.outbox()
    problems = [f"outbox rows for an unknown payment {pid}" for pid in set(box) - set(expected)]
    for pid, state in expected.items():
        want = {"succeeded": {"order_notification": 1, "receipt_email": 1},
                "canceled": {"order_notification": 1}}.get(state, {})
        rows = box.get(pid, {})
        got = {kind: len(messages) for kind, messages in rows.items()}
        if got != want:
            problems.append(f"payment {pid} ({state}): {got}, expected {want}")
        problems += [f"payment {pid} ({state}): notification says {m[3]}"
                     for m in rows.get("order_notification", []) if m[3] != state]
    return problems
