"""The sandbox's optional API latency (Stripe's time to answer, for benchmarks): off by
default, set at start or by its hook, applied to /v1/ requests only."""

import subprocess
import sys
import time
import urllib.error

import pytest
import stripe

from stripe_sandbox.testing import PROJECT_ROOT, Sandbox, _opener

from .sandbox_helpers import SECRET_KEY

LATENCY = 1.0  # large enough that "not delayed" stays far below it on a busy machine


def timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def client(sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(SECRET_KEY, base_addresses={"api": sandbox.url})


def test_off_by_default():
    with Sandbox() as sandbox:
        assert sandbox.test_hook("GET", "/_sandbox/latency") == {
            "object": "sandbox.latency", "seconds": 0.0}
        stripe_client = client(sandbox)
        assert timed(lambda: stripe_client.v1.customers.create()) < LATENCY / 2


def test_each_api_request_waits_but_not_hooks_or_pages():
    with Sandbox(latency=LATENCY) as sandbox:
        stripe_client = client(sandbox)
        assert timed(lambda: stripe_client.v1.customers.create()) >= LATENCY
        assert timed(lambda: stripe_client.v1.customers.list()) >= LATENCY
        assert timed(lambda: sandbox.test_hook("GET", "/_sandbox/latency")) < LATENCY / 2
        assert timed(lambda: _opener.open(sandbox.js_url, timeout=10).read()) < LATENCY / 2


def test_the_hook_changes_it_at_any_time():
    with Sandbox() as sandbox:
        stripe_client = client(sandbox)
        assert sandbox.set_latency(LATENCY) == {"object": "sandbox.latency",
                                                "seconds": LATENCY}
        assert timed(lambda: stripe_client.v1.customers.create()) >= LATENCY
        sandbox.set_latency(0)
        assert timed(lambda: stripe_client.v1.customers.create()) < LATENCY / 2


def test_the_hook_refuses_what_is_not_0_to_60_seconds():
    with Sandbox() as sandbox:
        for seconds in ("-1", "61", "nan", "soon"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                sandbox.set_latency(seconds)
            assert refused.value.code == 400, seconds
        assert sandbox.test_hook("GET", "/_sandbox/latency")["seconds"] == 0.0


@pytest.mark.parametrize("value", ["-0.5", "61"])
def test_the_option_refuses_a_negative_or_too_long_latency(value):
    done = subprocess.run([sys.executable, "-m", "stripe_sandbox", "--latency", value],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--latency must" in done.stderr
