"""The gateway retries what Stripe says may succeed later, with the same idempotency key, and
never a refusal: a scripted local server stands in for Stripe's API and records every try."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portal import create_app
from portal import stripe_gateway as gateway
from portal.config import Config
from tests.conftest import portal_env

TRANSFER = {"id": "tr_retried", "object": "transfer", "amount": 1500, "currency": "eur",
            "destination": "acct_vendor"}
DROP = "drop the connection"


def error(status, code, type_="invalid_request_error", **headers):
    body = {"error": {"type": type_, "code": code, "message": f"{code} ({status})"}}
    return status, body, headers


OK = (200, TRANSFER, {})


class ScriptedStripe:
    """Answers each request with the next scripted answer (the last one repeats)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.tries = []  # (monotonic time, method, path, Idempotency-Key)
        script = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                script.tries.append((time.monotonic(), self.command, self.path,
                                     self.headers.get("Idempotency-Key")))
                answer = script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
                if answer == DROP:  # a network error: no answer at all
                    self.close_connection = True
                    return
                status, body, headers = answer
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stripe_api(pg_url):
    """Start a scripted Stripe; yields a function that runs a gateway call against it."""
    servers = []

    def call(answers, action):
        server = ScriptedStripe(answers)
        servers.append(server)
        app = create_app(Config.from_env(portal_env(pg_url, server.url)))
        with app.app_context():
            try:
                return action(), server.tries
            except gateway.GatewayError as exc:
                return exc, server.tries

    yield call
    for server in servers:
        server.close()


def transfer():
    return gateway.create_transfer(amount=1500, currency="EUR", destination="acct_vendor",
                                   transfer_group="payout-1", description="Payout",
                                   idempotency_key="payout-1")


@pytest.mark.parametrize("first", [
    error(429, "rate_limit"),
    error(429, "lock_timeout"),
    error(409, "idempotency_key_in_use"),
    error(500, None, "api_error"),
    error(503, None, "api_error"),
    DROP,
], ids=["429 rate_limit", "429 lock_timeout", "409 key in use", "500", "503", "network error"])
def test_a_transient_failure_is_retried_after_a_backoff_with_the_same_key(stripe_api, first):
    result, tries = stripe_api([first, OK], transfer)
    assert result == gateway.Transfer(id="tr_retried", amount=1500, currency="EUR",
                                      destination="acct_vendor")
    assert [(method, path, key) for _, method, path, key in tries] == [
        ("POST", "/v1/transfers", "payout-1")] * 2
    assert tries[1][0] - tries[0][0] >= 0.45  # the SDK's backoff: 0.5 s at least, less jitter


@pytest.mark.parametrize("refusal", [
    error(400, "balance_insufficient"),
    error(402, "card_declined", "card_error"),
    error(403, "secret_key_required"),
    error(404, "resource_missing"),
], ids=["400", "402", "403", "404"])
def test_a_refusal_is_never_retried(stripe_api, refusal):
    result, tries = stripe_api([refusal, OK], transfer)
    assert isinstance(result, gateway.GatewayError)
    status, body, _ = refusal
    assert (result.stripe_status, result.stripe_code, result.retryable) == (
        status, body["error"]["code"], False)
    assert len(tries) == 1


@pytest.mark.parametrize("answer", [
    error(429, "rate_limit", **{"Stripe-Should-Retry": "false"}),
    error(500, None, "api_error", **{"Stripe-Should-Retry": "false"}),
], ids=["429", "500"])
def test_stripe_saying_do_not_retry_is_obeyed_and_the_job_may_retry_later(stripe_api, answer):
    result, tries = stripe_api([answer, OK], transfer)
    assert (result.stripe_status, result.retryable) == (answer[0], True)
    assert len(tries) == 1


def test_a_lasting_failure_gives_up_after_one_retry(stripe_api):
    result, tries = stripe_api([error(429, "rate_limit")], transfer)
    assert (result.stripe_status, result.stripe_code, result.retryable) == (429, "rate_limit", True)
    assert [key for *_, key in tries] == ["payout-1", "payout-1"]


def test_reads_are_retried_too(stripe_api):
    intent = {"id": "pi_1", "object": "payment_intent", "status": "succeeded", "amount": 100,
              "currency": "usd", "created": 1, "metadata": {}, "client_secret": None}
    result, tries = stripe_api([DROP, (200, intent, {})],
                               lambda: gateway.retrieve_payment_intent("pi_1"))
    assert (result.id, result.status) == ("pi_1", "succeeded")
    paths = [path.split("?")[0] for _, method, path, _ in tries if method == "GET"]
    assert paths == ["/v1/payment_intents/pi_1"] * 2
