"""Saved cards: the workflows behind the cards page, checkout with a saved card, the
methods API and the payment_method/setup_intent webhooks.

Stripe holds the truth (which cards are attached to which customer); our rows mirror it so
pages and the API can list cards without calling Stripe. Every change made here is made at
Stripe first, then mirrored; changes made elsewhere arrive as webhooks and are mirrored by
re-reading the PaymentMethod (``sync_method``).
"""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .. import stripe_gateway as gateway
from ..auth.models import User
from ..extensions import db
from ..payments.models import Payment
from .models import CustomerMap, SavedCard

log = logging.getLogger(__name__)


class CardError(Exception):
    """The card cannot be saved or used; the message is safe to show."""

    status = 400
    code = "invalid_payment_method"


class AlreadySaved(CardError):
    status = 409
    code = "payment_method_exists"


class CardDeclined(CardError):
    """Stripe declined the card when it was attached (a card tester's signal: counted)."""

    code = "card_declined"


class CardNotFound(CardError):
    status = 404
    code = "payment_method_not_found"

    def __init__(self, message: str = "payment method not found"):
        super().__init__(message)


# --- The customer ---------------------------------------------------------------------------

def customer_of(user_id: uuid.UUID) -> CustomerMap | None:
    return db.session.scalar(sa.select(CustomerMap).where(CustomerMap.user_id == user_id))


def ensure_customer(user: User) -> CustomerMap:
    """The user's Stripe customer, created on first need, never twice. Commits.

    Concurrent first requests (two tabs adding a first card) queue on the user's row lock;
    the second finds the map the first committed. The idempotency key per user covers a
    crash between Stripe's answer and our commit: the retry gets the same customer back.
    """
    existing = customer_of(user.id)
    if existing is not None:
        return existing
    db.session.execute(sa.select(User.id).where(User.id == user.id).with_for_update())
    existing = customer_of(user.id)
    if existing is not None:
        db.session.commit()
        return existing
    try:
        customer_id = gateway.create_customer(
            email=user.email, name=user.name or "", metadata={"userId": str(user.id)},
            idempotency_key=f"customer-{user.id}")
    except gateway.GatewayError:
        db.session.rollback()
        raise
    cmap = CustomerMap(user_id=user.id, stripe_customer_id=customer_id, email=user.email,
                       name=user.name or None)
    _count_past_payments(cmap)
    db.session.add(cmap)
    db.session.commit()
    return cmap


def _count_past_payments(cmap: CustomerMap) -> None:
    rows = db.session.execute(
        sa.select(Payment.currency, sa.func.sum(Payment.amount), sa.func.count(),
                  sa.func.max(Payment.succeeded_at))
        .where(Payment.user_id == cmap.user_id, Payment.status == "succeeded")
        .group_by(Payment.currency)).all()
    cmap.total_spent = {currency: int(total) for currency, total, _, _ in rows}
    cmap.payment_count = sum(count for _, _, count, _ in rows)
    cmap.last_payment_at = max((last for *_, last in rows if last), default=None)


def record_spending(payment: Payment) -> None:
    """A payment of the user succeeded: bring the customer's spending up to date (the caller
    holds the payment row and commits). Users without a Stripe customer yet get their past
    payments counted when it is created."""
    cmap = db.session.scalar(sa.select(CustomerMap).where(CustomerMap.user_id == payment.user_id)
                             .with_for_update())
    if cmap is None:
        return
    spent = dict(cmap.total_spent or {})
    spent[payment.currency] = spent.get(payment.currency, 0) + payment.amount
    cmap.total_spent = spent
    cmap.payment_count = (cmap.payment_count or 0) + 1
    cmap.last_payment_at = payment.succeeded_at


# --- Listing --------------------------------------------------------------------------------

def cards_of(user: User) -> list[SavedCard]:
    """The user's saved cards in the order they were added."""
    return list(db.session.scalars(
        sa.select(SavedCard).where(SavedCard.user_id == user.id)
        .order_by(SavedCard.created_at, SavedCard.id)))


def default_card_id(user: User) -> str | None:
    cmap = customer_of(user.id)
    return cmap.default_payment_method_id if cmap else None


def card_for(user: User, payment_method_id: str) -> SavedCard:
    """The user's saved card with this PaymentMethod id; another user's card is CardNotFound
    (indistinguishable from a missing one)."""
    card = db.session.scalar(sa.select(SavedCard).where(
        SavedCard.user_id == user.id, SavedCard.stripe_payment_method_id == payment_method_id))
    if card is None:
        raise CardNotFound()
    return card


# --- Changes made by the user ---------------------------------------------------------------

def _mirror(user_id: uuid.UUID, method: gateway.Method) -> SavedCard:
    card = method.card or gateway.CardDetails()
    row = db.session.scalar(sa.select(SavedCard).where(
        SavedCard.stripe_payment_method_id == method.id)) or SavedCard(
        user_id=user_id, stripe_payment_method_id=method.id)
    row.type = method.type
    row.brand, row.last4 = card.brand, card.last4
    row.exp_month, row.exp_year = card.exp_month, card.exp_year
    row.funding, row.country, row.fingerprint = card.funding, card.country, card.fingerprint
    db.session.add(row)
    return row


def _duplicate_of(user_id: uuid.UUID, method: gateway.Method) -> SavedCard | None:
    fingerprint = method.card.fingerprint if method.card else None
    if not fingerprint:
        return None
    return db.session.scalar(sa.select(SavedCard).where(
        SavedCard.user_id == user_id, SavedCard.fingerprint == fingerprint,
        SavedCard.stripe_payment_method_id != method.id))


def _store(cmap: CustomerMap, method: gateway.Method, make_default: bool) -> SavedCard:
    """Mirror an attached card (commit); the first card becomes the default."""
    row = _mirror(cmap.user_id, method)
    try:
        db.session.flush()
    except IntegrityError:
        # Saved a moment ago by a concurrent request: by the webhook of this very card (then
        # it is simply there), or the same card number through another PaymentMethod.
        db.session.rollback()
        row = db.session.scalar(sa.select(SavedCard).where(
            SavedCard.stripe_payment_method_id == method.id))
        if row is not None and row.user_id == cmap.user_id:
            return row
        raise AlreadySaved("this card is already saved") from None
    if make_default or cmap.default_payment_method_id is None:
        gateway.set_default_payment_method(cmap.stripe_customer_id, method.id)
        cmap.default_payment_method_id = method.id
    db.session.commit()
    return row


def save_card(user: User, payment_method_id: str, *, make_default: bool = False) -> SavedCard:
    """Attach a PaymentMethod (created by Stripe.js) to the user's customer and save it.

    CardNotFound (404) when Stripe does not know it or it is another customer's; CardError
    (400) when it is not a usable card, CardDeclined when Stripe declines it; AlreadySaved
    (409) when this card (same id or same card number) is saved already.
    """
    method = gateway.retrieve_payment_method(payment_method_id)
    known = customer_of(user.id)
    if method is None or method.customer not in (
            None, known.stripe_customer_id if known else None):
        # The same answer for an unknown id and another customer's: no way to probe which
        # payment methods exist (and no Stripe customer made for a refused request).
        raise CardNotFound("no such payment method")
    if method.type != "card" or method.card is None:
        raise CardError("only cards can be saved")
    cmap = known or ensure_customer(user)
    if db.session.scalar(sa.select(SavedCard.id).where(
            SavedCard.stripe_payment_method_id == method.id)) is not None:
        raise AlreadySaved("this card is already saved")
    if _duplicate_of(user.id, method) is not None:
        if method.customer == cmap.stripe_customer_id:
            gateway.detach_payment_method(method.id)
        raise AlreadySaved("this card is already saved")
    if method.customer is None:
        try:
            method = gateway.attach_payment_method(method.id, cmap.stripe_customer_id)
        except gateway.GatewayError as exc:
            if exc.retryable:
                raise
            raise (CardDeclined if exc.status == 402 else CardError)(exc.message) from exc
    return _store(cmap, method, make_default)


def start_setup(user: User) -> gateway.Setup:
    """A SetupIntent for the cards page's "add a card" form."""
    cmap = ensure_customer(user)
    return gateway.create_setup_intent(
        customer=cmap.stripe_customer_id, metadata={"userId": str(user.id)},
        idempotency_key=f"setup-{user.id}-{uuid.uuid4()}")


def finish_setup(user: User, setup_intent_id: str) -> SavedCard:
    """After Stripe.js confirmed the SetupIntent: save its card (already attached by Stripe).

    CardNotFound for another user's SetupIntent; CardError if it did not succeed;
    AlreadySaved (the new duplicate is detached) when the card was saved before."""
    cmap = customer_of(user.id)
    setup = gateway.retrieve_setup_intent(setup_intent_id) if cmap else None
    if setup is None or setup.customer != cmap.stripe_customer_id:
        raise CardNotFound("setup not found")
    if setup.status != "succeeded" or not setup.payment_method_id:
        raise CardError(setup.failure_message or "the card was not saved; please try again")
    existing = db.session.scalar(sa.select(SavedCard).where(
        SavedCard.stripe_payment_method_id == setup.payment_method_id))
    if existing is not None:  # the webhook was quicker
        return existing
    method = gateway.retrieve_payment_method(setup.payment_method_id)
    if method is None or method.customer != cmap.stripe_customer_id:
        raise CardError("the card was not saved; please try again")
    if _duplicate_of(user.id, method) is not None:
        gateway.detach_payment_method(method.id)
        raise AlreadySaved("this card is already saved")
    return _store(cmap, method, make_default=False)


def remove_card(user: User, payment_method_id: str) -> None:
    """Detach the card at Stripe and forget it; the newest remaining card becomes the default
    when the default was removed. Commits."""
    card = card_for(user, payment_method_id)
    gateway.detach_payment_method(card.stripe_payment_method_id)
    db.session.delete(card)
    _repair_default(user.id)
    db.session.commit()


def set_default(user: User, payment_method_id: str) -> None:
    """Make a saved card the default (at Stripe and here). Commits."""
    card = card_for(user, payment_method_id)
    cmap = customer_of(user.id)
    gateway.set_default_payment_method(cmap.stripe_customer_id, card.stripe_payment_method_id)
    cmap.default_payment_method_id = card.stripe_payment_method_id
    db.session.commit()


def _repair_default(user_id: uuid.UUID) -> None:
    """If the default card is gone, the newest remaining one (if any) becomes the default."""
    cmap = customer_of(user_id)
    if cmap is None:
        return
    db.session.flush()
    ids = list(db.session.scalars(
        sa.select(SavedCard.stripe_payment_method_id).where(SavedCard.user_id == user_id)
        .order_by(SavedCard.created_at.desc(), SavedCard.id.desc())))
    if cmap.default_payment_method_id in ids:
        return
    new_default = ids[0] if ids else None
    if new_default:
        gateway.set_default_payment_method(cmap.stripe_customer_id, new_default)
    cmap.default_payment_method_id = new_default


# --- Changes that arrive from Stripe (webhooks, checkout with "save this card") -------------

def sync_method(payment_method_id: str) -> bool:
    """Mirror a PaymentMethod as Stripe holds it now: saved while attached to one of our
    customers (a duplicate of a saved card is detached), forgotten once detached or gone.
    Returns False when it concerns none of our customers. The caller commits."""
    method = gateway.retrieve_payment_method(payment_method_id)
    row = db.session.scalar(sa.select(SavedCard).where(
        SavedCard.stripe_payment_method_id == payment_method_id))
    cmap = method and method.customer and db.session.scalar(
        sa.select(CustomerMap).where(CustomerMap.stripe_customer_id == method.customer))
    if not cmap:
        if row is None:
            return False
        db.session.delete(row)
        _repair_default(row.user_id)
        return True
    if row is None and _duplicate_of(cmap.user_id, method) is not None:
        log.info("payment method %s duplicates a saved card; detaching it", method.id)
        gateway.detach_payment_method(method.id)
        return True
    _mirror(cmap.user_id, method)
    if cmap.default_payment_method_id is None:
        gateway.set_default_payment_method(cmap.stripe_customer_id, method.id)
        cmap.default_payment_method_id = method.id
    return True


def sync_default(customer_id: str) -> bool:
    """customer.updated: a default card chosen at Stripe (dashboard) becomes ours too, when it
    is one of the saved cards. False when the customer is not ours. The caller commits."""
    cmap = db.session.scalar(sa.select(CustomerMap).where(
        CustomerMap.stripe_customer_id == customer_id))
    if cmap is None:
        return False
    default = gateway.default_payment_method(customer_id)
    if default and default != cmap.default_payment_method_id and db.session.scalar(
            sa.select(SavedCard.id).where(SavedCard.user_id == cmap.user_id,
                                          SavedCard.stripe_payment_method_id == default)):
        cmap.default_payment_method_id = default
    return True
