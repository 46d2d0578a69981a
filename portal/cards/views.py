"""The cards page: list, add (SetupIntent + Payment Element), remove and set default."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import stripe_gateway as gateway
from ..auth.access import roles_required
from ..errors import Unavailable
from ..extensions import limiter
from ..htmx import is_htmx
from ..models_base import utcnow
from . import services as cards

bp = Blueprint("cards", __name__, url_prefix="/cards")


@bp.before_request
@roles_required("customer")
def _customers_only():
    """Saved cards are a customer's: a vendor, an admin or a service user has none (and no
    Stripe customer is created for them)."""


UNAVAILABLE = "We could not reach the payment processor. Nothing was changed; please try again."


def _outage(body: str):
    """503 with Retry-After: Stripe could not be reached. htmx swaps only successful
    responses; for its requests portal.js shows X-Error-Message instead."""
    return body, Unavailable.status, {"Retry-After": str(Unavailable.retry_after),
                                      "X-Error-Message": UNAVAILABLE}


def _failure(exc: gateway.GatewayError) -> tuple[str, int]:
    """(message, status) of a Stripe failure: an outage (503) or Stripe's refusal (400)."""
    return (UNAVAILABLE, exc.status) if exc.retryable else (exc.message, exc.status)


def _list(message: str | None = None, error: str | None = None, status: int = 200,
          saved: bool = False):
    """The list partial (HTMX) or the whole page, with an outcome message. HTMX gets a
    refusal with 200, in the list, since htmx swaps only successful responses; a Stripe
    outage is 503 either way."""
    context = {"cards": cards.cards_of(current_user),
               "default_id": cards.default_card_id(current_user),
               "today": utcnow().date(), "message": message, "error": error, "saved": saved}
    if message and not is_htmx():
        flash(message, "info")
    page = render_template("cards/_list.html" if is_htmx() else "cards/index.html", **context)
    if status == Unavailable.status:
        return _outage(page)
    return page if is_htmx() else (page, status)


@bp.route("")
def index():
    """The customer's saved cards."""
    return _list()


@bp.route("/new")
@limiter.limit("20 per minute")
def new():
    """The "add a card" form: a fresh SetupIntent for the Payment Element."""
    try:
        setup = cards.start_setup(current_user)
    except gateway.GatewayError as exc:
        error, status = _failure(exc)
        form = render_template("cards/_add.html", error=error)
        return _outage(form) if exc.retryable else (form, status)
    return render_template("cards/_add.html", setup=setup,
                           return_url=url_for("cards.added", _external=True))


def _finish(setup_intent_id: str) -> tuple[str | None, str | None, int]:
    """(message, error, status) of saving the card of a confirmed SetupIntent."""
    try:
        card = cards.finish_setup(current_user, setup_intent_id)
    except cards.CardError as exc:
        return None, exc.message.capitalize() + ".", 400
    except gateway.GatewayError as exc:
        return None, *_failure(exc)
    return f"{(card.brand or 'card').capitalize()} •••• {card.last4} was saved.", None, 200


@bp.route("", methods=["POST"])
@limiter.limit("20 per minute")
def add():
    """Stripe.js confirmed the SetupIntent on the page: save its card."""
    message, error, status = _finish(request.form.get("setup_intent", ""))
    return _list(message, error, status, saved=True)


@bp.route("/added")
def added():
    """Where Stripe returns after a redirect (3-D Secure) while saving a card; a Stripe
    outage shows the page (503) at this address, so that a reload tries again."""
    message, error, status = _finish(request.args.get("setup_intent", ""))
    if status == Unavailable.status:
        return _list(error=error, status=status)
    flash(message or error, "info" if message else "error")
    return redirect(url_for("cards.index"))


def _change(action, payment_method_id: str, done: str):
    try:
        action(current_user, payment_method_id)
    except cards.CardNotFound:
        return _list(error="That card is not among your saved cards.", status=404)
    except gateway.GatewayError as exc:
        return _list(error=_failure(exc)[0], status=exc.status)
    return _list(done)


@bp.route("/<payment_method_id>/default", methods=["POST"])
def make_default(payment_method_id: str):
    """Make a card the default (HTMX: only the list is swapped)."""
    return _change(cards.set_default, payment_method_id, "Your default card was changed.")


@bp.route("/<payment_method_id>/remove", methods=["POST"])
def remove(payment_method_id: str):
    """Remove a card, at Stripe too (HTMX: only the list is swapped)."""
    return _change(cards.remove_card, payment_method_id, "The card was removed.")
