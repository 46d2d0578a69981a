"""Issue 17, item 8: mixed load on one app on PostgreSQL, all at once.

Three checkout threads pay orders of two vendors through the JSON API (create-intent, then
confirm server-side, or confirm at Stripe as Stripe.js does and open the return page), and
refund part of each payment at once; two senders deliver the webhooks of those payments,
shuffled, some twice, some stale; two admins race, payment after payment, to refund more
than half of payments paid before, while a smaller refund of the same payment goes through.
Jobs run in-process, in the thread of the request that queued them, as without Redis.

The outcome is the same whatever the interleaving, and it is what customers, vendors and
admins would notice: each payment paid once, refunds never beyond what was paid and
mirrored once, each vendor's lines summing to their share less the refunds, one receipt and
one order notification per payment, every event processed once, and no 500.
"""

from __future__ import annotations

import collections
import queue
import random
import threading
import traceback

import pytest
import sqlalchemy as sa
import stripe

from portal.audit.models import AuditEntry
from portal.extensions import db
from portal.ledger import splits
from portal.ledger.models import Payment, SplitLine
from portal.orders.models import Order, OrderItem
from portal.outbox.models import OutboxMessage
from portal.refunds.models import RefundRequest
from portal.webhooks.handlers import HANDLERS
from portal.webhooks.models import StripeEvent
from tests.helpers import PASSWORD, bearer, committed, event_body, make_order, sign
from tests.integration.api_support import card_pm, dumps, intent_body, pay

SECRET = "whsec_portal_tests"
CHECKOUTS = 8  # orders paid during the load
PAID = 4  # payments paid before it, refunded during it
RACED, PARTIAL, AT_ONCE = 7000, 2500, 1000  # minor units; 2 x RACED > a paid payment
WAIT_S = 30  # for another thread: a bound on a hang, never a delay


def two_vendor_order(customer, vendor, vendor2, amount: int) -> Order:
    order = make_order(customer, vendor, amounts=(amount,), tax=101)
    db.session.add(OrderItem(order_id=order.id, vendor_id=vendor2.id, position=9,
                             description="Other", quantity=1, unit_amount=3333))
    order.subtotal += 3333
    order.total += 3333
    db.session.commit()
    return order


class Load:
    """What the threads share: their results, by what they did, and their failures."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: list[tuple[str, int]] = []  # (what, HTTP status)
        self.refunds: dict[tuple, tuple[int, dict]] = {}  # (payment, who) -> (status, body)
        self.errors: list[str] = []

    def answered(self, what: str, r) -> None:
        with self.lock:
            self.statuses.append((what, r.status_code))

    def thread(self, target, *args) -> threading.Thread:
        def run():
            try:
                target(*args)
            except BaseException:  # noqa: BLE001 - reported by the test
                with self.lock:
                    self.errors.append(traceback.format_exc())

        return threading.Thread(target=run)


class Stripe:
    """Stripe's side of the webhooks: each event is sent, in the shuffled order, once what
    it tells has happened."""

    def __init__(self):
        self.changed = threading.Condition()
        self.intents: dict = {}  # payment (checkout number or id) -> PaymentIntent id
        self.reached: set = set()  # (payment, stage)
        self.waiting: list = []

    def happened(self, payment, stage: str, intent: str | None = None) -> None:
        with self.changed:
            if intent is not None:
                self.intents[payment] = intent
            self.reached.add((payment, stage))
            self.changed.notify_all()

    def send(self, deliveries: list) -> None:
        with self.changed:
            self.waiting = list(deliveries)

    def next_delivery(self) -> tuple | None:
        """(intent, event id, type) of the first event due; None when all are sent."""
        with self.changed:
            while self.waiting:
                for i, (payment, stage, event_id, event_type) in enumerate(self.waiting):
                    if (payment, stage) in self.reached:
                        del self.waiting[i]
                        return self.intents[payment], event_id, event_type
                assert self.changed.wait(WAIT_S), "no checkout went on"
            return None


@pytest.mark.commits
def test_checkouts_webhooks_and_refunds_at_once_keep_every_payment_right(
        app, people, sandbox, stripe_client, no_rate_limits):
    customer, vendor, vendor2 = people["customer"], people["vendor"], people["vendor2"]
    # Paid before the load, each 10000 + 3333 (two vendors): refunded during it.
    before = [pay(stripe_client, customer, vendor, vendor2=vendor2).id for _ in range(PAID)]
    orders = [two_vendor_order(customer, vendor, vendor2, 2000 + 111 * n)
              for n in range(CHECKOUTS)]
    bodies = [dumps(intent_body(order)) for order in orders]
    order_ids = [order.id for order in orders]
    intents_before = {p.id: p.stripe_payment_intent_id for p in db.session.scalars(
        sa.select(Payment).where(Payment.id.in_(before)))}
    methods = [card_pm(stripe_client) for _ in range(CHECKOUTS)]
    as_customer = bearer(customer)
    as_admin = {"admin": bearer(people["admin"]), "admin2": bearer(people["admin2"])}
    db.session.remove()  # the test holds no connection while the load runs

    load = Load()
    stripe_side = Stripe()
    todo: queue.Queue[int] = queue.Queue()
    for n in range(CHECKOUTS):
        todo.put(n)

    def checkout_thread():
        client = app.test_client()
        assert client.post("/login", data={"email": customer.email,
                                           "password": PASSWORD}).status_code == 302
        own_stripe = stripe.StripeClient("sk_test_portal", base_addresses={"api": sandbox.url})
        json = {**as_customer, "Content-Type": "application/json"}
        while True:
            try:
                n = todo.get_nowait()
            except queue.Empty:
                return
            r = client.post("/api/payments/create-intent", data=bodies[n], headers=json)
            load.answered("create-intent", r)
            intent = r.json["paymentIntent"]["id"]
            stripe_side.happened(n, "created", intent)
            if n % 2 == 0:  # confirmed server-side: Stripe's events race the confirm's end
                stripe_side.happened(n, "confirmed")
                r = client.post("/api/payments/confirm", headers=json, data=dumps(
                    {"paymentIntentId": intent, "paymentMethodId": methods[n]}))
                load.answered("confirm", r)
                assert r.json["payment"]["status"] == "succeeded", r.json
                payment_id = r.json["payment"]["id"]
            else:  # by Stripe.js, then the return page races Stripe's events
                own_stripe.v1.payment_intents.confirm(
                    intent, params={"payment_method": methods[n]})
                stripe_side.happened(n, "confirmed")
                load.answered("return page", client.get(f"/checkout/{order_ids[n]}/complete"))
                r = client.get("/api/payments/history?limit=100", headers=as_customer)
                load.answered("history", r)
                [shown] = [p for p in r.json["payments"] if p["orderId"] == str(order_ids[n])]
                assert shown["status"] == "succeeded", shown  # settled by the page or a webhook
                payment_id = shown["_id"]
            r = client.post("/api/payments/refund", headers=as_admin["admin"],
                            json={"paymentId": payment_id, "amount": AT_ONCE})
            with load.lock:
                load.refunds[(n, "at once")] = (r.status_code, r.json)

    # Every payment's webhooks, some twice (a redelivery), shuffled across payments; Stripe
    # sends an event once what it tells has happened (the checkout's intent created or
    # confirmed; the payments paid before: at once).
    deliveries = []
    for n in range(CHECKOUTS):
        deliveries += [(n, "created", f"evt_pi_new_{n}", "payment_intent.created")]
        deliveries += [(n, "confirmed", f"evt_pi_ok_{n}", "payment_intent.succeeded")] * 2
        deliveries += [(n, "confirmed", f"evt_pi_late_{n}", "payment_intent.processing"),
                       (n, "confirmed", f"evt_ch_ok_{n}", "charge.succeeded")]  # ignored
        deliveries += [(n, "confirmed", f"evt_ch_refunded_{n}", "charge.refunded")] * 2
    for m, payment_id in enumerate(before):
        stripe_side.happened(payment_id, "created", intents_before[payment_id])
        deliveries += [(payment_id, "created", f"evt_paid_refunded_{m}", "charge.refunded")] * 2
        deliveries += [(payment_id, "created", f"evt_paid_refund_{m}", "refund.created")]
    random.Random(17).shuffle(deliveries)
    stripe_side.send(deliveries)

    def sender_thread():
        client = app.test_client()
        while (delivery := stripe_side.next_delivery()) is not None:
            intent, event_id, event_type = delivery
            if event_type.startswith("payment_intent."):
                obj = {"id": intent, "object": "payment_intent",
                       "status": event_type.split(".")[1]}  # stale or not: re-read
            elif event_type == "refund.created":
                obj = {"id": f"re_{event_id}", "object": "refund", "payment_intent": intent}
            else:
                obj = {"id": f"ch_{event_id}", "object": "charge", "payment_intent": intent}
            body = event_body(event_id, event_type, obj)
            load.answered(event_type, client.post(
                "/api/payments/webhook", data=body,
                headers={"Stripe-Signature": sign(body, SECRET),
                         "Content-Type": "application/json"}))

    # Two admins, payment after payment, each refund RACED at the same moment (only one
    # fits), then one of them a smaller PARTIAL refund, which fits either way.
    barriers = [threading.Barrier(2, timeout=WAIT_S) for _ in before]

    def admin_thread(who: str, turn: int):
        client = app.test_client()
        for m, payment_id in enumerate(before):
            barriers[m].wait()
            amounts = [("raced", RACED)] + ([("partial", PARTIAL)] if m % 2 == turn else [])
            for kind, amount in amounts:
                r = client.post("/api/payments/refund", headers=as_admin[who],
                                json={"paymentId": str(payment_id), "amount": amount})
                with load.lock:
                    load.refunds[(payment_id, who, kind)] = (r.status_code, r.json)

    threads = ([load.thread(checkout_thread) for _ in range(3)]
               + [load.thread(sender_thread) for _ in range(2)]
               + [load.thread(admin_thread, "admin", 0), load.thread(admin_thread, "admin2", 1)])
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 2)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    assert not load.errors, "\n".join(load.errors)

    # --- what the threads were told ---------------------------------------------------------
    assert [s for s in load.statuses if s[1] >= 500] == []
    assert {s for _, s in load.statuses} == {200}
    assert len(load.statuses) == 2 * CHECKOUTS + CHECKOUTS // 2 + len(deliveries)
    for n in range(CHECKOUTS):
        status, body = load.refunds[(n, "at once")]
        assert (status, body["refund"]["status"], body["refund"]["amount"]) == (
            200, "succeeded", AT_ONCE), body
    for payment_id in before:
        raced = sorted(load.refunds[(payment_id, who, "raced")][0] for who in as_admin)
        assert raced == [200, 400], [load.refunds[(payment_id, w, "raced")] for w in as_admin]
        refused = next(body for status, body in (
            load.refunds[(payment_id, w, "raced")] for w in as_admin) if status == 400)
        assert refused["error"]["code"] == "invalid_refund_amount"
        [partial] = [load.refunds[k] for k in load.refunds if k[0] == payment_id
                     and k[2] == "partial"]
        assert partial[0] == 200 and partial[1]["refund"]["status"] == "succeeded"

    # --- what the database and Stripe hold --------------------------------------------------
    payments = list(db.session.scalars(sa.select(Payment).order_by(Payment.created_at)))
    assert len(payments) == PAID + CHECKOUTS
    refunded_by = {p: RACED + PARTIAL for p in before}
    lines = collections.defaultdict(list)
    for line in db.session.scalars(sa.select(SplitLine)):
        lines[line.payment_id].append(line)
    messages = collections.Counter(db.session.execute(
        sa.select(OutboxMessage.payment_id, OutboxMessage.kind)).all())
    intents = collections.defaultdict(list)  # order id -> its PaymentIntents at Stripe
    for pi in stripe_client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
        intents[pi.to_dict()["metadata"].get("orderId")].append(pi)
    for payment in payments:
        expected = refunded_by.get(payment.id, AT_ONCE)
        # Paid once: succeeded here, one intent at Stripe that received the amount once.
        assert (payment.status, payment.order.status) == ("succeeded", "paid")
        [pi] = intents[str(payment.order_id)]
        assert (pi.id, pi.status, pi.amount_received) == (
            payment.stripe_payment_intent_id, "succeeded", payment.amount)
        # Refunded what was asked and accepted, never more, and each refund mirrored once.
        at_stripe = stripe_client.v1.refunds.list(
            params={"payment_intent": pi.id, "limit": 100}).data
        ours = list(db.session.scalars(sa.select(RefundRequest).where(
            RefundRequest.payment_id == payment.id)))
        assert payment.amount_refunded == expected <= payment.amount
        assert sum(r.amount for r in at_stripe if r.status == "succeeded") == expected
        assert sorted((r.stripe_refund_id, r.status, r.source) for r in ours) == sorted(
            (r.id, "succeeded", "admin") for r in at_stripe)
        # Each vendor: one sale line, and lines summing to the sale less their share of
        # the refunds (ledger.splits' rule), fees likewise.
        sales = sorted((line for line in lines[payment.id] if line.kind == "sale"),
                       key=lambda line: str(line.vendor_id))
        assert sorted(s.vendor_id for s in sales) == sorted([vendor.id, vendor2.id])
        targets = splits.refund_targets([(s.gross, s.fee) for s in sales], expected,
                                        payment.amount)
        for sale, (gross_back, fee_back) in zip(sales, targets, strict=True):
            mine = [line for line in lines[payment.id] if line.vendor_id == sale.vendor_id]
            assert sum(line.gross for line in mine) == sale.gross - gross_back
            assert sum(line.fee for line in mine) == sale.fee - fee_back
            assert all(line.net == line.gross - line.fee for line in mine)
        assert sum(line.gross for line in lines[payment.id]) == payment.amount - expected
        # One receipt, one order notification, one refund notice per refund.
        assert messages[(payment.id, "receipt_email")] == 1
        assert messages[(payment.id, "order_notification")] == 1
        assert messages[(payment.id, "refund_email")] == len(at_stripe)
    # The audit log: each refund approved once and succeeded once; nothing imported twice.
    audits = collections.Counter(db.session.execute(
        sa.select(AuditEntry.refund_request_id, AuditEntry.action)).all())
    requests = db.session.scalars(sa.select(RefundRequest.id)).all()
    assert len(requests) == 2 * PAID + CHECKOUTS  # a refused refund leaves no request
    for request_id in requests:
        for action in ("refund.requested", "refund.approved", "refund.succeeded"):
            assert audits[(request_id, action)] == 1, (request_id, action)
    assert not [a for (_, a) in audits if a == "refund.imported"]
    # Every event stored once and taken once: none failed, none waiting, none twice.
    events = {e.id: (e.status, e.attempts) for e in db.session.execute(
        sa.select(StripeEvent.id, StripeEvent.status, StripeEvent.attempts))}
    assert events == {event_id: ("processed" if event_type in HANDLERS else "ignored", 1)
                      for _, _, event_id, event_type in deliveries}


# --- what the load found, made deterministic -----------------------------------------------------

# `commits`: the app's own session, which keeps what it read across commits
# (expire_on_commit=False); the rolled-back tests' session expires it at every commit.
@pytest.mark.commits
@pytest.mark.parametrize("meanwhile", ["succeeded", "failed at the bank"])
def test_a_refund_mirrored_by_its_webhook_while_its_job_waits_on_stripe_is_applied_once(
        client, people, stripe_client, sandbox, monkeypatch, meanwhile):
    """The refund job asked Stripe; before it applies the answer, the refund's webhook has
    mirrored it (under load, the webhook is often first). The job then applies the state
    the request has now, not the one it read before calling Stripe: the success is audited
    once, and a refund the bank refused meanwhile stays failed (its money is not counted
    as refunded)."""
    from portal import stripe_gateway as gateway
    from portal.refunds import services as refunds

    customer, admin = people["customer"], people["admin"]
    payment = pay(stripe_client, customer, people["vendor"])
    with committed():
        request = refunds.request_refund(customer, payment, amount=4000, reason="other")
    with committed():
        refunds.approve(admin, request.id, execute=False)
    real = gateway.create_refund

    def answered_then_webhook(**kwargs):
        refund = real(**kwargs)
        kind = "refund.created"
        if meanwhile == "failed at the bank":
            sandbox.test_hook("POST", f"/_sandbox/refunds/{refund.id}/fail",
                              failure_reason="expired_or_canceled_card")
            kind = "refund.failed"
        body = event_body(f"evt_{kind}", kind, {
            "id": refund.id, "object": "refund",
            "payment_intent": payment.stripe_payment_intent_id})
        assert client.post("/api/payments/webhook", data=body, headers={
            "Stripe-Signature": sign(body, SECRET),
            "Content-Type": "application/json"}).status_code == 200
        return refund

    monkeypatch.setattr(gateway, "create_refund", answered_then_webhook)
    with committed():
        refunds.execute_refund(str(request.id))

    db.session.expire_all()
    done = db.session.get(RefundRequest, request.id)
    refunded = db.session.get(Payment, payment.id).amount_refunded
    audits = db.session.scalars(sa.select(AuditEntry.action).where(
        AuditEntry.refund_request_id == request.id).order_by(AuditEntry.at)).all()
    told = [m.payload["status"] for m in db.session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.payment_id == payment.id, OutboxMessage.kind == "refund_email"))]
    if meanwhile == "succeeded":
        assert (done.status, refunded) == ("succeeded", 4000)
        assert audits == ["refund.requested", "refund.approved", "refund.succeeded"]
        assert told == ["succeeded"]
    else:  # the customer was told it failed: it is not "succeeded" afterwards
        assert (done.status, refunded) == ("failed", 0)
        assert audits == ["refund.requested", "refund.approved", "refund.failed"]
        assert told == ["failed"]
