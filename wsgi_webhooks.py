"""WSGI entry point of the webhook intake pool: `gunicorn wsgi_webhooks:app`.

Stripe's deliveries get gunicorn workers of their own, so that a delivery never waits behind
web requests that wait on Stripe: a checkout holds its sync worker for the whole Stripe call,
and with intake in the same pool a burst of deliveries queued behind the checkouts (issue 17,
item 9; bench/webhook_isolation.py). This app answers only:

- `POST /api/payments/webhook`: the very view of the main app (portal.api.views), so the
  signature check, the store-once and the 200/400/503 answers are the same code;
- `GET /healthz`: liveness for the proxy and the container's HEALTHCHECK;

anything else is a JSON 404: the intake's port serves no page, no API and no static file. The
main app (`wsgi:app`) keeps serving the webhook too: `make run` (one process) and a deployment
that routes nothing to this pool work as before.

It is built from the parts of `portal.create_app` that a delivery goes through: the validated
configuration (it refuses to start half-configured, as web does), the database, the request
edge of portal/hygiene.py (the 1 MiB limit, log lines that cannot be forged), ProxyFix behind
a proxy, the unit of work (commit after the view, jobs after the commit), and the main app's
Host check and response headers, from the function that defines them. Left out, as the webhook
uses none of them: sessions and login, CSRF (the API is exempt), the rate limiter (it skips
Stripe's deliveries), templates, the other blueprints, the CLI. That costs less CPU per
delivery than the whole app: 15 % in-process, 0-15 % under gunicorn depending on how busy the
machine is (bench/README.md, "webhook_isolation.py"), and intake is CPU-bound. A change to the
request edge of `create_app` that concerns the webhook belongs here too.
"""

from __future__ import annotations

import logging
import sys

from flask import Blueprint, Flask, jsonify
from werkzeug.exceptions import HTTPException

import portal
from portal import hygiene, jobs
from portal.config import ROOT, Config, ConfigError
from portal.database import commit_request
from portal.errors import DomainError, api_error, handle_domain_error
from portal.extensions import db

log = logging.getLogger("portal.webhooks.intake")


def create_intake_app(config: Config | None = None) -> Flask:
    """The intake app (default configuration: the environment, as ``create_app``)."""
    config = config or Config.from_env()
    app = Flask("portal", instance_path=str(ROOT / "instance"), static_folder=None)
    # As create_app: behind a proxy, the sender's address (logged with a refused delivery)
    # and the Host come from its X-Forwarded-* headers.
    portal._configure(app, config)

    db.init_app(app)
    hygiene.init_app(app)
    portal._register_models()
    app.after_request(commit_request)
    app.teardown_appcontext(jobs.run_committed)

    # The main app's view under the same endpoint name, "api.stripe_webhook": hygiene takes
    # its body as Stripe signed it, as in the main app.
    from portal.api.views import stripe_webhook

    bp = Blueprint("api", __name__, url_prefix="/api")
    bp.add_url_rule("/payments/webhook", view_func=stripe_webhook, methods=["POST"])
    app.register_blueprint(bp)

    @app.get("/healthz")
    def healthz():
        """Liveness for load balancers."""
        return jsonify(ok=True)

    _register_errors(app)
    # Production answers only SERVER_NAME and TRUSTED_HOSTS, and every answer carries the
    # main app's headers: from the one function that defines both.
    portal._register_security_headers(app, config)
    return app


def _register_errors(app: Flask) -> None:
    """Every answer is JSON in the API's error format (Stripe reads only the status)."""
    app.register_error_handler(DomainError, handle_domain_error)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        name = (exc.name or "error").lower().replace(" ", "_")
        return api_error(exc.code or 500, name, exc.name or "Error")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # pragma: no cover - last resort, keeps the format
        log.exception("unhandled error in the webhook intake")
        db.session.rollback()
        return api_error(500, "server_error", "Something went wrong")


try:
    app = create_intake_app()
except ConfigError as exc:
    # One line naming the variable, then stop: never start half-configured.
    sys.exit(f"configuration error: {exc}")
