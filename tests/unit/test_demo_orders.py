"""The demo's order-service stand-in (portal/demo_orders.py): it takes the outbox's payment
notifications as the order service would, and nothing else."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from portal import demo_orders
from portal.outbox import services as outbox

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def stand_in():
    server = demo_orders.serve(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with _opener.open(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_outbox_delivers_a_payment_notification_to_the_stand_in(stand_in):
    """The very code the outbox sends with: "sent", where no order service ran before."""
    from flask import Flask

    app = Flask(__name__)
    app.extensions["portal_config"] = type("C", (), {"ORDER_SERVICE_URL": stand_in})()
    payload = {"orderId": "0b7c5f3e-6f1e-4bde-9d7e-2b2f3c4d5e6f", "paymentId": "p",
               "status": "succeeded", "amount": 2500, "currency": "usd"}
    with app.app_context():
        assert outbox._notify("9d3c0a4e-1111-4222-8333-944455566677", payload) == "sent"


def test_the_stand_in_refuses_what_is_not_a_notification(stand_in):
    order = f"{stand_in}/api/orders/0b7c5f3e-6f1e-4bde-9d7e-2b2f3c4d5e6f/payment-status"
    assert _post(order, b'{"status": "succeeded"}') == (200, {"received": True})
    assert _post(order, b"not json")[0] == 400
    assert _post(order, b"[1, 2]")[0] == 400
    assert _post(order, b"")[0] == 400
    assert _post(order, b"{" + b" " * demo_orders.MAX_BODY + b"}")[0] == 413
    assert _post(f"{stand_in}/api/orders/x/refund", b"{}")[0] == 404
    assert _post(f"{stand_in}/api/orders/../../etc/payment-status", b"{}")[0] == 404
    with _opener.open(f"{stand_in}/healthz", timeout=5) as response:
        assert response.status == 200


def test_the_stand_in_listens_on_the_loopback_only():
    server = demo_orders.serve(0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_a_port_in_use_is_one_line_and_status_1(capsys):
    server = demo_orders.serve(0)
    try:
        assert demo_orders.main(["--port", str(server.server_port)]) == 1
    finally:
        server.server_close()
    assert capsys.readouterr().err.startswith("order service stand-in: cannot listen on")
