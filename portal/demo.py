"""`flask seed-demo`: demo users and unpaid orders, idempotent."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from .auth.services import create_user, find_user
from .database import unit_of_work
from .extensions import db
from .orders.models import Order
from .orders.services import ItemIn, OrderIn, create_order

DEMO_PASSWORD = "demo-pass-123"  # nosec B105  # the demo's published sign-in (make run only)
USERS = [
    ("customer@demo.shopsphere.test", "customer", "Casey Customer"),
    ("vendor1@demo.shopsphere.test", "vendor", "Northwind Goods"),
    ("vendor2@demo.shopsphere.test", "vendor", "Contoso Crafts"),
    ("admin@demo.shopsphere.test", "admin", "Ada Admin"),
]
V1, V2 = USERS[1][0], USERS[2][0]
ORDERS = [
    ("USD", [(V1, "Walnut desk lamp", 1, 4999), (V2, "Linen cushion cover", 2, 1850)], 812, 500, 0),
    ("EUR", [(V1, "Ceramic mug set", 1, 3200), (V2, "Beeswax candles", 3, 790)], 0, 450, 300),
    ("JPY", [(V2, "Hinoki bath mat", 1, 5400), (V1, "Tenugui towel", 2, 1200)], 780, 0, 0),
]


def seed_demo() -> list[tuple[str, str]]:
    """Create what is missing; returns the logins (email, role). The caller commits."""
    for email, role, name in USERS:
        if find_user(email) is None:
            create_user(email, role, DEMO_PASSWORD, name)
    db.session.flush()
    customer = find_user(USERS[0][0])
    has_orders = db.session.scalar(
        sa.select(sa.func.count()).select_from(Order).where(Order.customer_id == customer.id)
    )
    if not has_orders:
        for currency, items, tax, shipping, discount in ORDERS:
            create_order(OrderIn(
                customerEmail=customer.email, currency=currency, tax=tax, shipping=shipping,
                discount=discount,
                items=[ItemIn(vendorEmail=v, description=d, quantity=q, unitAmount=a)
                       for v, d, q, a in items],
            ))
    return [(email, role) for email, role, _ in USERS]


@click.command("seed-demo")
@with_appcontext
def seed_demo_command() -> None:
    """Create the demo customer, vendors, admin and a few unpaid orders (idempotent)."""
    if current_app.config["ENV"] == "production":
        raise click.ClickException("seed-demo creates users whose password is published: "
                                   "not in production")
    with unit_of_work():
        logins = seed_demo()
    click.echo(f"Demo logins (password: {DEMO_PASSWORD}):")
    for email, role in logins:
        click.echo(f"  {role:<9} {email}")
