"""Payment history's filters (issue 19): statuses in a customer's words, each meaning the
underlying statuses and refunds; days (UTC) with a message under the field at fault; the
pager and HTMX keep them; the JSON API keeps Stripe's statuses."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from portal.extensions import db
from portal.ledger.models import PAYMENT_STATUSES, Payment
from tests.helpers import bearer, login, make_order, make_user

DAY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# (status, amount refunded of 1000) -> the words the page shows; one payment each, a day apart.
KINDS = [
    ("succeeded", 0, "Paid"),
    ("succeeded", 400, "Partially refunded"),
    ("succeeded", 1000, "Refunded"),
    ("pending", 0, "Awaiting payment"),
    ("requires_payment_method", 0, "Awaiting payment"),
    ("requires_confirmation", 0, "Awaiting payment"),
    ("requires_action", 0, "Awaiting payment"),
    ("processing", 0, "Processing"),
    ("failed", 0, "Failed"),
    ("canceled", 0, "Canceled"),
]


@pytest.fixture
def customer(client):
    user = make_user("filters@example.test")
    vendor = make_user("fv@example.test", "vendor")
    for n, (status, refunded, _) in enumerate(KINDS):
        order = make_order(user, vendor, amounts=(1000,))
        db.session.add(Payment(user_id=user.id, order_id=order.id, amount=1000,
                               currency="USD", status=status, amount_refunded=refunded,
                               created_at=DAY + timedelta(days=n)))
    db.session.commit()
    login(client, user.email)
    return user


def statuses_shown(html: str) -> list[str]:
    return re.findall(r'<span class="badge status-[a-z_]+[^"]*">([^<]+)</span>', html)


def test_the_filter_speaks_plain_words(client, customer):
    page = client.get("/payments").text
    options = re.findall(r'<option value="([a-z_]*)"[^>]*>([^<]+)</option>', page)
    assert options == [("", "All"), ("paid", "Paid"),
                       ("partially_refunded", "Partially refunded"), ("refunded", "Refunded"),
                       ("awaiting_payment", "Awaiting payment"), ("processing", "Processing"),
                       ("failed", "Failed"), ("canceled", "Canceled")]
    assert "Requires" not in page  # no Stripe words, in the rows either
    # Newest first: the rows say the state in the same words.
    assert statuses_shown(page) == [words for _, _, words in reversed(KINDS)]
    assert "Partially refunded</span> $4.00" in page  # what a partial refund gave back


@pytest.mark.parametrize("key, words", [
    ("paid", ["Paid"]), ("partially_refunded", ["Partially refunded"]),
    ("refunded", ["Refunded"]), ("awaiting_payment", ["Awaiting payment"] * 4),
    ("processing", ["Processing"]), ("failed", ["Failed"]), ("canceled", ["Canceled"]),
])
def test_each_word_finds_the_payments_behind_it(client, customer, key, words):
    r = client.get(f"/payments?status={key}")
    assert r.status_code == 200 and statuses_shown(r.text) == words


def test_every_status_has_one_word_or_one_per_refund_state():
    from portal.payments.filters import STATES

    for status in PAYMENT_STATUSES:
        held = [s.refunded for s in STATES if status in s.statuses]
        assert held == (["none", "part", "all"] if status == "succeeded" else [None]), status


def test_days_are_utc_and_both_included(client, customer):
    r = client.get("/payments?from=2026-03-02&to=2026-03-04")
    assert r.status_code == 200
    assert statuses_shown(r.text) == ["Awaiting payment", "Refunded", "Partially refunded"]
    assert "Date (UTC)" in r.text and "Dates and times are in UTC" in r.text
    only_from = client.get("/payments?from=2026-03-09")
    assert statuses_shown(only_from.text) == ["Canceled", "Failed"]
    nothing = client.get("/payments?status=paid&from=2026-03-05")
    assert "No payments with status “Paid” from 2026-03-05." in nothing.text


@pytest.mark.parametrize("query, field, message", [
    ("from=2026-02-30", "from", "Enter a date as YYYY-MM-DD"),
    ("to=yesterday", "to", "Enter a date as YYYY-MM-DD"),
    ("from=1999-12-31", "from", "from 2000-01-01 to 2100-12-31"),
    ("from=2026-03-05&to=2026-03-01", "to", "The end date must not be before the start date."),
])
def test_bad_or_reversed_days_get_a_message_under_the_field(client, customer, query, field,
                                                            message):
    r = client.get(f"/payments?{query}")
    assert r.status_code == 400
    assert re.search(rf'id="{field}-filter" type="date" name="{field}" value="[^"]*" '
                     rf'aria-invalid="true" aria-describedby="{field}-filter-error">'
                     rf'<p class="error" id="{field}-filter-error">[^<]*{re.escape(message)}',
                     r.text)
    assert "Nothing was filtered" in r.text and statuses_shown(r.text) == []
    # What was typed stays in the form, to be corrected.
    for value in re.findall(r"=([^&]+)", query):
        assert f'value="{value}"' in r.text


def test_htmx_gets_the_form_and_table_alone_even_when_refused(client, customer):
    ok = client.get("/payments?status=failed", headers={"HX-Request": "true"})
    assert ok.status_code == 200 and "<html" not in ok.text
    assert 'id="history"' in ok.text and 'id="status-filter"' in ok.text
    bad = client.get("/payments?from=2026-03-05&to=2026-03-01", headers={"HX-Request": "true"})
    assert bad.status_code == 400 and "<html" not in bad.text
    assert bad.headers["X-Form-Errors"] == "1"  # portal.js swaps it: the message shows
    assert "The end date must not be before the start date." in bad.text


def test_the_pager_keeps_the_filters(client):
    user = make_user("pager@example.test")
    vendor = make_user("pv@example.test", "vendor")
    for n in range(45):
        order = make_order(user, vendor, amounts=(1000 + n,))
        db.session.add(Payment(user_id=user.id, order_id=order.id, amount=1000 + n,
                               currency="USD", status="failed" if n % 2 else "succeeded",
                               created_at=datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=n)))
    db.session.commit()
    login(client, user.email)
    first = client.get("/payments?status=paid&from=2026-03-01&to=2026-03-02",
                       headers={"HX-Request": "true"})
    assert "Page 1 of 2 (23 payments)" in first.text  # n = 0, 2, ... 44: 03-01 00:00 to 03-02 20:00
    nxt = re.search(r'<a href="([^"]+)" hx-get="[^"]+"[^>]*>Next</a>', first.text).group(1)
    assert "status=paid" in nxt and "from=2026-03-01" in nxt and "to=2026-03-02" in nxt
    second = client.get(nxt.replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert "Page 2 of 2 (23 payments)" in second.text
    assert set(statuses_shown(second.text)) == {"Paid"}


def test_the_json_api_keeps_stripes_statuses(client, customer):
    r = client.get("/api/payments/history?status=requires_confirmation", headers=bearer(customer))
    assert r.status_code == 200 and r.json["pagination"]["totalItems"] == 1
    paid = client.get("/api/payments/history?status=succeeded", headers=bearer(customer))
    assert paid.json["pagination"]["totalItems"] == 3  # refunded or not
    plain = client.get("/api/payments/history?status=paid", headers=bearer(customer))
    assert plain.status_code == 400
