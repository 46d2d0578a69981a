"""Payment history: own payments only, newest first, status filter in plain words, days,
HTMX partial and the pager keeping the filters."""

from datetime import UTC, datetime, timedelta

import pytest

from portal.extensions import db
from portal.ledger.models import Payment
from tests.helpers import login, make_order, make_user


@pytest.fixture
def history_owner():
    customer = make_user("hist@example.test")
    vendor = make_user("hv@example.test", "vendor")
    stranger = make_user("stranger@example.test")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(25):
        order = make_order(customer, vendor, currency="EUR", amounts=(1000 + n,))
        db.session.add(Payment(
            user_id=customer.id, order_id=order.id, amount=order.total, currency="EUR",
            status="succeeded" if n % 5 else "failed", card_brand="mastercard",
            card_last4="4444", created_at=base + timedelta(days=n),
        ))
    other = make_order(stranger, vendor, amounts=(7777,))
    db.session.add(Payment(user_id=stranger.id, order_id=other.id, amount=7777, currency="USD",
                           status="succeeded"))
    db.session.commit()
    return customer


def test_history_pages_newest_first_with_card_and_amount(client, history_owner):
    login(client, history_owner.email)
    r = client.get("/payments")
    assert r.status_code == 200
    assert "Page 1 of 2 (25 payments)" in r.text
    assert r.text.index("€10.24") < r.text.index("€10.23")  # newest first
    assert "Mastercard •••• 4444" in r.text and "$77.77" not in r.text
    page2 = client.get("/payments?page=2")
    assert "Page 2 of 2" in page2.text and "€10.00" in page2.text


def test_status_filter_and_htmx_partial(client, history_owner):
    login(client, history_owner.email)
    r = client.get("/payments?status=failed", headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert "<html" not in r.text and 'id="history"' in r.text
    assert "(5 payments)" in r.text and "Succeeded" not in r.text
    assert "HX-Request" in r.headers.get("Vary", "")


def test_a_damaged_page_number_falls_back_to_the_first_page(client, history_owner):
    login(client, history_owner.email)
    r = client.get("/payments?page=-3")
    assert r.status_code == 200 and "Page 1 of 2 (25 payments)" in r.text


def test_an_unknown_status_is_refused_with_a_field_message(client, history_owner):
    login(client, history_owner.email)
    r = client.get("/payments?status=requires_confirmation")
    assert r.status_code == 400
    assert "Choose a status from the list." in r.text
    assert 'aria-invalid="true"' in r.text and "Nothing was filtered" in r.text
    assert 'aria-label="Payments"' not in r.text
