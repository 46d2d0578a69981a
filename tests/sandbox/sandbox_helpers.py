"""Helpers for the Stripe sandbox's tests (fixtures are in conftest.py)."""

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import stripe

SECRET_KEY = "sk_test_sandbox_tests"
PUBLISHABLE_KEY = "pk_test_sandbox_tests"
WEBHOOK_SECRET = "whsec_sandbox_tests"
# The Connect endpoint's (the same receiver): events of connected accounts are signed with it.
CONNECT_WEBHOOK_SECRET = "whsec_sandbox_tests_connect"


class WebhookReceiver:
    """A tiny HTTP server recording the webhook requests it receives.

    `respond(payload, n)`, if given, is the HTTP status to answer the n-th
    (from 1) request carrying that event (default 200); it runs in the
    request's thread, outside the receiver's lock."""

    def __init__(self, respond=None):
        self.received = []  # (Stripe-Signature header, raw body)
        self.respond = respond
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = json.loads(body)
                with receiver._changed:
                    receiver.received.append((self.headers.get("Stripe-Signature"), body))
                    n = receiver.event_ids().count(payload["id"])
                    receiver._changed.notify_all()
                status = receiver.respond(payload, n) if receiver.respond else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/webhooks"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for_event(self, secret, type, object_id, timeout=10, where=None):
        """The first event of `type` about `object_id` (for which `where`,
        given the event, is true), once its signature has been verified with
        `secret` like a portal would."""

        def find():
            for signature, body in self.received:
                payload = json.loads(body)
                if payload["type"] == type and payload["data"]["object"]["id"] == object_id:
                    event = stripe.Webhook.construct_event(body, signature, secret)
                    if where is None or where(event):
                        return event

        with self._changed:
            event = self._changed.wait_for(find, timeout)
        assert event, f"no {type} event for {object_id} within {timeout} s"
        return event

    def event_ids(self):
        """The ids of the events received, in arrival order (duplicates too)."""
        return [json.loads(body)["id"] for _, body in self.received]

    def wait_for_count(self, count, timeout=10):
        """Wait until `count` requests have arrived."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.received) >= count, timeout)
        assert arrived, f"{len(self.received)} of {count} webhook requests within {timeout} s"

    def close(self):
        self._server.shutdown()
        self._server.server_close()


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def http(method, url, params=None, headers=None):
    """A raw request (form-encoded like Stripe's clients); no redirects."""
    data = urllib.parse.urlencode(params or {}).encode()
    if method == "GET" and params:
        url, data = f"{url}?{data.decode()}", None
    elif method != "POST":
        data = None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _opener.open(request, timeout=10) as response:
            return Response(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())


def wait_until(condition, timeout=10, interval=0.05):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)
