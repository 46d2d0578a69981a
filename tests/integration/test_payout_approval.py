"""Approving a payout run (issue 19, item 5): a confirmation states how many payouts, their
total per currency and the vendors; money moves only on the POST that carries the
confirmation's token, and a token for payouts that changed since asks again."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEntry
from portal.extensions import db
from portal.ledger.models import Payout, PayoutRun
from tests.helpers import login, make_user
from tests.integration.test_payouts import pay, ready_account, run_now, transfers_to


def test_approving_a_run_asks_for_confirmation_with_the_amounts_and_sends_nothing_before(
        client, people, stripe_client):
    vendor3 = make_user("vicky@example.test", "vendor")
    pay(stripe_client, people["customer"], people["vendor"], amounts=(10000,))  # $90.00 net
    pay(stripe_client, people["customer"], people["vendor2"], amounts=(123456,))  # $1,111.10
    pay(stripe_client, people["customer"], vendor3, amounts=(6000,), currency="EUR")  # €54
    run = run_now()
    login(client, people["admin"].email)

    asked = client.post(f"/admin/payouts/runs/{run.id}/approve")
    assert asked.status_code == 200
    assert ("Send 3 payouts totalling €54.00 and $1,201.10 to 3 vendors?" in asked.text)
    for email, amount in (("vera@example.test", "$90.00"), ("victor@example.test", "$1,111.10"),
                          ("vicky@example.test", "€54.00")):
        assert re.search(rf"<td>{email}</td><td class=\"num\">{re.escape(amount)}</td>",
                         asked.text)
    assert ">Confirm: send 3 payouts</button>" in asked.text
    assert '<a href="/admin/payouts">Cancel</a>' in asked.text

    def nothing_sent() -> bool:
        db.session.expire_all()
        return (db.session.get(PayoutRun, run.id).approved_at is None
                and {p.status for p in db.session.scalars(sa.select(Payout).where(
                    Payout.run_id == run.id))} == {"pending"}
                and db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
                    AuditEntry.action == "payout.run_approved")) == 0)

    assert nothing_sent()
    r = client.post(f"/admin/payouts/runs/{run.id}/approve", data={"confirm": "forged"})
    assert r.status_code == 409 and "changed since the amounts were shown" in r.text
    assert nothing_sent()

    token = re.search(r'name="confirm" value="([0-9a-f]+)"', asked.text).group(1)
    done = client.post(f"/admin/payouts/runs/{run.id}/approve", data={"confirm": token})
    assert done.status_code == 302
    db.session.expire_all()
    assert db.session.get(PayoutRun, run.id).approved_at is not None
    assert "Sending 3 payouts." in client.get("/admin/payouts").text
    again = client.post(f"/admin/payouts/runs/{run.id}/approve", data={"confirm": token},
                        follow_redirects=True)
    assert "This run was already approved" in again.text


def test_a_confirmation_for_amounts_that_changed_asks_again(client, people, stripe_client):
    pay(stripe_client, people["customer"], people["vendor"], amounts=(10000,))
    pay(stripe_client, people["customer"], people["vendor2"], amounts=(5000,))
    run = run_now()
    login(client, people["admin"].email)
    asked = client.post(f"/admin/payouts/runs/{run.id}/approve").text
    assert "Send 2 payouts totalling $135.00 to 2 vendors?" in asked
    token = re.search(r'name="confirm" value="([0-9a-f]+)"', asked).group(1)
    first = min(run.payouts, key=lambda p: p.amount)
    first.status = "paid"  # meanwhile, one of them was paid
    db.session.commit()
    r = client.post(f"/admin/payouts/runs/{run.id}/approve", data={"confirm": token})
    assert r.status_code == 409
    assert "Send 1 payout totalling $90.00 to 1 vendor?" in r.text
    db.session.expire_all()
    assert db.session.get(PayoutRun, run.id).approved_at is None



@pytest.mark.commits  # each thread its own connection (not the test's one transaction)
def test_two_admins_confirming_at_once_approve_the_run_once(app, people, stripe_client,
                                                            sandbox):
    """Both read the run unapproved and confirm: one approval, one set of transfers."""
    import threading

    from portal.auth.models import User
    from portal.payouts import services as payouts
    from tests.helpers import committed

    account = ready_account(stripe_client, sandbox, people["vendor"])
    pay(stripe_client, people["customer"], people["vendor"], amounts=(10000,))
    run = run_now()
    start, outcomes = threading.Barrier(2), []

    def confirm(admin_id):
        with app.app_context():
            try:
                start.wait()
                with committed():
                    outcomes.append(payouts.approve_run(db.session.get(User, admin_id), run.id))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=confirm, args=(people[a].id,))
               for a in ("admin", "admin2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=str) == [1, None]
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "payout.run_approved")) == 1
    assert [t.amount for t in transfers_to(stripe_client, account.stripe_account_id)] == [9000]
