"""Registering orders (from the order service or an admin) and loading them safely."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ..auth.models import User
from ..auth.services import normalize_email
from ..errors import DomainError
from ..extensions import db
from ..models_base import parse_uuid
from ..money import MoneyError, check_minor, normalize_currency
from .models import Order, OrderItem


class OrderError(DomainError):
    """Invalid order input; ``fields`` maps each bad field to its message."""

    code = "validation_error"

    def __init__(self, fields: dict[str, str]):
        super().__init__("the order is invalid", fields=fields)


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vendorEmail: str = Field(min_length=3, max_length=254)
    description: str = Field(min_length=1, max_length=200)
    quantity: StrictInt = Field(ge=1, le=10_000)
    unitAmount: StrictInt = Field(ge=0, description="minor units")


class OrderIn(BaseModel):
    """Body of POST /api/orders; amounts are integers in the currency's minor unit."""

    model_config = ConfigDict(extra="forbid")
    customerEmail: str = Field(min_length=3, max_length=254)
    currency: str = Field(min_length=3, max_length=3)
    items: list[ItemIn] = Field(min_length=1, max_length=100)
    tax: StrictInt = Field(0, ge=0)
    shipping: StrictInt = Field(0, ge=0)
    discount: StrictInt = Field(0, ge=0)


def _users_by_email(emails: set[str]) -> dict[str, User]:
    rows = db.session.scalars(sa.select(User).where(User.email.in_(emails)))
    return {u.email: u for u in rows}


def create_order(data: OrderIn) -> Order:
    """Validate the parties and the money, then add the order and flush it (its id and
    created_at are set; the caller commits). OrderError names every bad field."""
    errors: dict[str, str] = {}
    try:
        currency = normalize_currency(data.currency)
    except MoneyError as exc:
        errors["currency"] = str(exc)
        currency = "USD"
    emails = {normalize_email(data.customerEmail)} | {
        normalize_email(i.vendorEmail) for i in data.items
    }
    users = _users_by_email(emails)
    customer = users.get(normalize_email(data.customerEmail))
    if customer is None or customer.role != "customer":
        errors["customerEmail"] = "no customer with this e-mail"
    for n, item in enumerate(data.items):
        vendor = users.get(normalize_email(item.vendorEmail))
        if vendor is None or vendor.role != "vendor":
            errors[f"items.{n}.vendorEmail"] = "no vendor with this e-mail"
    amounts = {f"items.{n}.unitAmount": i.unitAmount for n, i in enumerate(data.items)}
    amounts.update(tax=data.tax, shipping=data.shipping, discount=data.discount)
    for field, amount in amounts.items():
        try:
            check_minor(amount, currency, minimum=False)
        except MoneyError as exc:
            errors[field] = str(exc)
    subtotal = sum(i.quantity * i.unitAmount for i in data.items)
    total = subtotal + data.tax + data.shipping - data.discount
    if "discount" not in errors and data.discount > subtotal + data.tax + data.shipping:
        errors["discount"] = "discount is larger than the order"
    elif not errors:
        try:
            check_minor(total, currency)
        except MoneyError as exc:
            errors["total"] = f"order total: {exc}"
    if errors:
        raise OrderError(errors)
    order = Order(
        customer=customer, currency=currency, subtotal=subtotal, tax=data.tax,
        shipping=data.shipping, discount=data.discount, total=total, status="unpaid",
    )
    for n, item in enumerate(data.items):
        order.items.append(OrderItem(
            vendor=users[normalize_email(item.vendorEmail)], position=n,
            description=item.description.strip(), quantity=item.quantity,
            unit_amount=item.unitAmount,
        ))
    db.session.add(order)
    db.session.flush()
    return order


def order_for(user: User, order_id: str | uuid.UUID) -> Order | None:
    """The order if ``user`` may see it (its customer, an admin or a service); None means 404."""
    oid = order_id if isinstance(order_id, uuid.UUID) else parse_uuid(order_id)
    if oid is None:
        return None
    query = sa.select(Order).where(Order.id == oid)
    if user.role not in ("admin", "service"):
        query = query.where(Order.customer_id == user.id)
    return db.session.scalar(query)


def orders_of(user: User) -> list[Order]:
    """A customer's orders, newest first."""
    return list(db.session.scalars(
        sa.select(Order).where(Order.customer_id == user.id).order_by(Order.created_at.desc())
    ).unique())
