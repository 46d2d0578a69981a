"""Vendor payouts (issue 6): runs, execution by transfer, Connect state, the dashboard, the
CSV statement and API endpoint 11; vendors never see each other's money."""

from __future__ import annotations

import csv
import io
import re
import threading
import urllib.parse
import urllib.request
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEntry
from portal.extensions import db
from portal.ledger.models import Payout, PayoutRun, SplitLine, VendorAccount
from portal.ledger.splits import open_payouts
from portal.models_base import utcnow
from portal.payouts import services as payouts
from portal.refunds import services as refunds
from tests.helpers import bearer, committed, login, paid_payment, post_event
from tests.integration import api_support

SOON = timedelta(seconds=5)
# Stripe's test card whose funds are available at once: these tests are about grouping and
# sending; waiting for pending funds has tests of its own below.
AVAILABLE_AT_ONCE = "4000000000000077"


def pay(*args, **kwargs):
    return api_support.pay(*args, **{"number": AVAILABLE_AT_ONCE, **kwargs})


def run_now():
    with committed():
        return payouts.run_payouts(until=utcnow() + SOON)


def ready_account(stripe_client, sandbox, vendor) -> VendorAccount:
    """A vendor whose Express account finished onboarding (the sandbox's test hook)."""
    account = stripe_client.v1.accounts.create(params={
        "type": "express", "email": vendor.email,
        "capabilities": {"transfers": {"requested": True}}})
    request = urllib.request.Request(
        f"{sandbox.url}/_sandbox/accounts/{account.id}/requirements",
        data=urllib.parse.urlencode({  # everything given: nothing due, transfers active
            "currently_due": "", "eventually_due": "", "past_due": "",
            "payouts_enabled": "true", "charges_enabled": "true",
            "capabilities[transfers]": "active"}).encode(),
        headers={"Authorization": "Bearer sk_test_portal"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - loopback
        assert r.status == 200
    row = VendorAccount(vendor_id=vendor.id, stripe_account_id=account.id)
    db.session.add(row)
    payouts.sync_account(account.id)
    db.session.commit()
    assert row.ready
    return row


def transfers_to(stripe_client, account_id) -> list:
    return stripe_client.v1.transfers.list(params={"destination": account_id}).data


# --- runs -------------------------------------------------------------------------------------

def test_a_run_pays_each_vendor_the_sum_of_their_lines_and_twice_creates_nothing(
        people, stripe_client):
    vendor, vendor2 = people["vendor"], people["vendor2"]
    pay(stripe_client, people["customer"], vendor, amounts=(6667,), vendor2=vendor2,
        tax=1001)
    pay(stripe_client, people["customer"], vendor, amounts=(1999,))
    run = run_now()
    by_vendor = {p.vendor_id: p for p in run.payouts}
    assert set(by_vendor) == {vendor.id, vendor2.id}
    for p in run.payouts:
        lines = db.session.scalars(sa.select(SplitLine).where(SplitLine.payout_id == p.id))
        lines = list(lines)
        assert p.amount == sum(line.net for line in lines)
        assert p.total_sales == sum(line.gross for line in lines)
        assert p.platform_fee == sum(line.fee for line in lines)
    assert by_vendor[vendor.id].payment_count == 2
    assert by_vendor[vendor.id].platform_fee == 667 + 200
    assert run_now() is None  # nothing new: every line is in exactly one payout
    assert unpaid_lines() == 0


def unpaid_lines() -> int:
    """Lines still waiting in an open payout (every line is in some payout)."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(SplitLine)
                             .join(Payout, Payout.id == SplitLine.payout_id)
                             .where(Payout.status == "open"))


def test_lines_after_until_wait_for_the_next_run(people, stripe_client):
    pay(stripe_client, people["customer"], people["vendor"])
    with committed():
        assert payouts.run_payouts(until=utcnow() - timedelta(hours=1)) is None
    # An older line and a new one in the same open payout: the run pays the older one only.
    db.session.execute(sa.update(SplitLine).values(created_at=utcnow() - timedelta(hours=2)))
    pay(stripe_client, people["customer"], people["vendor"], amounts=(5000,))
    with committed():
        [first] = payouts.run_payouts(until=utcnow() - timedelta(hours=1)).payouts
    assert (first.amount, first.line_count) == (9000, 1)
    assert unpaid_lines() == 1
    [second] = run_now().payouts
    assert (second.amount, second.line_count) == (4500, 1)
    assert unpaid_lines() == 0


def test_a_refund_after_the_payout_is_a_negative_line_in_the_next_payout(people,
                                                                        stripe_client):
    first = pay(stripe_client, people["customer"], people["vendor"])  # 100.00, fee 10.00
    run_now()
    with committed():
        request = refunds.request_refund(people["customer"], first, amount=4000, reason="other")
    with committed():
        refunds.approve(people["admin"], request.id)
    assert run_now() is None  # only a negative balance: carried, not paid
    pay(stripe_client, people["customer"], people["vendor"], amounts=(5000,))
    run = run_now()
    [payout] = run.payouts
    # 50.00 sale (fee 5.00) minus the 40.00 refund (fee back 4.00): 45.00 - 36.00 = 9.00
    assert (payout.total_sales, payout.refunds, payout.amount) == (5000, -4000, 900)
    kinds = sorted(line.kind for line in db.session.scalars(
        sa.select(SplitLine).where(SplitLine.payout_id == payout.id)))
    assert kinds == ["refund", "sale"]


@pytest.mark.commits
def test_two_concurrent_runs_put_each_line_in_one_payout(app, people, stripe_client):
    for _ in range(3):
        pay(stripe_client, people["customer"], people["vendor"], amounts=(1000,))
    start, runs = threading.Barrier(2), []

    def go():
        with app.app_context():
            start.wait()
            runs.append(run_now())
            db.session.remove()

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.session.remove()
    payout_rows = db.session.scalars(sa.select(Payout)).all()
    assert len(payout_rows) == 1 and payout_rows[0].amount == 3 * 900
    assert unpaid_lines() == 0


def wait_for_a_lock_wait(failure: str) -> None:
    """Until some session of this database waits for a row lock (at most 10 s)."""
    waiting = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                      "AND datname = current_database()")
    for _ in range(100):
        with db.engine.connect() as conn:
            if conn.scalar(waiting):
                return
        threading.Event().wait(0.1)
    pytest.fail(failure)


@pytest.mark.commits
def test_a_run_waits_for_a_line_being_written_and_pays_it(app, people, stripe_client):
    """A line written while a run starts is in that run's payout, with its totals: the run
    waits for the writer (no line lands in a payout after its totals were taken)."""
    vendor = people["vendor"]
    payment = pay(stripe_client, people["customer"], vendor, amounts=(1000,))  # net 9.00
    vendor_id, currency = vendor.id, payment.currency
    payment_id = paid_payment(people["customer"], vendor, 500).id  # its line on its way
    written, release, runs = threading.Event(), threading.Event(), []

    def writer():
        with app.app_context():
            into = open_payouts(currency, [vendor_id])
            db.session.add(SplitLine(payment_id=payment_id, vendor_id=vendor_id, kind="sale",
                                     currency=currency, gross=500, fee=50, net=450,
                                     payout_id=into[vendor_id]))
            db.session.flush()
            written.set()
            release.wait(10)
            db.session.commit()
            db.session.remove()

    def runner():
        with app.app_context():
            runs.append(run_now())
            db.session.remove()

    threads = [threading.Thread(target=writer), threading.Thread(target=runner)]
    threads[0].start()
    assert written.wait(10)
    threads[1].start()
    wait_for_a_lock_wait("the run did not wait for the line being written")
    release.set()
    for t in threads:
        t.join(10)
    db.session.remove()
    [payout] = db.session.scalars(sa.select(Payout)).all()
    assert (payout.status, payout.amount, payout.line_count) == ("pending", 900 + 450, 2)
    assert payout.run_id == runs[0].id
    assert unpaid_lines() == 0


def closed_payouts_not_matching_their_lines() -> list:
    """Closed payouts whose amount or line count differs from the lines in them."""
    lines = (sa.select(SplitLine.payout_id, sa.func.sum(SplitLine.net).label("net"),
                       sa.func.count().label("n")).group_by(SplitLine.payout_id).subquery())
    return db.session.execute(
        sa.select(Payout.id, Payout.amount, lines.c.net, Payout.line_count, lines.c.n)
        .join(lines, lines.c.payout_id == Payout.id)
        .where(Payout.status != "open",
               sa.or_(Payout.amount != lines.c.net, Payout.line_count != lines.c.n))).all()


@pytest.mark.commits
def test_a_run_leaves_alone_an_open_payout_created_after_it_took_its_locks(app, people,
                                                                          stripe_client):
    """Vendor 2's first sale since the last run opens a payout after the run locked the open
    payouts, and a second sale is being written into it: the run must not close it (it would
    take the totals without the line on its way in). Both lines were stamped before the run
    began (written just before it, committed just after), so `until` does not hold them
    back."""
    first = pay(stripe_client, people["customer"], people["vendor"], amounts=(1000,))
    second = pay(stripe_client, people["customer"], people["vendor2"], amounts=(2000,))
    v1, v2, currency = people["vendor"].id, people["vendor2"].id, first.currency
    # A payment has one sale line per vendor: the lines written here are other payments'.
    ids = {"first": paid_payment(people["customer"], people["vendor"], 100).id,
           "second": second.id,
           "third": paid_payment(people["customer"], people["vendor2"], 300).id}
    db.session.execute(sa.delete(SplitLine).where(SplitLine.vendor_id == v2))
    db.session.execute(sa.delete(Payout).where(Payout.vendor_id == v2))  # no sale yet
    db.session.commit()
    steps = {name: threading.Event() for name in ("held", "go", "in", "commit")}

    stamped = utcnow() - timedelta(seconds=1)

    def line(vendor_id, payment, net):
        into = open_payouts(currency, [vendor_id])
        db.session.add(SplitLine(payment_id=ids[payment], vendor_id=vendor_id, kind="sale",
                                 currency=currency, gross=net, fee=0, net=net,
                                 payout_id=into[vendor_id], created_at=stamped))
        db.session.flush()

    def holder():  # holds vendor 1's open payout, so the run waits in its locking SELECT
        with app.app_context():
            line(v1, "first", 100)
            steps["held"].set()
            steps["go"].wait(10)
            db.session.commit()
            db.session.remove()

    def writer():  # a second sale of vendor 2, into the payout opened after the run's lock
        with app.app_context():
            line(v2, "third", 300)
            steps["in"].set()
            steps["commit"].wait(10)
            db.session.commit()
            db.session.remove()

    def runner():
        with app.app_context():
            run_now()
            db.session.remove()

    threads = {"holder": threading.Thread(target=holder), "run": threading.Thread(target=runner),
               "writer": threading.Thread(target=writer)}
    threads["holder"].start()
    assert steps["held"].wait(10)
    threads["run"].start()
    wait_for_a_lock_wait("the run did not wait for the open payout being written")
    with app.app_context():  # vendor 2's first sale: a new open payout, committed
        line(v2, "second", 200)
        db.session.commit()
        db.session.remove()
    threads["writer"].start()
    assert steps["in"].wait(10)
    steps["go"].set()  # the run gets its locks, and goes on
    threads["run"].join(5)  # it has nothing to wait for now (the bug: it waits for the writer)
    steps["commit"].set()
    for t in threads.values():
        t.join(10)
    db.session.remove()
    assert closed_payouts_not_matching_their_lines() == []
    theirs = db.session.scalars(sa.select(Payout).where(Payout.vendor_id == v2)).all()
    assert [p.status for p in theirs] == ["open"]  # both lines wait for the next run
    assert db.session.scalar(sa.select(sa.func.sum(SplitLine.net)).where(
        SplitLine.payout_id == theirs[0].id)) == 500


# --- execution --------------------------------------------------------------------------------

def test_without_a_ready_account_the_payout_waits_and_says_why(client, people, stripe_client):
    pay(stripe_client, people["customer"], people["vendor"])
    run = run_now()
    with committed():
        payouts.approve_run(people["admin"], run.id)  # in-process execution here
    db.session.expire_all()
    [payout] = db.session.scalars(sa.select(Payout)).all()
    assert (payout.status, payout.failure_reason) == ("pending", payouts.NOT_CONNECTED)
    login(client, people["vendor"].email)
    page = client.get("/vendor").text
    assert "Payouts not enabled" in page and "Connect with Stripe" in page
    # The vendor reads about themselves in the second person; admins read the stored reason.
    assert "Waiting for you to connect your Stripe account" in page
    assert "Connect your Stripe account to receive your payouts" in page
    assert "the vendor" not in page
    detail = client.get(f"/vendor/payouts/{payout.id}").text
    assert "Waiting for you to connect" in detail and "the vendor" not in detail
    client.post("/logout")
    login(client, people["admin"].email)
    assert payouts.NOT_CONNECTED in client.get(f"/vendor/payouts/{payout.id}").text


def test_execution_sends_one_transfer_and_marks_it_paid(people, stripe_client, sandbox):
    account = ready_account(stripe_client, sandbox, people["vendor"])
    pay(stripe_client, people["customer"], people["vendor"])
    run = run_now()
    with committed():
        payouts.approve_run(people["admin"], run.id)
    payouts.execute_payout(str(run.payouts[0].id))  # executed twice: still one transfer
    db.session.expire_all()
    payout = db.session.get(Payout, run.payouts[0].id)
    [transfer] = transfers_to(stripe_client, account.stripe_account_id)
    assert (payout.status, payout.stripe_transfer_id) == ("paid", transfer.id)
    assert (transfer.amount, transfer.currency, transfer.transfer_group) == (
        9000, "usd", str(payout.id))


@pytest.mark.commits
def test_two_workers_executing_the_same_payout_make_one_transfer(app, people, stripe_client,
                                                                 sandbox):
    account = ready_account(stripe_client, sandbox, people["vendor"])
    pay(stripe_client, people["customer"], people["vendor"])
    payout_id = str(run_now().payouts[0].id)
    start = threading.Barrier(2)

    def worker():
        with app.app_context():
            start.wait()
            payouts.execute_payout(payout_id)
            db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.session.remove()
    assert len(transfers_to(stripe_client, account.stripe_account_id)) == 1
    assert db.session.get(Payout, uuid.UUID(payout_id)).status == "paid"


def test_a_refused_transfer_fails_with_stripes_reason_and_can_be_retried(
        client, people, stripe_client, sandbox):
    account = ready_account(stripe_client, sandbox, people["vendor"])
    pay(stripe_client, people["customer"], people["vendor"])
    run = run_now()
    hook = urllib.request.Request(
        f"{sandbox.url}/_sandbox/fail_next_transfers",
        data=urllib.parse.urlencode({"count": 1,
                                     "status": "insufficient_capabilities_for_transfer"}).encode(),
        headers={"Authorization": "Bearer sk_test_portal"}, method="POST")
    with urllib.request.urlopen(hook, timeout=10):  # noqa: S310 - loopback
        pass
    with committed():
        payouts.approve_run(people["admin"], run.id)
    db.session.expire_all()
    payout = db.session.get(Payout, run.payouts[0].id)
    assert payout.status == "failed" and "capabilit" in payout.failure_reason.lower()
    # Stripe keeps a refusal under its idempotency key for 24 h (so does the sandbox): the
    # retry must send another key, or it would get the same refusal back.
    assert payout.transfer_attempt == 1
    login(client, people["admin"].email)
    r = client.post(f"/admin/payouts/{payout.id}/retry")
    assert r.status_code == 302
    db.session.expire_all()
    assert db.session.get(Payout, payout.id).status == "paid"
    assert len(transfers_to(stripe_client, account.stripe_account_id)) == 1


# --- funds: Stripe sends transfers out of available funds ------------------------------------

def make_available(line_payment, sandbox) -> None:
    """Days pass: Stripe makes the funds available (the sandbox's hook), on the date it gave
    for the payment's charge (here: now)."""
    sandbox.make_funds_available()
    db.session.execute(sa.update(SplitLine).where(SplitLine.payment_id == line_payment.id)
                       .values(available_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_a_card_sale_waits_for_its_funds_before_it_is_paid_out(app, client, people,
                                                                stripe_client, sandbox):
    account = ready_account(stripe_client, sandbox, people["vendor"])
    pending = api_support.pay(stripe_client, people["customer"], people["vendor"])  # 4242
    available = pay(stripe_client, people["customer"], people["vendor"], amounts=(2000,))
    # Stripe said when the card payment's funds become available: in two days (the sandbox
    # follows Stripe's standard US schedule).
    assert pending.funds_available_at > utcnow() + timedelta(days=1, hours=23)
    assert available.funds_available_at <= utcnow()

    login(client, people["admin"].email)
    r = client.post("/admin/payouts/run", data={"period": "weekly"}, follow_redirects=True)
    assert "Created 1 payouts. 1 sale waits for Stripe to make their funds available" in r.text
    [payout] = db.session.scalars(sa.select(Payout).where(Payout.status == "pending")).all()
    assert (payout.amount, payout.payment_count) == (1800, 1)  # the available sale only
    assert payouts.waiting_for_funds().lines == 1
    vendor = app.test_client()
    login(vendor, people["vendor"].email)
    assert "1 sale waits for Stripe to make the payment's funds available" in vendor.get(
        "/vendor").text
    with committed():
        payouts.approve_run(people["admin"], payout.run_id)
    db.session.expire_all()
    assert db.session.get(Payout, payout.id).status == "paid"

    cli = app.test_cli_runner().invoke(args=["payouts", "run", "--until", "2100-01-01"])
    assert "1 sale waits for Stripe to make their funds available" in cli.output
    assert "Nothing to pay" in cli.output

    make_available(pending, sandbox)
    assert payouts.waiting_for_funds().lines == 0
    later = run_now()
    assert [(p.amount, p.payment_count) for p in later.payouts] == [(9000, 1)]
    with committed():
        payouts.approve_run(people["admin"], later.id)
    db.session.expire_all()
    assert db.session.get(Payout, later.payouts[0].id).status == "paid"
    assert sorted(t.amount for t in transfers_to(stripe_client, account.stripe_account_id)) == [
        1800, 9000]


def test_a_transfer_stripe_cannot_fund_waits_and_is_sent_once_the_funds_come(
        app, client, people, stripe_client, sandbox):
    """Issue 17, item 3. The portal believes the funds available, Stripe does not (the
    platform paid them out to its bank, say): Stripe's balance_insufficient. The payout
    waits, says why, and is sent by itself once Stripe's available balance covers it, with
    the next idempotency key, once, however often the news comes."""
    account = ready_account(stripe_client, sandbox, people["vendor"])
    # 999,999.99 AUD: pending at Stripe, and more than this session's sandbox ever holds.
    payment = api_support.pay(stripe_client, people["customer"], people["vendor"],
                              amounts=(99_999_999,), currency="AUD")
    db.session.execute(sa.update(SplitLine).where(SplitLine.payment_id == payment.id)
                       .values(available_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    run = run_now()
    with committed():
        payouts.approve_run(people["admin"], run.id)
    db.session.expire_all()
    payout = db.session.get(Payout, run.payouts[0].id)
    assert (payout.status, payout.transfer_attempt) == ("pending", 1)
    assert payout.waiting_since is not None
    assert payout.failure_reason.startswith("Waiting for the platform's available balance")
    assert "You have insufficient available funds" in payout.failure_reason
    login(client, people["admin"].email)
    page = client.get("/admin/payouts").text
    assert "Waiting for funds" in page and "sent again automatically" in page

    with committed():  # the schedule's check: still not enough, so nothing is sent
        assert payouts.resume_waiting() == 0
    assert not transfers_to(stripe_client, account.stripe_account_id)

    sandbox.make_funds_available()
    balance_event = {"object": "balance", "livemode": False,
                     "available": [{"amount": 1, "currency": "aud"}], "pending": []}
    for _ in range(2):  # two balance.available events: one transfer
        assert post_event(client, "balance.available", balance_event).status_code == 200
    db.session.expire_all()
    payout = db.session.get(Payout, payout.id)
    assert (payout.status, payout.waiting_since, payout.failure_reason) == ("paid", None, None)
    [transfer] = transfers_to(stripe_client, account.stripe_account_id)
    assert transfer.amount == payout.amount
    with committed():
        assert payouts.resume_waiting() == 0
    actions = db.session.scalars(sa.select(AuditEntry.action)).all()
    assert [actions.count(a) for a in ("payout.waiting", "payout.resumed", "payout.paid")] == [
        1, 1, 1]


def test_only_an_account_with_the_transfers_capability_is_paid(people, stripe_client, sandbox):
    account = ready_account(stripe_client, sandbox, people["vendor"])
    # Stripe turns the capability off (a requirement past due) but leaves payouts on.
    request = urllib.request.Request(
        f"{sandbox.url}/_sandbox/accounts/{account.stripe_account_id}/requirements",
        data=urllib.parse.urlencode({"capabilities[transfers]": "inactive",
                                     "payouts_enabled": "true"}).encode(),
        headers={"Authorization": "Bearer sk_test_portal"}, method="POST")
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback
        pass
    payouts.sync_account(account.stripe_account_id)
    db.session.commit()
    assert (account.payouts_enabled, account.transfers_active, account.ready) == (
        True, False, False)
    pay(stripe_client, people["customer"], people["vendor"])
    run = run_now()
    with committed():
        payouts.approve_run(people["admin"], run.id)
    db.session.expire_all()
    payout = db.session.get(Payout, run.payouts[0].id)
    assert (payout.status, payout.failure_reason) == ("pending", payouts.NOT_CONNECTED)
    assert transfers_to(stripe_client, account.stripe_account_id) == []


# --- what vendors see -------------------------------------------------------------------------

def test_dashboard_totals_and_the_csv_statement_agree(client, people, stripe_client):
    first = pay(stripe_client, people["customer"], people["vendor"], amounts=(6667,),
                vendor2=people["vendor2"])
    with committed():
        request = refunds.request_refund(people["customer"], first, amount=1000, reason="other")
    with committed():
        refunds.approve(people["admin"], request.id)
    login(client, people["vendor"].email)
    page = client.get("/vendor").text
    [totals] = payouts.totals(people["vendor"])
    for amount in (totals.sales, totals.fees, totals.refunds, totals.net):
        assert f"${amount / 100:,.2f}".replace("$-", "-$") in page
    rows = list(csv.reader(io.StringIO(client.get("/vendor/statement.csv").text)))
    assert rows[0][:8] == ["date", "order", "payment_id", "kind", "currency", "gross", "fee",
                           "net"]
    total = next(r for r in rows if r[0] == "total")
    assert [total[4], total[5], total[6], total[7]] == [
        "USD", f"{totals.sales / 100 + totals.refunds / 100:.2f}", f"{totals.fees / 100:.2f}",
        f"{totals.net / 100:.2f}"]
    body = [r for r in rows[1:] if r[0] != "total"]
    assert {r[3] for r in body} == {"sale", "refund"}
    assert abs(sum(float(r[7]) for r in body) - totals.net / 100) < 1e-9


def test_vendor_a_never_sees_vendor_bs_money(client, people, stripe_client):
    pay(stripe_client, people["customer"], people["vendor2"], amounts=(7777,))
    run = run_now()
    theirs = run.payouts[0].id
    login(client, people["vendor"].email)
    assert "$77.77" not in client.get("/vendor").text
    assert client.get(f"/vendor/payouts/{theirs}").status_code == 404
    assert "$77.77" not in client.get("/vendor/statement.csv").text
    r = client.get("/api/payments/vendor/payouts", headers=bearer(people["vendor"]))
    assert r.status_code == 200 and r.json["payouts"] == []
    assert client.get("/admin/payouts").status_code == 404
    for who in ("customer", "admin"):
        r = client.get("/api/payments/vendor/payouts", headers=bearer(people[who]))
        assert r.status_code == 403 and r.json["error"]["code"] == "forbidden"


def test_api_vendor_payouts_answers_the_documented_shape(client, people, stripe_client):
    pay(stripe_client, people["customer"], people["vendor"], amounts=(10000,))
    run = run_now()
    pay(stripe_client, people["customer"], people["vendor"], amounts=(5000,))  # pending
    r = client.get("/api/payments/vendor/payouts?status=pending",
                   headers=bearer(people["vendor"]))
    assert r.status_code == 200
    [p] = r.json["payouts"]
    assert set(p) == {"_id", "vendorId", "period", "amount", "currency", "status",
                      "breakdown", "paymentCount", "paidAt"}
    assert (p["_id"], p["vendorId"], p["amount"], p["currency"], p["status"]) == (
        str(run.payouts[0].id), str(people["vendor"].id), 9000, "usd", "pending")
    assert p["breakdown"] == {"totalSales": 10000, "platformFee": 1000, "netAmount": 9000,
                              "refunds": 0}
    assert p["period"]["end"].endswith("Z") and p["paymentCount"] == 1
    assert r.json["summary"]["totalPaid"] == 0
    assert r.json["summary"]["totalPending"] == 9000 + 4500
    assert r.json["summary"]["nextPayoutDate"].endswith("T00:00:00Z")
    bad = client.get("/api/payments/vendor/payouts?status=lost", headers=bearer(people["vendor"]))
    assert bad.status_code == 400 and "status" in bad.json["error"]["fields"]


def test_admin_sees_runs_and_can_run_and_approve(client, people, stripe_client):
    pay(stripe_client, people["customer"], people["vendor"])
    login(client, people["admin"].email)
    client.post("/admin/payouts/run", data={"period": "weekly"})
    page = client.get("/admin/payouts").text
    assert "vera@example.test" in page and "$90.00" in page and "Approve and send" in page
    run = db.session.scalar(sa.select(PayoutRun))
    asked = client.post(f"/admin/payouts/runs/{run.id}/approve")  # the confirmation first
    assert asked.status_code == 200 and "Send 1 payout totalling $90.00 to 1 vendor?" in asked.text
    assert "payout.run_approved" not in client.get("/admin/audit").text
    token = re.search(r'name="confirm" value="([0-9a-f]+)"', asked.text).group(1)
    assert client.post(f"/admin/payouts/runs/{run.id}/approve",
                       data={"confirm": token}).status_code == 302
    assert "payout.run_approved" in client.get("/admin/audit").text


def test_a_stripe_500_is_retried_with_a_new_key_and_pays_once(people, stripe_client, sandbox):
    from portal import stripe_gateway as gateway

    account = ready_account(stripe_client, sandbox, people["vendor"])
    pay(stripe_client, people["customer"], people["vendor"])
    payout_id = str(run_now().payouts[0].id)
    hook = urllib.request.Request(
        f"{sandbox.url}/_sandbox/fail_next_transfers",
        data=urllib.parse.urlencode({"count": 1, "status": "500"}).encode(),
        headers={"Authorization": "Bearer sk_test_portal"}, method="POST")
    with urllib.request.urlopen(hook, timeout=10):  # noqa: S310 - loopback
        pass
    with pytest.raises(gateway.GatewayError):  # RQ retries the job later
        payouts.execute_payout(payout_id)
    db.session.expire_all()
    assert db.session.get(Payout, uuid.UUID(payout_id)).status == "processing"
    payouts.execute_payout(payout_id)  # Stripe kept its 500 under the old key
    db.session.expire_all()
    assert db.session.get(Payout, uuid.UUID(payout_id)).status == "paid"
    assert len(transfers_to(stripe_client, account.stripe_account_id)) == 1
