"""`flask seed-demo`: demo users and unpaid orders, and, against the Stripe sandbox, a history
of payments over the last 90 days for the back office to show; idempotent."""

from __future__ import annotations

import random
from datetime import timedelta

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from .auth.services import create_user, find_user
from .database import unit_of_work
from .extensions import db
from .ledger import rollups
from .ledger.models import Payment, SplitLine
from .models_base import utcnow
from .orders.models import Order
from .orders.services import ItemIn, OrderIn, create_order
from .payments.services import confirm_with_card, start_checkout
from .refunds.models import RefundRequest
from .refunds.services import refund_now, request_refund

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


# The history: payments by a dozen more customers, in four currencies, some declined, a few
# refunded (in part or whole), made through the sandbox and then dated back over 90 days.
HISTORY_PAYMENTS, HISTORY_DAYS = 240, 90
HISTORY_CURRENCIES = {"USD": (1500, 25000), "EUR": (1200, 18000), "GBP": (900, 15000),
                      "JPY": (800, 30000)}  # minor units: from, to
PRODUCTS = ("Oak side table", "Wool throw", "Stoneware bowl", "Brass hook", "Cotton apron",
            "Rattan basket", "Glass carafe", "Copper kettle")


def seed_history(payments: int | None = None, seed: int = 18) -> int:
    """Unless there are payments already: ``payments`` (HISTORY_PAYMENTS) orders paid
    through the Stripe sandbox (the portal's own checkout and refunds: each commits), then
    their times moved back over the last HISTORY_DAYS days and the daily rollups rebuilt.
    Returns how many."""
    if db.session.scalar(sa.select(sa.func.count()).select_from(Payment)):
        return 0
    payments = payments or HISTORY_PAYMENTS
    rng = random.Random(seed)  # nosec B311 - the demo's made-up history, not a secret
    admin = find_user(USERS[3][0])
    vendors = [find_user(V1), find_user(V2)]
    with unit_of_work():
        customers = [find_user(f"shopper{i}@demo.shopsphere.test")
                     or create_user(f"shopper{i}@demo.shopsphere.test", "customer",
                                    DEMO_PASSWORD, f"Shopper {i}") for i in range(1, 13)]
    now, made, asked = utcnow(), [], False
    for n in range(payments):
        currency = rng.choices(list(HISTORY_CURRENCIES), weights=(6, 3, 2, 1))[0]
        low, high = HISTORY_CURRENCIES[currency]
        customer = rng.choice(customers)
        with unit_of_work():
            order = create_order(OrderIn(
                customerEmail=customer.email, currency=currency,
                items=[ItemIn(vendorEmail=v.email, description=rng.choice(PRODUCTS),
                              quantity=rng.randint(1, 2), unitAmount=rng.randint(low, high))
                       for v in rng.sample(vendors, rng.randint(1, 2))]))
        payment = start_checkout(order, source=rng.choice(("web", "web", "api"))).payment
        card = "pm_card_chargeDeclined" if rng.random() < 0.08 else "pm_card_visa"
        payment, _ = confirm_with_card(customer, payment, card)
        if payment.status == "succeeded" and n % 11 == 3:  # about one in eleven refunded
            _refund(admin, payment, order.items, rng)
        elif payment.status == "succeeded" and not asked and len(order.items) > 1 \
                and n >= payments // 2:  # one vendor's item waits for the admin's decision
            with unit_of_work():
                request_refund(order.items[0].vendor, payment, amount=None, reason="damaged",
                               notes="Chipped in transit",
                               quantities={order.items[0].id: 1})
            asked = True
        made.append((payment.id, now - timedelta(days=rng.uniform(0, HISTORY_DAYS)),
                     timedelta(days=rng.uniform(0.5, 6))))
    _date_back(made)
    with unit_of_work():
        rollups.rebuild()
    return len(made)


def _refund(admin, payment: Payment, items: list, rng: random.Random) -> None:
    """A refund of the history: all of it, a quarter, or one unit of its first item (borne
    by that item's vendor)."""
    kind = rng.choice(("all", "quarter", "item"))
    refund_now(admin, payment, amount=payment.amount // 4 if kind == "quarter" else None,
               quantities={items[0].id: 1} if kind == "item" else None,
               reason="requested_by_customer", notes="Demo refund")


def _date_back(made: list) -> None:
    """Move each payment's times (and its order's, split lines' and refunds') back to when
    the history says it happened; a refund some days after the payment."""
    with unit_of_work():
        for payment_id, at, later in made:
            payment = db.session.get(Payment, payment_id)
            payment.created_at = payment.updated_at = at
            if payment.succeeded_at is not None:
                payment.succeeded_at = payment.order.paid_at = at
            payment.order.created_at = at
            for line in db.session.scalars(sa.select(SplitLine).where(
                    SplitLine.payment_id == payment_id)):
                line.created_at = at if line.kind == "sale" else at + later
            for request in db.session.scalars(sa.select(RefundRequest).where(
                    RefundRequest.payment_id == payment_id)):
                request.created_at = at + later
                if request.decided_at is not None:
                    request.decided_at = at + later


def sandbox_in_use() -> bool:
    """Stripe is the local sandbox (`make run`): a history made there costs nothing."""
    config = current_app.extensions["portal_config"]
    return config.STRIPE_API_BASE.startswith(("http://127.0.0.1", "http://localhost"))


@click.command("seed-demo")
@click.option("--no-history", is_flag=True, help="Only the users and the unpaid orders.")
@with_appcontext
def seed_demo_command(no_history: bool) -> None:
    """Create the demo customer, vendors, admin and a few unpaid orders and, against the
    Stripe sandbox, a history of payments (idempotent)."""
    if current_app.config["ENV"] == "production":
        raise click.ClickException("seed-demo creates users whose password is published: "
                                   "not in production")
    with unit_of_work():
        logins = seed_demo()
    if not no_history and sandbox_in_use():
        made = seed_history()
        if made:
            click.echo(f"{made} payments of the last {HISTORY_DAYS} days made in the sandbox.")
    click.echo(f"Demo logins (password: {DEMO_PASSWORD}):")
    for email, role in logins:
        click.echo(f"  {role:<9} {email}")
