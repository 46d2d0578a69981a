"""Reconciliation: whatever webhooks did not settle is settled from Stripe's own state.

- ``reconcile`` (`flask --app wsgi reconcile`, and rq cron every 5 minutes): payments still
  not final after N minutes are re-read from Stripe and settled (one whose intent id was lost
  in a crash is linked to the intent Stripe made for it, or that intent is canceled); refunds
  and payouts stuck in flight are queued again (their idempotency keys make that safe); due
  outbox messages are queued.
- ``backfill`` (`flask --app wsgi events backfill --since DATE`): lists Stripe's events (it
  keeps 30 days), the platform's and each vendor's connected account's, and stores and
  processes those we never received.

Both commit as they go, each payment (and each page of events) in a transaction of its own
(database.phase), never with a transaction open while Stripe answers; the command or job
that runs them commits the rest (the jobs they queue start after it).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .. import jobs
from .. import stripe_gateway as gateway
from ..audit.services import audit
from ..cards.services import sync_method
from ..database import in_phases, phase
from ..extensions import db
from ..ledger.models import NOT_FINAL, Payment, Payout, VendorAccount
from ..models_base import utcnow
from ..outbox import services as outbox
from ..payments.services import adopt_intent, settle
from ..payouts.services import RETRY_DELAYS as PAYOUT_RETRIES
from ..payouts.services import execute_payout
from ..refunds.models import IN_FLIGHT, RefundRequest
from ..refunds.services import RETRY_DELAYS as REFUND_RETRIES
from ..refunds.services import execute_refund, sync_refunds
from ..webhooks.models import StripeEvent
from ..webhooks.services import receive_event

log = logging.getLogger(__name__)
STRIPE_EVENT_WINDOW = timedelta(days=30)
MIN_INTERVAL = timedelta(minutes=5)  # between two checks of a payment
MAX_IDLE = timedelta(days=30)  # payments unchanged for longer are no longer checked
# Their due time: out of the way of the index walk of those due (see _claim).
LEFT_ALONE = datetime(9999, 12, 31, tzinfo=UTC)
BACKFILL_PAGE = 100  # events per query (Stripe's page size)
# Refunds made at Stripe whose webhook was lost: the refunds of payments paid within the
# window are compared with ours, in turns, each at most once an interval, so many a run.
REFUND_WINDOW = timedelta(days=180)
REFUND_INTERVAL = timedelta(hours=1)
REFUND_CHECKS = 200
# Payments without their PaymentIntent (the process died between Stripe's answer and storing
# the id, or the answer was lost): looked up at Stripe once their last checkout is surely over
# (a request lasts at most gunicorn's timeout, a minute), whatever --minutes says; among the
# intents created from their reservation (or, when retried, from one idempotency-key window
# before the last try: Stripe keeps a key at least 24 h, and a try only gets back an intent
# made under its key) to the last try, give or take a margin for the clocks and the request.
ORPHAN_AFTER = timedelta(minutes=5)
ORPHAN_MARGIN = timedelta(minutes=5)
KEY_WINDOW = timedelta(days=2)
# Which intent a payment keeps when Stripe holds several (tries with other parameters): the one
# that took money first, then the furthest along, then the newest; canceled ones last.
_KEEP_FIRST = ("succeeded", "processing", "requires_capture", "requires_action",
               "requires_confirmation", "requires_payment_method", "canceled")
CANCELABLE = ("requires_payment_method", "requires_confirmation", "requires_action",
              "requires_capture")


@dataclass
class Reconciled:
    payments_checked: int = 0
    payments_changed: int = 0
    payments_unread: int = 0  # Stripe could not be asked, or refused
    payments_failed: int = 0  # our side failed (logged)
    refunds_requeued: int = 0
    payouts_requeued: int = 0
    outbox_queued: int = 0
    refunds_compared: int = 0  # payments whose refunds at Stripe were compared with ours
    refunds_imported: int = 0  # refunds found at Stripe only, now mirrored
    refunds_unread: int = 0  # Stripe could not be asked (logged); their turn comes again
    # Payments whose intent id was lost (counted in payments_checked too):
    intents_linked: int = 0  # the intent Stripe made for it found and stored (and applied)
    intents_canceled: int = 0  # intents canceled at Stripe: the order is no longer payable,
    # or another intent of the same payment was kept
    intents_missing: int = 0  # none at Stripe: left for the customer's next try


def reconcile(older_than_minutes: int = 10, limit: int | None = 500,
              budget_seconds: float = 240,
              *, every: bool = False) -> Reconciled:
    """Settle what is stuck; safe to run at any time and as often as wanted.

    Payments not final are re-read from Stripe in turns: each one checked gets a due time
    (see ``next_check``), and a run takes those never checked first, then those due
    longest; abandoned checkouts, which never change, so cannot keep a paid payment whose
    webhook was lost from being reached. Payments nobody touched for 30 days are left
    alone (a customer coming back to pay touches theirs: see ``payments.services``).
    ``every``: all payments not final, due or not (an operator's `reconcile --all`). A run
    stops after ``budget_seconds`` (the rest wait for the next run) so it ends well within
    its job timeout. A payment without its intent (lost in a crash) is looked up at Stripe:
    see ``_adopt``.
    """
    out = Reconciled()
    now = utcnow()
    deadline = time.monotonic() + budget_seconds
    with phase():  # claimed (their next turn set) before Stripe is called
        due = _claim(now, now - timedelta(minutes=older_than_minutes), limit, every)
    for n, (payment_id, _, intent_id) in enumerate(due):
        if n and time.monotonic() > deadline:
            # The rest are due again at once: give them back their turn.
            with phase():
                db.session.execute(_SET_DUE, [{"payment_id": pid, "due": None}
                                              for pid, *_ in due[n:]])
            break
        try:
            outcome = _check(payment_id) if intent_id else _adopt(payment_id, out)
        except Exception:  # one bad payment must not stop the others
            log.exception("reconcile: payment %s", payment_id)
            out.payments_failed += 1
            continue
        if outcome == "unread":
            out.payments_unread += 1
            continue
        out.payments_checked += 1
        out.payments_changed += outcome == "changed"
    _compare_refunds(out, deadline, REFUND_CHECKS if limit is not None else None)
    cutoff = utcnow() - timedelta(minutes=older_than_minutes)
    stuck = db.session.scalars(sa.select(RefundRequest.id).where(
        RefundRequest.status.in_(IN_FLIGHT), RefundRequest.updated_at < cutoff)).all()
    payouts = db.session.scalars(sa.select(Payout.id).where(
        Payout.status == "processing", Payout.updated_at < cutoff)).all()
    jobs.enqueue_each(execute_refund, [(str(i),) for i in stuck], queue="refunds",
                      retry=REFUND_RETRIES)
    jobs.enqueue_each(execute_payout, [(str(i),) for i in payouts], queue="payouts",
                      retry=PAYOUT_RETRIES)
    out.refunds_requeued, out.payouts_requeued = len(stuck), len(payouts)
    out.outbox_queued = outbox.sweep()
    return out


def _compare_refunds(out: Reconciled, deadline: float, limit: int | None) -> None:
    """Import the refunds Stripe holds and we do not (made in its dashboard, their webhook
    lost), with the webhook's effects: the remainder, the vendors' split lines (before their
    next payout), the audit log. Each payment in a transaction of its own."""
    with phase():  # claimed (their turn moved) before Stripe is called
        due = _claim_refund_checks(utcnow(), limit)
    for n, (payment_id, intent_id) in enumerate(due):
        if n and time.monotonic() > deadline:
            with phase():  # the rest keep their place in the line
                db.session.execute(_SET_REFUNDS_CHECKED, [
                    {"payment_id": pid, "at": None} for pid, _ in due[n:]])
            break
        known = sa.select(sa.func.count()).select_from(RefundRequest).where(
            RefundRequest.payment_id == payment_id)
        try:
            with phase():
                before = db.session.scalar(known)
                sync_refunds(intent_id)
                out.refunds_imported += db.session.scalar(known) - before
        except gateway.GatewayError as exc:
            log.warning("reconcile: refunds of payment %s not read from Stripe: %s",
                        payment_id, exc)
            out.refunds_unread += 1
            continue
        except Exception:  # one bad payment must not stop the others
            log.exception("reconcile: refunds of payment %s", payment_id)
            out.refunds_unread += 1
            continue
        out.refunds_compared += 1


def _claim_refund_checks(now: datetime, limit: int | None) -> list[tuple[uuid.UUID, str]]:
    """The succeeded payments whose refunds to compare now: never compared first, then
    those compared longest ago (not within REFUND_INTERVAL); their turn moves to now.
    Payments paid before REFUND_WINDOW leave the line for good (their refunds still come by
    webhook or backfill)."""
    line = sa.select(Payment.id, Payment.stripe_payment_intent_id, Payment.succeeded_at).where(
        Payment.status == "succeeded")
    rows = db.session.execute(line.where(Payment.refunds_checked_at.is_(None))
                              .limit(limit)).all()
    if limit is None or len(rows) < limit:
        rows += db.session.execute(
            line.where(Payment.refunds_checked_at < now - REFUND_INTERVAL)
            .order_by(Payment.refunds_checked_at)
            .limit(None if limit is None else limit - len(rows))).all()
    due = [(r.id, r.stripe_payment_intent_id) for r in rows if r.stripe_payment_intent_id
           and r.succeeded_at is not None and r.succeeded_at >= now - REFUND_WINDOW]
    if rows:
        keep = {pid for pid, _ in due}
        db.session.execute(_SET_REFUNDS_CHECKED, [
            {"payment_id": r.id, "at": now if r.id in keep else LEFT_ALONE} for r in rows])
    return due


# A turn is bookkeeping, not a change of the payment: updated_at stays (as in _SET_DUE).
_SET_REFUNDS_CHECKED = (
    sa.update(Payment.__table__).where(Payment.__table__.c.id == sa.bindparam("payment_id"))
    .values(refunds_checked_at=sa.bindparam(
        "at", type_=Payment.__table__.c.refunds_checked_at.type),
        updated_at=Payment.__table__.c.updated_at))


@dataclass(frozen=True)
class _Check:
    payment_id: uuid.UUID
    intent_id: str
    status: str


def _check(payment_id: uuid.UUID) -> str:
    """Re-read one payment's intent from Stripe and settle it, in three phases
    (database.in_phases): "changed", "unchanged", or "unread" (Stripe could not be read, or
    refused: logged)."""
    def reserve() -> _Check | None:
        payment = db.session.get(Payment, payment_id)
        if payment.is_final or not payment.stripe_payment_intent_id:
            return None  # settled meanwhile (a webhook came in)
        return _Check(payment.id, payment.stripe_payment_intent_id, payment.status)

    def call(c: _Check) -> gateway.Intent:
        return gateway.retrieve_payment_intent(c.intent_id)

    def apply(c: _Check, intent: gateway.Intent) -> tuple[str, gateway.Intent | None]:
        after = settle(c.payment_id, intent).status
        return ("changed" if after != c.status else "unchanged"), intent

    def failed(c: _Check, exc: gateway.GatewayError) -> tuple[str, gateway.Intent | None]:
        if exc.retryable:
            # Stripe unreachable for now: this one again in 5 minutes, not after a quarter
            # of its age. (A refusal, e.g. no such intent, keeps its turn.)
            db.session.execute(_SET_DUE, [{"payment_id": c.payment_id,
                                           "due": utcnow() + MIN_INTERVAL}])
        log.warning("reconcile: could not read payment %s from Stripe: %s", c.payment_id,
                    exc)
        return "unread", None

    outcome, intent = in_phases(reserve, call, apply, failed=failed,
                                failures=(gateway.GatewayError,)) or ("unchanged", None)
    if intent is not None:
        _mirror_saved_card(payment_id, intent)
    return outcome


def _mirror_saved_card(payment_id: uuid.UUID, intent: gateway.Intent) -> None:
    """"Save this card": Stripe attached it to the customer; mirror it now, as the checkout
    does (payments.services.refresh_payment), not only once its webhook comes."""
    if not (intent.setup_future_usage and intent.status == "succeeded"
            and intent.payment_method_id):
        return
    try:
        with phase():
            sync_method(intent.payment_method_id)
    except (gateway.GatewayError, IntegrityError):
        log.warning("could not mirror the card saved by payment %s", payment_id,
                    exc_info=True)


# --- Payments whose intent id was lost ----------------------------------------------------------

@dataclass(frozen=True)
class _Orphan:
    payment_id: uuid.UUID
    status: str
    payable: bool  # its order can still be paid; if not, an unpaid intent is canceled
    created_from: int  # the intents made for it were created within these (Unix time)
    created_to: int


@dataclass(frozen=True)
class _Found:
    keep: gateway.Intent | None  # the one to store on the payment; None: Stripe made none
    canceled: bool  # ``keep`` was canceled at Stripe by this run
    others: tuple[gateway.Intent, ...]  # other intents made for the payment


def _adopt(payment_id: uuid.UUID, out: Reconciled) -> str:
    """A payment not final without its intent id: the process died between Stripe's answer
    and the checkout's third phase (or the answer was lost), and the webhook of an intent no
    payment names is ignored. In three phases: the intents Stripe made for the payment are
    listed (its id is in their metadata; created around the times it was tried); the one it
    keeps (``_KEEP_FIRST``) is stored and applied as the webhook applies one (``settle``: a
    paid one makes the sale, the vendors' lines, the receipt and the outbox message, once),
    after being canceled at Stripe when the order can no longer be paid and nothing was
    charged; then the others are canceled at Stripe (no checkout can pick them up once one is
    stored). With none at Stripe the payment is left alone (LEFT_ALONE) until its customer
    tries again: that checkout creates the intent under the same key and clears the turn.
    Audited and logged; "changed", "unchanged" or "unread" (Stripe could not be read)."""
    def reserve() -> _Orphan | None:
        payment = db.session.get(Payment, payment_id)
        if payment.is_final or payment.stripe_payment_intent_id:
            return None  # a checkout stored its intent meanwhile
        since = max(payment.created_at, payment.updated_at - KEY_WINDOW) - ORPHAN_MARGIN
        return _Orphan(payment.id, payment.status, payment.order.status == "unpaid",
                       int(since.timestamp()),
                       int((payment.updated_at + ORPHAN_MARGIN).timestamp()))

    def failed(o: _Orphan, exc: gateway.GatewayError) -> tuple[str, bool, None]:
        if exc.retryable:  # again in 5 minutes
            db.session.execute(_SET_DUE, [{"payment_id": o.payment_id,
                                           "due": utcnow() + MIN_INTERVAL}])
        log.warning("reconcile: the intents of payment %s not listed at Stripe: %s",
                    o.payment_id, exc)
        return "unread", False, None

    kind, changed, found = in_phases(reserve, _find_intents, _link, failed=failed,
                                     failures=(gateway.GatewayError,)) or ("", False, None)
    if kind == "unread":
        return "unread"
    if kind == "missing":
        out.intents_missing += 1
    elif kind == "linked":
        out.intents_linked += 1
        out.intents_canceled += found.canceled + _cancel_others(payment_id, found)
        _mirror_saved_card(payment_id, found.keep)
    return "changed" if changed else "unchanged"


def _find_intents(o: _Orphan) -> _Found:
    """Phase 2 of ``_adopt``: list, choose, and cancel the kept one if its order is gone."""
    found = gateway.payment_intents_with("paymentId", str(o.payment_id),
                                         created_from=o.created_from, created_to=o.created_to)
    if not found:
        return _Found(None, False, ())
    # Stripe lists newest first, and min() keeps the first of equals: the newest, made with
    # the parameters of the latest try (the customer's next try replays it).
    keep = min(found, key=lambda i: _KEEP_FIRST.index(i.status)
               if i.status in _KEEP_FIRST else len(_KEEP_FIRST))
    others = tuple(i for i in found if i.id != keep.id)
    if not o.payable and keep.status in CANCELABLE:
        kept = _cancel(o.payment_id, keep.id, "abandoned")
        return _Found(kept, kept.status == "canceled", others)
    # Read again, with its charge (the funds' date) and card, as the webhook's handler does.
    return _Found(gateway.retrieve_payment_intent(keep.id), False, others)


def _link(o: _Orphan, f: _Found) -> tuple[str, bool, _Found]:
    """Phase 3 of ``_adopt``: store and apply the kept intent, or leave the payment alone."""
    if f.keep is None:
        db.session.execute(_SET_DUE, [{"payment_id": o.payment_id, "due": LEFT_ALONE}])
        log.info("reconcile: payment %s has no intent at Stripe; left for its customer's "
                 "next try", o.payment_id)
        return "missing", False, f
    payment = adopt_intent(o.payment_id, f.keep)
    if payment is None:
        return "", False, f  # its customer came back and the checkout stored one first
    log.warning("reconcile: payment %s had lost its intent %s (%s at Stripe): linked",
                payment.id, f.keep.id, f.keep.status)
    audit("payment.intent_linked", actor=None, payment_id=payment.id, amount=payment.amount,
          currency=payment.currency,
          note=f"{f.keep.id} ({f.keep.status}), found at Stripe by reconciliation")
    if f.canceled:
        audit("payment.intent_canceled", actor=None, payment_id=payment.id,
              amount=payment.amount, currency=payment.currency,
              note=f"{f.keep.id}: the order is {payment.order.status}")
    elif not o.payable and payment.status == "succeeded":
        log.error("reconcile: payment %s of an order that was %s is paid (intent %s): a "
                  "person must refund it", payment.id, payment.order.status, f.keep.id)
    return "linked", payment.status != o.status, f


def _cancel(payment_id: uuid.UUID, intent_id: str, reason: str) -> gateway.Intent:
    """Cancel at Stripe; the intent as it is when Stripe refuses (paid or canceled
    meanwhile). GatewayError when Stripe cannot be reached."""
    try:
        return gateway.cancel_payment_intent(
            intent_id, reason=reason, idempotency_key=f"payment-{payment_id}-cancel-{intent_id}")
    except gateway.GatewayError as exc:
        if exc.retryable:
            raise
        return gateway.retrieve_payment_intent(intent_id)


def _cancel_others(payment_id: uuid.UUID, f: _Found) -> int:
    """Cancel at Stripe the payment's other intents (made by tries with other parameters),
    now that it holds ``f.keep``; one that took money needs a person. How many were
    canceled."""
    canceled = 0
    for other in f.others:
        try:
            intent = _cancel(payment_id, other.id, "duplicate") \
                if other.status in CANCELABLE else other
        except gateway.GatewayError as exc:  # left as it is: nobody can pay it now
            log.warning("reconcile: intent %s of payment %s not canceled: %s", other.id,
                        payment_id, exc)
            continue
        if intent.status in ("succeeded", "processing"):
            log.error("reconcile: payment %s was paid by intent %s too (it holds %s): a "
                      "person must refund it", payment_id, intent.id, f.keep.id)
        elif intent.status == "canceled" and other.status != "canceled":
            with phase():
                audit("payment.intent_canceled", actor=None, payment_id=payment_id,
                      amount=intent.amount, currency=intent.currency,
                      note=f"{intent.id}: the payment holds {f.keep.id}")
            canceled += 1
    return canceled


def _claim(now: datetime, cutoff: datetime, limit: int | None,
           every: bool) -> list[tuple[uuid.UUID, datetime, str | None]]:
    """The payments this run checks, (id, updated_at, intent id), with their next due time set
    (the caller commits it before Stripe is called): one that fails every time cannot hold up
    the others. On PostgreSQL a concurrent run skips the rows being claimed (SKIP LOCKED).
    Those without an intent id only once their checkout is surely over (ORPHAN_AFTER)."""
    base = sa.select(Payment.id, Payment.updated_at, Payment.stripe_payment_intent_id).where(
        NOT_FINAL, sa.or_(Payment.stripe_payment_intent_id.is_not(None),
                          Payment.updated_at < now - ORPHAN_AFTER),
        Payment.updated_at < cutoff, Payment.updated_at > now - MAX_IDLE,
    ).with_for_update(of=Payment, skip_locked=True).limit(limit)
    if every:
        due = db.session.execute(base.order_by(Payment.updated_at)).all()
    else:
        # Two queries, each an ordered walk of the partial index (due, updated_at): never
        # checked, oldest first; then due, longest first.
        due = db.session.execute(base.where(Payment.reconcile_due_at.is_(None))
                                 .order_by(Payment.updated_at)).all()
        if limit is None or len(due) < limit:
            due += db.session.execute(base.where(Payment.reconcile_due_at <= now)
                                      .order_by(Payment.reconcile_due_at)
                                      .limit(limit and limit - len(due))).all()
    if due:
        db.session.execute(_SET_DUE, [{"payment_id": pid, "due": next_check(now, changed)}
                                      for pid, changed, _ in due])
    return due


def next_check(now: datetime, last_change: datetime) -> datetime:
    """When a payment checked now is looked at again: after a quarter of the time since it
    last changed, between 5 minutes and a day (a checkout left for a day is re-read every
    6 hours, one left for 4 days or more once a day). After 30 days without a change,
    never (LEFT_ALONE), until it changes or its customer comes back: either clears it."""
    due = now + min(max((now - last_change) / 4, MIN_INTERVAL), timedelta(days=1))
    return due if due <= last_change + MAX_IDLE else LEFT_ALONE


# Leaves updated_at alone: it says when the payment itself last changed.
_PAYMENTS = Payment.__table__
_SET_DUE = (sa.update(_PAYMENTS).where(_PAYMENTS.c.id == sa.bindparam("payment_id"))
            .values(reconcile_due_at=sa.bindparam("due", type_=_PAYMENTS.c.reconcile_due_at.type),
                    updated_at=_PAYMENTS.c.updated_at))


def backfill(since: datetime) -> tuple[int, int]:
    """Store and process the events of Stripe's list that we do not have: (listed, new).

    The platform's events, then those of each vendor's connected account (Stripe keeps a
    Connect event, such as account.updated, on the connected account: it is listed with
    Stripe-Account). Page by page, so the number of events (30 days of them) bounds neither
    memory nor a query; the order does not matter, as handlers re-read the object from
    Stripe. An account Stripe no longer lets us read (deleted, disconnected) is skipped."""
    since = max(since, utcnow() - STRIPE_EVENT_WINDOW)
    with phase():  # read, and no transaction left open while Stripe lists
        accounts = list(db.session.scalars(
            sa.select(VendorAccount.stripe_account_id)
            .where(VendorAccount.stripe_account_id.is_not(None))
            .order_by(VendorAccount.stripe_account_id)))
    listed = new = 0
    for account in [None, *accounts]:
        events = gateway.list_events(int(since.timestamp()), account)
        try:
            while page := list(islice(events, BACKFILL_PAGE)):  # Stripe, between phases
                with phase():  # a page stored at once; its events processed after that
                    known = set(db.session.scalars(sa.select(StripeEvent.id).where(
                        StripeEvent.id.in_([e.id for e in page]))))
                    # An event stored meanwhile (a webhook just came in) is skipped by the
                    # insert.
                    new += sum(receive_event(e) for e in page if e.id not in known)
                listed += len(page)
        except gateway.GatewayError as exc:
            if account is None or exc.stripe_status not in (401, 403, 404):
                raise
            log.warning("events of %s not listed: %s", account, exc)
    return listed, new


def scheduled_reconcile() -> None:
    """The rq cron entry (every 5 minutes); jobs.run commits what is left."""
    reconcile()
