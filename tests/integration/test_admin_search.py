"""Admin payment search (issue 18, item 1): the search box, the filters, keyset pages that stay
stable while payments come in, field messages for what cannot be read, and the CSV export of
exactly the same search."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from werkzeug.datastructures import MultiDict

from portal.extensions import db
from portal.models_base import utcnow
from tests.helpers import login, make_user, paid_payment
from tests.integration.api_support import pay


@pytest.fixture
def admin(client, people):
    login(client, people["admin"].email)
    return client


def found(client, **params) -> list[str]:
    """The order numbers in the results, top to bottom."""
    r = client.get("/admin/payments", query_string=params)
    assert r.status_code == 200, r.text
    return re.findall(r">#([0-9A-F]{8})</a></td>", r.text)


def number(payment) -> str:
    return payment.order.number


def test_the_box_finds_a_payment_by_what_support_has_in_hand(admin, people, stripe_client):
    paid = pay(stripe_client, people["customer"], people["vendor"])
    other = paid_payment(people["other"], people["vendor"], 500)
    me = number(paid)
    for q in ("carol@example.test", "CAROL@", "car", paid.stripe_payment_intent_id,
              paid.stripe_charge_id, "4242", f"#{me}", me.lower(), str(paid.id),
              str(paid.order_id)):
        assert found(admin, q=q) == [me], q
    assert found(admin, q="oscar@") == [number(other)]
    assert found(admin) == [number(other), me]  # no search: every payment, newest first
    page = admin.get("/admin/payments", query_string={"q": "nobody@example.test"}).text
    assert "No payments match “nobody@example.test”." in page


def test_an_email_beginning_that_many_customers_share_finds_them_all(admin, people,
                                                                     monkeypatch):
    from portal.admin import search

    carol = paid_payment(people["customer"], people["vendor"], 100)
    carl = paid_payment(make_user("carl@example.test", "customer"), people["vendor"], 200)
    assert found(admin, q="car") == [number(carl), number(carol)]  # by the users' ids
    monkeypatch.setattr(search, "FEW_USERS", 1)
    assert found(admin, q="car") == [number(carl), number(carol)]  # by their subquery
    assert found(admin, q="carl") == [number(carl)]


def test_a_vendor_of_any_size_finds_its_payments(admin, people, monkeypatch):
    from portal.admin import search

    mine = [paid_payment(people["other"], people["vendor2"], 100 + i) for i in range(3)]
    paid_payment(people["customer"], people["vendor"], 500)
    expected = [number(p) for p in reversed(mine)]
    for sizes in ((2_000, 20_000), (2, 20)):  # small, then "mid-size" (a kept subquery)
        monkeypatch.setattr(search, "MID_VENDOR", sizes)
        assert found(admin, vendor="victor@example.test") == expected
        csv = admin.get("/admin/payments.csv", query_string={"vendor": "victor@example.test"})
        assert csv.data.decode().count("\n") == 1 + 3


def test_a_search_is_planned_for_its_values(test_app):
    """PostgreSQL would otherwise settle on one generic plan for a search's every value,
    and compile the export's batches (database.plan_each_query)."""
    import sqlalchemy as sa

    from portal.admin import search

    with test_app.test_request_context("/admin/payments"):
        search.find(search.parse(MultiDict({"currency": "USD", "min": "1"})))
        assert db.session.execute(sa.text(
            "SELECT current_setting('plan_cache_mode'), current_setting('jit')")).one() == (
            "force_custom_plan", "off")


def test_filters_narrow_the_results_and_stay_in_the_links(admin, people, stripe_client):
    usd = paid_payment(people["customer"], people["vendor"], 1999)
    eur = paid_payment(people["customer"], people["vendor2"], 5000, currency="EUR")
    failed = paid_payment(people["other"], people["vendor"], 7000)
    failed.status = "failed"
    eur.amount_refunded, eur.source = 1000, "api"
    db.session.commit()
    assert found(admin, status=["failed", "canceled"]) == [number(failed)]
    assert found(admin, status=["succeeded"], currency="USD") == [number(usd)]
    assert found(admin, currency="USD", min="19.99", max="20") == [number(usd)]
    assert found(admin, currency="EUR", min="50.01") == []
    assert found(admin, refunded="on") == [number(eur)]
    assert found(admin, source="api") == [number(eur)]
    assert found(admin, vendor="victor@example.test") == [number(eur)]
    today = utcnow().date()
    assert len(found(admin, **{"from": str(today), "to": str(today)})) == 3
    assert found(admin, **{"from": str(today + timedelta(days=1))}) == []
    assert found(admin, unknown="x", currency="EUR") == [number(eur)]  # unknown: ignored
    page = admin.get("/admin/payments", query_string={"status": ["failed"]}).text
    assert 'value="failed" checked' in page


@pytest.mark.parametrize(("params", "message"), [
    ({"status": "lost"}, "Unknown status: lost."),
    ({"currency": "XXX"}, "Choose one of AUD, CAD"),
    ({"min": "10"}, "Choose a currency to search by amount."),
    ({"currency": "USD", "min": "ten"}, "is not a number"),
    ({"currency": "USD", "min": "9", "max": "5"}, "must not be below the lowest"),
    ({"from": "2026-13-01"}, "Enter a day as"),
    ({"from": "2026-12-02", "to": "2026-12-01"}, "must not be before the first"),
    ({"vendor": "carol@example.test"}, "No vendor has this e-mail."),
    ({"source": "fax"}, "Choose web or API."),
    ({"q": "what about this"}, "Search by e-mail, order number"),
    ({"before": "20261205.not-a-cursor"}, "This page link is damaged"),
])
def test_what_cannot_be_read_is_said_on_its_field_and_nothing_is_searched(
        admin, people, params, message):
    paid_payment(people["customer"], people["vendor"], 1999)
    r = admin.get("/admin/payments", query_string=params)
    assert r.status_code == 400 and message in r.text
    assert "Payments found" not in r.text and "Nothing was searched" in r.text \
        or "damaged" in message
    assert admin.get("/admin/payments.csv", query_string=params).status_code == 400
    # HTMX swaps the form with its messages: the 400 says so (static/js/portal.js).
    swapped = admin.get("/admin/payments", query_string=params, headers={"HX-Request": "true"})
    assert swapped.status_code == 400 and swapped.headers["X-Form-Errors"] == "1"


def test_pages_by_cursor_stay_stable_while_payments_come_in(admin, people):
    payments = [paid_payment(people["customer"], people["vendor"], 100 + i) for i in range(55)]
    start = utcnow() - timedelta(days=1)
    for i, p in enumerate(payments):  # one a minute, the last the newest
        p.created_at = start + timedelta(minutes=i)
    db.session.commit()
    first = admin.get("/admin/payments").text
    assert len(re.findall(r">#[0-9A-F]{8}</a></td>", first)) == 50
    older = re.search(r'href="(/admin/payments\?before=[^"]+)"', first).group(1)
    paid_payment(people["other"], people["vendor"], 999)  # a new payment meanwhile
    second = admin.get(older.replace("&amp;", "&")).text
    assert re.findall(r">#([0-9A-F]{8})</a></td>", second) == [
        number(p) for p in reversed(payments[:5])]
    newer = re.search(r'href="(/admin/payments\?after=[^"]+)"', second).group(1)
    back = admin.get(newer.replace("&amp;", "&")).text
    assert re.findall(r">#([0-9A-F]{8})</a></td>", back) == [
        number(p) for p in reversed(payments[5:])]


def test_the_csv_is_exactly_the_search(admin, people):
    from portal.orders.models import OrderItem

    kept = paid_payment(people["customer"], people["vendor2"], 1999)
    kept.card_brand, kept.card_last4 = "visa", "4242"
    for vendor in (people["vendor"], people["vendor2"]):  # two vendors, one twice
        db.session.add(OrderItem(order_id=kept.order_id, vendor_id=vendor.id, position=1,
                                 description="More", quantity=1, unit_amount=1))
    paid_payment(people["customer"], people["vendor"], 5000, currency="EUR")
    yen = paid_payment(people["other"], people["vendor"], 1500, currency="JPY")
    db.session.commit()
    r = admin.get("/admin/payments.csv", query_string={"currency": "USD"})
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    text = r.data.decode("utf-8")
    assert text.startswith("\ufeffcreated_at,payment_id,order,customer,amount,currency")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [(row["payment_id"], row["order"], row["amount"], row["currency"], row["card"],
             row["vendors"]) for row in rows] == [
        (str(kept.id), number(kept), "19.99", "USD", "visa 4242",
         "vera@example.test victor@example.test")]
    assert rows[0]["created_at"].endswith("+00:00")
    yen_rows = list(csv.DictReader(io.StringIO(admin.get(
        "/admin/payments.csv", query_string={"currency": "JPY"}).data.decode().lstrip("\ufeff"))))
    assert [(row["amount"], row["customer"]) for row in yen_rows] == [
        ("1500", "oscar@example.test")]
    assert yen.currency == "JPY"


def test_an_email_a_spreadsheet_would_run_as_a_formula_is_kept_as_text(admin, people):
    """OWASP's CSV injection: a cell beginning with = + - @ opens as a formula. The
    addresses are valid ones; the CSV keeps them as text behind an apostrophe."""
    buyer = make_user('=HYPERLINK("http://evil.example")@example.test', "customer")
    seller = make_user("-2+3@example.test", "vendor")
    paid_payment(buyer, seller, 700)
    db.session.commit()
    text = admin.get("/admin/payments.csv").data.decode().lstrip("\ufeff")
    [row] = [r for r in csv.DictReader(io.StringIO(text)) if r["amount"] == "7.00"]
    assert (row["customer"], row["vendors"]) == (
        '\'=hyperlink("http://evil.example")@example.test', "'-2+3@example.test")


def test_the_csv_streams_any_number_of_rows_in_batches(test_app, people):
    from portal.admin import search

    for i in range(7):
        paid_payment(people["customer"], people["vendor"], 100 + i)
    with test_app.test_request_context("/admin/payments.csv"):
        chunks = list(search.csv_rows(search.parse(MultiDict()), batch=3))
    assert len(chunks) == 1 + 3  # the header, then batches of 3, 3 and 1
    assert sum(chunk.count("\n") for chunk in chunks) == 8


def test_an_export_stopped_half_way_leaves_the_connection_usable(test_app, people):
    """A client that goes away closes the stream: its query is cancelled and the request's
    teardown rolls back, as it does here."""
    import sqlalchemy as sa

    from portal.admin import search
    from portal.ledger.models import Payment

    for i in range(5):
        paid_payment(people["customer"], people["vendor"], 100 + i)
    with test_app.test_request_context("/admin/payments.csv"):
        chunks = search.csv_rows(search.parse(MultiDict()), batch=1)
        assert next(chunks).startswith("\ufeffcreated_at") and next(chunks).count("\n") == 1
        chunks.close()
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count(Payment.id))) == 5


def test_only_admins_reach_the_search(app, people):
    for who in (people["customer"], make_user("vince@example.test", "vendor")):
        other = app.test_client()
        login(other, who.email)
        assert other.get("/admin/payments").status_code == 404
        assert other.get("/admin/payments.csv").status_code == 404
