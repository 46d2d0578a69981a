"""Issue 18, item 3: the admin's analytics page, from the daily rollups: a period, one
currency at a time, the change against the period before, charts with their tables."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from portal.analytics import services
from portal.extensions import db
from portal.ledger import splits
from portal.ledger.models import Payment
from portal.payments.services import settle
from portal.refunds.models import RefundRequest
from tests.helpers import login, make_order
from tests.integration.test_rollups import Clock, intent


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(datetime(2026, 3, 1, 9, tzinfo=UTC))
    monkeypatch.setattr("portal.ledger.splits.utcnow", clock)
    monkeypatch.setattr("portal.payments.services.utcnow", clock)
    return clock


def made(customer, vendor, amount: int, currency: str, at: datetime) -> Payment:
    """A payment of a new order, made at ``at``, its intent waiting for 3-D Secure."""
    order = make_order(customer, vendor, currency=currency, amounts=(amount,))
    payment = Payment(user_id=customer.id, order_id=order.id, amount=amount, currency=currency,
                      status="requires_action", subtotal=amount, created_at=at,
                      stripe_payment_intent_id=f"pi_analytics_{order.id.hex[:12]}")
    db.session.add(payment)
    db.session.commit()
    return payment


def sold(clock, customer, vendor, amount: int, currency: str, day: date,
         refunded: int = 0) -> Payment:
    """A payment made and settled on ``day`` (UTC, noon) through the services; refunded the
    next day."""
    clock.now = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    payment = made(customer, vendor, amount, currency, clock.now)
    settle(payment.id, intent(payment, "succeeded"))
    db.session.commit()
    if refunded:  # as the refund's webhook records it
        clock.now += timedelta(days=1)
        db.session.add(RefundRequest(payment_id=payment.id, source="stripe", amount=refunded,
                                     approved_amount=refunded, currency=currency,
                                     reason="requested_by_customer", status="succeeded",
                                     created_at=clock.now))
        payment.amount_refunded = refunded
        splits.sync_refund_lines(payment, {})
        db.session.commit()
    return payment


def query(**args) -> services.Query:
    return services.parse(MultiDict(args), now=date(2026, 3, 31))


@pytest.fixture
def march(clock, people):
    """USD: 3 sales in March (one refunded $20.00), 1 in February; EUR: 1 in March."""
    c, v = people["customer"], people["vendor"]
    for day, amount, refunded in ((date(2026, 3, 2), 10000, 2000), (date(2026, 3, 10), 5000, 0),
                                  (date(2026, 3, 30), 2500, 0), (date(2026, 2, 20), 4000, 0)):
        sold(clock, c, v, amount, "USD", day, refunded)
    sold(clock, people["other"], people["vendor2"], 9900, "EUR", date(2026, 3, 5))
    declined(clock, c, v, 3000, "USD", date(2026, 3, 12), "insufficient_funds")
    declined(clock, c, v, 3000, "USD", date(2026, 3, 13), "card_declined",
             code_after=None)  # the customer is asked for another card: no outcome yet


def declined(clock, customer, vendor, amount: int, currency: str, day: date, code: str, *,
             code_after: str | None = "") -> Payment:
    """A payment declined on ``day``; with ``code_after`` None the intent then waits for
    another card (no outcome)."""
    payment = made(customer, vendor, amount, currency,
                   datetime.combine(day, datetime.min.time(), tzinfo=UTC))
    settle(payment.id, intent(payment, "requires_payment_method", code))
    db.session.commit()
    if code_after is None:
        settle(payment.id, intent(payment, "requires_payment_method"))
        db.session.commit()
    return payment


def test_the_figures_of_a_period_in_one_currency(march, people):
    f = services.figures(query(period="custom", **{"from": "2026-03-01", "to": "2026-03-30"}))
    assert (f.query.currency, f.query.days) == ("USD", 30)  # the most active one by default
    assert (f.current.payments, f.current.volume, f.current.refunded) == (3, 17500, 2000)
    # Fees at the platform's 10 %: 1,750 on the sales, 200 given back with the refund.
    assert (f.current.fees, f.current.fees_returned, f.current.net_revenue) == (1750, 200, 1550)
    assert f.current.average == 5833  # $175.00 / 3, rounded
    assert (f.previous.payments, f.previous.volume) == (1, 4000)  # Jan 30 - Feb 28
    assert services.change(f.current.volume, f.previous.volume) == pytest.approx(3.375)
    assert [v.email for v in f.top_by_gross] == [people["vendor"].email]
    assert len(f.series) == 30 and f.series[1].volume == 10000 and f.series[2].refunded == 2000
    assert f.currencies == ["USD", "EUR"]
    assert (f.current.customers, f.current.new_customers) == (1, 0)  # first paid in February
    assert (f.previous.customers, f.previous.new_customers) == (1, 1)
    eur = services.figures(query(period="custom", currency="EUR",
                                 **{"from": "2026-03-01", "to": "2026-03-30"}))
    assert (eur.current.payments, eur.current.volume) == (1, 9900)  # never added to USD


def test_the_page_shows_the_figures_charts_and_their_tables(client, march, people, monkeypatch):
    monkeypatch.setattr(services, "today", lambda: date(2026, 3, 31))
    login(client, people["admin"].email)
    r = client.get("/admin/analytics", query_string={"period": "30d", "currency": "USD"})
    assert r.status_code == 200
    text = r.text
    assert "Last 30 days: 2026-03-02 to 2026-03-31, in USD" in text
    assert re.search(r"<dt>Gross volume</dt><dd>\$175\.00</dd>", text)  # Mar 2 is in
    assert "<dt>Success rate</dt><dd>75.0 %</dd><dd>3 of 4 payments made;" in text
    assert "<dt>Paying customers</dt><dd>1</dd><dd>0 new, 1 returning;" in text
    assert "<dd>1 refund asked for in the period</dd>" in text
    assert "<tr><td>Insufficient funds</td><td class=\"num\">1</td></tr>" in text
    assert "<tr><td>2026-03-03</td><td class=\"num\">—</td></tr>" in text  # no attempts
    for title in ("Gross volume", "Net revenue", "Success rate", "Refunded", "Payments"):
        assert f"{title}, per day (UTC)</figcaption>" in text
        assert f'<table aria-label="{title} per day">' in text
    assert "<title>2026-03-10: $50.00</title>" in text
    assert re.search(r'<option value="EUR"\s*>EUR</option>', text)  # the switcher


@pytest.mark.parametrize(("args", "field", "message"), [
    ({"period": "forever"}, "period", "Choose one of: Last 7 days"),
    ({"period": "custom", "to": "2026-03-01"}, "from", "Enter a date."),
    ({"period": "custom", "from": "2026-02-30", "to": "2026-03-01"}, "from", "Enter a date: "),
    ({"period": "custom", "from": "2026-03-05", "to": "2026-03-01"}, "to",
     "The end must not be before the start."),
    ({"period": "custom", "from": "2020-01-01", "to": "2026-03-01"}, "to", "Choose at most 731"),
    ({"currency": "XYZ"}, "currency", "Unknown currency: XYZ."),
])
def test_a_value_that_cannot_be_read_shows_its_message_and_nothing_else(client, people, args,
                                                                        field, message):
    login(client, people["admin"].email)
    r = client.get("/admin/analytics", query_string={**args, "unknown": "ignored"})
    assert r.status_code == 400
    assert f'id="a-{field}-error">{message}' in r.text
    assert "Nothing was shown: correct the fields marked above." in r.text
    assert "<svg" not in r.text


def test_a_custom_range_just_chosen_starts_as_the_last_30_days():
    q = query(period="custom")
    assert (q.errors, q.start, q.last, q.given["from"], q.given["to"]) == (
        {}, date(2026, 3, 2), date(2026, 3, 31), "2026-03-02", "2026-03-31")


def test_analytics_is_not_there_for_other_roles(app, people):
    for role in ("customer", "vendor"):
        client = app.test_client()
        login(client, people[role].email)
        assert client.get("/admin/analytics").status_code == 404


def test_an_empty_period_says_so(client, people, clock):
    login(client, people["admin"].email)
    r = client.get("/admin/analytics", query_string={"period": "7d"})
    assert r.status_code == 200
    assert "No sales in this period." in r.text and "no earlier figure" in r.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 0


def test_the_same_figures_as_json_for_admins_and_services(client, march, people):
    from tests.helpers import bearer, make_user

    args = {"from": "2026-03-01", "to": "2026-03-30", "currency": "usd", "unknown": "x"}
    for user in (people["admin"], make_user("reports@example.test", "service")):
        r = client.get("/api/payments/analytics", query_string=args, headers=bearer(user))
        assert r.status_code == 200, r.text
        body = r.json
        assert (body["currency"], body["currencies"]) == ("usd", ["usd", "eur"])
        assert body["period"] == {"start": "2026-03-01", "end": "2026-03-30", "days": 30}
        assert body["previousPeriod"] == {"start": "2026-01-30", "end": "2026-02-28",
                                          "days": 30}
        assert body["totals"] == {"payments": 3, "grossVolume": 17500, "platformFees": 1750,
                                  "feesReturned": 200, "netRevenue": 1550, "refunded": 2000,
                                  "refundRate": 2000 / 17500, "refunds": 1,
                                  "averageOrderValue": 5833,
                                  "succeeded": 3, "failed": 1, "successRate": 0.75,
                                  "customers": 1, "newCustomers": 0, "returningCustomers": 1}
        # Carol first paid in USD in February: returning in March.
        assert body["previousTotals"]["grossVolume"] == 4000
        assert len(body["daily"]) == 30 and body["daily"][1] == {
            "date": "2026-03-02", "payments": 1, "grossVolume": 10000, "netRevenue": 1000,
            "refunded": 0, "successRate": 1.0}
        assert body["declines"] == [{"reason": "Insufficient funds", "payments": 1}]
        assert [v["email"] for v in body["topVendorsByFees"]] == [people["vendor"].email]


@pytest.mark.parametrize(("args", "field"), [
    ({"from": "2026-13-01", "to": "2026-03-01"}, "from"),
    ({"from": "2026-03-01"}, "to"),
    ({"from": "2026-03-05", "to": "2026-03-01"}, "to"),
    ({"currency": "bitcoin"}, "currency"),
])
def test_the_api_refuses_what_it_cannot_read_with_the_field(client, people, args, field):
    from tests.helpers import bearer

    r = client.get("/api/payments/analytics", query_string=args,
                   headers=bearer(people["admin"]))
    assert r.status_code == 400
    assert r.json["success"] is False and field in r.json["error"]["fields"]


def test_the_api_is_for_admins_and_services_only(client, people):
    from tests.helpers import bearer

    for role in ("customer", "vendor"):
        r = client.get("/api/payments/analytics", headers=bearer(people[role]))
        assert r.status_code == 403
    assert client.get("/api/payments/analytics").status_code == 401
