"""Admin payment search (/admin/payments): one search box and filters, read from the query
string (so a search is a link: shared, bookmarked, the back button works), a keyset page of
the payments found, newest first, and the CSV export of exactly the same search.

The search box finds a payment by what a customer or a colleague has in hand: an e-mail
(exact, or its beginning), an order number, the payment's or the order's id, a PaymentIntent
id (pi_), a charge id (ch_, py_) or a card's last four digits. Every filter that cannot be
read is reported on its field and nothing is searched; parameters the page does not know are
ignored.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import aliased, joinedload
from werkzeug.datastructures import MultiDict

from ..auth.models import User
from ..database import plan_each_query, stream, uuid_text
from ..days import RANGE, parse_day
from ..extensions import db
from ..ledger.models import PAYMENT_STATUSES, Payment
from ..models_base import parse_uuid
from ..money import SUPPORTED, MoneyError, major_text, parse_amount
from ..orders.models import Order, OrderItem, order_number_of
from .queries import Keyset

PAGE_SIZE = 50
PAYMENTS = Keyset(Payment.created_at, Payment.id)
SOURCES = ("web", "api")
FEW_USERS = 20  # an e-mail's beginning shared by at most this many users: see _customers
MID_VENDOR = (2_000, 20_000)  # a vendor of more items and at most so many: see _sold_by
_LAST4 = re.compile(r"[0-9]{4}")
_ORDER_NUMBER = re.compile(r"#?([0-9A-Fa-f]{8})")
_EMAIL_START = re.compile(r"[A-Za-z0-9._%+'-]+(@[A-Za-z0-9.-]*)?")


@dataclass
class Search:
    """A search as the admin gave it (``given``: the query string's known parameters, kept
    for the links of the page), what it means, and its errors by field."""

    given: dict[str, str | list[str]] = field(default_factory=dict)
    where: list = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    before: tuple | None = None
    after: tuple | None = None

    @property
    def statuses(self) -> list[str]:
        return list(self.given.get("status") or [])


def parse(args: MultiDict) -> Search:
    """Read the query string: the conditions of the search, or an error per field."""
    plan_each_query()  # before the lookups of e-mails and vendors, too
    s = Search()
    _box(s, (args.get("q") or "").strip()[:254])
    statuses = [v for v in args.getlist("status") if v]
    if unknown := [v for v in statuses if v not in PAYMENT_STATUSES]:
        s.errors["status"] = f"Unknown status: {', '.join(unknown)[:60]}."
    elif statuses:
        s.given["status"] = statuses
        s.where.append(Payment.status.in_(statuses))
    currency = _currency(s, (args.get("currency") or "").strip().upper())
    _amounts(s, currency, args.get("min", "").strip(), args.get("max", "").strip())
    _days(s, args.get("from", "").strip(), args.get("to", "").strip())
    _vendor(s, (args.get("vendor") or "").strip().lower())
    if args.get("refunded") == "on":
        s.given["refunded"] = "on"
        s.where.append(Payment.amount_refunded > 0)
    source = args.get("source") or ""
    if source and source not in SOURCES:
        s.errors["source"] = "Choose web or API."
    elif source:
        s.given["source"] = source
        s.where.append(Payment.source == source)
    for name in ("before", "after"):
        if text := args.get(name):
            key = PAYMENTS.parse(text)
            if key is None:
                s.errors["page"] = "This page link is damaged: start again from the first page."
            setattr(s, name, key)
    return s


def _box(s: Search, q: str) -> None:
    if not q:
        return
    s.given["q"] = q
    if q.startswith("pi_"):
        s.where.append(Payment.stripe_payment_intent_id == q)
    elif q.startswith(("ch_", "py_")):
        s.where.append(Payment.stripe_charge_id == q)
    elif (uid := parse_uuid(q)) is not None:
        s.where.append(sa.or_(Payment.id == uid, Payment.order_id == uid))
    elif _LAST4.fullmatch(q):
        s.where.append(Payment.card_last4 == q)
    elif (number := _ORDER_NUMBER.fullmatch(q)) and "@" not in q:
        # An order number is its id's first 8 hex digits: the ids between these two (the
        # primary key's index finds them).
        prefix = number.group(1).lower()
        s.where.append(Payment.order_id.between(uuid.UUID(prefix + "0" * 24),
                                                uuid.UUID(prefix + "f" * 24)))
    elif _EMAIL_START.fullmatch(q):  # an e-mail or its beginning (stored in lower case)
        s.where.append(_customers(q.lower()))
    else:
        s.errors["q"] = ("Search by e-mail, order number, payment or order id, pi_ or ch_ id, "
                         "or a card's last four digits.")


def _customers(start: str):
    """The payments of the users whose e-mail starts with ``start``. A few users: by their
    ids, so that the planner reads each one's payments newest first from
    ix_payments_user_created and knows (from its statistics) that one customer may have
    10,000 of them; through the subquery it would count 10 per user, read them all and sort.
    Many users: by the subquery, and the newest payments are read until a page is full."""
    users = sa.select(User.id).where(User.email.startswith(start, autoescape=True))
    ids = db.session.scalars(users.limit(FEW_USERS + 1)).all()
    return Payment.user_id.in_(ids if len(ids) <= FEW_USERS else users)


def _currency(s: Search, currency: str) -> str | None:
    if not currency:
        return None
    if currency not in SUPPORTED:
        s.errors["currency"] = f"Choose one of {', '.join(sorted(SUPPORTED))}."
        return None
    s.given["currency"] = currency
    s.where.append(Payment.currency == currency)
    return currency


def _amounts(s: Search, currency: str | None, low: str, high: str) -> None:
    if not (low or high):
        return
    if currency is None:
        s.errors["min" if low else "max"] = "Choose a currency to search by amount."
        return
    bounds = []
    for name, text in (("min", low), ("max", high)):
        if not text:
            bounds.append(None)
            continue
        try:
            bounds.append(parse_amount(text, currency, minimum=False))
            s.given[name] = text
        except MoneyError as exc:
            s.errors[name] = str(exc).capitalize()
            return
    if None not in bounds and bounds[0] > bounds[1]:
        s.errors["max"] = "The highest amount must not be below the lowest."
        return
    if bounds[0] is not None:
        s.where.append(Payment.amount >= bounds[0])
    if bounds[1] is not None:
        s.where.append(Payment.amount <= bounds[1])


def _days(s: Search, first: str, last: str) -> None:
    start, end = parse_day(first) if first else None, parse_day(last) if last else None
    if first and start is None:
        s.errors["from"] = f"Enter a day as {RANGE}."
    if last and end is None:
        s.errors["to"] = f"Enter a day as {RANGE}."
    if start and end and start > end:
        s.errors["to"] = "The last day must not be before the first."
    if "from" in s.errors or "to" in s.errors:
        return
    if start:
        s.given["from"] = first
        s.where.append(Payment.created_at >= start)
    if end:
        s.given["to"] = last
        s.where.append(Payment.created_at < end + timedelta(days=1))


def _vendor(s: Search, email: str) -> None:
    if not email:
        return
    vendor = db.session.scalar(sa.select(User.id).where(User.email == email,
                                                        User.role == "vendor"))
    if vendor is None:
        s.errors["vendor"] = "No vendor has this e-mail."
        return
    s.given["vendor"] = email
    s.where.append(_sold_by(vendor))


def _sold_by(vendor: uuid.UUID):
    """The payments of the orders with an item of this vendor, as its size (its items,
    counted up to MID_VENDOR's end on ix_order_items_vendor_order) asks.

    PostgreSQL turns ``order_id IN (subquery)`` into a join, and picks: a small vendor's
    orders, their payments fetched and sorted; a large one's, the payments walked newest
    first, each tested by an index lookup (some 7 us): a page fills within a few hundred.
    In between, the walk reads thousands: 21-47 ms of 1,000,000 payments for vendors of
    3,800-11,600 items. For those the condition is ``(order_id IN (subquery)) IS TRUE``,
    which stays a subquery: a hash of the vendor's orders, built once, tests each payment
    of the walk (5 ms). Not for a large vendor: a hash that would not fit in work_mem makes
    the subquery run again for each payment (19 s for the largest)."""
    items = sa.select(OrderItem.order_id).where(OrderItem.vendor_id == vendor)
    size = db.session.scalar(sa.select(sa.func.count()).select_from(
        items.limit(MID_VENDOR[1] + 1).subquery()))
    sold = Payment.order_id.in_(items)
    return sold.is_(sa.true()) if MID_VENDOR[0] < size <= MID_VENDOR[1] else sold


def summary(s: Search) -> str:
    """What was searched, in words, for the empty state."""
    parts = [f"“{s.given['q']}”"] if s.given.get("q") else []
    if s.statuses:
        parts.append("status " + " or ".join(v.replace("_", " ") for v in s.statuses))
    for name, label in (("currency", "in"), ("vendor", "sold by"), ("source", "from"),
                        ("min", "from"), ("max", "up to"), ("from", "created from"),
                        ("to", "created up to")):
        if s.given.get(name):
            parts.append(f"{label} {s.given[name]}")
    if s.given.get("refunded"):
        parts.append("refunded")
    return ", ".join(parts)


# --- Results --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Found:
    rows: list[Payment]
    vendors: dict  # order id -> the vendors' e-mails
    newer: str | None  # cursors of the Newer / Older links
    older: str | None


def _vendor_emails() -> sa.ScalarSelect:
    """The e-mails of the vendors of a payment's items in one string, space-separated, in
    no particular order and maybe twice (``_vendor_list`` sorts them out): a subquery per
    row on the index of order_items (order_id, vendor_id), where the export's second query
    per batch of rows cost as much again in Python as the rows themselves."""
    vendor = aliased(User)
    return (sa.select(sa.func.aggregate_strings(vendor.email, " "))
            .select_from(OrderItem).join(vendor, vendor.id == OrderItem.vendor_id)
            .where(OrderItem.order_id == Payment.order_id).scalar_subquery())


def _vendor_list(emails: str | None) -> list[str]:
    return sorted(set(emails.split(" "))) if emails else []


def _payments() -> sa.Select:
    return (sa.select(Payment, _vendor_emails())
            .options(joinedload(Payment.order).joinedload(Order.customer)))


def find(s: Search, per_page: int = PAGE_SIZE) -> Found:
    """A page of the payments found, newest first (keyset: stable while payments are added;
    no count of them all, which would read every match)."""
    query = _payments().where(*s.where).limit(per_page + 1)
    if s.after is not None:
        rows = db.session.execute(query.where(PAYMENTS.beyond(s.after, newer=True))
                                  .order_by(Payment.created_at, Payment.id)).all()[::-1]
        more_newer, rows = len(rows) > per_page, rows[-per_page:]
        more_older = True
    else:
        if s.before is not None:
            query = query.where(PAYMENTS.beyond(s.before, newer=False))
        rows = db.session.execute(query.order_by(Payment.created_at.desc(),
                                                 Payment.id.desc())).all()
        more_older, rows = len(rows) > per_page, rows[:per_page]
        more_newer = s.before is not None
    payments = [p for p, _ in rows]
    return Found(payments, {p.order_id: _vendor_list(emails) for p, emails in rows},
                 PAYMENTS.cursor(payments[0]) if rows and more_newer else None,
                 PAYMENTS.cursor(payments[-1]) if rows and more_older else None)


# --- CSV ------------------------------------------------------------------------------------

HEADER = ["created_at", "payment_id", "order", "customer", "amount", "currency", "status",
          "refunded", "card", "source", "payment_intent", "charge", "vendors"]


def _csv_query(s: Search) -> sa.Select:
    """The columns of the CSV, without loading the objects: building a Payment, its Order
    and its User for each row would cost more than everything else the export does. Text,
    numbers and times only (``database.stream``)."""
    # The order's customer is the payment's user (checkout copies it), one join fewer. Not
    # User itself: the e-mail search's subquery must not correlate with it.
    customer = aliased(User)
    return (sa.select(Payment.created_at, uuid_text(Payment.id),
                      order_number_of(uuid_text(Payment.order_id)), customer.email,
                      Payment.amount, Payment.currency, Payment.status, Payment.amount_refunded,
                      Payment.card_brand, Payment.card_last4, Payment.source,
                      Payment.stripe_payment_intent_id, Payment.stripe_charge_id,
                      _vendor_emails())
            .join(customer, customer.id == Payment.user_id)
            .where(*s.where).order_by(Payment.created_at.desc(), Payment.id.desc()))


# A cell a spreadsheet would run as a formula begins with one of these (OWASP, "CSV
# injection"); e-mail addresses may: "=HYPERLINK(...)"@example.com is a valid one.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(value: str) -> str:
    """``value`` as a spreadsheet shows it, never runs it: a leading apostrophe when it could
    start a formula."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _csv_fields(rows) -> list[tuple[str, ...]]:
    return [(at.astimezone(UTC).isoformat(), pid, number, _text_cell(email),
             major_text(amount, currency), currency, status, major_text(refunded, currency),
             f"{brand or 'card'} {last4}" if last4 else "", source or "", intent or "",
             charge or "", _text_cell(" ".join(_vendor_list(vendors))
                                      if vendors and " " in vendors else vendors or ""))
            for (at, pid, number, email, amount, currency, status, refunded, brand, last4,
                 source, intent, charge, vendors) in rows]


def csv_text(rows: list[tuple[str, ...]]) -> str:
    """Lines of CSV, as the csv module writes them (quotes only where needed, CRLF). Fields
    joined by commas are exactly that when no field holds a comma, a quote or a line break,
    which the counts below prove for a whole batch at once; the csv module took half of the
    export's time. A batch where one does is written by the csv module."""
    text = "\r\n".join(map(",".join, rows)) + "\r\n"
    n = len(rows)
    if (text.count(",") == sum(map(len, rows)) - n and '"' not in text
            and text.count("\r") == n and text.count("\n") == n
            and min(map(len, rows)) > 1):  # the csv module quotes a lone empty field
        return text
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def csv_rows(s: Search, batch: int = 5000) -> Iterator[str]:
    """The CSV of every payment the search finds, newest first, a batch of rows at a time
    (constant memory, any number of rows): UTF-8 with a byte-order mark (spreadsheets then
    read it as UTF-8), times in ISO 8601 UTC, amounts in major units with their currency.
    One query, streamed: the rows are those of one moment, and the planner sees the whole
    export (a hash join may beat a lookup per row) where batches of it would each be
    planned as a page."""
    yield "\ufeff" + csv_text([tuple(HEADER)])
    plan_each_query()  # the streaming runs after the request's commit: a transaction of its own
    for rows in stream(_csv_query(s), batch):
        yield csv_text(_csv_fields(rows))


def export_name(now: datetime) -> str:
    return f"payments-{now:%Y%m%d-%H%M%S}.csv"
