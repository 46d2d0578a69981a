"""`python -m portal.demo_orders --port N`: a stand-in for the ShopSphere order service,
for the demo only. `make run` (scripts/run-dev.sh) starts it when ORDER_SERVICE_URL is not
set and points the portal at it, so that the admins' Outbox page shows the order-service
notifications delivered, as they would be, and not "connection refused".

The outbox notifies the order service of a payment's outcome with `POST
{ORDER_SERVICE_URL}/api/orders/<order id>/payment-status`, a JSON object and an
Idempotency-Key (portal/outbox/services.py, ``_notify``). This answers such a POST 200 when
its body is a JSON object of at most 64 KiB (400 or 413 otherwise), `GET /healthz` 200, and
anything else 404. It keeps nothing, checks no token and listens on 127.0.0.1 only: it is not
an order service. Each notification is logged at INFO (LOG_LEVEL=INFO make run shows them).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"  # never another interface: anyone could post to it
MAX_BODY = 64 * 1024
NOTIFICATION = re.compile(r"^/api/orders/[0-9A-Za-z-]{1,64}/payment-status$")
log = logging.getLogger("portal.demo_orders")


class Handler(BaseHTTPRequestHandler):
    """Answers the outbox's notifications; every answer is a small JSON object."""

    server_version = "demo-order-service"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/healthz":
            self._answer(200, {"ok": True})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if not NOTIFICATION.match(self.path):
            self._answer(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._answer(413 if length > MAX_BODY else 400, {"error": "a JSON body is needed"})
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._answer(400, {"error": "the body must be a JSON object"})
            return
        log.info("order %s: payment %s (%s)", body.get("orderId"), body.get("status"),
                 self.headers.get("Idempotency-Key"))
        self._answer(200, {"received": True})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
        log.debug("%s " + format, self.address_string(), *args)


def serve(port: int) -> ThreadingHTTPServer:
    """The server bound to 127.0.0.1:``port`` (0: any free port), not yet serving."""
    server = ThreadingHTTPServer((HOST, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portal.demo_orders",
                                     description="The demo's stand-in for the order service.")
    parser.add_argument("--port", type=int, default=3005,
                        help="port on 127.0.0.1 (default 3005, the port of the default "
                        "ORDER_SERVICE_URL)")
    args = parser.parse_args(argv)
    level = os.environ.get("LOG_LEVEL", "").strip().upper() or "INFO"
    logging.basicConfig(level=level if level in logging.getLevelNamesMapping() else "INFO",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = serve(args.port)
    except OSError as exc:
        print(f"order service stand-in: cannot listen on {HOST}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    print(f"Order service stand-in listening on http://{HOST}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
