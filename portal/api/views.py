"""JSON endpoints outside the payment flow: tokens, orders, the Stripe webhook, the docs."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, current_app, g, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError

from .. import stripe_gateway as gateway
from ..auth import throttle
from ..auth.services import BadCredentials, Unauthorized, authenticate, issue_token
from ..database import phase
from ..errors import DomainError, NotFound, TooMany, Unavailable, handle_domain_error
from ..extensions import csrf, limiter
from ..orders.models import Order
from ..orders.services import OrderIn, create_order, order_for
from ..webhooks.services import receive_event
from .openapi import build_spec, operation
from .schemas import OrderDetail, OrderItemOut, OrderOut, TokenIn, TokenOut, WebhookOut, iso

security = logging.getLogger("portal.security")
bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)  # Bearer tokens and Stripe signatures, never the session cookie


@bp.errorhandler(Unauthorized)
def _challenge(exc: Unauthorized):
    """A 401 for want of a valid token names the scheme to use (RFC 6750)."""
    resp = handle_domain_error(exc)
    resp.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return resp


@operation(bp, "POST", "/auth/token", body=TokenIn, auth=False, tag="auth",
           summary="Get a token", responses={200: TokenOut, 401: None, 429: None},
           description="Exchange e-mail and password for a Bearer JWT (at most 1 h).")
@limiter.limit("10 per minute; 50 per hour")
def auth_token(body: TokenIn) -> TokenOut:
    """A Bearer token for the API. The account's password budget is the web login's too
    (auth.throttle): a refused attempt is 429, a wrong password 401 and counted."""
    wait = throttle.refused(body.email)
    if wait is not None:
        raise TooMany("too many attempts for this account; retry in "
                      + throttle.wait_text(wait), retry_after=wait)
    user = authenticate(body.email, body.password)
    if user is None:
        throttle.failed(body.email)
        raise BadCredentials("wrong e-mail or password")
    token, expires = issue_token(user)
    return TokenOut(token=token, expiresAt=iso(expires))


def order_detail(order: Order) -> OrderDetail:
    """The API's representation of an order."""
    return OrderDetail(
        id=str(order.id), customerId=str(order.customer_id), status=order.status,
        currency=order.currency.lower(), subtotal=order.subtotal, tax=order.tax,
        shipping=order.shipping, discount=order.discount, total=order.total,
        items=[OrderItemOut(id=str(i.id), vendorId=str(i.vendor_id), description=i.description,
                            quantity=i.quantity, unitAmount=i.unit_amount, amount=i.amount)
               for i in order.items],
        createdAt=order.created_at.isoformat().replace("+00:00", "Z"))


@operation(bp, "POST", "/orders", body=OrderIn, roles=("admin", "service"), tag="orders",
           summary="Register an order", responses={201: OrderOut},
           description="For the order service and admins; amounts in minor units.")
def create_order_view(body: OrderIn) -> OrderOut:
    """Register an order (order service or admin): amounts in minor units."""
    return OrderOut(order=order_detail(create_order(body)))


@operation(bp, "GET", "/orders/{orderId}", tag="orders", summary="Get an order",
           responses={200: OrderOut, 404: None})
def get_order_view(orderId: str) -> OrderOut:  # noqa: N803 - the documented path parameter
    """One order: its customer, an admin or a service."""
    order = order_for(g.api_user, orderId)
    if order is None:
        raise NotFound("order not found")
    return OrderOut(order=order_detail(order))


@limiter.request_filter
def _is_stripe_delivery() -> bool:
    """No rate limit applies to Stripe's webhook deliveries (the signature is their gate, and
    Stripe sends in bursts): skip the limiter's per-request work for them altogether."""
    return request.endpoint == "api.stripe_webhook"


def _verified_event(payload: bytes):
    """The Stripe event the body is, checked against the Stripe-Signature header. A refusal
    is a security event (forged or replayed deliveries, a wrong secret after a rotation):
    logged with the sender's address and the reason, never the body."""
    try:
        return gateway.verify_webhook(payload, request.headers.get("Stripe-Signature"))
    except gateway.SignatureError as exc:
        security.warning("webhook refused from %s: %s (%d bytes)", request.remote_addr,
                         str(exc)[:200], len(payload))
        raise DomainError("invalid or expired Stripe signature",
                          code="invalid_signature") from None
    except (ValueError, KeyError):
        security.warning("webhook refused from %s: signed, but not a Stripe event (%d bytes)",
                         request.remote_addr, len(payload))
        raise DomainError("the body is not a Stripe event", code="invalid_payload") from None


def _store(event) -> None:
    """Store the event once and enqueue its processing, committed here so that a failure of
    the commit too is answered 503 (Stripe then delivers the event again)."""
    try:
        try:
            with phase():
                receive_event(event)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # A pooled connection died (PostgreSQL restarted, a proxy cut it): the pool has
            # dropped it, so one more try gets a fresh connection.
            with phase():
                receive_event(event)
    except Exception as exc:
        # Not stored (PostgreSQL unreachable...): 503 so that Stripe delivers it again.
        current_app.logger.exception("could not store Stripe event %s", event.id)
        raise Unavailable("the event could not be stored; please deliver it again",
                          code="storage_unavailable") from exc


@operation(bp, "POST", "/payments/webhook", auth=False, tag="webhooks",
           summary="Stripe webhook", responses={200: WebhookOut, 400: None, 413: None, 503: None},
           description="Raw Stripe event JSON, verified with the Stripe-Signature header.")
def stripe_webhook() -> WebhookOut:
    """Stripe webhook: verify the signature on the raw body, store once, enqueue, answer 200."""
    _store(_verified_event(request.get_data(cache=False)))
    return WebhookOut(received=True)


def _server_url() -> str:
    """Where the API is served: SERVER_NAME's URL when it is set (production), never a Host
    header taken on trust."""
    server_name = current_app.config.get("SERVER_NAME")
    return f"{request.scheme}://{server_name}" if server_name else request.host_url.rstrip("/")


@bp.get("/payments/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 document of this API."""
    return jsonify(build_spec(_server_url()))


# Swagger UI, fetched by `make install` from the npm registry into static/vendor/ and checked
# there against these hashes (Makefile, the same pins; tests/unit/test_api_docs_viewer.py
# compares them); the page loads the files with them as SRI, so a stale copy is refused too.
SWAGGER_UI_VERSION = "5.35.0"
SWAGGER_UI_FILES = {
    "script": ("swagger-ui-bundle.js",
               "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9"),
    "style": ("swagger-ui.css",
              "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I"),
}


def _viewer() -> dict[str, tuple[str, str]] | None:
    """{"script"|"style": (static filename, SRI)} of the installed viewer; None when `make
    install` has not fetched it (the page then says so and links the document itself)."""
    folder = f"vendor/swagger-ui-{SWAGGER_UI_VERSION}"
    files = {kind: (f"{folder}/{name}", sri) for kind, (name, sri) in SWAGGER_UI_FILES.items()}
    static = Path(current_app.static_folder or "")
    return files if all((static / name).is_file() for name, _ in files.values()) else None


@bp.get("/payments/docs")
def docs():
    """The API reference for humans: the OpenAPI document in Swagger UI (examples, Markdown),
    from our own static files under the portal's usual Content-Security-Policy."""
    return render_template("api/docs.html", viewer=_viewer())
