"""The customer's orders page."""

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from .services import orders_of

bp = Blueprint("orders", __name__)


@bp.route("/")
@bp.route("/orders")
@login_required
def index():
    """Orders of the signed-in customer, with a Pay button on unpaid ones."""
    orders = orders_of(current_user) if current_user.role == "customer" else []
    return render_template("orders/index.html", orders=orders)
