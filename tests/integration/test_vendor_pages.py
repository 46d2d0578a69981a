"""Vendor pages a seller understands (issue 19, item 2): each vendor sees their own items,
refunds and share of an order with several vendors; one chart per currency; the available and
pending balance; statements of any period; payouts listed by order number."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger.models import SplitLine
from portal.models_base import utcnow
from portal.money import format_minor
from tests.helpers import login
from tests.integration.test_payouts import pay, run_now
from tests.integration.test_refund_after_payout import refund

CARD_PENDING = "4242424242424242"  # its funds become available at Stripe days later


def money(amount: int, currency: str = "USD") -> str:
    return format_minor(amount, currency)


def vendor_lines(payment, vendor, kind: str) -> list[SplitLine]:
    return list(db.session.scalars(sa.select(SplitLine).where(
        SplitLine.payment_id == payment.id, SplitLine.vendor_id == vendor.id,
        SplitLine.kind == kind).order_by(SplitLine.created_at)))


def as_(client, person) -> None:
    client.post("/logout")
    login(client, person.email)


@pytest.fixture
def shared_order(people, stripe_client):
    """A paid order of $66.67 of vera's ("Item 0") and $33.33 of victor's ("Other"), with
    $8.00 of tax and $5.00 of shipping; then a $10.00 refund (borne by whoever the refund
    rule says: the pages show each vendor their own refund lines)."""
    payment = pay(stripe_client, people["customer"], people["vendor"], amounts=(6667,),
                  vendor2=people["vendor2"], tax=800, shipping=500)
    refund(people, payment, 1000)
    return payment


def sales_row(page: str, number: str) -> str:
    row = re.search(rf"<tr>\s*<td>[^<]*</td>\s*<td><a [^>]*>#{number}</a>.*?</tr>", page, re.S)
    assert row, f"no row for order #{number}"
    return row.group(0)


def test_each_vendor_sees_their_items_their_refunds_and_their_net(client, people,
                                                                  shared_order):
    number = shared_order.order.number
    for me, mine, theirs in ((people["vendor"], "Item 0", "Other"),
                             (people["vendor2"], "Other", "Item 0")):
        as_(client, me)
        row = sales_row(client.get("/vendor/sales").text, number)
        [sale] = vendor_lines(shared_order, me, "sale")
        refunded = sum(line.gross for line in vendor_lines(shared_order, me, "refund"))
        net = sale.net + sum(line.net for line in vendor_lines(shared_order, me, "refund"))
        assert f"{mine} × 1" in row and theirs not in row
        assert "Paid, partly refunded" in row
        assert (money(refunded) if refunded else "None") in row
        assert money(net) in row
        assert "$10.00" not in row  # the order's refund is not the vendor's
        assert f'href="/vendor/sales/{shared_order.id}"' in row
        assert f'href="/vendor/sales/{shared_order.id}/refund"' in row


def test_the_order_page_shows_how_the_share_was_computed(client, people, shared_order):
    login(client, people["vendor"].email)
    page = client.get(f"/vendor/sales/{shared_order.id}").text
    [sale] = vendor_lines(shared_order, people["vendor"], "sale")
    refunds_ = vendor_lines(shared_order, people["vendor"], "refund")
    assert f"Order #{shared_order.order.number}" in page and "Paid, partly refunded" in page
    assert "Item 0" in page and "Other" not in page  # victor's item is not shown
    assert "$66.67 of the order's $100.00 of items" in page
    # 2/3 of $8.00 tax and of $5.00 shipping (rounded half up); the parts add up exactly.
    assert "$5.33" in page and "$3.33" in page
    rounding = sale.gross - (6667 + 533 + 333)
    assert ("Rounding" in page) == (rounding != 0)
    assert money(sale.gross) in page and money(-sale.fee) in page and money(sale.net) in page
    assert refunds_, "the $10.00 refund took something back from vera"
    for line in refunds_:
        assert money(line.gross) in page and money(-line.fee) in page
    assert money(sale.net + sum(line.net for line in refunds_)) in page
    assert "Not paid out yet: in your next payout" in page
    assert f'href="/vendor/sales/{shared_order.id}/refund"' in page
    assert "4242" not in page  # never the customer's card


def test_an_order_without_the_vendors_items_is_a_404(client, people, stripe_client,
                                                     shared_order):
    alone = pay(stripe_client, people["customer"], people["vendor2"], amounts=(2000,))
    login(client, people["vendor"].email)
    assert client.get(f"/vendor/sales/{alone.id}").status_code == 404
    assert client.get("/vendor/sales/not-a-uuid").status_code == 404
    as_(client, people["outsider"])
    assert client.get(f"/vendor/sales/{shared_order.id}").status_code == 404
    as_(client, people["customer"])
    assert client.get(f"/vendor/sales/{shared_order.id}").status_code == 403


def test_a_payout_lists_its_payments_by_order_number_linking_to_each_order(
        client, people, stripe_client, shared_order):
    [payout] = [p for p in run_now().payouts if p.vendor_id == people["vendor"].id]
    number = shared_order.order.number
    login(client, people["vendor"].email)
    page = client.get(f"/vendor/payouts/{payout.id}").text
    assert f'<a href="/vendor/sales/{shared_order.id}">#{number}</a>' in page
    assert f"of {shared_order.created_at:%Y-%m-%d}" in page
    assert page.count(f">{shared_order.id}<") == 0  # no bare UUIDs
    order_page = client.get(f"/vendor/sales/{shared_order.id}").text
    assert f'href="/vendor/payouts/{payout.id}"' in order_page  # and back
    as_(client, people["admin"])
    page = client.get(f"/vendor/payouts/{payout.id}").text
    assert f'<a href="/admin/payments/{shared_order.id}">#{number}</a>' in page


def test_the_dashboard_explains_sales_and_charts_each_currency(client, people, stripe_client):
    usd = pay(stripe_client, people["customer"], people["vendor"], amounts=(10000,))
    eur = pay(stripe_client, people["customer"], people["vendor"], amounts=(5000,),
              currency="EUR")
    login(client, people["vendor"].email)
    page = client.get("/vendor").text
    assert "your items plus the same proportion of the order's tax and shipping" in page
    for payment, currency in ((usd, "USD"), (eur, "EUR")):
        title = f"Net sales in {currency}, last 30 days"
        figure = re.search(rf'<figure class="chart" aria-labelledby="(chart-net-\w+)-title">'
                           rf'\s*<figcaption id="\1-title">{title}, per day \(UTC\)'
                           r"</figcaption>(.*?)</figure>", page, re.S)
        assert figure, f"no {currency} chart"
        svg = figure.group(2)
        assert 'role="img"' in svg and f'aria-labelledby="{figure.group(1)}-title"' in svg
        net = vendor_lines(payment, people["vendor"], "sale")[0].net
        assert f"{utcnow():%Y-%m-%d}: {money(net, currency)}</title>" in svg  # the bar
        assert f"<td>{utcnow():%Y-%m-%d}</td><td class=\"num\">{money(net, currency)}" in svg
        # No day below zero: the zero line is the bottom axis, labelled, not mid-height.
        zero = re.search(rf'y="([\d.]+)" text-anchor="end">{re.escape(money(0, currency))}<',
                         svg)
        assert zero and float(zero.group(1)) == 200 - 24 + 4
        assert re.search(rf'text-anchor="end">{re.escape(money(net, currency))}<', svg)


def test_the_balance_splits_available_from_pending_funds(client, people, stripe_client):
    pay(stripe_client, people["customer"], people["vendor"], amounts=(10000,))  # available
    pay(stripe_client, people["customer"], people["vendor"], amounts=(4000,),
        number=CARD_PENDING)
    login(client, people["vendor"].email)
    page = client.get("/vendor").text
    balance = re.search(r'<table aria-label="Balance".*?</table>', page, re.S).group(0)
    assert re.search(r"<td>USD</td><td class=\"num\">\$90.00</td><td class=\"num\">\$36.00"
                     r"</td><td class=\"num\">\$126.00</td>", balance)
    [payout] = run_now().payouts  # the available sale is paid out, the other waits
    payout.status = "paid"
    db.session.commit()
    balance = re.search(r'<table aria-label="Balance".*?</table>', client.get("/vendor").text,
                        re.S).group(0)
    assert "<td>USD</td><td class=\"num\">$0.00</td><td class=\"num\">$36.00" in balance


def statement_rows(response) -> list[list[str]]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.text)))


def test_a_statement_of_any_period(client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"], amounts=(2500,))
    login(client, people["vendor"].email)
    page = client.get("/vendor").text
    today, past = utcnow().date(), utcnow().date() - timedelta(days=200)
    assert f'name="from" value="{today - timedelta(days=29)}"' in page
    assert f'name="to" value="{today}"' in page
    r = client.get(f"/vendor/statement.csv?from={past}&to={today}")
    assert f"statement-{past:%Y%m%d}-{today:%Y%m%d}.csv" in r.headers["Content-Disposition"]
    rows = statement_rows(r)
    assert rows[0][:2] == ["date", "order"]
    assert [r[1:4] for r in rows[1:-1]] == [[f"#{payment.order.number}", str(payment.id),
                                             "sale"]]
    old = statement_rows(client.get(f"/vendor/statement.csv?from={past}&to={past}"))
    assert old == [rows[0]]  # nothing that day: the header only


@pytest.mark.parametrize(("query", "field", "message"), [
    ("from=2026-13-01&to=2026-02-01", "from", "Enter the first day as YYYY-MM-DD"),
    ("from=2026-01-01&to=yesterday", "to", "Enter the last day as YYYY-MM-DD"),
    ("from=2026-03-01&to=2026-02-01", "to", "The last day must be on or after the first day."),
    ("from=2024-01-01&to=2025-01-01", "to", "A statement covers at most 366 days"),
])
def test_a_bad_statement_period_shows_the_form_again_with_its_message(
        client, people, query, field, message):
    login(client, people["vendor"].email)
    r = client.get(f"/vendor/statement.csv?{query}")
    assert r.status_code == 400 and r.mimetype == "text/html"
    assert "Vendor dashboard" in r.text
    assert re.search(rf'<input type="date" id="statement-{field}" name="{field}" '
                     rf'value="[^"]*" required aria-describedby="statement-{field}-error '
                     rf'statement-hint" aria-invalid="true">', r.text)
    assert f'<p class="error" id="statement-{field}-error">{message}' in r.text
    # What was typed stays in the form.
    for name, value in (pair.split("=") for pair in query.split("&")):
        assert f'name="{name}" value="{value}"' in r.text


def test_a_year_is_the_longest_statement(client, people):
    login(client, people["vendor"].email)
    assert client.get("/vendor/statement.csv?from=2024-01-01&to=2024-12-31").status_code == 200
