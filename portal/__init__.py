"""ShopSphere Payments Portal: the application factory."""

from __future__ import annotations

import contextlib
import logging
import os
from urllib.parse import urlparse

from flask import Flask, abort, jsonify, render_template, request

from . import hygiene, jobs
from .config import ROOT, Config
from .database import commit_request
from .errors import DomainError, handle_domain_error
from .extensions import csrf, db, limiter, login_manager, migrate


def create_app(config: Config | None = None, **overrides) -> Flask:
    """Build the app from ``config`` (default: the environment, with ``overrides``)."""
    config = config or Config.from_env(**overrides)
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    _configure(app, config)
    if config.DATABASE_URL.startswith("sqlite:///"):
        os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), compare_type=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    limiter.init_app(app)
    hygiene.init_app(app)

    _register_models()
    # The unit of work (database.py): a request commits once, after its view; the jobs its
    # transaction queued start after that commit (jobs.py).
    app.after_request(commit_request)
    app.teardown_appcontext(jobs.run_committed)
    _register_blueprints(app)
    _register_cli(app)
    _register_templates(app, config)
    _register_errors(app)
    _register_security_headers(app, config)
    return app


def _configure(app: Flask, config: Config) -> None:
    """The configuration, the proxy in front and the log format (also the intake app's,
    wsgi_webhooks.py)."""
    app.config.from_mapping(config.flask_settings())
    if config.TRUSTED_PROXY_HOPS:
        # Behind a load balancer: the client's address and scheme come from X-Forwarded-*
        # (rate limits, recorded IPs and https return URLs depend on them).
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = config.TRUSTED_PROXY_HOPS
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    app.extensions["portal_config"] = config
    _configure_logging(config.LOG_LEVEL)


def _configure_logging(level: str) -> None:
    """LOG_LEVEL for every logger of the process, the Stripe SDK's included: at WARNING
    (`make run`'s default) its line per request is left out; at DEBUG it stays at INFO, since
    the SDK would log response bodies, client secrets included. stripe_gateway sets INFO when
    it is imported, so it is imported first."""
    from . import stripe_gateway  # noqa: F401 - its import-time level must not win over ours

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("stripe").setLevel(max(logging.INFO, logging.getLevelName(level)))


def _register_models() -> None:
    # Import every model module so metadata (and Alembic) knows all tables.
    from .api import models as _api  # noqa: F401
    from .audit import models as _audit  # noqa: F401
    from .auth import models as _auth  # noqa: F401
    from .cards import models as _cards  # noqa: F401
    from .documents import models as _documents  # noqa: F401
    from .ledger import models as _ledger  # noqa: F401
    from .orders import models as _orders  # noqa: F401
    from .outbox import models as _outbox  # noqa: F401
    from .refunds import models as _refunds  # noqa: F401
    from .webhooks import models as _webhooks  # noqa: F401


def _register_blueprints(app: Flask) -> None:
    from .admin.views import bp as admin_bp
    from .analytics.views import bp as analytics_bp
    from .api import analytics as _api_analytics  # noqa: F401 - registers its routes on api_bp
    from .api import cards as _api_cards  # noqa: F401 - registers its routes on api_bp
    from .api import payments as _api_payments  # noqa: F401 - registers its routes on api_bp
    from .api import refunds as _api_refunds  # noqa: F401 - registers its routes on api_bp
    from .api import vendors as _api_vendors  # noqa: F401 - registers its routes on api_bp
    from .api.views import bp as api_bp
    from .auth.views import bp as auth_bp
    from .cards.views import bp as cards_bp
    from .orders.views import bp as orders_bp
    from .payments.views import bp as payments_bp
    from .payouts.views import bp as payouts_bp
    from .refunds.views import bp as refunds_bp

    for bp in (auth_bp, orders_bp, payments_bp, cards_bp, refunds_bp, payouts_bp, admin_bp,
               analytics_bp, api_bp):
        app.register_blueprint(bp)


def _register_cli(app: Flask) -> None:
    from .analytics.cli import analytics_cli
    from .auth.cli import users_cli
    from .demo import seed_demo_command
    from .payouts.cli import payouts_cli
    from .reconciliation.cli import events_cli, reconcile_command
    from .worker import worker_command

    app.cli.add_command(users_cli)
    app.cli.add_command(analytics_cli)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(payouts_cli)
    app.cli.add_command(events_cli)
    app.cli.add_command(reconcile_command)


def _register_templates(app: Flask, config: Config) -> None:
    from .htmx import add_vary
    from .money import format_minor

    app.add_template_filter(format_minor, "money")
    app.after_request(add_vary)

    @app.context_processor
    def globals_():
        return {
            "test_mode": config.stripe_test_mode,
            "htmx_url": config.HTMX_URL,
            "htmx_sri": config.HTMX_SRI,
            "stripe_js_url": config.STRIPE_JS_URL,
            "stripe_publishable_key": config.STRIPE_PUBLISHABLE_KEY,
        }


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _register_errors(app: Flask) -> None:
    from .errors import api_error

    messages = {400: "Bad request", 403: "Forbidden", 404: "Not found",
                405: "Method not allowed", 413: "The request is too large",
                429: "Too many requests", 500: "Something went wrong",
                503: "Service unavailable"}
    codes = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
             413: "too_large", 429: "rate_limited", 500: "server_error", 503: "unavailable"}

    def handle(exc):
        status = getattr(exc, "code", 500) or 500
        if status == 500:
            db.session.rollback()
        code, message = codes.get(status, "error"), messages.get(status, "Error")
        if isinstance(exc, hygiene.ControlCharacters):
            code, message = "control_characters", exc.description
        if _wants_json():
            return api_error(status, code, message)
        # For htmx, which does not swap an error answer: static/js/portal.js shows this.
        return render_template("error.html", status=status, message=message), status, {
            "X-Error-Message": message}

    for status in messages:
        app.register_error_handler(status, handle)
    app.register_error_handler(DomainError, handle_domain_error)

    from sqlalchemy.exc import DBAPIError

    @app.errorhandler(DBAPIError)
    def database_down(exc):
        """The database is unreachable: fail closed (nothing was charged), say so plainly."""
        if not getattr(exc, "connection_invalidated", False) and not isinstance(
                getattr(exc, "orig", None), _connection_errors()):
            return unexpected(exc)
        app.logger.error("database unavailable on %s: %s", request.path, exc.__class__.__name__)
        with contextlib.suppress(Exception):  # the connection is gone anyway
            db.session.rollback()
        if _wants_json():
            return api_error(503, "unavailable", "The service is unavailable; please retry.")
        # Flask-Login's context processor would try to load the user again: not this time.
        from flask import g

        g._login_user = login_manager.anonymous_user()
        return render_template("db_unavailable.html"), 503

    @app.errorhandler(Exception)
    def unexpected(exc):  # pragma: no cover - last resort, keeps the error format
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return handle(exc)
        app.logger.exception("unhandled error on %s", request.path)
        db.session.rollback()
        if _wants_json():
            return api_error(500, "server_error", "Something went wrong")
        return render_template("error.html", status=500, message=messages[500]), 500

    @app.route("/healthz")
    def healthz():
        """Liveness for load balancers."""
        return jsonify(ok=True)


def _connection_errors() -> tuple[type, ...]:
    """The DB-API errors that mean "the database cannot be reached"."""
    import psycopg

    return (psycopg.OperationalError,)


def _origin(url: str) -> str:
    p = urlparse(url)
    return f"{p.scheme}://{p.netloc}" if p.netloc else ""


def _register_security_headers(app: Flask, config: Config) -> None:
    stripe_js = _origin(config.STRIPE_JS_URL)
    stripe_api = _origin(config.STRIPE_API_BASE)
    # The exact pinned file, not the CDN's whole origin (CSP source expressions match paths).
    htmx = config.HTMX_URL if config.HTMX_URL.startswith("https://") else ""
    # Real Stripe runs the 3-D Secure challenge in a frame from hooks.stripe.com.
    frames = stripe_js + (" https://hooks.stripe.com" if stripe_js.startswith("https") else "")
    # Exactly Stripe.js, htmx and our own files; Stripe's Elements need inline styles.
    csp = "; ".join([
        "default-src 'self'",
        f"script-src 'self' {stripe_js} {htmx}".strip(),
        f"frame-src {frames}",
        f"connect-src 'self' {stripe_api} {stripe_js}".strip(),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])

    trusted_hosts = config.trusted_hosts
    if trusted_hosts:
        from werkzeug.sansio.utils import host_is_trusted

        def trusted_host():
            """A request for another host (a forged Host or X-Forwarded-Host) answers 400.

            Checked here rather than by Flask's TRUSTED_HOSTS: Flask 3.1 then leaves the request
            without a URL adapter, and the error page, which builds URLs, fails with a 500.
            /healthz answers any host: probes call it by address (the image's HEALTHCHECK
            calls 127.0.0.1), and it builds no URL.
            """
            if request.path != "/healthz" and not host_is_trusted(request.host, trusted_hosts):
                abort(400)

        # First of all: before the rate limiter counts the request or CSRF looks at it.
        app.before_request_funcs.setdefault(None, []).insert(0, trusted_host)

    @app.after_request
    def headers(resp):
        resp.headers.setdefault("Content-Security-Policy", csp)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        if config.production:
            resp.headers.setdefault("Strict-Transport-Security",
                                    "max-age=63072000; includeSubDomains")
        if request.endpoint and not request.endpoint.startswith("static"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp
