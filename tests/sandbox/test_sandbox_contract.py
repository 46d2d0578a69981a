"""The sandbox keeps the contract of the pinned API version: it refuses the requests Stripe
refuses, with Stripe's errors, answers objects of that version's shapes, and cannot serve a
Stripe endpoint outside the contract's table."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe
from aiohttp.test_utils import make_mocked_request

from stripe_sandbox import app, balance, core

from .sandbox_helpers import SECRET_KEY, WEBHOOK_SECRET, http


def refused(call):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        call()
    return raised.value


def test_what_the_pinned_version_does_not_take_is_refused_like_stripe(client):
    error = refused(lambda: client.v1.payment_intents.create(params={
        "amount": 2000, "currency": "usd", "payment_method_types": ["card"]}))
    assert (error.http_status, error.code, error.param) == (
        400, "parameter_unknown", "payment_method_types")
    assert error.user_message == "Received unknown parameter: payment_method_types"
    pi = client.v1.payment_intents.create(params={
        "amount": 2000, "currency": "usd", "allowed_payment_method_types": ["card"]})
    assert (pi.payment_method_types, pi.allowed_payment_method_types) == (["card"], ["card"])
    error = refused(lambda: client.v1.accounts.create(params={
        "type": "express", "capabilities": {"wire": {"requested": True}}}))
    assert (error.code, error.param) == ("parameter_unknown", "capabilities[wire]")
    error = refused(lambda: client.v1.refunds.create(params={"payment_intent": pi.id,
                                                             "amount": "ten"}))
    assert (error.code, error.param) == ("parameter_invalid_integer", "amount")


def test_a_parameter_stripe_takes_but_the_sandbox_does_not_model_is_refused_by_name(client):
    error = refused(lambda: client.v1.payment_intents.create(params={
        "amount": 2000, "currency": "usd", "amount_details": {"discount_amount": 100}}))
    assert error.param == "amount_details"
    assert "does not model `amount_details`" in error.user_message


def test_shapes_of_the_pinned_version(client, sandbox, webhook_receiver):
    error = refused(lambda: client.v1.payment_intents.retrieve("pi_nope"))
    assert (error.http_status, error.code) == (404, "resource_missing")
    assert error.user_message == "No such payment_intent: 'pi_nope'"
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    pi = client.v1.payment_intents.create(params={
        "amount": 2599, "currency": "eur", "payment_method": pm.id, "confirm": True,
        "capture_method": "manual", "expand": ["latest_charge"]})
    assert (pi.status, pi.amount_capturable, pi.amount_received) == ("requires_capture",
                                                                     2599, 0)
    assert (pi.latest_charge.disputed, pi.latest_charge.captured) == (False, False)
    pi = client.v1.payment_intents.capture(pi.id)
    assert (pi.status, pi.amount_capturable, pi.amount_received) == ("succeeded", 0, 2599)
    event = webhook_receiver.wait_for_event(WEBHOOK_SECRET, "payment_intent.succeeded", pi.id)
    assert event.pending_webhooks == 1  # one endpoint subscribed when it was made
    assert event.request.id.startswith("req_")  # the capture request that caused it
    assert http("GET", f"{sandbox.url}/v1/balance",
                headers={"Authorization": f"Bearer {SECRET_KEY}"}).headers["Request-Id"]


def test_a_stripe_route_outside_the_table_stops_the_sandbox(monkeypatch):
    monkeypatch.setattr(balance, "ROUTES", [*balance.ROUTES,
                                            ("GET", "/v1/balance/history", balance.get_balance)])
    with pytest.raises(RuntimeError, match="GET /v1/balance/history .* is not in the contract"):
        app.build_app()


def test_an_answer_off_the_contract_is_a_500_and_a_recorded_violation(tmp_path, monkeypatch):
    monkeypatch.setattr(core.recorder, "directory", tmp_path)  # not the session's findings
    broken = core.api(lambda: {"object": "balance", "available": [], "livemode": False},
                      route="GET /v1/balance")
    request = make_mocked_request("GET", "/v1/balance",
                                  headers={"Authorization": f"Bearer {SECRET_KEY}"})
    # In a thread of its own: the browser tests' driver may run an event loop in this one.
    with ThreadPoolExecutor(1) as thread:
        response = thread.submit(asyncio.run, broken(request)).result()
    assert response.status == 500
    assert json.loads(response.text)["error"]["type"] == "api_error"
    [line] = (tmp_path / next(p.name for p in tmp_path.iterdir()
                              if p.name.startswith("violations"))).read_text().splitlines()
    assert "balance.pending: missing field of Balance" in json.loads(line)["message"]
