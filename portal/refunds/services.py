"""Refund workflows: request, approve or reject (one by one or in bulk), execute at Stripe,
and mirror what Stripe reports (webhooks, refunds made in Stripe's dashboard).

Money goes back at most once and never beyond what was paid: every decision that commits
money locks the payment row and checks ``amount <= paid - refunded - in flight``; execution
uses the request's id as Stripe's idempotency key, so a retry (timeout, 5xx, a worker killed
after Stripe answered) finds the same refund instead of making another.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from .. import jobs
from .. import stripe_gateway as gateway
from ..auth.models import User
from ..extensions import db
from ..models_base import parse_uuid, utcnow
from ..money import amount_step, format_minor
from ..orders.models import OrderItem
from ..payments import splits
from ..payments.models import Payment, SplitLine
from .models import IN_FLIGHT, REASONS, STRIPE_REASONS, AuditEntry, RefundRequest

log = logging.getLogger(__name__)

RETRY_DELAYS = (10, 60, 300, 900, 3600)  # timeouts and 5xx: the same idempotency key again


class RefundError(Exception):
    """The refund cannot be requested or decided; ``field`` names the input at fault."""

    def __init__(self, message: str, field: str | None = None, remaining: int | None = None):
        super().__init__(message)
        self.message, self.field, self.remaining = message, field, remaining


def audit(action: str, *, actor: User | None, payment_id: uuid.UUID | None,
          request: RefundRequest | None = None, amount: int | None = None,
          currency: str | None = None, note: str | None = None) -> None:
    """One line of the audit log, in the caller's transaction."""
    db.session.add(AuditEntry(
        actor_id=actor.id if actor else None, action=action, payment_id=payment_id,
        refund_request_id=request.id if request else None, amount=amount,
        currency=currency, note=note))


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


# --- The admin queue --------------------------------------------------------------------------

QUEUE_PAGE_SIZE = 50


@dataclass(frozen=True)
class QueuePage:
    rows: list[tuple[RefundRequest, int]]  # (request, what its payment can still refund)
    total: int  # requests matching the filters
    newer: str | None  # cursor of the "Newer" link (None: this is the newest page)
    older: str | None  # cursor of the "Older" link (None: nothing older)


def _cursor(request: RefundRequest) -> str:
    return f"{request.created_at.astimezone(UTC):%Y%m%d%H%M%S%f}.{request.id.hex}"


def _parse_cursor(text: str | None) -> tuple[datetime, uuid.UUID] | None:
    found = re.fullmatch(r"([0-9]{20})\.([0-9a-f]{32})", text or "")
    if not found:
        return None
    try:
        at = datetime.strptime(found.group(1), "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)
    except ValueError:
        return None
    return at, uuid.UUID(found.group(2))


def queue_page(status: str | None, start: datetime | None, end: datetime | None, *,
               before: str | None = None, after: str | None = None,
               per_page: int = QUEUE_PAGE_SIZE) -> QueuePage:
    """One page of the admin queue, newest first, filtered by status and creation dates.

    Pages are keyset pages (cursors of (created_at, id)), not numbered ones: as an admin
    decides requests they leave the "requested" filter, and a numbered page 2 would then
    skip as many requests as were decided on page 1; "Older" continues right after the last
    row shown whatever happened above it. ``before``: rows older than that cursor;
    ``after``: the rows just newer than it (the "Newer" link). A bad cursor is ignored."""
    where = []
    if status:
        where.append(RefundRequest.status == status)
    if start:
        where.append(RefundRequest.created_at >= start)
    if end:
        where.append(RefundRequest.created_at <= end)

    def beyond(cursor: tuple[datetime, uuid.UUID], newer: bool):
        at, rid = cursor
        if newer:
            return sa.or_(RefundRequest.created_at > at,
                          sa.and_(RefundRequest.created_at == at, RefundRequest.id > rid))
        return sa.or_(RefundRequest.created_at < at,
                      sa.and_(RefundRequest.created_at == at, RefundRequest.id < rid))

    newest_first = (RefundRequest.created_at.desc(), RefundRequest.id.desc())
    query = sa.select(RefundRequest).where(*where).limit(per_page)
    rows: list[RefundRequest] = []
    if (cursor := _parse_cursor(after)) is not None:
        rows = list(db.session.scalars(query.where(beyond(cursor, newer=True)).order_by(
            RefundRequest.created_at.asc(), RefundRequest.id.asc())))[::-1]
    if len(rows) < per_page:  # the first page, or "Newer" reached it: a full first page
        cursor = _parse_cursor(before) if not after else None
        if cursor is not None:
            query = query.where(beyond(cursor, newer=False))
        rows = list(db.session.scalars(query.order_by(*newest_first)))

    def any_beyond(row: RefundRequest, newer: bool) -> bool:
        key = (row.created_at, row.id)
        return db.session.scalar(sa.select(sa.exists().where(*where, beyond(key, newer))))

    total = db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest)
                              .where(*where))
    return QueuePage(
        rows=[(r, remaining(r.payment)) for r in rows], total=total or 0,
        newer=_cursor(rows[0]) if rows and any_beyond(rows[0], newer=True) else None,
        older=_cursor(rows[-1]) if rows and any_beyond(rows[-1], newer=False) else None)


# --- The remainder ----------------------------------------------------------------------------

def _in_flight(payment: Payment, besides: uuid.UUID | None = None) -> int:
    """What approved refunds not yet made at Stripe will take from the payment."""
    query = sa.select(sa.func.coalesce(sa.func.sum(
        sa.func.coalesce(RefundRequest.approved_amount, RefundRequest.amount)), 0)).where(
        RefundRequest.payment_id == payment.id, RefundRequest.status.in_(IN_FLIGHT))
    if besides is not None:
        query = query.where(RefundRequest.id != besides)
    return int(db.session.scalar(query))


def remaining(payment: Payment, *, besides: uuid.UUID | None = None) -> int:
    """What may still be refunded: paid - refunded - in flight (approved, being executed)."""
    if payment.status != "succeeded":
        return 0
    return max(0, payment.amount - payment.amount_refunded - _in_flight(payment, besides))


def vendor_unrefunded(vendor: User, payment: Payment) -> int:
    """The vendor's own share of the payment not refunded yet: their sale line's gross, minus
    what refunds took back from them (their refund lines), minus the share the refunds in
    flight will take (the split rule's targets with and without them, as
    splits.sync_refund_lines will write it). 0 for a vendor without a sale line."""
    lines = list(db.session.scalars(sa.select(SplitLine).where(
        SplitLine.payment_id == payment.id)))
    sales = sorted((line for line in lines if line.kind == "sale"),
                   key=lambda line: str(line.vendor_id))  # the rule's order: vendor id
    mine = next((i for i, line in enumerate(sales) if line.vendor_id == vendor.id), None)
    if mine is None or payment.amount <= 0:
        return 0
    taken = -sum(line.gross for line in lines
                 if line.kind == "refund" and line.vendor_id == vendor.id)
    shares, step = [(line.gross, line.fee) for line in sales], amount_step(payment.currency)
    refunded = min(payment.amount_refunded, payment.amount)
    after = min(payment.amount, refunded + _in_flight(payment))
    in_flight = (splits.refund_targets(shares, after, payment.amount, step)[mine][0]
                 - splits.refund_targets(shares, refunded, payment.amount, step)[mine][0])
    return max(0, sales[mine].gross - taken - in_flight)


def requestable(user: User, payment: Payment) -> int:
    """What ``user`` may ask to refund: the payment's remainder; for a vendor, no more than
    their own items' unrefunded share (other vendors' items are not theirs to refund)."""
    left = remaining(payment)
    if left and user.role == "vendor":
        left = min(left, vendor_unrefunded(user, payment))
    return left


def _locked_payment(payment_id: uuid.UUID) -> Payment:
    return db.session.scalar(sa.select(Payment).where(Payment.id == payment_id)
                             .with_for_update(of=Payment)
                             .execution_options(populate_existing=True))


def _too_much(payment: Payment, left: int) -> RefundError:
    shown = format_minor(left, payment.currency)
    return RefundError(f"Only {shown} of this payment can still be refunded.", "amount", left)


def _waiting_request(user: User, payment: Payment) -> RefundRequest | None:
    return db.session.scalar(sa.select(RefundRequest).where(
        RefundRequest.payment_id == payment.id, RefundRequest.requested_by_id == user.id,
        RefundRequest.status == "requested").limit(1))


# --- Requests and decisions -------------------------------------------------------------------

def request_refund(user: User, payment: Payment, *, amount: int, reason: str,
                   notes: str | None = None) -> RefundRequest:
    """A customer, vendor or admin asks for a refund (commits). RefundError when the amount
    or reason is not acceptable; nothing is stored then."""
    if reason not in REASONS:
        raise RefundError("Choose one of the listed reasons.", "reason")
    if notes and len(notes) > 1000:
        raise RefundError("At most 1000 characters.", "notes")
    payment = _locked_payment(payment.id)  # one request of a payment at a time from here
    if payment.status != "succeeded":
        db.session.rollback()
        raise RefundError("Only a succeeded payment can be refunded.", "amount", 0)
    # Spam (finding 5): a customer or vendor has at most one request waiting for a decision
    # per payment. Counting waiting requests against the remainder instead would let one
    # requester's request (a vendor's, a spammer's) shrink what the others may ask for until
    # an admin decides, and waiting requests move no money: approval checks the remainder
    # under the payment's lock anyway. Admins' requests (the API) are approved at once.
    waiting = _waiting_request(user, payment) if user.role in ("customer", "vendor") else None
    if waiting is not None:
        db.session.rollback()
        shown = format_minor(waiting.amount, waiting.currency)
        raise RefundError(f"You already asked for {shown} of this payment; you can ask again "
                          "once an admin has decided on it.", "amount")
    left = requestable(user, payment)
    if amount <= 0:
        db.session.rollback()
        raise RefundError("The amount must be more than zero.", "amount", left)
    if amount > left:
        db.session.rollback()
        if user.role == "vendor" and left < remaining(payment):
            shown = format_minor(left, payment.currency)
            raise RefundError(f"You can ask for at most {shown}, the part of this payment for "
                              "your own items that is not refunded or being refunded.",
                              "amount", left)
        raise _too_much(payment, left)
    request = RefundRequest(id=uuid.uuid4(), payment_id=payment.id, requested_by_id=user.id,
                            source=user.role, amount=amount, currency=payment.currency,
                            reason=reason, notes=(notes or "").strip() or None)
    db.session.add(request)
    db.session.flush()  # the audit line refers to it
    audit("refund.requested", actor=user, payment_id=payment.id, request=request,
          amount=amount, currency=payment.currency, note=request.notes)
    db.session.commit()
    return request


def _pending(request_id: uuid.UUID) -> tuple[RefundRequest, Payment]:
    """The request and its payment, both locked (payment first, as everywhere)."""
    request = db.session.get(RefundRequest, request_id)
    if request is None:
        raise RefundError("No such refund request.")
    payment = _locked_payment(request.payment_id)
    request = db.session.scalar(sa.select(RefundRequest).where(RefundRequest.id == request_id)
                                .with_for_update().execution_options(populate_existing=True))
    if request.status != "requested":
        db.session.rollback()
        raise RefundError(f"This request is already {request.status}.")
    return request, payment


def approve(admin: User, request_id: uuid.UUID, *, amount: int | None = None,
            note: str | None = None, execute: bool = True) -> RefundRequest:
    """Approve (optionally a smaller amount) under the payment's row lock, then queue the
    execution. RefundError when it would refund more than what remains."""
    request, payment = _pending(request_id)
    amount = request.amount if amount is None else amount
    if not 0 < amount <= request.amount:
        db.session.rollback()
        shown = format_minor(request.amount, request.currency)
        raise RefundError(f"Approve between 0 and the requested {shown}.", "amount")
    left = remaining(payment, besides=request.id)
    if amount > left:
        db.session.rollback()
        raise _too_much(payment, left)
    request.status, request.approved_amount = "approved", amount
    request.decided_by_id, request.decided_at = admin.id, utcnow()
    request.decision_note = (note or "").strip() or None
    audit("refund.approved", actor=admin, payment_id=payment.id, request=request,
          amount=amount, currency=request.currency, note=request.decision_note)
    db.session.commit()
    if execute:
        jobs.enqueue(execute_refund, str(request.id), queue="refunds", retry=RETRY_DELAYS)
    return request


def reject(admin: User, request_id: uuid.UUID, *, note: str | None = None) -> RefundRequest:
    """Refuse a request, with a note the requester sees."""
    request, payment = _pending(request_id)
    request.status, request.decided_by_id, request.decided_at = "rejected", admin.id, utcnow()
    request.decision_note = (note or "").strip() or None
    audit("refund.rejected", actor=admin, payment_id=payment.id, request=request,
          amount=request.amount, currency=request.currency, note=request.decision_note)
    db.session.commit()
    return request


@dataclass(frozen=True)
class Outcome:
    request_id: uuid.UUID
    ok: bool
    message: str


def decide_many(admin: User, request_ids: list[uuid.UUID], action: str,
                note: str | None = None) -> list[Outcome]:
    """Bulk approve or reject: each request on its own (its own lock and transaction); a
    refused one is reported with the reason and changes nothing."""
    outcomes = []
    for request_id in request_ids:
        try:
            if action == "approve":
                done = approve(admin, request_id, note=note)
                message = f"Approved {format_minor(done.refund_amount, done.currency)}."
            else:
                reject(admin, request_id, note=note)
                message = "Rejected."
            outcomes.append(Outcome(request_id, True, message))
        except RefundError as exc:
            db.session.rollback()
            outcomes.append(Outcome(request_id, False, exc.message))
    return outcomes


def refund_now(admin: User, payment: Payment, *, amount: int | None, reason: str,
               notes: str | None) -> RefundRequest:
    """An admin's refund through the API: recorded as a request approved by that admin and
    executed at once (commits). ``amount`` None: the whole remainder."""
    if amount is None:
        amount = remaining(db.session.get(Payment, payment.id)) or 0
        if amount == 0:
            raise RefundError("Nothing of this payment can be refunded.", "amount", 0)
    request = request_refund(admin, payment, amount=amount, reason=reason, notes=notes)
    approve(admin, request.id, execute=False)
    execute_refund(str(request.id), retry_later=True)
    return db.session.get(RefundRequest, request.id)


# --- Execution and what Stripe reports ------------------------------------------------------

def execute_refund(request_id: str, retry_later: bool = False) -> None:
    """The job: refund an approved request at Stripe (idempotency key = request id).

    A timeout or 5xx raises, and RQ runs the job again later with the same key. A 4xx ends
    the request as failed with Stripe's message. ``retry_later``: called in a web request,
    which must not raise; the retry is queued instead.
    """
    request = db.session.scalar(sa.select(RefundRequest)
                                .where(RefundRequest.id == uuid.UUID(request_id))
                                .with_for_update())
    if request is None or request.status not in ("approved", "processing"):
        db.session.rollback()
        return
    request.status = "processing"
    payment, attempt = request.payment, request.stripe_attempt
    db.session.commit()  # "processing" is visible, and no lock is held while Stripe works
    reason = request.reason if request.reason in STRIPE_REASONS else "requested_by_customer"
    try:
        # A refund made by an earlier attempt (even beyond the key's 24 h) is adopted.
        made = [r for r in gateway.refunds_of(payment.stripe_payment_intent_id)
                if r.metadata.get("refundRequestId") == request_id]
        refund = made[0] if made else gateway.create_refund(
            payment_intent=payment.stripe_payment_intent_id, amount=request.refund_amount,
            reason=reason, idempotency_key=f"refund-{request.id}-{attempt}",
            metadata={"refundRequestId": str(request.id), "paymentId": str(payment.id)})
    except gateway.GatewayError as exc:
        if exc.retryable:
            if (exc.status or 0) >= 500:  # kept by Stripe under this key: next time, a new one
                db.session.execute(sa.update(RefundRequest).where(
                    RefundRequest.id == request.id, RefundRequest.stripe_attempt == attempt)
                    .values(stripe_attempt=attempt + 1))
                db.session.commit()
            if not retry_later:
                raise
            log.warning("refund %s: Stripe unreachable; retrying later", request.id)
            jobs.enqueue(execute_refund, request_id, queue="refunds", retry=RETRY_DELAYS)
            return
        payment = _locked_payment(payment.id)
        request = db.session.get(RefundRequest, request.id)
        request.status, request.failure_message = "failed", exc.message[:500]
        audit("refund.failed", actor=None, payment_id=payment.id, request=request,
              amount=request.refund_amount, currency=request.currency, note=exc.message)
        db.session.commit()
        return
    payment = _locked_payment(payment.id)
    _mirror(payment, refund)
    _recount(payment)
    db.session.commit()


# Stripe's refund status -> ours; and which of ours may follow which.
_FROM_STRIPE = {"pending": "processing", "requires_action": "processing",
                "succeeded": "succeeded", "failed": "failed", "canceled": "canceled"}
_MAY_BECOME = {"requested": {"processing", "succeeded", "failed", "canceled"},
               "approved": {"processing", "succeeded", "failed", "canceled"},
               "processing": {"succeeded", "failed", "canceled"},
               "succeeded": {"failed"}}  # Stripe may report a failure afterwards


def _mirror(payment: Payment, refund: gateway.Refund) -> None:
    """Bring the local request of a Stripe refund to its state (importing refunds made
    outside the portal). The caller holds the payment row."""
    request = db.session.scalar(sa.select(RefundRequest).where(
        RefundRequest.stripe_refund_id == refund.id))
    if request is None:
        rid = parse_uuid(refund.metadata.get("refundRequestId", ""))
        request = db.session.get(RefundRequest, rid) if rid else None
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
        audit("refund.imported", actor=None, payment_id=payment.id, request=request,
              amount=refund.amount, currency=payment.currency, note=refund.id)
    request.stripe_refund_id = refund.id
    new = _FROM_STRIPE.get(refund.status, "processing")
    if new != request.status and new in _MAY_BECOME.get(request.status, ()):
        request.status = new
        if new == "failed":
            request.failure_message = refund.failure_reason or "the refund failed"
        audit(f"refund.{new}", actor=None, payment_id=payment.id, request=request,
              amount=request.refund_amount, currency=request.currency,
              note=refund.failure_reason)


def _recount(payment: Payment) -> None:
    succeeded = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(
        sa.func.coalesce(RefundRequest.approved_amount, RefundRequest.amount)), 0)).where(
        RefundRequest.payment_id == payment.id, RefundRequest.status == "succeeded"))
    payment.amount_refunded = int(succeeded)
    db.session.flush()
    splits.sync_refund_lines(payment)


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
    for refund in sorted(refunds, key=lambda r: r.created):
        _mirror(payment, refund)
    _recount(payment)
    return True

