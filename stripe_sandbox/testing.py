"""Run a Stripe sandbox for the duration of a test (session, module...).

    from stripe_sandbox.testing import Sandbox

    with Sandbox(webhook_url=..., webhook_secret=...) as sandbox:
        client = stripe.StripeClient('sk_test_...',
                                     base_addresses={'api': sandbox.url})
        ... page.goto(...)  # the portal configured with sandbox.js_url

Each Sandbox is its own `python -m stripe_sandbox` process on a free
loopback port, with its own in-memory state, so parallel runs do not mix.

Webhook deliveries can be controlled (see server's docstring):

    sandbox.hold()                    # events are queued, not delivered
    ...                               # the code under test creates events
    sandbox.release(order="shuffle", duplicates=1, seed="7")
    sandbox.drop(count=2)             # the next 2 events are never delivered
    sandbox.deliveries()["data"]      # attempts, status codes, per event
    sandbox.redeliver(all_failed=True)

Stripe's time to answer (off by default): Sandbox(latency=0.2), or later

    sandbox.set_latency(0.2)          # every /v1/ request waits 0.2 s first
"""

import json
import os
import socket
import subprocess  # nosec B404  # starts the sandbox server (Sandbox below)
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Loopback only: never through an HTTP proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The test hooks want a secret key; the sandbox takes any sk_ key.
HOOK_KEY = "sk_test_sandbox"


def free_port(host="127.0.0.1"):
    """A TCP port free right now on `host` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Sandbox:
    """A `python -m stripe_sandbox` subprocess; a context manager, or use
    start() and stop()."""

    def __init__(
        self,
        webhook_url=None,
        webhook_secret=None,
        host="127.0.0.1",
        port=None,
        startup_timeout=20,
        refund_delay=None,
        webhook_delay=None,
        webhook_retries=None,
        webhook_retry_delay=None,
        secret_key=HOOK_KEY,
        funds_delay=None,
        connect_webhook_secret=None,
        latency=None,
    ):
        self.host = host
        # Seconds every API request waits before it is answered (None: the server's
        # default, 0); see set_latency().
        self.latency = latency
        # Webhook timing (None: the server's defaults, 1 s, 3 retries, 1 s
        # doubling); see `python -m stripe_sandbox --help`.
        self.webhook_delay = webhook_delay
        self.webhook_retries = webhook_retries
        self.webhook_retry_delay = webhook_retry_delay
        # The key the test hook methods below use (any sk_ key works).
        self.secret_key = secret_key
        # Seconds the asynchronous refund test cards take (None: the
        # server's default); see `python -m stripe_sandbox --help`.
        self.refund_delay = refund_delay
        # Seconds a charge's funds stay pending (None: the server's default, two days);
        # 0 makes them available for transfers at once.
        self.funds_delay = funds_delay
        # With webhook_url: a Connect endpoint there too, for events of connected accounts.
        self.connect_webhook_secret = connect_webhook_secret
        self.port = port
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.startup_timeout = startup_timeout
        self.process = None
        self._log = None

    @property
    def url(self):
        """Base URL of the API, e.g. for StripeClient(base_addresses=...)."""
        return f"http://{self.host}:{self.port}"

    @property
    def js_url(self):
        """URL of the Stripe.js double, to use instead of js.stripe.com/v3/."""
        return f"{self.url}/js.stripe.com/v3/"

    def start(self):
        if self.port is None:
            self.port = free_port(self.host)
        command = [
            sys.executable,
            "-m",
            "stripe_sandbox",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        if self.webhook_url:
            command += ["--webhook-url", self.webhook_url, "--webhook-secret", self.webhook_secret]
        if self.connect_webhook_secret:
            command += ["--connect-webhook-secret", self.connect_webhook_secret]
        for option, value in (
            ("--refund-delay", self.refund_delay),
            ("--funds-delay", self.funds_delay),
            ("--webhook-delay", self.webhook_delay),
            ("--webhook-retries", self.webhook_retries),
            ("--webhook-retry-delay", self.webhook_retry_delay),
            ("--latency", self.latency),
        ):
            if value is not None:
                command += [option, str(value)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])
        )
        # Output goes to a file, not a pipe nobody reads (which would block
        # the server once full); it is shown if the sandbox does not start.
        # Append mode: reading it here must not move where the server writes.
        self._log = tempfile.TemporaryFile("a+b")  # noqa: SIM115 (closed by stop())
        self.process = subprocess.Popen(  # nosec B603  # our own server, sys.executable
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_up(self):
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"The Stripe sandbox exited with code {self.process.returncode}:\n{self.log()}"
                )
            try:
                with _opener.open(self.js_url, timeout=1):
                    return
            except OSError:  # connection refused, or not answering yet
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "The Stripe sandbox did not answer "
                        f"within {self.startup_timeout} s:\n" + self.log()
                    ) from None
                time.sleep(0.05)  # polling interval

    def log(self):
        """What the sandbox printed so far (webhook deliveries, errors)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def register_webhook(self, url, secret, id="default", events=None, connect=False):
        """Send the sandbox's signed events to `url` too (`events`: only
        these types; `connect`: a Connect endpoint, for the events of connected
        accounts only). Registering an `id` again replaces that endpoint."""
        params = [("url", url), ("secret", secret), ("connect", "true" if connect else "false")]
        params += [("events[]", event) for event in events or ()]
        request = urllib.request.Request(  # noqa: S310 (our http URL)
            f"{self.url}/_config/webhooks/{urllib.parse.quote(id)}",
            data=urllib.parse.urlencode(params).encode(),
            method="POST",
        )
        with _opener.open(request, timeout=10):
            pass

    def test_hook(self, method, path, **params):
        """Call a sandbox-only test hook (`/_sandbox/...`) with the secret
        key; its JSON answer. Lists go as `name[]`, booleans as true/false."""
        pairs = []
        for name, value in params.items():
            if value is None:
                continue
            for item in value if isinstance(value, list | tuple) else [value]:
                item = str(item).lower() if isinstance(item, bool) else str(item)
                pairs.append((f"{name}[]" if isinstance(value, list | tuple) else name, item))
        query = urllib.parse.urlencode(pairs)
        url = f"{self.url}{path}"
        data = None
        if method == "GET":
            url += f"?{query}" if query else ""
        else:
            data = query.encode()
        request = urllib.request.Request(  # noqa: S310 (our http URL)
            url, data=data, method=method, headers={"Authorization": f"Bearer {self.secret_key}"}
        )
        with _opener.open(request, timeout=120) as response:
            return json.loads(response.read())

    def deliveries(self, endpoint=None, event=None):
        """Every (event, endpoint) delivery: status, attempts, status codes."""
        return self.test_hook("GET", "/_sandbox/deliveries", endpoint=endpoint, event=event)

    def hold(self, endpoint=None):
        """Queue deliveries (to `endpoint`, or to all) instead of sending them."""
        return self.test_hook("POST", "/_sandbox/deliveries/hold", endpoint=endpoint)

    def release(self, endpoint=None, **params):
        """Send what is queued and resume: order, seed, duplicates,
        concurrency, delay_ms. Answers once every delivery was attempted."""
        return self.test_hook("POST", "/_sandbox/deliveries/release", endpoint=endpoint, **params)

    def drop(self, count=1, endpoint=None):
        """Never deliver the next `count` events (to `endpoint`, or to all)."""
        return self.test_hook("POST", "/_sandbox/deliveries/drop", count=count, endpoint=endpoint)

    def redeliver(self, event=None, all_failed=None, endpoint=None):
        """Resend an event now (or every failed delivery), once each."""
        return self.test_hook(
            "POST",
            "/_sandbox/deliveries/redeliver",
            event=event,
            all_failed=all_failed,
            endpoint=endpoint,
        )

    def set_latency(self, seconds):
        """Every API request (/v1/...) waits `seconds` before it is answered, from now on
        (0: at once); hooks, pages and webhook deliveries are not delayed."""
        return self.test_hook("POST", "/_sandbox/latency", seconds=seconds)

    def make_funds_available(self):
        """Every pending charge's funds become available now (the days Stripe waits)."""
        return self.test_hook("POST", "/_sandbox/balance/available")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
