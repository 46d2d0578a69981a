"""Endpoint 9 of the original description: an admin's refund, recorded as a request that
admin approved, executed at once. Thin view over refunds.services."""

from __future__ import annotations

from flask import g, jsonify

from ..payments.services import payment_for
from ..refunds import services as refunds
from .errors import api_error
from .openapi import operation
from .schemas import RefundIn, RefundOut, iso
from .views import bp

_STATUS = {"succeeded": "succeeded", "failed": "failed", "canceled": "canceled"}


@operation(bp, "POST", "/payments/refund", body=RefundIn, roles=("admin",), idempotent=True,
           summary="Process refund",
           description="Admins only. Refunds `amount` (minor units; default: the whole "
                       "remainder) of a succeeded payment. 400 when it exceeds what can "
                       "still be refunded (paid - refunded - refunds in progress).",
           responses={200: RefundOut, 404: None, 409: None})
def refund(body: RefundIn):
    """Endpoint 9."""
    payment = payment_for(g.api_user, body.paymentId)
    if payment is None:
        return api_error(404, "payment_not_found", "payment not found")
    try:
        done = refunds.refund_now(g.api_user, payment, amount=body.amount,
                                  reason=body.reason, notes=body.notes)
    except refunds.RefundError as exc:
        message = exc.message
        if exc.remaining is not None:
            message += f" Refundable: {exc.remaining} minor units."
        fields = {exc.field: message} if exc.field else None
        return api_error(400, "invalid_refund_amount", message, fields)
    return jsonify(success=True, refund={
        "id": done.stripe_refund_id or str(done.id), "paymentId": str(payment.id),
        "amount": done.refund_amount, "currency": done.currency.lower(),
        "status": _STATUS.get(done.status, "pending"), "reason": done.reason,
        "createdAt": iso(done.created_at)})
