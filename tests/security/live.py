"""A running portal for the attack suite: gunicorn (2 sync workers, the image's command) in
production mode, on a PostgreSQL database of its own and Redis, with the Stripe sandbox.

Production refuses published secrets (portal/config.py), so the settings are secrets of this
suite's own. Production cookies are Secure and ``__Host-`` prefixed, and CSRF is checked
strictly over https: the portal is reached the way it is deployed, behind one trusted proxy
(``TRUSTED_PROXY_HOPS=1``) that terminates TLS. Every request says so itself
(``X-Forwarded-Proto: https``, a same-origin ``Referer`` on a browser's POST) and names its
client (``X-Forwarded-For``: a distinct address per simulated client, as rate limits see
them). Requests are plain ``http.client`` with a cookie jar of ``Browser``'s own, which sends
Secure cookies back over this loopback connection as the proxy would over TLS.

Nothing here sleeps for a fixed time: every wait polls a condition (``wait_for``).
"""

from __future__ import annotations

import contextlib
import http.client
import http.cookies
import itertools
import json
import os
import re
import socket
import subprocess
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlencode

import psycopg
from sqlalchemy.engine import make_url

from portal.config import ROOT, Config
from stripe_sandbox.testing import Sandbox, free_port
from tests.faults.support import Db, tail, wait_for
from tests.helpers import PASSWORD
from tests.stripe_contract import command as contract_command

SECRETS = {
    "SECRET_KEY": "security-suite-session-key-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "JWT_SECRET": "security-suite-token-key-f9e8d7c6b5a4938271605f4e3d2c1b0a",
    "STRIPE_SECRET_KEY": "sk_test_security_suite",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_security_suite",
    "STRIPE_WEBHOOK_SECRET": "whsec_security_suite",
    "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_security_suite_connect",
}
# Settings the portal reads: never taken from the developer's shell.
_PORTAL_SETTINGS = {f.name for f in fields(Config)} | {"PORTAL_ENV", "FLASK_ENV", "PORT"}


def clean_environ() -> dict:
    """This process's environment without any portal setting (PATH, the contract directory
    and the virtualenv stay)."""
    return {k: v for k, v in os.environ.items() if k not in _PORTAL_SETTINGS}


def database_url(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def json(self):
        return json.loads(self.body)

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []


def read_response(sock: socket.socket, method: str = "POST") -> Response:
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    return Response(resp.status, resp.headers, resp.read())


@dataclass
class Portal:
    """The running portal; ``request`` reaches it as the trusted proxy in front would."""

    port: int
    env: dict
    proc: subprocess.Popen
    log: Path
    sandbox: Sandbox
    db: Db
    redis: object
    users: dict = field(default_factory=dict)  # name: {"id", "email", "role"}
    stripe: object = None  # a StripeClient on the portal's sandbox (as Stripe.js would)
    requests_sent: int = 0
    _addresses: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return f"https://{self.host}"

    def address(self) -> str:
        """A client address no other simulated client of the module has used."""
        n = next(self._addresses)
        return f"198.18.{n // 250}.{n % 250 + 1}"

    # --- requests ---------------------------------------------------------------------------

    def request(self, method: str, path: str, *, body: bytes | str | None = None,
                headers: dict | None = None, address: str = "198.51.100.1",
                host: str | None = None, timeout: float = 30) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            all_headers = {"Host": host or self.host, "X-Forwarded-For": address,
                           "X-Forwarded-Proto": "https", **(headers or {})}
            data = body.encode() if isinstance(body, str) else body  # UTF-8, not Latin-1
            conn.request(method, path, body=data, headers=all_headers)
            resp = conn.getresponse()
            self.requests_sent += 1
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def api(self, method: str, path: str, body=None, *, token: str | None = None,
            address: str = "198.51.100.1", headers: dict | None = None) -> Response:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else (body if isinstance(body, str | bytes)
                                          else json.dumps(body))
        return self.request(method, path, body=data, headers=all_headers, address=address)

    def token(self, email: str, password: str = PASSWORD) -> str:
        """A Bearer token from POST /api/auth/token (from an address of its own, so the
        token endpoint's per-address limit is not what a test measures)."""
        r = self.api("POST", "/api/auth/token", {"email": email, "password": password},
                     address=self.address())
        assert r.status == 200, (r.status, r.text)
        return r.json["token"]

    def raw(self, head: str, body: bytes = b"", *, timeout: float = 15) -> Response:
        """Send ``head`` (the request line and headers, without the blank line) and ``body``
        on a socket of its own, then read the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            data = (head.rstrip("\r\n") + "\r\n\r\n").encode("latin-1") + body
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
            self.requests_sent += 1
            return read_response(sock)

    def streaming(self, head: str, size: int, *, timeout: float = 15) -> Response:
        """Send ``head``, then stream up to ``size`` body bytes from a thread while the answer
        is read here (a server that answers early gets the rest cut off: the sender stops at
        the first refusal of the connection)."""
        chunk = b"x" * 65536
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall((head.rstrip("\r\n") + "\r\n\r\n").encode("latin-1"))

            def send():
                with contextlib.suppress(OSError):
                    for _ in range(size // len(chunk)):
                        sock.sendall(chunk)

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            try:
                self.requests_sent += 1
                return read_response(sock)
            finally:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sender.join(timeout)

    # --- the processes ----------------------------------------------------------------------

    def worker_pids(self) -> list[int]:
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (task / "children").read_text().split()]
        return sorted(pids)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def diagnostics(self) -> str:
        return f"--- gunicorn\n{tail(self.log)}\n--- sandbox\n{self.sandbox.log()[-2000:]}"


def rss_kb(pid: int) -> int:
    """The resident set size of a process, in kB (/proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def create_database(server_url: str, name: str) -> str:
    admin = database_url(server_url, "postgres")
    with psycopg.connect(admin, connect_timeout=3, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def production_env(db_url: str, redis_url: str, sandbox: Sandbox, port: int) -> dict:
    """The portal's settings in production, as a deployment behind one proxy sets them."""
    return {
        "PORTAL_ENV": "production",
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "SERVER_NAME": f"127.0.0.1:{port}",
        "TRUSTED_PROXY_HOPS": "1",
        "STRIPE_API_BASE": sandbox.url,
        "STRIPE_JS_URL": sandbox.js_url,
        # Nobody listens at the order service; no SMTP server (receipts stay in the outbox).
        "ORDER_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
        "SMTP_HOST": "",
        "LOG_LEVEL": "INFO",
        **SECRETS,
    }


def start_gunicorn(env: dict, port: int, log: Path) -> subprocess.Popen:
    """gunicorn as the image runs it (2 sync workers), under the Stripe contract check; its
    stdout and stderr (access log, error log, the app's log) go to ``log``."""
    return subprocess.Popen(
        contract_command("gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                         "wsgi:app"),
        cwd=ROOT, env={**clean_environ(), **env}, stdout=log.open("wb"),
        stderr=subprocess.STDOUT)


def wait_until_up(port: int, proc: subprocess.Popen, log: Path) -> None:
    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{tail(log)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    wait_for(up, timeout=30, what="gunicorn answers /healthz", diagnostics=lambda: tail(log))
    # Both workers booted (each logs "Booting worker with pid"): the RSS check reads both.
    wait_for(lambda: log.read_text(errors="replace").count("Booting worker") >= 2,
             timeout=30, what="both gunicorn workers booted", diagnostics=lambda: tail(log))


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def add_users(db_url: str, users: dict[str, tuple[str, str]]) -> dict[str, dict]:
    """Users (name: (e-mail, role)) with the tests' password, written on a session of their
    own (the in-process tests' ``db.session`` is bound to another database);
    {name: {"id", "email", "role"}}."""
    import secrets

    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from portal.auth.models import User

    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with Session(engine) as session:
            rows = {}
            for name, (email, role) in users.items():
                user = User(email=email, role=role, name=name.title(),
                            session_token=secrets.token_hex(16))
                user.set_password(PASSWORD)
                session.add(user)
                rows[name] = user
            session.commit()
            return {name: {"id": str(u.id), "email": u.email, "role": u.role}
                    for name, u in rows.items()}
    finally:
        engine.dispose()


class Browser:
    """One person's browser: its cookies, its address and User-Agent, and the CSRF token of
    the last page it loaded (sent as htmx sends it, X-CSRFToken, with a same-origin
    Referer as browsers send over https)."""

    CSRF = re.compile(r'"X-CSRFToken": "([^"]+)"')

    def __init__(self, portal: Portal, address: str | None = None,
                 user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) security-suite"):
        self.portal = portal
        self.address = address or portal.address()
        self.user_agent = user_agent
        self.jar: dict[str, str] = {}
        self.csrf: str | None = None

    def request(self, method: str, path: str, form: dict | list | None = None, *,
                headers: dict | None = None) -> Response:
        all_headers = {"User-Agent": self.user_agent}
        if self.jar:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        body = None
        if method != "GET":
            all_headers["Referer"] = f"{self.portal.origin}/"
            if self.csrf:
                all_headers["X-CSRFToken"] = self.csrf
            body = urlencode(form or {}, doseq=True)
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        r = self.portal.request(method, path, body=body, headers={**all_headers,
                                                                  **(headers or {})},
                                address=self.address)
        for line in r.cookies():
            jar = http.cookies.SimpleCookie()
            jar.load(line)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or "1970" in morsel["expires"]:
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = morsel.value
        found = self.CSRF.search(r.text) if "html" in r.headers.get("Content-Type", "") else None
        if found:
            self.csrf = found.group(1)
        return r

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict | list | None = None, **kw) -> Response:
        return self.request("POST", path, form, **kw)

    def login(self, email: str, password: str = PASSWORD) -> Response:
        """The login page, then its form; on success a page of the portal is loaded (the
        session's new CSRF token: signing in starts a new session)."""
        assert self.get("/login").status == 200
        r = self.post("/login", {"email": email, "password": password})
        if r.status == 302:
            assert self.get(r.headers["Location"]).status == 200
        return r

    def logout(self) -> Response:
        return self.post("/logout")
