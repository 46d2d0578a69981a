"""The cards page: list, add (SetupIntent + Payment Element), remove and set default."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import stripe_gateway as gateway
from ..extensions import limiter
from ..htmx import is_htmx
from ..models_base import utcnow
from . import services as cards

bp = Blueprint("cards", __name__, url_prefix="/cards")



@bp.before_request
@login_required
def _customers_only():
    """Saved cards are a customer's: a vendor, an admin or a service user has none (and no
    Stripe customer is created for them)."""
    if current_user.role != "customer":
        abort(403)


UNAVAILABLE = "We could not reach the payment processor. Nothing was changed; please try again."


def _list(message: str | None = None, error: str | None = None, status: int = 200,
          saved: bool = False):
    """The list partial (HTMX) or the whole page, with an outcome message. HTMX gets 200 with
    the error in the list, since htmx swaps only successful responses."""
    context = {"cards": cards.cards_of(current_user),
               "default_id": cards.default_card_id(current_user),
               "today": utcnow().date(), "message": message, "error": error, "saved": saved}
    if is_htmx():
        return render_template("cards/_list.html", **context)
    if message:
        flash(message, "info")
    return render_template("cards/index.html", **context), status


@bp.route("")
@login_required
def index():
    """The customer's saved cards."""
    return _list()


@bp.route("/new")
@login_required
@limiter.limit("20 per minute")
def new():
    """The "add a card" form: a fresh SetupIntent for the Payment Element."""
    try:
        setup = cards.start_setup(current_user)
    except gateway.GatewayError:
        return render_template("cards/_add.html", error=UNAVAILABLE), 503
    return render_template("cards/_add.html", setup=setup,
                           return_url=url_for("cards.added", _external=True))


def _finish(setup_intent_id: str) -> tuple[str | None, str | None]:
    """(message, error) of saving the card of a confirmed SetupIntent."""
    try:
        card = cards.finish_setup(current_user, setup_intent_id)
    except cards.CardError as exc:
        return None, str(exc).capitalize() + "."
    except gateway.GatewayError:
        return None, UNAVAILABLE
    return f"{(card.brand or 'card').capitalize()} •••• {card.last4} was saved.", None


@bp.route("", methods=["POST"])
@login_required
@limiter.limit("20 per minute")
def add():
    """Stripe.js confirmed the SetupIntent on the page: save its card."""
    message, error = _finish(request.form.get("setup_intent", ""))
    return _list(message, error, 200 if message else 400, saved=True)


@bp.route("/added")
@login_required
def added():
    """Where Stripe returns after a redirect (3-D Secure) while saving a card."""
    message, error = _finish(request.args.get("setup_intent", ""))
    flash(message or error, "info" if message else "error")
    return redirect(url_for("cards.index"))


def _change(action, payment_method_id: str, done: str):
    try:
        action(current_user, payment_method_id)
    except cards.CardNotFound:
        return _list(error="That card is not among your saved cards.", status=404)
    except gateway.GatewayError:
        return _list(error=UNAVAILABLE, status=503)
    return _list(done)


@bp.route("/<payment_method_id>/default", methods=["POST"])
@login_required
def make_default(payment_method_id: str):
    """Make a card the default (HTMX: only the list is swapped)."""
    return _change(cards.set_default, payment_method_id, "Your default card was changed.")


@bp.route("/<payment_method_id>/remove", methods=["POST"])
@login_required
def remove(payment_method_id: str):
    """Remove a card, at Stripe too (HTMX: only the list is swapped)."""
    return _change(cards.remove_card, payment_method_id, "The card was removed.")
