"""Refund workflows: request, approve or reject (one by one or in bulk), execute at Stripe,
and mirror what Stripe reports (webhooks, refunds made in Stripe's dashboard).

Money goes back at most once and never beyond what was paid: every decision that commits
money locks the payment row and checks ``amount <= paid - refunded - in flight``; execution
uses the request's id as Stripe's idempotency key, so a retry (timeout, 5xx, a worker killed
after Stripe answered) finds the same refund instead of making another.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from .. import jobs
from .. import stripe_gateway as gateway
from ..audit.services import audit
from ..auth.models import User
from ..database import in_phases, phase, write_lock
from ..documents import credit_notes
from ..errors import DomainError
from ..extensions import db
from ..ledger import splits
from ..ledger.models import Payment
from ..models_base import parse_uuid, utcnow
from ..money import format_minor
from ..orders.models import OrderItem
from ..outbox.services import record_refund_outcome
from ..payouts.reversals import queue_reversals
from . import items
from .models import IN_FLIGHT, REASONS, STRIPE_REASONS, RefundItem, RefundRequest

log = logging.getLogger(__name__)

RETRY_DELAYS = (10, 60, 300, 900, 3600)  # timeouts and 5xx: the same idempotency key again


class RefundError(DomainError):
    """The refund cannot be requested or decided; ``field`` names the input at fault,
    ``remaining`` what can still be refunded (when the amount was the fault)."""

    code = "invalid_refund_amount"

    def __init__(self, message: str, field: str | None = None, remaining: int | None = None):
        self.remaining = remaining
        api = message if remaining is None else f"{message} Refundable: {remaining} minor units."
        super().__init__(message, field=field, fields={field: api} if field else None)
        self._api = api

    def for_api(self) -> str:
        return self._api


class Changed(RefundError):
    """What refund_now would refund is not what the admin confirmed (``amount``: what it is
    now); nothing was done."""

    def __init__(self, amount: int):
        self.amount = amount
        super().__init__("The amount changed since you confirmed it: confirm the new one.",
                         "amount")


# --- Who may see what -------------------------------------------------------------------------

def sells_in(vendor: User, payment: Payment) -> bool:
    return db.session.scalar(sa.select(OrderItem.id).where(
        OrderItem.order_id == payment.order_id, OrderItem.vendor_id == vendor.id).limit(1)
    ) is not None


def payment_for_refund(user: User, payment_id: str | uuid.UUID) -> Payment | None:
    """The payment if ``user`` may ask to refund it: its customer, a vendor with items in it,
    or an admin. None means 404 (another customer's payment looks like a missing one)."""
    pid = payment_id if isinstance(payment_id, uuid.UUID) else parse_uuid(payment_id)
    payment = db.session.get(Payment, pid) if pid else None
    if payment is None:
        return None
    if user.role == "admin" or (user.role == "customer" and payment.user_id == user.id) or (
            user.role == "vendor" and sells_in(user, payment)):
        return payment
    return None


def requests_of(payment: Payment) -> list[RefundRequest]:
    return list(db.session.scalars(sa.select(RefundRequest).where(
        RefundRequest.payment_id == payment.id).order_by(RefundRequest.created_at)))


# --- The remainder ----------------------------------------------------------------------------

def _claimed(payment: Payment, statuses: tuple[str, ...],
             besides: uuid.UUID | None = None) -> int:
    """What the payment's requests in ``statuses`` (all but ``besides``) take from it."""
    query = sa.select(sa.func.coalesce(sa.func.sum(
        sa.func.coalesce(RefundRequest.approved_amount, RefundRequest.amount)), 0)).where(
        RefundRequest.payment_id == payment.id, RefundRequest.status.in_(statuses))
    if besides is not None:
        query = query.where(RefundRequest.id != besides)
    return int(db.session.scalar(query))


def remaining(payment: Payment, *, besides: uuid.UUID | None = None,
              waiting: bool = False) -> int:
    """What may still be refunded: paid - refunded - in flight (approved, being executed);
    with ``waiting``, also less the requests waiting for a decision: what may still be
    asked for (the pages' "Up to ... can be refunded")."""
    if payment.status != "succeeded":
        return 0
    statuses = ("requested", *IN_FLIGHT) if waiting else IN_FLIGHT
    return max(0, payment.amount - payment.amount_refunded
               - _claimed(payment, statuses, besides))


def requestable(user: User, payment: Payment) -> int:
    """What ``user`` may ask to refund now: what is not refunded nor asked for; for a
    vendor, no more than what they may still bear (refunds.items.vendor_room)."""
    left = remaining(payment, waiting=user.role != "admin")
    if left and user.role == "vendor":
        left = min(left, items.vendor_room(payment, user.id))
    return left


def item_lines(user: User, payment: Payment) -> list[items.ItemLine]:
    """The items ``user`` may ask to refund (a vendor: their own), with what each may."""
    waiting = user.role != "admin"
    room = remaining(payment, waiting=waiting)
    return items.item_lines(payment, room, user.id if user.role == "vendor" else None,
                            waiting=waiting)


def _locked_payment(payment_id: uuid.UUID) -> Payment:
    """The payment, re-read and held until the commit: FOR UPDATE, and on SQLite (which
    ignores it) the database's write lock, so that two decisions never both read the same
    remainder."""
    write_lock(Payment, Payment.id == payment_id)
    return db.session.scalar(sa.select(Payment).where(Payment.id == payment_id)
                             .with_for_update(of=Payment)
                             .execution_options(populate_existing=True))


def _too_much(payment: Payment, left: int, field: str = "amount") -> RefundError:
    shown = format_minor(left, payment.currency)
    return RefundError(f"Only {shown} of this payment can still be refunded.", field, left)


def _waiting_request(user: User, payment: Payment) -> RefundRequest | None:
    return db.session.scalar(sa.select(RefundRequest).where(
        RefundRequest.payment_id == payment.id, RefundRequest.requested_by_id == user.id,
        RefundRequest.status == "requested").limit(1))


# --- Requests and decisions -------------------------------------------------------------------

def request_refund(user: User, payment: Payment, *, amount: int | None, reason: str,
                   notes: str | None = None,
                   quantities: dict[uuid.UUID, int] | None = None) -> RefundRequest:
    """A customer, vendor or admin asks for a refund of ``quantities`` (order item id ->
    units; borne by the items' vendors) or of ``amount`` (a vendor's: borne by them; anyone
    else's: by the order's vendors in proportion), holding the payment's row lock until the
    caller commits. RefundError when it cannot be asked for (refunds.items' rule)."""
    if reason not in REASONS:
        raise RefundError("Choose one of the listed reasons.", "reason")
    if notes and len(notes) > 1000:
        raise RefundError("At most 1000 characters.", "notes")
    if quantities and amount is not None:
        raise RefundError("Ask for items or for an amount, not both.", "amount")
    payment = _locked_payment(payment.id)  # one request of a payment at a time from here
    if payment.status != "succeeded":
        raise RefundError("Only a succeeded payment can be refunded.", "amount", 0)
    # Spam (finding 5): a customer or vendor has at most one request waiting for a decision
    # per payment (what it asks for is counted against what others may ask for until then).
    waiting = _waiting_request(user, payment) if user.role in ("customer", "vendor") else None
    if waiting is not None:
        shown = format_minor(waiting.amount, waiting.currency)
        raise RefundError(f"You already asked for {shown} of this payment; you can ask again "
                          "once an admin has decided on it.", "amount")
    # What others asked for and wait for a decision counts for customers and vendors; an
    # admin decides on those, and approving one re-checks what is left.
    left = remaining(payment, waiting=user.role != "admin")
    vendor_id = user.id if user.role == "vendor" else None
    if quantities:
        try:
            shares = items.plan(payment, quantities, vendor_id, waiting=user.role != "admin")
        except items.ItemsError as exc:
            raise RefundError(str(exc), "items") from None
        amount = sum(share.amount for share in shares)
        if amount > left:
            raise _too_much(payment, left, "items")
    else:
        shares = _goodwill(payment, vendor_id, amount, left)
    request = RefundRequest(id=uuid.uuid4(), payment_id=payment.id, requested_by_id=user.id,
                            source=user.role, amount=amount, currency=payment.currency,
                            reason=reason, notes=(notes or "").strip() or None, items=shares)
    db.session.add(request)
    db.session.flush()  # the audit line refers to it
    audit("refund.requested", actor=user, payment_id=payment.id, refund_request_id=request.id,
          amount=amount, currency=payment.currency, note=request.notes)
    return request


def preview(admin: User, payment: Payment, *, amount: int | None,
            quantities: dict[uuid.UUID, int] | None) -> int:
    """What ``refund_now`` would refund, for the admin to confirm (writes nothing).
    RefundError as ``refund_now`` would raise it."""
    if quantities and amount is not None:
        raise RefundError("Ask for items or for an amount, not both.", "amount")
    left = remaining(payment)
    if quantities:
        try:
            amount = sum(share.amount
                         for share in items.plan(payment, quantities, waiting=False))
        except items.ItemsError as exc:
            raise RefundError(str(exc), "items") from None
    amount = left if amount is None else amount
    if amount <= 0 or amount > left:
        raise (_too_much(payment, left) if amount > 0
               else RefundError("The amount must be more than zero.", "amount", left))
    return amount


def _goodwill(payment: Payment, vendor_id: uuid.UUID | None, amount: int | None,
              left: int) -> list[RefundItem]:
    """An amount request's rows: a vendor's is borne by them (one row), anyone else's by
    the order's vendors in proportion (none). RefundError when it cannot be asked for."""
    room = items.vendor_room(payment, vendor_id) if vendor_id is not None else left
    if amount is None or amount <= 0:
        raise RefundError("Choose items to refund or enter an amount." if amount is None
                          else "The amount must be more than zero.", "amount", min(left, room))
    if vendor_id is not None and amount > room:  # their own share of the payment
        shown = format_minor(room, payment.currency)
        raise RefundError(f"You can ask for at most {shown}, the part of this payment you "
                          "received that is not refunded or asked for.", "amount", room)
    if amount > left:
        raise _too_much(payment, left)
    return [RefundItem(vendor_id=vendor_id, amount=amount)] if vendor_id is not None else []


def _pending(request_id: uuid.UUID) -> tuple[RefundRequest, Payment]:
    """The request and its payment, both locked (payment first, as everywhere)."""
    request = db.session.get(RefundRequest, request_id)
    if request is None:
        raise RefundError("No such refund request.")
    payment = _locked_payment(request.payment_id)
    request = db.session.scalar(sa.select(RefundRequest).where(RefundRequest.id == request_id)
                                .with_for_update().execution_options(populate_existing=True))
    if request.status != "requested":
        raise RefundError(f"This request is already {request.status}.")
    return request, payment


def approve(admin: User, request_id: uuid.UUID, *, amount: int | None = None,
            note: str | None = None, execute: bool = True) -> RefundRequest:
    """Approve (optionally a smaller amount) under the payment's row lock; the execution is
    queued for after the commit. RefundError when it would refund more than what remains."""
    request, payment = _pending(request_id)
    amount = request.amount if amount is None else amount
    if not 0 < amount <= request.amount:
        shown = format_minor(request.amount, request.currency)
        raise RefundError(f"Approve between 0 and the requested {shown}.", "amount")
    if amount != request.amount and request.itemized:
        raise RefundError("A refund of items is approved as asked; reject it to refund "
                          "less, or refund an amount from the payment's page.", "amount")
    left = remaining(payment, besides=request.id)
    if amount > left:
        raise _too_much(payment, left)
    if request.items and not request.itemized:  # a vendor's goodwill: they bear what is
        request.items[0].amount = amount        # approved (an itemized one is approved whole)
    # What they bear must still fit: an admin's request may have taken it since.
    why = items.unbearable(request, payment)
    if why is not None:
        raise RefundError(why, "amount")
    request.status, request.approved_amount = "approved", amount
    request.decided_by_id, request.decided_at = admin.id, utcnow()
    request.decision_note = (note or "").strip() or None
    audit("refund.approved", actor=admin, payment_id=payment.id, refund_request_id=request.id,
          amount=amount, currency=request.currency, note=request.decision_note)
    if execute:
        jobs.enqueue(execute_refund, str(request.id), queue="refunds", retry=RETRY_DELAYS)
    return request


def reject(admin: User, request_id: uuid.UUID, *, note: str | None = None) -> RefundRequest:
    """Refuse a request, with a note the requester sees."""
    request, payment = _pending(request_id)
    request.status, request.decided_by_id, request.decided_at = "rejected", admin.id, utcnow()
    request.decision_note = (note or "").strip() or None
    audit("refund.rejected", actor=admin, payment_id=payment.id, refund_request_id=request.id,
          amount=request.amount, currency=request.currency, note=request.decision_note)
    return request


@dataclass(frozen=True)
class Outcome:
    request_id: uuid.UUID
    ok: bool
    message: str


def decide_many(admin: User, request_ids: list[uuid.UUID], action: str,
                note: str | None = None) -> list[Outcome]:
    """Bulk approve or reject: each request in a transaction of its own (a phase: its own
    lock, committed at once); a refused one is reported with the reason and changes
    nothing."""
    outcomes = []
    for request_id in request_ids:
        try:
            with phase():
                if action == "approve":
                    done = approve(admin, request_id, note=note)
                    message = f"Approved {format_minor(done.refund_amount, done.currency)}."
                else:
                    reject(admin, request_id, note=note)
                    message = "Rejected."
            outcomes.append(Outcome(request_id, True, message))
        except RefundError as exc:
            outcomes.append(Outcome(request_id, False, exc.message))
    return outcomes


def refund_now(admin: User, payment: Payment, *, amount: int | None, reason: str,
               notes: str | None, quantities: dict[uuid.UUID, int] | None = None,
               expected: int | None = None) -> RefundRequest:
    """An admin's refund (the API, the admin's payment page): one transaction records the
    request and its approval by that admin (or nothing at all, when either is refused), then
    the refund is executed at once. Neither ``amount`` nor ``quantities``: the whole
    remainder. ``expected``: the amount the admin confirmed; Changed (nothing done) when
    the payment's state now makes it another."""
    with phase():  # reserve: the payment stays locked from the request to the approval
        if amount is None and not quantities:
            amount = remaining(_locked_payment(payment.id))
            if amount == 0:
                raise RefundError("Nothing of this payment can be refunded.", "amount", 0)
        request = request_refund(admin, payment, amount=amount, reason=reason, notes=notes,
                                 quantities=quantities)
        if expected is not None and request.amount != expected:  # what the admin confirmed
            raise Changed(request.amount)
        approve(admin, request.id, execute=False)
    execute_refund(str(request.id), retry_later=True)
    return db.session.get(RefundRequest, request.id)


# --- Execution and what Stripe reports ------------------------------------------------------

@dataclass(frozen=True)
class _Reserved:
    request_id: uuid.UUID
    payment_id: uuid.UUID
    payment_intent: str
    amount: int
    reason: str
    attempt: int


def execute_refund(request_id: str, retry_later: bool = False) -> None:
    """The job: refund an approved request at Stripe (idempotency key = request id), in
    three phases (database.in_phases): mark it processing; ask Stripe (adopting a refund an
    earlier attempt made); mirror Stripe's answer.

    A timeout or 5xx raises, and RQ runs the job again later (a 5xx with the next key). A
    4xx ends the request as failed with Stripe's message. ``retry_later``: called in a web
    request, which must not raise; the retry is queued instead.
    """
    def reserve() -> _Reserved | None:
        request = db.session.scalar(sa.select(RefundRequest)
                                    .where(RefundRequest.id == uuid.UUID(request_id))
                                    .with_for_update())
        if request is None or request.status not in ("approved", "processing"):
            return None
        request.status = "processing"
        payment = request.payment
        return _Reserved(
            request.id, payment.id, payment.stripe_payment_intent_id, request.refund_amount,
            request.reason if request.reason in STRIPE_REASONS else "requested_by_customer",
            request.stripe_attempt)

    def call(r: _Reserved) -> gateway.Refund:
        # A refund made by an earlier attempt (even beyond the key's 24 h) is adopted.
        made = [f for f in gateway.refunds_of(r.payment_intent)
                if f.metadata.get("refundRequestId") == request_id]
        return made[0] if made else gateway.create_refund(
            payment_intent=r.payment_intent, amount=r.amount, reason=r.reason,
            idempotency_key=f"refund-{r.request_id}-{r.attempt}",
            metadata={"refundRequestId": str(r.request_id), "paymentId": str(r.payment_id)})

    def apply(r: _Reserved, refund: gateway.Refund) -> None:
        payment = _locked_payment(r.payment_id)
        made = _mirror(payment, refund)
        _recount(payment)
        _issue_credit_notes(payment, [made] if made else [])

    def failed(r: _Reserved, exc: gateway.GatewayError) -> gateway.GatewayError | None:
        """What is left to do: the error to raise after this phase commits (RQ retries)."""
        if exc.retryable:
            if (exc.stripe_status or 0) >= 500:  # kept by Stripe under this key: a new one
                db.session.execute(sa.update(RefundRequest).where(
                    RefundRequest.id == r.request_id, RefundRequest.stripe_attempt == r.attempt)
                    .values(stripe_attempt=r.attempt + 1))
            if not retry_later:
                return exc
            log.warning("refund %s: Stripe unreachable; retrying later", r.request_id)
            jobs.enqueue(execute_refund, request_id, queue="refunds", retry=RETRY_DELAYS)
            return None
        payment = _locked_payment(r.payment_id)
        request = db.session.get(RefundRequest, r.request_id, populate_existing=True)
        was, request.status, request.failure_message = (request.status, "failed",
                                                         exc.message[:500])
        audit("refund.failed", actor=None, payment_id=payment.id, refund_request_id=request.id,
              amount=request.refund_amount, currency=request.currency, note=exc.message)
        record_refund_outcome(request, payment, was=was)
        return None

    error = in_phases(reserve, call, apply, failed=failed, failures=(gateway.GatewayError,))
    if error is not None:
        raise error


# Stripe's refund status -> ours; and which of ours may follow which.
_FROM_STRIPE = {"pending": "processing", "requires_action": "processing",
                "succeeded": "succeeded", "failed": "failed", "canceled": "canceled"}
_MAY_BECOME = {"requested": {"processing", "succeeded", "failed", "canceled"},
               "approved": {"processing", "succeeded", "failed", "canceled"},
               "processing": {"succeeded", "failed", "canceled"},
               "succeeded": {"failed"}}  # Stripe may report a failure afterwards


def _mirror(payment: Payment, refund: gateway.Refund) -> uuid.UUID | None:
    """Bring the local request of a Stripe refund to its state (importing refunds made
    outside the portal). The caller holds the payment row. The request is read afresh: the
    session keeps rows across commits, and a webhook may have mirrored this refund while a
    refund job waited on Stripe (a stale copy would undo what it recorded)."""
    fresh = {"populate_existing": True}
    request = db.session.scalar(sa.select(RefundRequest).where(
        RefundRequest.stripe_refund_id == refund.id).execution_options(**fresh))
    if request is None:
        rid = parse_uuid(refund.metadata.get("refundRequestId", ""))
        request = db.session.get(RefundRequest, rid, populate_existing=True) if rid else None
        if request is not None and request.payment_id != payment.id:
            request = None
    if request is None:  # made in Stripe's dashboard (or by another system)
        request = RefundRequest(
            id=uuid.uuid4(), payment_id=payment.id, source="stripe", amount=refund.amount,
            approved_amount=refund.amount, currency=payment.currency,
            reason=refund.reason if refund.reason in REASONS else "other",
            notes="Refunded in Stripe", status="processing",
            decided_at=datetime.fromtimestamp(refund.created, utcnow().tzinfo))
        db.session.add(request)
        db.session.flush()  # the audit line refers to it
        audit("refund.imported", actor=None, payment_id=payment.id, refund_request_id=request.id,
              amount=refund.amount, currency=payment.currency, note=refund.id)
    request.stripe_refund_id = refund.id
    new, was = _FROM_STRIPE.get(refund.status, "processing"), request.status
    if new != was and new in _MAY_BECOME.get(was, ()):
        request.status = new
        if new == "failed":
            request.failure_message = refund.failure_reason or "the refund failed"
        audit(f"refund.{new}", actor=None, payment_id=payment.id, refund_request_id=request.id,
              amount=request.refund_amount, currency=request.currency,
              note=refund.failure_reason)
        if new == "failed" and was == "succeeded":
            log.warning("refund %s (%s) failed after it succeeded: %s; admins alerted",
                        request.id, refund.id, request.failure_message)
        record_refund_outcome(request, payment, was=was)  # the customer hears of it once
        if new == "succeeded":
            return request.id
    return None


def _recount(payment: Payment) -> None:
    succeeded = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(
        sa.func.coalesce(RefundRequest.approved_amount, RefundRequest.amount)), 0)).where(
        RefundRequest.payment_id == payment.id, RefundRequest.status == "succeeded"))
    payment.amount_refunded = int(succeeded)
    db.session.flush()
    splits.sync_refund_lines(payment, items.borne_by_vendor(payment))
    db.session.flush()
    queue_reversals(payment.id)  # REFUND_AFTER_PAYOUT=reverse: from the vendors' transfers


def sync_refunds(payment_intent_id: str | None) -> bool:
    """Webhooks (refund.*, charge.refunded): mirror every refund of the payment as Stripe
    holds it now. False when the payment is not ours. The caller commits."""
    if not payment_intent_id:
        return False
    payment_id = db.session.scalar(sa.select(Payment.id).where(
        Payment.stripe_payment_intent_id == payment_intent_id))
    if payment_id is None:
        return False
    refunds = gateway.refunds_of(payment_intent_id)  # before taking the lock
    payment = _locked_payment(payment_id)
    made = [_mirror(payment, refund) for refund in sorted(refunds, key=lambda r: r.created)]
    _recount(payment)
    _issue_credit_notes(payment, [m for m in made if m])
    return True


def _issue_credit_notes(payment: Payment, request_ids: list[uuid.UUID]) -> None:
    """A credit note for each refund that has just succeeded, stating what each vendor
    bears of it; last in the transaction (documents/numbering.py)."""
    for request_id, borne in zip(request_ids, items.borne_shares(payment, request_ids),
                                 strict=True):
        request = db.session.get(RefundRequest, request_id)
        credit_notes.issue_credit_note(payment, request_id, request.refund_amount,
                                       request.reason_label, borne)

