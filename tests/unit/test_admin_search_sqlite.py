"""The admin payment search and its CSV on the embedded default, SQLite: the same rows as on
PostgreSQL (where the export streams through psycopg, database.stream), ids written out in
full by the database (database.uuid_text), pages by cursor."""

from __future__ import annotations

import csv
import io

from werkzeug.datastructures import MultiDict

from portal.admin import search
from portal.extensions import db
from portal.orders.models import OrderItem
from tests.helpers import make_user, paid_payment
from tests.unit.test_payouts_sqlite import sqlite_app  # noqa: F401 - the fixture


def test_the_csv_and_the_pages_on_sqlite(sqlite_app):  # noqa: F811
    carol, oscar = make_user("carol@example.com"), make_user("oscar@example.com")
    victor, vera = make_user("victor@example.com", "vendor"), make_user("vera@example.com",
                                                                        "vendor")
    first = paid_payment(carol, victor, 1999)
    db.session.add(OrderItem(order_id=first.order_id, vendor_id=vera.id, position=1,
                             description="Other", quantity=1, unit_amount=1))
    first.card_brand, first.card_last4, first.amount_refunded = "visa", "4242", 500
    yen = paid_payment(oscar, victor, 1500, currency="JPY")
    db.session.commit()

    with sqlite_app.test_request_context("/admin/payments.csv"):
        text = "".join(search.csv_rows(search.parse(MultiDict()), batch=1))
        page = search.find(search.parse(MultiDict({"q": "car"})))
        older = search.find(search.parse(MultiDict()), per_page=1)
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [{k: row[k] for k in ("payment_id", "order", "customer", "amount", "currency",
                                 "refunded", "card", "vendors")} for row in rows] == [
        {"payment_id": str(yen.id), "order": yen.order.number,
         "customer": "oscar@example.com", "amount": "1500", "currency": "JPY",
         "refunded": "0", "card": "", "vendors": "victor@example.com"},
        {"payment_id": str(first.id), "order": first.order.number,
         "customer": "carol@example.com", "amount": "19.99", "currency": "USD",
         "refunded": "5.00", "card": "visa 4242",
         "vendors": "vera@example.com victor@example.com"}]
    assert rows[0]["created_at"].endswith("+00:00")
    assert [p.id for p in page.rows] == [first.id]
    assert page.vendors == {first.order_id: ["vera@example.com", "victor@example.com"]}
    assert [p.id for p in older.rows] == [yen.id] and older.older
    with sqlite_app.test_request_context("/admin/payments"):
        last = search.find(search.parse(MultiDict({"before": older.older})), per_page=1)
    assert [p.id for p in last.rows] == [first.id] and last.newer and not last.older
