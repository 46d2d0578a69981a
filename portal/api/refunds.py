"""Endpoint 9 of the original description: an admin's refund, recorded as a request that
admin approved, executed at once. Thin view over refunds.services."""

from __future__ import annotations

import uuid

from flask import g

from ..errors import NotFound
from ..models_base import parse_uuid
from ..payments.services import payment_for
from ..refunds import services as refunds
from ..refunds.models import RefundRequest
from .openapi import operation
from .schemas import RefundDetail, RefundIn, RefundOut, iso
from .views import bp

_STATUS = {"succeeded": "succeeded", "failed": "failed", "canceled": "canceled"}


def refund_detail(done: RefundRequest) -> RefundDetail:
    """The `refund` object: Stripe's refund (pending while it waits to be sent to Stripe)."""
    return RefundDetail(
        id=done.stripe_refund_id or str(done.id), paymentId=str(done.payment_id),
        amount=done.refund_amount, currency=done.currency.lower(),
        status=_STATUS.get(done.status, "pending"), reason=done.reason,
        createdAt=iso(done.created_at))


def _quantities(body: RefundIn) -> dict[uuid.UUID, int] | None:
    """The body's items as order item id -> quantity; an id that is no item's: 400."""
    if body.items is None:
        return None
    found: dict[uuid.UUID, int] = {}
    for item in body.items:
        item_id = parse_uuid(item.itemId)
        if item_id is None:
            raise refunds.RefundError("This order has no such item.", "items")
        found[item_id] = found.get(item_id, 0) + item.quantity
    return found


@operation(bp, "POST", "/payments/refund", body=RefundIn, roles=("admin",), idempotent=True,
           summary="Process refund",
           description="Admins only. Refunds `amount` (minor units; default: the whole "
                       "remainder) of a succeeded payment, or `items` (each borne by its "
                       "vendor). 400 when it exceeds what can "
                       "still be refunded (paid - refunded - refunds in progress). Stripe "
                       "unreachable: 200 with status pending, the refund is sent again later.",
           responses={200: RefundOut, 404: None, 409: None})
def refund(body: RefundIn) -> RefundOut:
    """Endpoint 9."""
    payment = payment_for(g.api_user, body.paymentId)
    if payment is None:
        raise NotFound("payment not found", code="payment_not_found")
    done = refunds.refund_now(g.api_user, payment, amount=body.amount, reason=body.reason,
                              notes=body.notes, quantities=_quantities(body))
    return RefundOut(refund=refund_detail(done))
