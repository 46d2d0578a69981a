"""Checkout and payment state: the workflows behind the pages, the API and the webhooks."""

from __future__ import annotations

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
from ..extensions import db
from ..hygiene import CONTROL
from ..models_base import parse_uuid, utcnow
from ..orders.models import Order
from ..outbox import services as outbox
from . import splits
from .models import FINAL_STATUSES, PAYMENT_STATUSES, Payment

log = logging.getLogger(__name__)


class CheckoutError(Exception):
    """Checkout cannot go on; the message is safe to show to the customer."""


class ProcessorUnavailable(CheckoutError):
    """Stripe could not be reached; the message says whether anything may have been charged."""


class AlreadyPaid(CheckoutError):
    def __init__(self, payment: Payment):
        super().__init__("This order is already paid.")
        self.payment = payment


@dataclass(frozen=True)
class Checkout:
    payment: Payment
    intent: gateway.Intent


def payment_of_order(order: Order) -> Payment | None:
    """The order's Payment (at most one), or None."""
    return db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))


def _locked(payment_id: uuid.UUID) -> Payment:
    # populate_existing: a row already in the session is re-read under the lock, never stale.
    # The order comes in the same query (a settled payment marks it paid); only the payment
    # row is locked.
    return db.session.scalar(
        sa.select(Payment)
        .where(Payment.id == payment_id)
        .options(orm.joinedload(Payment.order, innerjoin=True))
        .with_for_update(of=Payment)
        .execution_options(populate_existing=True)
    )


def _create_payment_row(order: Order, ip: str | None, user_agent: str | None,
                        source: str) -> Payment:
    """Insert the order's Payment and commit it, or load the one a concurrent request made."""
    payment = Payment(
        id=uuid.uuid4(), user_id=order.customer_id, order_id=order.id, amount=order.total,
        currency=order.currency, status="pending", subtotal=order.subtotal, tax=order.tax,
        shipping=order.shipping, discount=order.discount, ip_address=(ip or "")[:45] or None,
        # A header, which the request checks of portal/hygiene.py do not cover: its control
        # characters are not kept (gunicorn lets C1 codes through).
        user_agent=CONTROL.sub("", user_agent or "")[:300] or None, source=source,
    )
    db.session.add(payment)
    try:
        db.session.commit()
    except IntegrityError:
        # Another request (double click, second tab) inserted it first: use that one.
        db.session.rollback()
        payment = payment_of_order(order)
    return payment


def _create_intent(payment: Payment, order: Order,
                   card: SavedCard | None = None) -> gateway.Intent | None:
    """Give the payment its PaymentIntent, once, and apply its state: concurrent callers wait
    on the row lock and then find the stored id (None is returned to them); the Payment id as
    idempotency key covers a retry after a crash. Commits (which releases the lock)."""
    payment = _locked(payment.id)
    if payment.stripe_payment_intent_id is not None:
        db.session.commit()
        return None
    # With a Stripe customer, so the customer's saved cards can pay it.
    cmap = cards.customer_of(order.customer_id)
    try:
        intent = gateway.create_payment_intent(
            amount=payment.amount,
            currency=payment.currency,
            idempotency_key=f"payment-{payment.id}-intent",
            metadata={"orderId": str(order.id), "userId": str(order.customer_id),
                      "paymentId": str(payment.id)},
            description=f"ShopSphere order {order.number}",
            customer=cmap.stripe_customer_id if cmap else None,
            payment_method=card.stripe_payment_method_id if card else None,
        )
    except gateway.GatewayError as exc:
        db.session.rollback()
        raise ProcessorUnavailable(
            "We could not reach the payment processor. Nothing was charged; "
            "please try again in a moment."
        ) from exc
    payment.stripe_payment_intent_id = intent.id
    apply_intent(payment, intent)
    db.session.commit()
    return intent


def start_checkout(order: Order, *, ip: str | None = None, user_agent: str | None = None,
                   source: str = "web", card: SavedCard | None = None) -> Checkout:
    """The order's Payment and its PaymentIntent, creating each at most once.

    The Payment row is committed before Stripe is called, and its id is the idempotency key,
    so reloads, double clicks and concurrent requests all end with one PaymentIntent.
    With ``card`` (a saved card of the order's customer) the intent carries that card.
    Commits; raises AlreadyPaid, CheckoutError or ProcessorUnavailable.
    """
    if order.status != "unpaid":
        paid = payment_of_order(order) if order.status == "paid" else None
        raise AlreadyPaid(paid) if paid else CheckoutError("This order can no longer be paid.")
    payment = payment_of_order(order) or _create_payment_row(order, ip, user_agent, source)
    intent = None
    if payment.stripe_payment_intent_id is None:
        intent = _create_intent(payment, order, card)  # stored and applied
    if intent is None:
        try:
            intent = gateway.retrieve_payment_intent(payment.stripe_payment_intent_id)
            if card and intent.payment_method_id != card.stripe_payment_method_id and (
                    intent.status in ("requires_payment_method", "requires_confirmation")):
                intent = _use_card(intent, card)
        except gateway.GatewayError as exc:
            raise ProcessorUnavailable(
                "We could not reach the payment processor; please try again in a moment. "
                "If you already paid this order, the payment will show in your history."
            ) from exc
        payment = settle(payment.id, intent)
        if not payment.is_final:
            # The customer is back at the checkout, maybe to pay with Stripe.js: should
            # neither the return nor the webhook reach us, reconciliation looks again within
            # minutes, not after a quarter of the checkout's age (webhooks.reconcile).
            payment.updated_at, payment.reconcile_due_at = utcnow(), None
        db.session.commit()
    if payment.status == "succeeded":
        raise AlreadyPaid(payment)
    if payment.status == "canceled":
        raise CheckoutError("The payment of this order was canceled.")
    return Checkout(payment, intent)


def _use_card(intent: gateway.Intent, card: SavedCard) -> gateway.Intent:
    """Put a saved card (and so its Stripe customer) on an unconfirmed intent."""
    cmap = cards.customer_of(card.user_id)
    changes = {"payment_method": card.stripe_payment_method_id}
    if intent.customer != cmap.stripe_customer_id:
        changes["customer"] = cmap.stripe_customer_id  # intent made before the first card
    return gateway.update_payment_intent(intent.id, **changes)


def confirm_with_card(user: User, payment: Payment, payment_method_id: str, *,
                      return_url: str | None = None) -> tuple[Payment, gateway.Intent]:
    """Confirm the payment's intent server-side with a saved card of ``user`` or a new
    PaymentMethod from Stripe.js, and apply the outcome (commits).

    Another user's saved card is CardNotFound; GatewayError when Stripe refuses the request
    or cannot be reached (a decline is not an error: the payment comes back failed).
    """
    card = db.session.scalar(sa.select(SavedCard).where(
        SavedCard.stripe_payment_method_id == payment_method_id))
    if card is not None and card.user_id != user.id:
        raise cards.CardNotFound()
    if card is not None and payment.stripe_customer_id != cards.customer_of(
            user.id).stripe_customer_id:
        _use_card(gateway.retrieve_payment_intent(payment.stripe_payment_intent_id), card)
    intent = gateway.confirm_payment_intent(
        payment.stripe_payment_intent_id, payment_method=payment_method_id,
        return_url=return_url, idempotency_key=f"payment-{payment.id}-confirm-{uuid.uuid4()}")
    payment = settle(payment.id, intent)
    db.session.commit()
    return payment, intent


def offer_to_save_card(user: User, payment: Payment, save: bool) -> None:
    """The customer ticked (or unticked) "save this card" before paying with a new card:
    Stripe attaches the card to their customer when the payment succeeds."""
    cmap = cards.ensure_customer(user) if save else cards.customer_of(user.id)
    changes = {"setup_future_usage": "off_session" if save else ""}
    if cmap is not None and payment.stripe_customer_id != cmap.stripe_customer_id:
        changes["customer"] = cmap.stripe_customer_id
    intent = gateway.update_payment_intent(payment.stripe_payment_intent_id, **changes)
    settle(payment.id, intent)
    db.session.commit()


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
        payment.payment_method_id = intent.payment_method_id
        payment.payment_method_type = intent.payment_method_type or "card"
        payment.card_brand = intent.card.brand
        payment.card_last4 = intent.card.last4
        payment.card_exp_month = intent.card.exp_month
        payment.card_exp_year = intent.card.exp_year
        payment.card_funding = intent.card.funding
        payment.card_country = intent.card.country
        payment.billing_details = intent.billing_details
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
        payment.failure_code = payment.failure_message = None
        payment.receipt_url = intent.receipt_url
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
    changed = new != payment.status
    payment.status = new
    if changed:
        payment.reconcile_due_at = None  # checked afresh by reconciliation (webhooks.reconcile)
    return changed


def settle(payment_id: uuid.UUID, intent: gateway.Intent) -> Payment:
    """Lock the payment row (fresh values) and apply ``intent``; the caller commits.

    Stripe is always called before this, so no row lock is held while waiting on Stripe.
    """
    if db.session.get_bind().dialect.name == "sqlite":
        # SQLite ignores FOR UPDATE, and its driver begins a transaction only at the first
        # write: two settles could both read the payment not final and both record the
        # sale, or a stale "processing" written after a committed success would undo it. A
        # write takes SQLite's one write lock now (waiting for a settle in progress to
        # commit) and holds it until our commit, so the read below is current. (Not in
        # _locked: _create_intent holds its lock while calling Stripe, and there the
        # idempotency key keeps concurrent callers to one PaymentIntent.)
        db.session.execute(sa.update(Payment).where(Payment.id == payment_id)
                           .values(updated_at=Payment.updated_at)
                           .execution_options(synchronize_session=False))
    payment = _locked(payment_id)
    # The changes to the payment and its order are written once, when the caller commits,
    # instead of being flushed by each query of the side effects below (three UPDATEs of
    # the payment). Nothing below reads them back from the database.
    with db.session.no_autoflush:
        if apply_intent(payment, intent) and payment.is_final:
            # Once: a final state never changes again. Side effects go to the outbox, in
            # this transaction.
            if payment.status == "succeeded":
                cards.record_spending(payment)
                splits.record_sale(payment,
                                   current_app.extensions["portal_config"].PLATFORM_FEE_PERCENT)
            outbox.record_payment_outcome(payment)
    return payment


def refresh_payment(payment: Payment, *, quiet: bool = True) -> Payment:
    """Re-read the payment's intent from Stripe and apply it (commits). If Stripe cannot be
    reached the payment is returned as it is (``quiet``) or GatewayError raised."""
    if not payment.stripe_payment_intent_id or payment.is_final:
        return payment
    try:
        intent = gateway.retrieve_payment_intent(payment.stripe_payment_intent_id)
    except gateway.GatewayError:
        if not quiet:
            raise
        # Stripe unreachable: show what we know; the webhook or the next poll settles it.
        log.warning("could not refresh payment %s", payment.id, exc_info=True)
        return payment
    payment = settle(payment.id, intent)
    db.session.commit()
    if intent.setup_future_usage and intent.status == "succeeded" and intent.payment_method_id:
        # "Save this card": Stripe attached it; show it at once, not only after the webhook.
        try:
            cards.sync_method(intent.payment_method_id)
            db.session.commit()
        except (gateway.GatewayError, IntegrityError):
            db.session.rollback()
            log.warning("could not mirror the card saved by payment %s", payment.id,
                        exc_info=True)
    return payment


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
            start=None, end=None) -> Page:
    """A user's payments, newest first, filtered; served by the (user, status?, created) index."""
    where = [Payment.user_id == user.id]
    if status:
        where.append(Payment.status == status)
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
