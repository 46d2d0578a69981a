"""Checkout and payment state: the workflows behind the pages, the API and the webhooks.

Every workflow that calls Stripe runs in three phases (``database.in_phases``): reserve
(check and record, commit), call Stripe with no lock held, apply (lock the payment, settle,
commit). ``settle`` is the one way a PaymentIntent's state reaches its Payment; its callers
(the checkout, the status poll, the webhook job, reconciliation) may race, and whichever
comes first wins. Services raise a ``CheckoutError`` (a DomainError) before changing
anything when they refuse.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from .. import stripe_gateway as gateway
from ..auth.models import User
from ..cards import services as cards
from ..cards.models import SavedCard
from ..database import in_phases, insert_or_skip, phase, write_lock
from ..documents import invoices
from ..errors import DomainError, Unavailable
from ..extensions import db
from ..hygiene import CONTROL
from ..ledger import rollups, splits
from ..ledger.models import FINAL_STATUSES, PAYMENT_STATUSES, Payment
from ..models_base import parse_uuid, utcnow
from ..orders.models import Order
from ..outbox import services as outbox
from .filters import State

log = logging.getLogger(__name__)


class CheckoutError(DomainError):
    """Checkout cannot go on; the message is safe to show to the customer."""

    code = "order_not_payable"


class ProcessorUnavailable(Unavailable, CheckoutError):
    """Stripe could not be reached (503 with Retry-After); the message says whether anything
    may have been charged."""


class AlreadyPaid(CheckoutError):
    code = "order_already_paid"

    def __init__(self, payment: Payment):
        super().__init__("This order is already paid.")
        self.payment = payment

    def for_api(self) -> str:
        return "this order is already paid"


NOTHING_CHARGED = ("We could not reach the payment processor. Nothing was charged; "
                   "please try again in a moment.")
MAYBE_PAID = ("We could not reach the payment processor; please try again in a moment. "
              "If you already paid this order, the payment will show in your history.")


@dataclass(frozen=True)
class Checkout:
    payment: Payment
    intent: gateway.Intent


def payment_of_order(order: Order) -> Payment | None:
    """The order's Payment (at most one), or None."""
    return db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))


def _locked(payment_id: uuid.UUID) -> Payment:
    """The payment row, locked until the commit, with fresh values.

    SQLite ignores FOR UPDATE: ``write_lock`` takes its write lock first, so that two settles
    cannot both read the payment not final (and both record the sale), nor a stale
    "processing" undo a success committed meanwhile. populate_existing: a row already in the
    session is re-read under the lock. The order comes in the same query (a settled payment
    marks it paid); only the payment row is locked.
    """
    write_lock(Payment, Payment.id == payment_id)
    return db.session.scalar(
        sa.select(Payment)
        .where(Payment.id == payment_id)
        .options(orm.joinedload(Payment.order, innerjoin=True))
        .with_for_update(of=Payment)
        .execution_options(populate_existing=True)
    )


# --- The checkout -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Origin:
    """Where the checkout comes from (kept on a new Payment)."""

    ip: str | None
    user_agent: str | None
    source: str


@dataclass(frozen=True)
class _Reserved:
    """What the call to Stripe needs, as plain values (no lazy loads outside a phase)."""

    payment_id: uuid.UUID
    intent_id: str | None  # None: the PaymentIntent is still to be created
    create: dict  # create_payment_intent's arguments: fixed by the payment, whoever calls
    customer: str | None  # the order's customer at Stripe, if they have one
    card: str | None  # a saved card's PaymentMethod to put on the intent


def start_checkout(order: Order, *, ip: str | None = None, user_agent: str | None = None,
                   source: str = "web", card: SavedCard | None = None) -> Checkout:
    """The order's Payment and its PaymentIntent, creating each at most once.

    Three phases: the Payment row is reserved (committed) first, Stripe is called with its
    id in the idempotency key and parameters that do not depend on the caller, then the
    intent is stored and applied. Reloads, double clicks and concurrent requests all end
    with one PaymentIntent. With ``card`` (a saved card of the order's customer) the intent
    carries that card. Raises AlreadyPaid, CheckoutError or ProcessorUnavailable (the
    Payment row then stays, pending, for the next try).
    """
    reserve = functools.partial(_reserve_checkout, order, _Origin(ip, user_agent, source),
                                card.stripe_payment_method_id if card else None)
    # None: a concurrent checkout stored another intent first; a second turn uses that one.
    checkout = (in_phases(reserve, _intent_for_checkout, _apply_checkout)
                or in_phases(reserve, _intent_for_checkout, _apply_checkout))
    if checkout.payment.status == "succeeded":
        raise AlreadyPaid(checkout.payment)
    if checkout.payment.status == "canceled":
        raise CheckoutError("The payment of this order was canceled.")
    return checkout


def _reserve_checkout(order: Order, origin: _Origin, card: str | None) -> _Reserved:
    """Phase 1: refuse an order that cannot be paid; insert its Payment unless it exists."""
    if order.status != "unpaid":
        paid = payment_of_order(order) if order.status == "paid" else None
        raise AlreadyPaid(paid) if paid else CheckoutError("This order can no longer be paid.")
    payment = payment_of_order(order)
    if payment is None:
        payment = _insert_payment(order, origin)
    elif payment.stripe_payment_intent_id is None:
        # A new try at creating its intent (an earlier one failed, or its process died): its
        # time bounds where reconciliation looks at Stripe for an intent whose id was lost,
        # and the payment is back in reconciliation's line (one with no intent at Stripe is
        # otherwise left alone: reconciliation.services).
        payment.updated_at, payment.reconcile_due_at = utcnow(), None
    cmap = cards.customer_of(order.customer_id)
    customer = cmap.stripe_customer_id if cmap else None
    return _Reserved(
        payment.id, payment.stripe_payment_intent_id, customer=customer, card=card,
        create={"amount": payment.amount, "currency": payment.currency,
                "idempotency_key": f"payment-{payment.id}-intent",
                "metadata": {"orderId": str(order.id), "userId": str(order.customer_id),
                             "paymentId": str(payment.id)},
                "description": f"ShopSphere order {order.number}",
                # With a Stripe customer, so the customer's saved cards can pay it.
                "customer": customer})


def _insert_payment(order: Order, origin: _Origin) -> Payment:
    """Insert the order's Payment; a concurrent request's insert (double click, second tab)
    wins and is the one returned (ON CONFLICT DO NOTHING on the order)."""
    db.session.execute(insert_or_skip(Payment, ["order_id"]).values(
        id=uuid.uuid4(), user_id=order.customer_id, order_id=order.id, amount=order.total,
        currency=order.currency, status="pending", subtotal=order.subtotal, tax=order.tax,
        shipping=order.shipping, discount=order.discount,
        ip_address=(origin.ip or "")[:45] or None,
        # A header, which the request checks of portal/hygiene.py do not cover: its control
        # characters are not kept (gunicorn lets C1 codes through).
        user_agent=CONTROL.sub("", origin.user_agent or "")[:300] or None,
        source=origin.source))
    return payment_of_order(order)


def _intent_for_checkout(r: _Reserved) -> gateway.Intent:
    """Phase 2: create the PaymentIntent (or read the existing one) and put the chosen card
    on it. The card is not a parameter of the creation: concurrent callers send identical
    requests under one idempotency key and get one intent."""
    try:
        if r.intent_id is None:
            intent = gateway.create_payment_intent(**r.create)
        else:
            intent = gateway.retrieve_payment_intent(r.intent_id)
        if r.card and intent.payment_method_id != r.card and (
                intent.status in ("requires_payment_method", "requires_confirmation")):
            intent = _use_card(intent, r.card, r.customer)
    except gateway.GatewayError as exc:
        log.warning("checkout of payment %s: Stripe unreachable", r.payment_id, exc_info=True)
        raise ProcessorUnavailable(
            NOTHING_CHARGED if r.intent_id is None else MAYBE_PAID) from exc
    return intent


def _apply_checkout(r: _Reserved, intent: gateway.Intent) -> Checkout | None:
    """Phase 3: store the intent on the payment (once) and apply its state. None when a
    concurrent checkout stored another intent first (made with other parameters, e.g. a
    Stripe customer created meanwhile): ours is left unused."""
    payment = _locked(r.payment_id)
    if payment.stripe_payment_intent_id is None:
        payment.stripe_payment_intent_id = intent.id
    elif payment.stripe_payment_intent_id != intent.id:
        log.warning("payment %s has intent %s; %s is left unused", payment.id,
                    payment.stripe_payment_intent_id, intent.id)
        return None
    _settle_locked(payment, intent)
    if not payment.is_final:
        # The customer is at the checkout, maybe to pay with Stripe.js: should neither the
        # return nor the webhook reach us, reconciliation looks again within minutes, not
        # after a quarter of the checkout's age (reconciliation.services).
        payment.updated_at, payment.reconcile_due_at = utcnow(), None
    return Checkout(payment, intent)


def adopt_intent(payment_id: uuid.UUID, intent: gateway.Intent) -> Payment | None:
    """Store ``intent``, found at Stripe, on a payment that lost it (the process died between
    Stripe's answer and the checkout's third phase) and apply its state, with the same effects
    as the webhook (the sale, the receipt, the outbox). None when the payment holds another
    intent by now (its customer came back and the checkout stored one). The caller commits."""
    payment = _locked(payment_id)
    if payment.stripe_payment_intent_id not in (None, intent.id):
        return None
    payment.stripe_payment_intent_id = intent.id
    _settle_locked(payment, intent)
    return payment


def _use_card(intent: gateway.Intent, payment_method: str,
              customer: str | None) -> gateway.Intent:
    """Put a saved card (and so its Stripe customer) on an unconfirmed intent."""
    changes = {"payment_method": payment_method}
    if customer and intent.customer != customer:
        changes["customer"] = customer  # an intent made before the first saved card
    return gateway.update_payment_intent(intent.id, **changes)


# --- Paying -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Confirmation:
    payment_id: uuid.UUID
    intent_id: str
    move_to: str | None  # the Stripe customer of a saved card the intent is not with yet


def confirm_with_card(user: User, payment: Payment, payment_method_id: str, *,
                      return_url: str | None = None) -> tuple[Payment, gateway.Intent]:
    """Confirm the payment's intent server-side with a saved card of ``user`` or a new
    PaymentMethod from Stripe.js, and apply the outcome (in phases: it commits).

    Another user's saved card is CardNotFound (nothing is asked of Stripe); GatewayError
    when Stripe refuses the request or cannot be reached, and the payment is left as it was
    (a decline is not an error: the payment comes back failed).
    """
    def reserve() -> _Confirmation:
        card = db.session.scalar(sa.select(SavedCard).where(
            SavedCard.stripe_payment_method_id == payment_method_id))
        if card is not None and card.user_id != user.id:
            raise cards.CardNotFound()
        customer = cards.customer_of(user.id).stripe_customer_id if card else None
        return _Confirmation(payment.id, payment.stripe_payment_intent_id,
                             customer if customer != payment.stripe_customer_id else None)

    def call(c: _Confirmation) -> gateway.Intent:
        if c.move_to:
            _use_card(gateway.retrieve_payment_intent(c.intent_id), payment_method_id,
                      c.move_to)
        return gateway.confirm_payment_intent(
            c.intent_id, payment_method=payment_method_id, return_url=return_url,
            idempotency_key=f"payment-{c.payment_id}-confirm-{uuid.uuid4()}")

    return in_phases(reserve, call, lambda c, intent: (settle(c.payment_id, intent), intent))


def offer_to_save_card(user: User, payment: Payment, save: bool) -> None:
    """The customer ticked (or unticked) "save this card" before paying with a new card:
    Stripe attaches the card to their customer when the payment succeeds. In phases (the
    Stripe customer, when it is created, in phases of its own)."""
    cmap = cards.ensure_customer(user) if save else cards.customer_of(user.id)

    def reserve() -> dict:
        changes = {"setup_future_usage": "off_session" if save else ""}
        if cmap is not None and payment.stripe_customer_id != cmap.stripe_customer_id:
            changes["customer"] = cmap.stripe_customer_id
        return changes

    in_phases(reserve,
              lambda changes: gateway.update_payment_intent(payment.stripe_payment_intent_id,
                                                            **changes),
              lambda _, intent: settle(payment.id, intent))


# --- The one transition -----------------------------------------------------------------------

# How long a sale waits for its funds when Stripe has not said (see apply_intent).
UNKNOWN_FUNDS_DELAY = timedelta(days=7)


def status_from_intent(intent: gateway.Intent) -> str:
    """Our status for a PaymentIntent status (a declined attempt is "failed")."""
    if intent.status == "requires_payment_method" and intent.failure_code:
        return "failed"
    if intent.status == "requires_capture":
        return "processing"
    return intent.status if intent.status in PAYMENT_STATUSES else "pending"


def _receipt_number(payment: Payment) -> str:
    return f"R-{utcnow():%Y%m%d}-{payment.id.hex[:12].upper()}"


def apply_intent(payment: Payment, intent: gateway.Intent) -> bool:
    """Bring ``payment`` to the state of ``intent``; the one transition used everywhere.

    The completion page, the status poll and the webhook job all call this with a freshly
    retrieved intent, so whichever comes first wins and the others are no-ops. A final
    status (succeeded, canceled) never changes. Returns True when something changed.
    The caller holds the payment row (locked when it may race) and commits.
    """
    if intent.id != payment.stripe_payment_intent_id:
        log.warning("intent %s does not belong to payment %s", intent.id, payment.id)
        return False
    if payment.status in FINAL_STATUSES:
        return False
    new = status_from_intent(intent)
    if intent.customer:
        payment.stripe_customer_id = intent.customer
    if intent.card is not None:
        _copy_card(payment, intent)
    if new == "succeeded" and (intent.amount, intent.currency) != (payment.amount,
                                                                  payment.currency):
        # Never mark an order paid for another sum than its own; a person must look at it.
        log.error("payment %s: intent %s is %s %s, expected %s %s", payment.id, intent.id,
                  intent.amount, intent.currency, payment.amount, payment.currency)
        return False
    if new == "failed":
        # Stripe's texts, clipped to their columns (PostgreSQL refuses a longer value, and
        # the webhook job would then fail on every try).
        payment.failure_code = (intent.failure_code or "")[:64] or None
        payment.failure_message = (intent.failure_message or "")[:500] or None
    elif new == "succeeded":
        _record_success(payment, intent)
    changed = new != payment.status
    payment.status = new
    if changed:
        payment.reconcile_due_at = None  # checked afresh by reconciliation
    return changed


def _copy_card(payment: Payment, intent: gateway.Intent) -> None:
    """The card's displayable details (never its number) onto the payment."""
    payment.payment_method_id = intent.payment_method_id
    payment.payment_method_type = intent.payment_method_type or "card"
    payment.card_brand = intent.card.brand
    payment.card_last4 = intent.card.last4
    payment.card_exp_month = intent.card.exp_month
    payment.card_exp_year = intent.card.exp_year
    payment.card_funding = intent.card.funding
    payment.card_country = intent.card.country
    payment.billing_details = intent.billing_details


def _record_success(payment: Payment, intent: gateway.Intent) -> None:
    """Receipt, funds' date and the order marked paid."""
    payment.failure_code = payment.failure_message = None
    payment.receipt_url = intent.receipt_url
    payment.stripe_charge_id = intent.charge_id
    payment.receipt_number = payment.receipt_number or _receipt_number(payment)
    payment.succeeded_at = utcnow()
    if intent.funds_available_at is not None:
        payment.funds_available_at = datetime.fromtimestamp(intent.funds_available_at, UTC)
    else:
        # Stripe did not say (its charge has no balance transaction yet): the vendors'
        # shares wait Stripe's longest standard delay rather than being paid out of funds
        # that may still be pending.
        log.warning("payment %s: intent %s succeeded without its funds' date", payment.id,
                    intent.id)
        payment.funds_available_at = payment.succeeded_at + UNKNOWN_FUNDS_DELAY
    payment.order.status = "paid"
    payment.order.paid_at = payment.succeeded_at


def settle(payment_id: uuid.UUID, intent: gateway.Intent) -> Payment:
    """Lock the payment row (fresh values) and apply ``intent``; the caller commits.

    Stripe is always called before this, so no row lock is held while waiting on Stripe.
    """
    payment = _locked(payment_id)
    _settle_locked(payment, intent)
    return payment


def _settle_locked(payment: Payment, intent: gateway.Intent) -> None:
    # The changes to the payment and its order are written once, at the commit, instead of
    # being flushed by each query of the side effects below (three UPDATEs of the payment).
    # Nothing below reads them back from the database.
    with db.session.no_autoflush:
        was = rollups.outcome(payment.status, payment.failure_code)
        applied = apply_intent(payment, intent)
        rollups.count_outcome(payment, was)  # the success rate and the declines
        if applied and payment.is_final:
            # Once: a final state never changes again. Side effects go to the outbox, in
            # this transaction.
            if payment.status == "succeeded":
                cards.record_spending(payment)
                splits.record_sale(payment,
                                   current_app.extensions["portal_config"].PLATFORM_FEE_PERCENT)
            outbox.record_payment_outcome(payment)
            if payment.status == "succeeded":  # last: its number's counter is held to the
                invoices.issue_invoice(payment)  # commit (documents/numbering.py)


def refresh_payment(payment: Payment, *, quiet: bool = True) -> Payment:
    """Re-read the payment's intent from Stripe and settle it (in phases: it commits). If
    Stripe cannot be reached the payment is returned as it is (``quiet``) or GatewayError
    raised."""
    if not payment.stripe_payment_intent_id or payment.is_final:
        return payment
    try:
        payment, intent = in_phases(lambda: payment.stripe_payment_intent_id,
                                    gateway.retrieve_payment_intent,
                                    lambda _, intent: (settle(payment.id, intent), intent))
    except gateway.GatewayError:
        if not quiet:
            raise
        # Stripe unreachable: show what we know; the webhook or the next poll settles it.
        log.warning("could not refresh payment %s", payment.id, exc_info=True)
        return payment
    if intent.setup_future_usage and intent.status == "succeeded" and intent.payment_method_id:
        _mirror_saved_card(payment, intent.payment_method_id)
    return payment


def _mirror_saved_card(payment: Payment, payment_method_id: str) -> None:
    """"Save this card": Stripe attached it; show it at once, not only after the webhook.
    Best effort, in a transaction of its own, as the webhook job runs it (sync_method reads
    and writes at Stripe inside it, as in the job; no payment row is locked)."""
    try:
        with phase():
            cards.sync_method(payment_method_id)
    except (gateway.GatewayError, IntegrityError):
        log.warning("could not mirror the card saved by payment %s", payment.id, exc_info=True)


def sync_intent(intent_id: str) -> bool:
    """Apply Stripe's current state of a PaymentIntent to its Payment (webhook handler).

    Returns False when the intent is not one of ours. The caller commits.
    """
    payment = db.session.scalar(
        sa.select(Payment).where(Payment.stripe_payment_intent_id == intent_id)
    )
    if payment is None:
        return False
    if not payment.is_final:
        # Events arrive late, twice and out of order: the intent as it is now is the truth.
        settle(payment.id, gateway.retrieve_payment_intent(intent_id))
    return True


def payment_for(user: User, payment_id: str | uuid.UUID) -> Payment | None:
    """The payment if ``user`` may see it (its customer or an admin); None means 404."""
    pid = payment_id if isinstance(payment_id, uuid.UUID) else parse_uuid(payment_id)
    if pid is None:
        return None
    query = sa.select(Payment).where(Payment.id == pid)
    if user.role != "admin":
        query = query.where(Payment.user_id == user.id)
    return db.session.scalar(query)


def payment_of_intent(user: User, intent_id: str, *, own: bool = False) -> Payment | None:
    """The payment of a PaymentIntent if ``user`` may see it (``own``: only their own, even
    for an admin, e.g. to pay it); None otherwise."""
    query = sa.select(Payment).where(Payment.stripe_payment_intent_id == intent_id)
    if own or user.role != "admin":
        query = query.where(Payment.user_id == user.id)
    return db.session.scalar(query)


@dataclass(frozen=True)
class Page:
    items: list[Payment]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def history(user: User, *, status: str | None = None, page: int = 1, per_page: int = 20,
            start=None, end=None, state: State | None = None) -> Page:
    """A user's payments, newest first, filtered by Stripe's ``status`` (the API) or by a
    ``state`` in the customer's words (the page), created from ``start`` to ``end``
    inclusive; served by the (user, status?, created) index."""
    where = [Payment.user_id == user.id]
    if status:
        where.append(Payment.status == status)
    if state is not None:
        where.append(state.condition())
    if start is not None:
        where.append(Payment.created_at >= start)
    if end is not None:
        where.append(Payment.created_at <= end)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Payment).where(*where))
    # Pick the page's ids from the index alone, then load just those rows with their orders:
    # joining before OFFSET would join (and sort) every skipped row (see bench/README.md).
    page_ids = (
        sa.select(Payment.id, Payment.created_at)
        .where(*where)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
        .subquery()
    )
    rows = db.session.scalars(
        sa.select(Payment)
        .join(page_ids, Payment.id == page_ids.c.id)
        .order_by(page_ids.c.created_at.desc(), page_ids.c.id.desc())
        .options(orm.joinedload(Payment.order))
    ).unique()
    return Page(list(rows), page, per_page, total or 0)
