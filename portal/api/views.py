"""JSON endpoints: orders registration and the Stripe webhook."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import ValidationError

from .. import stripe_gateway as gateway
from ..auth.services import bearer_required
from ..extensions import csrf, db
from ..orders.services import OrderError, OrderIn, create_order, order_for, order_json
from ..webhooks.services import receive_event
from .errors import api_error, validation_fields

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)  # Bearer tokens and Stripe signatures, never the session cookie


def _json_body():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return None
    return body


@bp.post("/orders")
@bearer_required("admin", "service")
def create_order_view():
    """Register an order (order service or admin): amounts in minor units."""
    body = _json_body()
    if body is None:
        return api_error(400, "invalid_body", "the body must be a JSON object")
    try:
        order = create_order(OrderIn.model_validate(body))
    except ValidationError as exc:
        return api_error(400, "validation_error", "the order is invalid", validation_fields(exc))
    except OrderError as exc:
        return api_error(400, "validation_error", "the order is invalid", exc.fields)
    db.session.commit()
    return jsonify(success=True, order=order_json(order)), 201


@bp.get("/orders/<order_id>")
@bearer_required()
def get_order_view(order_id: str):
    """One order: its customer, an admin or a service."""
    order = order_for(g.api_user, order_id)
    if order is None:
        return api_error(404, "not_found", "order not found")
    return jsonify(success=True, order=order_json(order))


@bp.post("/payments/webhook")
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
        receive_event(event)
    except Exception:
        # Not stored: answer 5xx so that Stripe delivers it again.
        current_app.logger.exception("could not store Stripe event %s", event.id)
        db.session.rollback()
        return api_error(500, "storage_error", "the event could not be stored")
    return jsonify(received=True)
