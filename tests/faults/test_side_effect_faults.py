"""Issue 7, side effects under faults, against live processes: the order service failing
before it answers, and a payment whose webhook never arrives settled by reconciliation."""

from __future__ import annotations

import pytest

from tests.faults.support import (
    drive,
    expected_states,
    outbox_problems,
    seed_payments,
    stripe_client,
    wait_for,
)

pytestmark = pytest.mark.faults


def test_order_service_answering_500_three_times_gets_one_delivery_and_three_attempts(
        make_stack, pg, order_service):
    """The sandbox sends its own webhooks; the worker settles the payment and tries the
    notification (500); three forced retries later it is sent: four requests, one 200, all
    with the message id as Idempotency-Key."""
    order_service.failures = 3
    stack = make_stack(webhooks=True, ORDER_SERVICE_URL=order_service.url)
    [pay] = seed_payments(stack, 1)
    drive(stripe_client(stack), pay.intent_id, "succeeded")

    message_id = wait_for(lambda: pg.scalar(
        "SELECT id::text FROM outbox_messages WHERE payment_id = %s AND kind = "
        "'order_notification' AND attempts = 1", (pay.payment_id,)), timeout=30,
        what="the worker's first delivery attempt", diagnostics=stack.diagnostics)
    assert pg.payment_states() == {pay.payment_id: "succeeded"}

    from portal.outbox.services import deliver

    with stack.app.app_context():
        statuses = [deliver(message_id, force=True) for _ in range(4)]
    assert statuses == ["pending", "pending", "sent", "sent"]  # the last: nothing to do

    [(status, attempts, errors, sent_at)] = pg.rows(
        "SELECT status, attempts, errors, sent_at FROM outbox_messages WHERE id = %s",
        (message_id,))
    assert (status, attempts, len(errors)) == ("sent", 4, 3) and sent_at is not None
    assert all("HTTP 500" in e for e in errors), errors
    assert [r[2] for r in order_service.requests] == [500, 500, 500, 200]
    assert {(path, key) for path, key, _, _ in order_service.requests} == {
        (f"/api/orders/{pay.order_id}/payment-status", message_id)}
    body = order_service.requests[-1][3]
    assert (body["paymentId"], body["status"]) == (pay.payment_id, "succeeded")
    assert outbox_problems(pg, {pay.payment_id: "succeeded"}) == []


def test_payments_whose_webhooks_never_arrive_are_settled_by_reconciliation(
        make_stack, pg, order_service):
    """No webhook endpoint is registered at the sandbox: the portal is never told. `flask
    reconcile --minutes 0` settles the three payments from Stripe's state, with their outbox
    rows, which the worker delivers once; a second run checks and changes nothing."""
    stack = make_stack(web=False, ORDER_SERVICE_URL=order_service.url)
    pays = seed_payments(stack, 3)
    client = stripe_client(stack)
    for pay, outcome in zip(pays, ("succeeded", "canceled", "failed"), strict=True):
        drive(client, pay.intent_id, outcome)
    expected = expected_states(stack, pays)
    assert sorted(expected.values()) == ["canceled", "failed", "succeeded"]
    assert set(pg.payment_states().values()) == {"requires_payment_method"}

    run = stack.flask("reconcile", "--minutes", "0")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "payments checked 3, changed 3" in run.stdout, run.stdout
    assert pg.payment_states() == expected
    assert outbox_problems(pg, expected) == []

    notifications = {r[0] for r in pg.rows(
        "SELECT id::text FROM outbox_messages WHERE kind = 'order_notification'")}
    wait_for(lambda: pg.scalar("SELECT count(*) FROM outbox_messages WHERE kind = "
                               "'order_notification' AND status = 'sent'") == 2,
             timeout=30, what="both notifications sent by the worker",
             diagnostics=stack.diagnostics)
    assert sorted(key for _, key, _, _ in order_service.requests) == sorted(notifications)

    # The declined payment is not final (the customer may pay again). It has just changed,
    # so it has a fresh turn (with --minutes 0, at once): looked at, unchanged ...
    again = stack.flask("reconcile", "--minutes", "0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "payments checked 1, changed 0" in again.stdout, again.stdout
    assert "outbox messages queued 0" in again.stdout, again.stdout
    # ... and then not before its next turn, 5 minutes on, unless asked for all.
    later = stack.flask("reconcile", "--minutes", "0")
    assert "payments checked 0, changed 0" in later.stdout, later.stdout + later.stderr
    forced = stack.flask("reconcile", "--minutes", "0", "--all")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "payments checked 1, changed 0" in forced.stdout, forced.stdout
    assert pg.payment_states() == expected
    assert outbox_problems(pg, expected) == []
    assert len(order_service.requests) == 2
