"""Issue 18, item 4: the daily rollups the back office reads (portal/ledger/rollups.py) are
kept in the transactions that move money, and always equal both a rebuild from the source
rows and a plain aggregation of those rows, to the minor unit.

The data is random (a seeded generator): payments of one to three vendors in USD, EUR, JPY
and KWD, declined first and paid later, settled days after they were made (late webhooks), a
payout run, then refunds in part days later (of lines paid out and not), again, and a refund
failing after it succeeded.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import rollups, splits
from portal.ledger.models import (
    CustomerDays,
    DailyAttempts,
    DailyPayments,
    DailySales,
    FirstPayments,
    Payment,
    SplitLine,
)
from portal.orders.models import OrderItem
from portal.payments.services import settle
from portal.payouts.services import run_payouts
from portal.stripe_gateway import Intent
from tests.helpers import make_order, make_user

CURRENCIES = ("USD", "EUR", "JPY", "KWD")


class Clock:
    """utcnow() of the ledger and the payments, moved by the scenario."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def intent(payment: Payment, status: str, failure_code: str | None = None,
           funds_at: datetime | None = None) -> Intent:
    return Intent(id=payment.stripe_payment_intent_id, status=status, amount=payment.amount,
                  currency=payment.currency, client_secret=None, created=1, metadata={},
                  failure_code=failure_code,
                  funds_available_at=int(funds_at.timestamp()) if funds_at else 1_900_000_000,
                  charge_id=f"ch_{payment.id.hex[:12]}" if status == "succeeded" else None)


def scenario(seed: int, payments: int, clock: Clock) -> None:
    """Random payments, outcomes and refunds through the services that move money."""
    rng = random.Random(seed)
    vendors = [make_user(f"rollup-vendor{i}@example.test", "vendor") for i in range(3)]
    customers = [make_user(f"rollup-customer{i}@example.test") for i in range(4)]
    start = clock.now
    paid: list[Payment] = []
    for n in range(payments):
        currency = rng.choice(CURRENCIES)
        step = 10 if currency == "KWD" else 1
        sellers = rng.sample(vendors, rng.randint(1, 3))
        amounts = [rng.randint(1, 40_000) * step for _ in sellers]
        order = make_order(rng.choice(customers), sellers[0], currency=currency,
                           amounts=amounts[:1])
        for position, (vendor, amount) in enumerate(zip(sellers[1:], amounts[1:],
                                                         strict=True), start=2):
            db.session.add(OrderItem(order_id=order.id, vendor_id=vendor.id, position=position,
                                     description="More", quantity=1, unit_amount=amount))
            order.subtotal += amount
            order.total += amount
        total = sum(amounts) + rng.choice((0, 0, 5 * step))  # now and then a shipping fee
        payment = Payment(user_id=order.customer_id, order_id=order.id, amount=total,
                          currency=currency, status="requires_action", subtotal=sum(amounts),
                          stripe_payment_intent_id=f"pi_rollup_{seed}_{n}")
        db.session.add(payment)
        db.session.commit()
        clock.now = start + timedelta(days=rng.randint(0, 20), seconds=rng.randint(0, 86_399))
        for _ in range(rng.choice((0, 0, 0, 1, 2))):  # declined first, maybe twice
            code = rng.choice(("card_declined", "insufficient_funds", "expired_card", None))
            settle(payment.id, intent(payment, "requires_payment_method", code))
            db.session.commit()
            clock.now += timedelta(days=rng.randint(0, 2), hours=rng.randint(0, 23))
        if rng.random() < 0.85:  # paid, maybe days later (a late webhook)
            settle(payment.id, intent(payment, "succeeded", funds_at=clock.now))
            db.session.commit()
            paid.append(payment)
    # A payout run of the first 12 days' lines: the refunds below then fall on lines paid out
    # (taken from the vendors' next payouts) as well as on lines not paid yet.
    clock.now = start + timedelta(days=25)
    assert run_payouts(until=start + timedelta(days=12)) is not None
    db.session.commit()
    for payment in rng.sample(paid, len(paid) // 3):
        refunded = 0
        for _ in range(rng.randint(1, 3)):  # refunds days later, in parts
            clock.now = payment.succeeded_at + timedelta(days=rng.randint(0, 9),
                                                         minutes=rng.randint(1, 900))
            refunded = min(payment.amount, refunded + rng.randint(1, payment.amount))
            if rng.random() < 0.15 and refunded > 1:  # one fails after it succeeded
                refunded = rng.randint(0, refunded - 1)
            payment.amount_refunded = refunded
            splits.sync_refund_lines(payment, {})
            db.session.commit()


def maintained() -> tuple[dict, dict]:
    db.session.expire_all()
    sales = {(r.day, r.currency, r.vendor_id): (r.sales, r.gross, r.fees, r.refunded,
                                                 r.fees_returned)
             for r in db.session.scalars(sa.select(DailySales))}
    payments = {(r.day, r.currency): (r.succeeded, r.volume)
                for r in db.session.scalars(sa.select(DailyPayments))}
    attempts = {(r.day, r.currency, r.outcome, r.code): r.payments
                for r in db.session.scalars(sa.select(DailyAttempts)) if r.payments}
    customers = set(db.session.execute(sa.select(CustomerDays.currency, CustomerDays.day,
                                                 CustomerDays.user_id)).all())
    firsts = dict(((u, c), d) for u, c, d in db.session.execute(
        sa.select(FirstPayments.user_id, FirstPayments.currency, FirstPayments.day)))
    return ({k: v for k, v in sales.items() if any(v)},  # a day whose refunds cancel out
            payments, attempts, customers, firsts)


def from_the_rows() -> tuple:
    """The same figures summed in Python over every split line and payment."""
    sales: dict = defaultdict(lambda: [0, 0, 0, 0, 0])
    for line in db.session.scalars(sa.select(SplitLine)):
        day = line.created_at.astimezone(UTC).date()
        key = (day, line.currency, line.vendor_id)
        if line.kind == "sale":
            sales[key][0] += 1
            sales[key][1] += line.gross
            sales[key][2] += line.fee
        elif line.kind == "refund":
            sales[key][3] -= line.gross
            sales[key][4] -= line.fee
    payments: dict = defaultdict(lambda: [0, 0])
    for p in db.session.scalars(sa.select(Payment).where(Payment.status == "succeeded")):
        key = (p.succeeded_at.astimezone(UTC).date(), p.currency)
        payments[key][0] += 1
        payments[key][1] += p.amount
    attempts: dict = defaultdict(int)
    for p in db.session.scalars(sa.select(Payment).where(
            Payment.status.in_(("succeeded", "failed")))):
        code = (p.failure_code or "") if p.status == "failed" else ""
        attempts[(p.created_at.astimezone(UTC).date(), p.currency, p.status, code)] += 1
    customers, firsts = set(), {}
    for p in db.session.scalars(sa.select(Payment).where(Payment.status == "succeeded")):
        day = p.succeeded_at.astimezone(UTC).date()
        customers.add((p.currency, day, p.user_id))
        firsts[(p.user_id, p.currency)] = min(day, firsts.get((p.user_id, p.currency), day))
    return ({k: tuple(v) for k, v in sales.items() if any(v)},
            {k: tuple(v) for k, v in payments.items()}, dict(attempts), customers, firsts)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_rollups_kept_equal_a_rebuild_and_the_rows(monkeypatch, seed):
    clock = Clock(datetime(2026, 3, 1, 9, tzinfo=UTC))
    monkeypatch.setattr("portal.ledger.splits.utcnow", clock)
    monkeypatch.setattr("portal.payments.services.utcnow", clock)
    monkeypatch.setattr("portal.payouts.services.utcnow", clock)
    scenario(seed, 60, clock)

    kept = maintained()
    expected = from_the_rows()
    assert kept == expected
    assert {c for _, c in kept[1]} == set(CURRENCIES)  # every currency, JPY and KWD too
    assert {(o, c) for _, _, o, c in kept[2]} >= {("succeeded", ""), ("failed", "card_declined"),
                                                  ("failed", "insufficient_funds")}
    assert sum(v[3] for v in kept[0].values()) > 0  # refunds counted
    assert len({d for d, *_ in kept[0]}) > 10  # spread over days

    # A rebuild of the last days leaves the rest as kept and sums the same.
    since = date(2026, 3, 12)
    rollups.rebuild(since)
    db.session.commit()
    assert maintained() == expected
    # A whole rebuild from nothing, too.
    for table in (DailySales, DailyPayments, DailyAttempts, CustomerDays, FirstPayments):
        db.session.execute(sa.delete(table))
    written = rollups.rebuild()
    db.session.commit()
    assert maintained() == expected
    assert written[1] == len(expected[1])


def test_flask_analytics_rebuild_sums_the_days_again(app, monkeypatch):
    clock = Clock(datetime(2026, 3, 1, 9, tzinfo=UTC))
    monkeypatch.setattr("portal.ledger.splits.utcnow", clock)
    monkeypatch.setattr("portal.payments.services.utcnow", clock)
    monkeypatch.setattr("portal.payouts.services.utcnow", clock)
    scenario(4, 20, clock)
    expected = from_the_rows()
    db.session.execute(sa.update(DailySales).values(gross=DailySales.gross + 1))  # a drift
    db.session.commit()
    assert maintained() != expected
    result = app.test_cli_runner().invoke(args=["analytics", "rebuild", "--since", "2026-03-01"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("rebuilt ") and "from 2026-03-01" in result.output
    assert maintained() == expected
    bad = app.test_cli_runner().invoke(args=["analytics", "rebuild", "--since", "March"])
    assert bad.exit_code == 2 and "'March' does not match the format '%Y-%m-%d'" in bad.output
