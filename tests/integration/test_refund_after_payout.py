"""A refund of a sale already paid out to its vendor (issue 17, item 2): carried as a debt the
admins see with its age (REFUND_AFTER_PAYOUT=carry), or taken back at once from the vendor's
transfer by a Stripe transfer reversal (reverse); the vendor's statement shows either."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger.balances import totals
from portal.ledger.models import Payout, SplitLine
from portal.payouts import reversals
from portal.payouts import services as payouts
from portal.refunds import services as refunds
from tests.helpers import committed, login
from tests.integration.test_payouts import pay, ready_account, run_now, transfers_to


@pytest.fixture
def reverse(app, test_app, monkeypatch):
    for a in (app, test_app):
        monkeypatch.setattr(a.extensions["portal_config"], "REFUND_AFTER_PAYOUT", "reverse")


def paid_out(people, stripe_client, sandbox, amounts=(10000,)):
    """A sale of ``amounts`` (fee 10 %), paid out to the vendor by a transfer."""
    # The platform's available balance is the sandbox's, shared by the session's tests, and
    # refunds taken from it may have left too little: a charge whose funds are available at
    # once tops it up.
    stripe_client.v1.payment_intents.create(params={
        "amount": 100000, "currency": "usd", "payment_method": "pm_card_bypassPending",
        "confirm": True,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"}})
    account = ready_account(stripe_client, sandbox, people["vendor"])
    payment = pay(stripe_client, people["customer"], people["vendor"], amounts=amounts)
    run = run_now()
    with committed():
        payouts.approve_run(people["admin"], run.id)
    db.session.expire_all()
    [transfer] = transfers_to(stripe_client, account.stripe_account_id)
    return payment, transfer


def refund(people, payment, amount):
    with committed():
        request = refunds.request_refund(people["customer"], payment, amount=amount,
                                         reason="other")
    with committed():
        refunds.approve(people["admin"], request.id)
    db.session.expire_all()


def lines(payment, kind):
    return list(db.session.scalars(sa.select(SplitLine).where(
        SplitLine.payment_id == payment.id, SplitLine.kind == kind)))


def as_vendor(app, people):
    vendor = app.test_client()
    login(vendor, people["vendor"].email)
    return vendor


def statement(app, people) -> list[list[str]]:
    text = as_vendor(app, people).get("/vendor/statement.csv").text
    return list(csv.reader(io.StringIO(text)))


def test_carry_keeps_the_refund_as_a_debt_that_admins_see_with_its_age(
        app, client, people, stripe_client, sandbox):
    payment, transfer = paid_out(people, stripe_client, sandbox)
    refund(people, payment, 4000)  # 40.00 of 100.00: the vendor gives back 36.00
    assert stripe_client.v1.transfers.retrieve(transfer.id).amount_reversed == 0
    [debt] = reversals.vendors_in_debt()
    assert (debt.email, debt.currency, debt.owed) == (people["vendor"].email, "USD", 3600)
    login(client, people["admin"].email)
    page = client.get("/admin/payouts").text
    assert "Vendors owing money" in page and "$36.00" in page
    assert "taken from the vendor's next payouts" in page
    rows = statement(app, people)
    assert [r[3] for r in rows[1:-1]] == ["sale", "refund"]
    assert rows[-1][4:8] == ["USD", "60.00", "6.00", "54.00"]  # what the vendor earned


def test_reverse_takes_the_refund_back_from_the_transfer_once(app, people, stripe_client,
                                                              sandbox, reverse):
    payment, transfer = paid_out(people, stripe_client, sandbox)
    refund(people, payment, 4000)
    [line] = lines(payment, "refund")
    [reversal] = lines(payment, "reversal")
    at_stripe = stripe_client.v1.transfers.retrieve(transfer.id)
    assert at_stripe.amount_reversed == 3600 == -line.net == reversal.net
    assert reversal.reverses_line_id == line.id
    assert reversal.stripe_reversal_id == at_stripe.reversals.data[0].id
    # Again (a retried job, a redelivered refund event): nothing more is taken.
    reversals.reverse_refund_line(str(line.id))
    with committed():
        refunds.sync_refunds(payment.stripe_payment_intent_id)
    assert stripe_client.v1.transfers.retrieve(transfer.id).amount_reversed == 3600
    assert len(lines(payment, "reversal")) == 1
    # Nothing is owed, and the next payout does not take the refund a second time.
    assert reversals.vendors_in_debt() == []
    pay(stripe_client, people["customer"], people["vendor"], amounts=(5000,))
    [next_payout] = run_now().payouts
    assert next_payout.amount == 4500
    [mine] = totals(people["vendor"])
    assert (mine.net, mine.paid, mine.pending) == (5400 + 4500, 9000 - 3600, 4500)
    rows = statement(app, people)
    assert [r[3] for r in rows[1:-1]] == ["sale", "refund", "reversal", "sale"]
    assert rows[-1][4:8] == ["USD", "110.00", "11.00", "99.00"]  # earnings: not the reversal
    page = as_vendor(app, people).get(f"/vendor/payouts/{next_payout.id}").text
    assert f"Taken back by Stripe ({reversal.stripe_reversal_id})" in page


def test_reverse_takes_what_the_transfer_still_holds_and_the_rest_is_owed(
        people, stripe_client, sandbox, reverse):
    payment, transfer = paid_out(people, stripe_client, sandbox)
    # Someone reversed 80.00 of the 90.00 in Stripe's dashboard meanwhile.
    stripe_client.v1.transfers.reversals.create(transfer.id, params={"amount": 8000})
    refund(people, payment, 10000)  # the whole sale: 90.00 to take back
    [reversal] = lines(payment, "reversal")
    assert reversal.net == 1000
    assert stripe_client.v1.transfers.retrieve(transfer.id).amount_reversed == 9000
    [debt] = reversals.vendors_in_debt()
    assert debt.owed == 8000  # the platform's to settle with the vendor


def test_reverse_leaves_a_refund_before_the_payout_to_the_open_payout(
        people, stripe_client, sandbox, reverse):
    ready_account(stripe_client, sandbox, people["vendor"])
    payment = pay(stripe_client, people["customer"], people["vendor"])
    refund(people, payment, 4000)
    assert lines(payment, "reversal") == []
    [payout] = run_now().payouts
    assert payout.amount == 9000 - 3600
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Payout)
                             .where(Payout.status == "paid")) == 0


def test_a_refused_reversal_leaves_the_refund_owed(people, stripe_client, sandbox, reverse,
                                                   monkeypatch):
    from portal import stripe_gateway as gateway

    def refused(*_, **__):
        raise gateway.GatewayError("The transfer is already fully reversed.",
                                   code="invalid_request_error", stripe_status=400)

    monkeypatch.setattr(gateway, "reverse_transfer", refused)
    payment, _ = paid_out(people, stripe_client, sandbox)
    refund(people, payment, 4000)
    assert lines(payment, "reversal") == []
    [debt] = reversals.vendors_in_debt()
    assert debt.owed == 3600
