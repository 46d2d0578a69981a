"""The customer's orders page."""

from flask import Blueprint, render_template
from flask_login import current_user

from ..auth.access import roles_required
from .services import orders_of

bp = Blueprint("orders", __name__)


@bp.route("/orders")
@roles_required("customer")
def index():
    """Orders of the signed-in customer: unpaid ones with a Pay button, paid ones with a
    link to their payment (receipt, refunds)."""
    return render_template("orders/index.html", orders=orders_of(current_user))
