"""JSON endpoints outside the payment flow: tokens, orders, the Stripe webhook, the docs."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError

from .. import stripe_gateway as gateway
from ..auth import throttle
from ..auth.services import authenticate, issue_token
from ..extensions import csrf, db, limiter
from ..orders.services import OrderError, OrderIn, create_order, order_for, order_json
from ..webhooks.services import receive_event
from .errors import api_error, too_many
from .openapi import build_spec, operation
from .schemas import OrderOut, TokenIn, TokenOut, WebhookOut, iso

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)  # Bearer tokens and Stripe signatures, never the session cookie


@operation(bp, "POST", "/auth/token", body=TokenIn, auth=False, tag="auth",
           summary="Get a token", responses={200: TokenOut, 401: None, 429: None},
           description="Exchange e-mail and password for a Bearer JWT (at most 1 h).")
@limiter.limit("10 per minute; 50 per hour")
def auth_token(body: TokenIn):
    """A Bearer token for the API. The account's password budget is the web login's too
    (auth.throttle)."""
    wait = throttle.refused(body.email)
    if wait is not None:
        return too_many("rate_limited", "too many attempts for this account; retry in "
                        + throttle.wait_text(wait), wait)
    user = authenticate(body.email, body.password)
    if user is None:
        throttle.failed(body.email)
        return api_error(401, "invalid_credentials", "wrong e-mail or password")
    token, expires = issue_token(user)
    return jsonify(success=True, token=token, expiresAt=iso(expires))


@operation(bp, "POST", "/orders", body=OrderIn, roles=("admin", "service"), tag="orders",
           summary="Register an order", responses={201: OrderOut},
           description="For the order service and admins; amounts in minor units.")
def create_order_view(body: OrderIn):
    """Register an order (order service or admin): amounts in minor units."""
    try:
        order = create_order(body)
    except OrderError as exc:
        return api_error(400, "validation_error", "the order is invalid", exc.fields)
    db.session.commit()
    return jsonify(success=True, order=order_json(order)), 201


@operation(bp, "GET", "/orders/{orderId}", tag="orders", summary="Get an order",
           responses={200: OrderOut, 404: None})
def get_order_view(orderId: str):  # noqa: N803 - the documented path parameter
    """One order: its customer, an admin or a service."""
    order = order_for(g.api_user, orderId)
    if order is None:
        return api_error(404, "not_found", "order not found")
    return jsonify(success=True, order=order_json(order))


@limiter.request_filter
def _is_stripe_delivery() -> bool:
    """No rate limit applies to Stripe's webhook deliveries (the signature is their gate, and
    Stripe sends in bursts): skip the limiter's per-request work for them altogether."""
    return request.endpoint == "api.stripe_webhook"


@operation(bp, "POST", "/payments/webhook", auth=False, tag="webhooks",
           summary="Stripe webhook", responses={200: WebhookOut, 400: None, 413: None, 503: None},
           description="Raw Stripe event JSON, verified with the Stripe-Signature header.")
def stripe_webhook():
    """Stripe webhook: verify the signature on the raw body, store once, enqueue, answer 200."""
    payload = request.get_data(cache=False)
    try:
        event = gateway.verify_webhook(payload, request.headers.get("Stripe-Signature"))
    except gateway.SignatureError:
        return api_error(400, "invalid_signature", "invalid or expired Stripe signature")
    except (ValueError, KeyError):
        return api_error(400, "invalid_payload", "the body is not a Stripe event")
    try:
        try:
            receive_event(event)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # A pooled connection died (PostgreSQL restarted, a proxy cut it): the pool has
            # dropped it, so one more try gets a fresh connection.
            db.session.rollback()
            receive_event(event)
    except Exception:
        # Not stored (PostgreSQL unreachable...): 503 so that Stripe delivers it again.
        current_app.logger.exception("could not store Stripe event %s", event.id)
        db.session.rollback()
        return api_error(503, "storage_unavailable", "the event could not be stored; "
                                                     "please deliver it again")
    return jsonify(received=True)


def _server_url() -> str:
    """Where the API is served: SERVER_NAME's URL when it is set (production), never a Host
    header taken on trust."""
    server_name = current_app.config.get("SERVER_NAME")
    return f"{request.scheme}://{server_name}" if server_name else request.host_url.rstrip("/")


@bp.get("/payments/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 document of this API."""
    return jsonify(build_spec(_server_url()))


@bp.get("/payments/docs")
def docs():
    """The API reference for humans, rendered on the server (works offline, no scripts)."""
    return render_template("api/docs.html", spec=build_spec(_server_url()))
