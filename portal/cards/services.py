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
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .. import stripe_gateway as gateway
from ..auth.models import User
from ..database import in_phases, insert_or_skip
from ..errors import DomainError
from ..extensions import db
from ..ledger.models import Payment
from .models import CustomerMap, SavedCard

log = logging.getLogger(__name__)


class CardError(DomainError):
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


@dataclass(frozen=True)
class _NewCustomer:
    user_id: uuid.UUID
    email: str
    name: str


def ensure_customer(user: User) -> CustomerMap:
    """The user's Stripe customer, created on first need, never twice (in phases: it commits
    when it creates one).

    Concurrent first requests (two tabs adding a first card) send Stripe the same request
    under the same idempotency key (per user) and get the same customer back; the first
    insert of the map wins (ON CONFLICT DO NOTHING), the others find it. The key also covers
    a crash between Stripe's answer and our commit: the retry gets the same customer back.
    """
    existing = customer_of(user.id)
    if existing is not None:
        return existing

    def reserve() -> _NewCustomer | None:
        if customer_of(user.id) is not None:
            return None  # made meanwhile
        return _NewCustomer(user.id, user.email, user.name or "")

    def call(new: _NewCustomer) -> str:
        return gateway.create_customer(
            email=new.email, name=new.name, metadata={"userId": str(new.user_id)},
            idempotency_key=f"customer-{new.user_id}")

    def apply(new: _NewCustomer, customer_id: str) -> CustomerMap:
        # No conflict target: a concurrent insert of the same map conflicts on the user and
        # on the Stripe customer, and either is "made meanwhile".
        db.session.execute(insert_or_skip(CustomerMap, None).values(
            id=uuid.uuid4(), user_id=new.user_id, stripe_customer_id=customer_id,
            email=new.email, name=new.name or None, **_past_payments(new.user_id)))
        return customer_of(new.user_id)

    return in_phases(reserve, call, apply) or customer_of(user.id)


def _past_payments(user_id: uuid.UUID) -> dict:
    """The spending columns of a new customer map: the user's succeeded payments so far."""
    rows = db.session.execute(
        sa.select(Payment.currency, sa.func.sum(Payment.amount), sa.func.count(),
                  sa.func.max(Payment.succeeded_at))
        .where(Payment.user_id == user_id, Payment.status == "succeeded")
        .group_by(Payment.currency)).all()
    return {"total_spent": {currency: int(total) for currency, total, _, _ in rows},
            "payment_count": sum(count for _, _, count, _ in rows),
            "last_payment_at": max((last for *_, last in rows if last), default=None)}


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
#
# What Stripe holds (the PaymentMethod, the SetupIntent) is read first and the refusals made
# on it; the change is then a workflow in phases (database.in_phases): check, call Stripe (no
# lock held), mirror what Stripe now holds.

def _mirror(user_id: uuid.UUID, method: gateway.Method) -> SavedCard:
    card = method.card or gateway.CardDetails()
    row = _row_of(method.id) or SavedCard(user_id=user_id, stripe_payment_method_id=method.id)
    row.type = method.type
    row.brand, row.last4 = card.brand, card.last4
    row.exp_month, row.exp_year = card.exp_month, card.exp_year
    row.funding, row.country, row.fingerprint = card.funding, card.country, card.fingerprint
    db.session.add(row)
    return row


def _row_of(payment_method_id: str) -> SavedCard | None:
    return db.session.scalar(sa.select(SavedCard).where(
        SavedCard.stripe_payment_method_id == payment_method_id))


def _duplicate_of(user_id: uuid.UUID, method: gateway.Method) -> SavedCard | None:
    fingerprint = method.card.fingerprint if method.card else None
    if not fingerprint:
        return None
    return db.session.scalar(sa.select(SavedCard).where(
        SavedCard.user_id == user_id, SavedCard.fingerprint == fingerprint,
        SavedCard.stripe_payment_method_id != method.id))


@dataclass(frozen=True)
class _Saving:
    customer: str  # the user's Stripe customer
    duplicate: bool  # the same card number is saved already (another PaymentMethod)
    default: bool  # the card becomes the default


def _save(user_id: uuid.UUID, method: gateway.Method, make_default: bool) -> SavedCard:
    """Attach (if needed) and save a card of the user's customer, in phases; the first card
    becomes the default. A duplicate of a saved card is detached and AlreadySaved."""
    def reserve() -> _Saving:
        cmap = customer_of(user_id)
        return _Saving(cmap.stripe_customer_id, _duplicate_of(user_id, method) is not None,
                       make_default or cmap.default_payment_method_id is None)

    def call(plan: _Saving) -> gateway.Method:
        if plan.duplicate:
            if method.customer == plan.customer:
                gateway.detach_payment_method(method.id)
            raise AlreadySaved("this card is already saved")
        attached = method if method.customer else _attach(method.id, plan.customer)
        if plan.default:
            gateway.set_default_payment_method(plan.customer, method.id)
        return attached

    def apply(plan: _Saving, attached: gateway.Method) -> SavedCard:
        row = _mirror(user_id, attached)
        if plan.default:
            customer_of(user_id).default_payment_method_id = attached.id
        db.session.flush()
        return row

    try:
        return in_phases(reserve, call, apply)
    except IntegrityError:
        # Saved a moment ago by a concurrent request: by the webhook of this very card (then
        # it is simply there), or the same card number through another PaymentMethod.
        row = _row_of(method.id)
        if row is not None and row.user_id == user_id:
            return row
        raise AlreadySaved("this card is already saved") from None


def _attach(payment_method_id: str, customer: str) -> gateway.Method:
    try:
        return gateway.attach_payment_method(payment_method_id, customer)
    except gateway.GatewayError as exc:
        if exc.retryable:
            raise
        raise (CardDeclined if exc.stripe_status == 402 else CardError)(exc.message) from exc


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
    if known is None:
        ensure_customer(user)
    if _row_of(method.id) is not None:
        raise AlreadySaved("this card is already saved")
    return _save(user.id, method, make_default)


def start_setup(user: User) -> gateway.Setup:
    """A SetupIntent for the cards page's "add a card" form (nothing is stored: the card is
    saved when the setup is finished)."""
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
    existing = _row_of(setup.payment_method_id)
    if existing is not None:  # the webhook was quicker
        return existing
    method = gateway.retrieve_payment_method(setup.payment_method_id)
    if method is None or method.customer != cmap.stripe_customer_id:
        raise CardError("the card was not saved; please try again")
    return _save(user.id, method, make_default=False)


@dataclass(frozen=True)
class _Removal:
    payment_method: str
    customer: str | None
    repair: bool  # the default goes with it: ``successor`` becomes the default
    successor: str | None


def remove_card(user: User, payment_method_id: str) -> None:
    """Detach the card at Stripe and forget it; the newest remaining card becomes the default
    when the default was removed. In phases (it commits)."""
    def reserve() -> _Removal:
        card = card_for(user, payment_method_id)
        cmap = customer_of(user.id)
        others = [pm for pm in _newest_first(user.id) if pm != card.stripe_payment_method_id]
        default = cmap.default_payment_method_id if cmap else None
        return _Removal(card.stripe_payment_method_id, cmap.stripe_customer_id if cmap else None,
                        repair=default not in others, successor=others[0] if others else None)

    def call(r: _Removal) -> None:
        gateway.detach_payment_method(r.payment_method)
        if r.repair and r.successor:
            gateway.set_default_payment_method(r.customer, r.successor)

    def apply(r: _Removal, _) -> None:
        db.session.execute(sa.delete(SavedCard).where(
            SavedCard.stripe_payment_method_id == r.payment_method))
        cmap = customer_of(user.id)
        if cmap is not None and r.repair:
            cmap.default_payment_method_id = r.successor

    in_phases(reserve, call, apply)


def set_default(user: User, payment_method_id: str) -> None:
    """Make a saved card the default (at Stripe and here). In phases (it commits)."""
    def reserve() -> tuple[str, str]:
        card = card_for(user, payment_method_id)
        return customer_of(user.id).stripe_customer_id, card.stripe_payment_method_id

    def apply(chosen: tuple[str, str], _) -> None:
        customer_of(user.id).default_payment_method_id = chosen[1]

    in_phases(reserve, lambda chosen: gateway.set_default_payment_method(*chosen), apply)


def _newest_first(user_id: uuid.UUID) -> list[str]:
    """The user's saved cards' PaymentMethod ids, newest first."""
    return list(db.session.scalars(
        sa.select(SavedCard.stripe_payment_method_id).where(SavedCard.user_id == user_id)
        .order_by(SavedCard.created_at.desc(), SavedCard.id.desc())))


def _repair_default(user_id: uuid.UUID) -> None:
    """If the default card is gone, the newest remaining one (if any) becomes the default."""
    cmap = customer_of(user_id)
    if cmap is None:
        return
    db.session.flush()
    ids = _newest_first(user_id)
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
