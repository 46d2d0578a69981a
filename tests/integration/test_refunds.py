"""Refunds (issue 5): requests, the admin queue, execution at Stripe exactly once, webhooks,
the remainder under concurrency, bulk decisions, split lines, and the refund API."""

from __future__ import annotations

import threading
import urllib.request
import uuid

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEntry
from portal.extensions import db
from portal.ledger.models import Payment, SplitLine
from portal.refunds import services as refunds
from portal.refunds.models import RefundRequest
from tests import helpers
from tests.helpers import bearer, committed, login
from tests.integration.api_support import pay

SECRET = "whsec_portal_tests"


def stripe_refunds(stripe_client, payment) -> list:
    return stripe_client.v1.refunds.list(params={
        "payment_intent": payment.stripe_payment_intent_id}).data


def fresh(payment) -> Payment:
    db.session.expire_all()
    return db.session.get(Payment, payment.id)


def lines(payment, kind=None) -> list[SplitLine]:
    query = sa.select(SplitLine).where(SplitLine.payment_id == payment.id)
    if kind:
        query = query.where(SplitLine.kind == kind)
    return list(db.session.scalars(query))


def approved(people, payment, amount) -> RefundRequest:
    """The customer's request of ``amount``, approved by an admin; not executed yet."""
    with committed():
        request = refunds.request_refund(people["customer"], payment, amount=amount,
                                         reason="other")
    with committed():
        refunds.approve(people["admin"], request.id, execute=False)
    return request


# --- the customer's request and the admin's decision ------------------------------------------

def test_customer_requests_40_admin_approves_then_70_is_refused_with_the_remainder(
        client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    login(client, people["customer"].email)
    page = client.get(f"/payments/{payment.id}").text
    assert "Up to <strong>$100.00</strong> can be refunded." in page
    r = client.post(f"/payments/{payment.id}/refunds",
                    data={"amount": "40.00", "reason": "customer_request", "notes": "Too big"})
    assert r.status_code == 302
    request = db.session.scalar(sa.select(RefundRequest))
    assert (request.status, request.amount, request.source) == ("requested", 4000, "customer")

    client.post("/logout")
    login(client, people["admin"].email)
    queue = client.get("/admin/refunds").text
    assert "carol@example.test" in queue and "$40.00" in queue and "Too big" in queue
    row = client.post(f"/admin/refunds/{request.id}/approve", headers={"HX-Request": "true"})
    assert row.status_code == 200 and row.text.lstrip().startswith("<tr")
    assert "Approved $40.00." in row.text
    # Executed (in-process here, by the RQ worker in production) with Stripe.
    [refund] = stripe_refunds(stripe_client, payment)
    assert (refund.amount, refund.status) == (4000, "succeeded")
    assert refund.metadata["refundRequestId"] == str(request.id)
    db.session.expire_all()
    assert db.session.get(RefundRequest, request.id).status == "succeeded"
    assert fresh(payment).amount_refunded == 4000

    client.post("/logout")
    login(client, people["customer"].email)
    history = client.get("/payments").text
    assert "Partially refunded</span> $40.00" in history
    r = client.post(f"/payments/{payment.id}/refunds",
                    data={"amount": "70.00", "reason": "customer_request"})
    assert r.status_code == 400
    assert "Only $60.00 of this payment can still be refunded." in r.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest)) == 1
    assert "Succeeded" in client.get(f"/payments/{payment.id}").text  # the decision shows


@pytest.mark.parametrize(("amount", "message"), [
    ("", "Choose items to refund or enter an amount."), ("0", "more than zero"),
    ("-5", "must not be negative"),
    ("abc", "is not a number"), ("40.001", "decimal"), ("100.01", "Only $100.00"),
])
def test_bad_request_amounts_rerender_the_form_and_store_nothing(client, people, stripe_client,
                                                                 amount, message):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    login(client, people["customer"].email)
    r = client.post(f"/payments/{payment.id}/refunds",
                    data={"amount": amount, "reason": "customer_request"})
    assert r.status_code == 400
    assert message.lower() in r.text.lower(), r.text[r.text.find("error"):][:400]
    assert 'aria-invalid="true"' in r.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest)) == 0


def test_admin_may_approve_a_smaller_amount_or_reject_with_a_note(client, people,
                                                                 stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    with committed():
        first = refunds.request_refund(people["customer"], payment, amount=5000,
                                       reason="damaged")
    with committed():
        second = refunds.request_refund(people["vendor"], payment, amount=1000,
                                        reason="other")  # one request waiting per requester
    login(client, people["admin"].email)
    r = client.post(f"/admin/refunds/{first.id}/approve", data={"amount": "30.00"},
                    headers={"HX-Request": "true"})
    assert "Approved $30.00." in r.text
    r = client.post(f"/admin/refunds/{second.id}/reject", data={"note": "Outside the window"},
                    headers={"HX-Request": "true"})
    assert "Rejected." in r.text
    assert [x.amount for x in stripe_refunds(stripe_client, payment)] == [3000]
    client.post("/logout")
    login(client, people["customer"].email)
    page = client.get(f"/payments/{payment.id}").text
    assert "Outside the window" in page and "Rejected" in page
    assert "(asked $50.00)" in page
    actions = db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.at)).all()
    assert actions == ["refund.requested", "refund.requested", "refund.approved",
                       "refund.succeeded", "refund.rejected"]


def test_a_decided_request_cannot_be_decided_again(client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    with committed():
        request = refunds.request_refund(people["customer"], payment, amount=1000,
                                         reason="other")
    with committed():
        refunds.reject(people["admin"], request.id)
    login(client, people["admin"].email)
    r = client.post(f"/admin/refunds/{request.id}/approve", headers={"HX-Request": "true"})
    assert "This request is already rejected." in r.text
    assert stripe_refunds(stripe_client, payment) == []


# --- who may do what --------------------------------------------------------------------------

def test_customers_cannot_refund_or_request_for_others(client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    login(client, people["other"].email)
    assert client.post(f"/payments/{payment.id}/refunds",
                       data={"amount": "10", "reason": "other"}).status_code == 404
    assert client.get("/admin/refunds").status_code == 404
    r = client.post("/api/payments/refund", headers=bearer(people["customer"]),
                    json={"paymentId": str(payment.id)})
    assert r.status_code == 403 and r.json["error"]["code"] == "forbidden"
    client.post("/logout")
    login(client, people["customer"].email)
    assert "Approve" not in client.get(f"/payments/{payment.id}").text
    assert stripe_refunds(stripe_client, payment) == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest)) == 0


def test_a_vendor_requests_only_for_payments_with_their_items(client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    login(client, people["vendor"].email)
    sales = client.get("/vendor/sales").text
    assert f"Request a refund of order #{payment.order.number}" in sales
    assert "4242" not in sales  # never the customer's card details
    assert client.get(f"/vendor/sales/{payment.id}/refund").status_code == 200
    r = client.post(f"/payments/{payment.id}/refunds",
                    data={"amount": "25", "reason": "not_received"})
    assert r.status_code == 302
    assert db.session.scalar(sa.select(RefundRequest.source)) == "vendor"
    client.post("/logout")
    login(client, people["outsider"].email)
    assert "Request a refund" not in client.get("/vendor/sales").text
    assert client.get(f"/vendor/sales/{payment.id}/refund").status_code == 404
    assert client.post(f"/payments/{payment.id}/refunds",
                       data={"amount": "25", "reason": "other"}).status_code == 404


# --- money goes back once ---------------------------------------------------------------------

@pytest.mark.commits
def test_two_admins_approving_60_and_60_of_100_at_once_refund_once(app, people,
                                                                  stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    with committed():
        ids = [refunds.request_refund(people[who], payment, amount=6000, reason="other").id
               for who in ("customer", "admin")]  # an admin's does not wait for the other
    start, outcomes = threading.Barrier(2), []

    def decide(admin_id, request_id):
        with app.app_context():
            from portal.auth.models import User

            admin = db.session.get(User, admin_id)
            start.wait()
            try:
                with committed():
                    refunds.approve(admin, request_id, execute=False)
                outcomes.append("approved")
            except refunds.RefundError as exc:
                outcomes.append(exc.message)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=decide, args=(people[a].id, rid))
               for a, rid in (("admin", ids[0]), ("admin2", ids[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["Only $40.00 of this payment can still be refunded.",
                                "approved"]
    approved = db.session.scalar(sa.select(RefundRequest.id).where(
        RefundRequest.status == "approved"))
    with committed():
        refunds.execute_refund(str(approved))
    assert [r.amount for r in stripe_refunds(stripe_client, payment)] == [6000]


def test_refund_job_killed_after_stripe_answered_then_retried_makes_one_refund(
        people, stripe_client, monkeypatch):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    request = approved(people, payment, 2500)

    class Killed(BaseException):
        """The worker dies: Stripe has answered, nothing after it is committed."""

    mirror = refunds._mirror
    monkeypatch.setattr(refunds, "_mirror", lambda *a: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed), committed():
        refunds.execute_refund(str(request.id))
    db.session.rollback()
    assert db.session.get(RefundRequest, request.id).status == "processing"
    assert len(stripe_refunds(stripe_client, payment)) == 1
    monkeypatch.setattr(refunds, "_mirror", mirror)
    with committed():
        refunds.execute_refund(str(request.id))  # RQ's retry
    [refund] = stripe_refunds(stripe_client, payment)
    db.session.expire_all()
    done = db.session.get(RefundRequest, request.id)
    assert (done.status, done.stripe_refund_id, refund.amount) == ("succeeded", refund.id, 2500)
    assert fresh(payment).amount_refunded == 2500


def fail_at_stripe(monkeypatch, gateway):
    """Stripe refuses every refund asked for (a 400)."""
    def refused(**_):
        raise gateway.GatewayError("Charge ch_1 has been disputed.", code="charge_disputed",
                                   stripe_status=400)

    monkeypatch.setattr(gateway, "create_refund", refused)


def test_stripe_refusing_the_refund_ends_the_request_failed(people, stripe_client,
                                                          monkeypatch):
    from portal import stripe_gateway as gateway

    payment = pay(stripe_client, people["customer"], people["vendor"])
    request = approved(people, payment, 2500)
    fail_at_stripe(monkeypatch, gateway)
    with committed():
        refunds.execute_refund(str(request.id))
    db.session.expire_all()
    done = db.session.get(RefundRequest, request.id)
    assert (done.status, done.failure_message) == ("failed", "Charge ch_1 has been disputed.")
    assert refunds.remaining(fresh(payment)) == 10000  # nothing held back any more


def test_stripe_unreachable_raises_so_the_job_is_retried(people, stripe_client, monkeypatch):
    from portal import stripe_gateway as gateway

    payment = pay(stripe_client, people["customer"], people["vendor"])
    request = approved(people, payment, 2500)

    def down(**_):
        raise gateway.GatewayError("timeout", retryable=True)

    monkeypatch.setattr(gateway, "create_refund", down)
    with pytest.raises(gateway.GatewayError), committed():
        refunds.execute_refund(str(request.id))
    db.session.rollback()
    assert db.session.get(RefundRequest, request.id).status == "processing"
    assert refunds.remaining(fresh(payment)) == 7500  # still held for the retry


def post_event(client, event_type, obj):
    assert helpers.post_event(client, event_type, obj).status_code == 200


def test_refund_made_in_stripe_is_imported_and_lowers_the_remainder(client, people,
                                                                    stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    refund = stripe_client.v1.refunds.create(params={
        "payment_intent": payment.stripe_payment_intent_id, "amount": 1500,
        "reason": "duplicate"})
    post_event(client, "refund.created", refund.to_dict())
    post_event(client, "charge.refunded", {"id": "ch_x", "object": "charge",
                                           "payment_intent": payment.stripe_payment_intent_id})
    imported = db.session.scalars(sa.select(RefundRequest)).all()
    assert [(r.source, r.status, r.amount, r.reason) for r in imported] == [
        ("stripe", "succeeded", 1500, "duplicate")]
    assert refunds.remaining(fresh(payment)) == 8500
    assert db.session.scalar(sa.select(AuditEntry.action).where(
        AuditEntry.action == "refund.imported")) == "refund.imported"


# --- bulk -------------------------------------------------------------------------------------

def test_bulk_approve_of_20_where_2_exceed_their_remainder(client, people, stripe_client):
    customer, vendor = people["customer"], people["vendor"]
    ids, over = [], []
    for _ in range(16):
        payment = pay(stripe_client, customer, vendor, amounts=(2000,))
        with committed():
            ids.append(refunds.request_refund(customer, payment, amount=1000, reason="other").id)
    for _ in range(2):  # two requests of 15.00 each on a 20.00 payment: one must be refused
        payment = pay(stripe_client, customer, vendor, amounts=(2000,))
        with committed():
            pair = [refunds.request_refund(who, payment, amount=1500, reason="other").id
                    for who in (customer, people["admin"])]
        ids += pair
        over.append(pair[1])
    login(client, people["admin"].email)
    chosen = {"action": "approve", "ids": [str(i) for i in ids]}
    # First the amounts, to confirm: nothing is approved yet.
    r = client.post("/admin/refunds/bulk", data=chosen, headers={"HX-Request": "true"})
    assert "Approve 20 refunds totalling $220.00?" in r.text
    assert r.text.count('name="ids"') == 20 and 'name="confirm" value="yes"' in r.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest).where(
        RefundRequest.status != "requested")) == 0
    r = client.post("/admin/refunds/bulk", data={**chosen, "confirm": "yes"},
                    headers={"HX-Request": "true"})
    assert "18 of 20 approved." in r.text
    assert r.text.count("Only $5.00 of this payment can still be refunded.") == 2
    db.session.expire_all()
    statuses = {i: db.session.get(RefundRequest, i).status for i in ids}
    assert [i for i, s in statuses.items() if s != "succeeded"] == over
    assert all(statuses[i] == "requested" for i in over)  # refused ones are unchanged
    total = db.session.scalar(sa.select(sa.func.sum(Payment.amount_refunded)))
    assert total == 16 * 1000 + 2 * 1500


# --- split lines ------------------------------------------------------------------------------

def test_split_lines_follow_the_sale_and_the_refunds_exactly(people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"], amounts=(6667,),
                  vendor2=people["vendor2"], tax=1001, shipping=299)
    sales = lines(payment, "sale")
    assert sum(s.gross for s in sales) == payment.amount == 6667 + 3333 + 1001 + 299
    assert sum(s.fee for s in sales) == payment.platform_fee == 667 + 333
    assert payment.vendor_amount == payment.amount - payment.platform_fee
    for amount in (3333, 1, payment.amount - 3334):
        with committed():
            request = refunds.request_refund(people["customer"], payment, amount=amount,
                                             reason="other")
        with committed():
            refunds.approve(people["admin"], request.id)
    payment = fresh(payment)
    assert payment.amount_refunded == payment.amount
    every = lines(payment)
    for vendor in (people["vendor"], people["vendor2"]):
        mine = [line for line in every if line.vendor_id == vendor.id]
        assert sum(line.gross for line in mine) == 0 and sum(line.fee for line in mine) == 0
        assert all(line.net == line.gross - line.fee for line in mine)


# --- the API (endpoint 9) ---------------------------------------------------------------------

def test_api_refund_answers_the_documented_shape(client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    r = client.post("/api/payments/refund", headers=bearer(people["admin"]), json={
        "paymentId": str(payment.id), "amount": 2500, "reason": "customer_request",
        "notes": "Customer changed their mind"})
    assert r.status_code == 200, r.json
    refund = r.json["refund"]
    assert set(refund) == {"id", "paymentId", "amount", "currency", "status", "reason",
                           "createdAt"}
    assert refund["id"].startswith("re_") and refund["paymentId"] == str(payment.id)
    assert (refund["amount"], refund["currency"], refund["status"], refund["reason"]) == (
        2500, "usd", "succeeded", "customer_request")
    request = db.session.scalar(sa.select(RefundRequest))
    assert (request.source, request.decided_by_id) == ("admin", people["admin"].id)


def test_api_refund_without_amount_refunds_the_whole_remainder(client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    headers = bearer(people["admin"])
    client.post("/api/payments/refund", headers=headers,
                json={"paymentId": str(payment.id), "amount": 2500})
    r = client.post("/api/payments/refund", headers=headers, json={"paymentId": str(payment.id)})
    assert r.json["refund"]["amount"] == 7500
    assert fresh(payment).refund_state == "refunded"
    shown = client.get(f"/api/payments/payments/{payment.id}",
                       headers=bearer(people["customer"])).json["payment"]
    assert (shown["amountRefunded"], shown["refundStatus"]) == (10000, "refunded")
    [item] = client.get("/api/payments/history", headers=bearer(people["customer"])).json[
        "payments"]
    assert (item["amountRefunded"], item["refundStatus"]) == (10000, "refunded")
    r = client.post("/api/payments/refund", headers=headers, json={"paymentId": str(payment.id)})
    assert r.status_code == 400 and r.json["error"]["code"] == "invalid_refund_amount"


def test_an_api_refund_refused_at_approval_leaves_nothing_in_the_queue(
        client, people, stripe_client, monkeypatch):
    """The API's refund records the request and its approval in one transaction. Here the
    approval is refused as it is when another admin's approval took the remainder between
    the two steps: the API answers 400 and no "requested" refund is left in the admin queue
    (before, the request was committed first and stayed there)."""
    payment = pay(stripe_client, people["customer"], people["vendor"])
    approve = refunds.approve

    def taken_meanwhile(admin, request_id, **kwargs):
        approve(admin, request_id, **kwargs)
        raise refunds.RefundError("Only $0.00 of this payment can still be refunded.",
                                  "amount", 0)

    monkeypatch.setattr(refunds, "approve", taken_meanwhile)
    r = client.post("/api/payments/refund", headers=bearer(people["admin"]),
                    json={"paymentId": str(payment.id), "amount": 2500})
    assert r.status_code == 400 and r.json["error"]["code"] == "invalid_refund_amount"
    assert db.session.scalars(sa.select(RefundRequest)).all() == []
    assert db.session.scalars(sa.select(AuditEntry.action)).all() == []
    assert stripe_refunds(stripe_client, payment) == []
    login(client, people["admin"].email)
    assert "No refund requests" in client.get("/admin/refunds?status=requested").text


def test_a_keyed_api_refund_that_failed_after_stripe_refunded_is_not_made_again(
        client, people, stripe_client, monkeypatch):
    """A server error after the refund was made at Stripe (here: the database fails while
    the outcome is applied) is stored under the Idempotency-Key: the client's retry with
    the same key gets that answer again instead of a second refund (before, the key was
    freed and the retry refunded 30.00 twice). Reconciliation finishes the first one."""
    payment = pay(stripe_client, people["customer"], people["vendor"])
    recount, failures = refunds._recount, [sa.exc.OperationalError(
        "UPDATE payments", {}, Exception("deadlock detected"))]

    def fails_once(p):
        if failures:
            raise failures.pop()
        return recount(p)

    monkeypatch.setattr(refunds, "_recount", fails_once)
    headers = {**bearer(people["admin"]), "Idempotency-Key": "refund-30-once"}
    body = {"paymentId": str(payment.id), "amount": 3000}
    first = client.post("/api/payments/refund", headers=headers, json=body)
    again = client.post("/api/payments/refund", headers=headers, json=body)
    assert first.status_code == again.status_code == 500
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [r.amount for r in stripe_refunds(stripe_client, payment)] == [3000]
    assert [(r.amount, r.status) for r in db.session.scalars(sa.select(RefundRequest))] == [
        (3000, "processing")]  # in flight: reconciliation adopts Stripe's refund
    with committed():
        refunds.execute_refund(str(db.session.scalar(sa.select(RefundRequest.id))))
    assert fresh(payment).amount_refunded == 3000
    assert [r.amount for r in stripe_refunds(stripe_client, payment)] == [3000]


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"amount": 10001}, 400, "amount"), ({"amount": 0}, 400, "amount"),
    ({"amount": 12.5}, 400, "amount"), ({"amount": "100"}, 400, "amount"),
    ({"reason": "bored"}, 400, "reason"), ({"extra": 1}, 400, "extra"),
])
def test_api_refund_refuses_bad_input_and_refunds_nothing(client, people, stripe_client, body,
                                                          status, field):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    r = client.post("/api/payments/refund", headers=bearer(people["admin"]),
                    json={"paymentId": str(payment.id), **body})
    assert r.status_code == status and field in r.json["error"].get("fields", {}), r.json
    assert stripe_refunds(stripe_client, payment) == []
    if body == {"amount": 10001}:
        assert "Refundable: 10000 minor units." in r.json["error"]["message"]


def test_api_refund_of_an_unknown_payment_is_404(client, people):
    for pid in (str(uuid.uuid4()), "nope"):
        r = client.post("/api/payments/refund", headers=bearer(people["admin"]),
                        json={"paymentId": pid})
        assert r.status_code == 404 and r.json["error"]["code"] == "payment_not_found"


def test_api_refund_needs_a_token(client):
    r = client.post("/api/payments/refund", json={"paymentId": str(uuid.uuid4())})
    assert r.status_code == 401


def test_queue_filters_by_status_and_date(client, people, stripe_client):
    from datetime import UTC, datetime

    payment = pay(stripe_client, people["customer"], people["vendor"])
    with committed():
        old = refunds.request_refund(people["customer"], payment, amount=1000, reason="other")
    with committed():
        new = refunds.request_refund(people["vendor"], payment, amount=2000, reason="damaged")
    with committed():
        refunds.reject(people["admin"], new.id, note="No")
    db.session.get(RefundRequest, old.id).created_at = datetime(2026, 1, 5, tzinfo=UTC)
    db.session.commit()
    login(client, people["admin"].email)
    hx = {"HX-Request": "true"}
    pending = client.get("/admin/refunds", headers=hx).text  # default: pending ones
    assert "$10.00" in pending and "$20.00" not in pending
    assert pending.lstrip().startswith('<div id="queue">')
    rejected = client.get("/admin/refunds?status=rejected", headers=hx).text
    assert "$20.00" in rejected and "$10.00" not in rejected.split("<tbody>")[1]
    january = client.get("/admin/refunds?status=all&from=2026-01-01&to=2026-01-31",
                         headers=hx).text
    assert "$10.00" in january and "Damaged" not in january
    assert "No refund requests here." in client.get(
        "/admin/refunds?status=all&from=2030-01-01", headers=hx).text
    audit = client.get("/admin/audit").text
    assert "refund.rejected" in audit and "ada@example.test" in audit


def fail_at_the_bank(sandbox, refund_id: str, reason: str) -> None:
    """The bank refuses a refund after it succeeded, as Stripe reports asynchronously (the
    sandbox's hook)."""
    hook = urllib.request.Request(f"{sandbox.url}/_sandbox/refunds/{refund_id}/fail",
                                  data=f"failure_reason={reason}".encode(),
                                  headers={"Authorization": "Bearer sk_test_portal"},
                                  method="POST")
    with urllib.request.urlopen(hook, timeout=10) as r:  # noqa: S310 - loopback
        assert r.status == 200


def test_a_refund_failing_after_it_succeeded_gives_the_money_back_to_the_remainder(
        client, people, sandbox, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"], amounts=(6667,),
                  vendor2=people["vendor2"])
    with committed():
        request = refunds.request_refund(people["customer"], payment, amount=5000, reason="other")
    with committed():
        refunds.approve(people["admin"], request.id)
    db.session.expire_all()
    refund_id = db.session.get(RefundRequest, request.id).stripe_refund_id
    assert fresh(payment).amount_refunded == 5000
    fail_at_the_bank(sandbox, refund_id, "expired_or_canceled_card")
    post_event(client, "refund.failed", stripe_client.v1.refunds.retrieve(refund_id).to_dict())
    db.session.expire_all()
    failed = db.session.get(RefundRequest, request.id)
    assert (failed.status, failed.failure_message) == ("failed", "expired_or_canceled_card")
    payment = fresh(payment)
    assert payment.amount_refunded == 0 and refunds.remaining(payment) == payment.amount
    for vendor in (people["vendor"], people["vendor2"]):  # the vendors get their share back
        mine = [line for line in lines(payment) if line.vendor_id == vendor.id]
        sale = next(line for line in mine if line.kind == "sale")
        assert sum(line.gross for line in mine) == sale.gross
    assert "refund.failed" in db.session.scalars(sa.select(AuditEntry.action)).all()


def test_refund_events_out_of_order_end_in_stripes_state(client, people, sandbox,
                                                          stripe_client):
    """Issue 17, item 8: a refund made in Stripe's dashboard that the bank then refuses; its
    events arrive shuffled, `refund.updated` (failed) before `refund.created` (whose payload
    still says succeeded). Each handler reads the refunds as Stripe holds them now, so the
    order changes nothing: one imported request, failed, and the whole payment refundable."""
    payment = pay(stripe_client, people["customer"], people["vendor"])
    created = stripe_client.v1.refunds.create(params={
        "payment_intent": payment.stripe_payment_intent_id, "amount": 4000})
    fail_at_the_bank(sandbox, created.id, "lost_or_stolen_card")
    updated = stripe_client.v1.refunds.retrieve(created.id)
    post_event(client, "refund.updated", updated.to_dict())
    post_event(client, "refund.created", created.to_dict())  # stale: "succeeded"
    db.session.expire_all()
    [request] = db.session.scalars(sa.select(RefundRequest)).all()
    assert (request.source, request.status, request.amount) == ("stripe", "failed", 4000)
    payment = fresh(payment)
    assert payment.amount_refunded == 0 and refunds.remaining(payment) == payment.amount
    assert sum(line.gross for line in lines(payment)) == payment.amount  # vendors whole


# --- notices to the customer and alerts to admins (issue 17, item 6) ------------------------

class FakeSMTP:
    """smtplib.SMTP as the outbox uses it; what it was given to send is kept in ``sent``."""

    sent: list = []

    def __init__(self, host, port, timeout):
        self.host = host

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def send_message(self, mail):
        FakeSMTP.sent.append(mail)


@pytest.fixture
def mailbox(app, test_app, monkeypatch):
    """An SMTP server configured in both apps; returns the mails sent, as text, by subject."""
    from portal.outbox import services as outbox

    for a in (app, test_app):
        monkeypatch.setattr(a.extensions["portal_config"], "SMTP_HOST", "mail.test")
    monkeypatch.setattr(outbox.smtplib, "SMTP", FakeSMTP)
    FakeSMTP.sent = []

    def mails() -> dict[str, str]:
        return {m["Subject"]: f"To: {m['To']}\n\n{m.get_body(('plain',)).get_content()}"
                for m in FakeSMTP.sent}  # the text (a receipt also carries its invoice)
    return mails


def notices(payment, kind):
    from portal.outbox.models import OutboxMessage

    db.session.expire_all()
    return list(db.session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.payment_id == payment.id, OutboxMessage.kind == kind)
        .order_by(OutboxMessage.created_at, OutboxMessage.dedupe_key)))


def test_a_refund_that_succeeds_tells_the_customer_once_with_the_amount_and_the_card(
        client, people, stripe_client, mailbox):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    with committed():
        request = refunds.request_refund(people["customer"], payment, amount=2500,
                                         reason="other")
    with committed():
        refunds.approve(people["admin"], request.id)
    refund_id = db.session.get(RefundRequest, request.id).stripe_refund_id
    for _ in range(2):  # Stripe's events about it change nothing more
        post_event(client, "refund.updated", stripe_client.v1.refunds.retrieve(refund_id)
                   .to_dict())
    [notice] = notices(payment, "refund_email")
    assert (notice.payload["status"], notice.status) == ("succeeded", "sent")
    assert not notices(payment, "admin_alert")
    [(subject, text)] = [m for m in mailbox().items() if "refund" in m[0]]
    assert subject == f"Your refund of $25.00 for order #{payment.order.number}"
    assert "To: carol@example.test" in text and "We refunded $25.00 for order" in text
    assert "to your Visa •••• 4242" in text


def test_a_refund_failing_after_it_succeeded_tells_the_customer_and_alerts_the_admins(
        client, people, sandbox, stripe_client, mailbox):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    with committed():
        request = refunds.request_refund(people["customer"], payment, amount=5000,
                                         reason="other")
    with committed():
        refunds.approve(people["admin"], request.id)
    refund_id = db.session.get(RefundRequest, request.id).stripe_refund_id
    fail_at_the_bank(sandbox, refund_id, "expired_or_canceled_card")
    failed = stripe_client.v1.refunds.retrieve(refund_id).to_dict()
    post_event(client, "refund.failed", failed)
    post_event(client, "refund.failed", failed)  # delivered twice: told once
    told = notices(payment, "refund_email") + notices(payment, "admin_alert")
    assert [(m.kind, m.payload.get("status"), m.status) for m in told] == [
        ("refund_email", "succeeded", "sent"), ("refund_email", "failed", "sent"),
        ("admin_alert", None, "sent")]
    number, mails = payment.order.number, mailbox()
    text = mails[f"Your refund for order #{number} could not be completed"]
    assert "To: carol@example.test" in text and "The refund of $50.00" in text
    assert "Visa •••• 4242" in text and "(expired or canceled card)" in text
    text = mails[f"[ShopSphere] Refund of $50.00 for order #{number} failed after it succeeded"]
    assert text.startswith("To: ada@example.test, alan@example.test\n")  # every admin
    assert refund_id in text and "carol@example.test" in text


def test_a_refund_stripe_refuses_tells_the_customer_without_alerting_admins(
        people, stripe_client, monkeypatch):
    from portal import stripe_gateway as gateway

    payment = pay(stripe_client, people["customer"], people["vendor"])
    request = approved(people, payment, 2500)
    fail_at_stripe(monkeypatch, gateway)
    with committed():
        refunds.execute_refund(str(request.id))
    [notice] = notices(payment, "refund_email")
    assert (notice.payload["status"], notice.payload["amount"]) == ("failed", "$25.00")
    assert not notices(payment, "admin_alert")  # the admin queue shows it failed
