"""Issue 7, webhook intake under faults, against live processes: a burst of duplicated and
shuffled events from concurrent senders, events out of order, Redis down during intake,
PostgreSQL unreachable, and a worker killed in the middle of a job.

The portal's database only learns about the payments through the events (the intents are
driven at the Stripe sandbox directly), and the expected outcome of every payment is the
state of its intent at Stripe as `status_from_intent` maps it.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.faults.support import (
    TcpProxy,
    drive,
    expected_states,
    intent_event,
    new_event,
    outbox_problems,
    post_events,
    seed_payments,
    stripe_client,
    wait_for,
)

pytestmark = pytest.mark.faults

HANDLED = {"payment_intent.processing", "payment_intent.succeeded",
           "payment_intent.payment_failed", "payment_intent.canceled"}
UNRELATED = ("charge.succeeded", "charge.updated", "invoice.paid", "product.created")


def expected_event_status(event_type: str) -> str:
    """A payment_intent.* event of a known intent is processed; the rest is stored and
    marked ignored (payment_intent.created has no handler)."""
    return "processed" if event_type in HANDLED else "ignored"


def event_type_of(body: bytes) -> str:
    return json.loads(body)["type"]


def session_and_processes(pg, backend_pid: int, stack) -> str:
    """Where the killed job's database session is, who holds sockets to PostgreSQL, and
    which sessions wait on which."""
    session = pg.rows("SELECT state, wait_event, xact_start, left(query, 60) "
                      "FROM pg_stat_activity WHERE pid = %s", (backend_pid,))
    waits = pg.rows("SELECT pid, pg_blocking_pids(pid), left(query, 60) FROM pg_stat_activity "
                    "WHERE cardinality(pg_blocking_pids(pid)) > 0")
    ps = subprocess.run(["ps", "-eo", "pid,ppid,stat,args"], capture_output=True, text=True)
    workers = [line for line in ps.stdout.splitlines() if "flask --app wsgi worker" in line]
    ss = subprocess.run(["ss", "-tnpH", "state", "established", "dport", "=", ":5432"],
                        capture_output=True, text=True)
    return (f"killed job's session {backend_pid}: {session}\nlock waits: {waits}\n"
            "worker processes:\n" + "\n".join(workers) + "\nPostgreSQL sockets:\n"
            + ss.stdout + stack.diagnostics())


def assert_processed_once(pg, events) -> None:
    """Each event stored once, processed (or ignored) by exactly one attempt."""
    states = pg.event_states([i for i, _ in events])
    types = {i: event_type_of(b) for i, b in events}
    wrong = {i: (states.get(i), types[i]) for i in types
             if states.get(i) != (expected_event_status(types[i]), 1)}
    assert not wrong, f"{len(wrong)} events not processed exactly once: {list(wrong.items())[:10]}"


def test_2000_duplicated_shuffled_events_from_8_senders_settle_every_payment_once(
        make_stack, pg, order_service):
    """2,000 events over 200 payments, 30 % sent twice, shuffled, 8 senders, 2 gunicorn
    workers and 2 RQ workers: final states as at Stripe, side effects once, no 5xx."""
    stack = make_stack(workers=2, ORDER_SERVICE_URL=order_service.url)
    rng = random.Random(20260707)
    pays = seed_payments(stack, 200)
    outcomes = ["succeeded"] * 90 + ["failed"] * 40 + ["canceled"] * 30 + ["untouched"] * 40
    rng.shuffle(outcomes)
    client = stripe_client(stack)
    intents = {p.payment_id: drive(client, p.intent_id, o) for p, o in zip(pays, outcomes,
                                                                               strict=True)}
    expected = expected_states(stack, pays)
    assert Counter(expected.values()) == {"succeeded": 90, "failed": 40, "canceled": 30,
                                          "requires_payment_method": 40}
    assert set(pg.payment_states().values()) == {"requires_payment_method"}  # not told yet

    events = []
    for pay in pays:
        intent = intents[pay.payment_id]
        events.append(intent_event("payment_intent.created", intent))
        events += [intent_event(rng.choice(sorted(HANDLED)), intent) for _ in range(8)]
    events += [new_event(rng.choice(UNRELATED), {"id": f"ch_faults_{n}", "object": "charge"})
               for n in range(200)]
    assert len(events) == 2000 and len({i for i, _ in events}) == 2000
    sends = events + rng.sample(events, 600)  # 30 % delivered twice (same event id)
    rng.shuffle(sends)

    started = time.monotonic()
    results = post_events(stack.web_url, sends, senders=8)
    intake_s = time.monotonic() - started
    statuses = Counter(status for _, status, _ in results)
    assert statuses == {200: 2600}, f"answers {statuses}: " + str(
        [r for r in results if r[1] != 200][:5])

    wait_for(lambda: pg.all_done(i for i, _ in events), timeout=150, interval=0.25,
             what="every stored event processed or ignored",
             diagnostics=lambda: f"{pg.status_counts()}\n{stack.diagnostics()}")
    total_s = time.monotonic() - started
    print(f"\n2600 deliveries (2000 events): intake {intake_s:.1f} s, "
          f"all processed after {total_s:.1f} s")

    assert pg.scalar("SELECT count(*) FROM stripe_events") == 2000  # each event id once
    assert_processed_once(pg, events)
    assert pg.payment_states() == expected
    assert outbox_problems(pg, expected) == []

    # The notifications reach the order service once each (Idempotency-Key = message id).
    notifications = {r[0] for r in pg.rows(
        "SELECT id::text FROM outbox_messages WHERE kind = 'order_notification'")}
    assert len(notifications) == 120
    wait_for(lambda: pg.scalar("SELECT count(*) FROM outbox_messages WHERE kind = "
                               "'order_notification' AND status = 'sent'") == 120,
             timeout=60, what="every order notification sent", diagnostics=stack.diagnostics)
    assert sorted((key, status) for _, key, status, _ in order_service.requests) == sorted(
        (key, 200) for key in notifications)
    assert set(r[0] for r in pg.rows("SELECT status FROM outbox_messages "
                                     "WHERE kind = 'receipt_email'")) == {"kept"}


def test_succeeded_delivered_before_created_and_processing_leaves_the_payment_succeeded(
        make_stack, pg):
    stack = make_stack()
    pays = seed_payments(stack, 5)
    client = stripe_client(stack)
    intents = [drive(client, p.intent_id, "succeeded") for p in pays]

    first = [intent_event("payment_intent.succeeded", pi) for pi in intents]
    assert {s for _, s, _ in post_events(stack.web_url, first)} == {200}
    wait_for(lambda: pg.all_done(i for i, _ in first), what="the succeeded events processed",
             diagnostics=stack.diagnostics)
    settled = pg.rows("SELECT id::text, status, succeeded_at, receipt_number FROM payments "
                      "ORDER BY id")
    assert {row[1] for row in settled} == {"succeeded"}

    # Then the earlier events arrive, carrying the intent as it was then.
    late = [intent_event(t, pi) for pi in intents
            for t in ("payment_intent.processing", "payment_intent.created")]
    assert {s for _, s, _ in post_events(stack.web_url, late)} == {200}
    wait_for(lambda: pg.all_done(i for i, _ in late), what="the late events processed",
             diagnostics=stack.diagnostics)

    assert pg.rows("SELECT id::text, status, succeeded_at, receipt_number FROM payments "
                   "ORDER BY id") == settled
    assert pg.scalar("SELECT count(*) FROM orders WHERE status = 'paid'") == 5
    assert_processed_once(pg, first + late)
    assert outbox_problems(pg, {p.payment_id: "succeeded" for p in pays}) == []


def test_redis_down_during_intake_events_wait_then_are_processed_once(make_stack, pg):
    """100 events; Redis stops after the first 30 are processed: intake still answers 200
    (it does not use Redis) and the events wait as `received` (RQ's worker, dispatcher and
    all, exits when Redis goes away); Redis back, empty, and the worker restarted (a
    container's restart policy), it queues and processes each once."""
    stack = make_stack()
    pays = seed_payments(stack, 50)
    client = stripe_client(stack)
    intents = [drive(client, p.intent_id, "succeeded") for p in pays]
    events = [intent_event(t, pi) for pi in intents
              for t in ("payment_intent.created", "payment_intent.succeeded")]
    random.Random(3).shuffle(events)
    before, during = events[:30], events[30:]

    assert {s for _, s, _ in post_events(stack.web_url, before, senders=4)} == {200}
    wait_for(lambda: pg.all_done(i for i, _ in before), timeout=60,
             what="the first 30 events processed", diagnostics=stack.diagnostics)
    stack.redis.stop()
    results = post_events(stack.web_url, during, senders=4)
    assert {s for _, s, _ in results} == {200}, results[:5]
    assert pg.event_states(i for i, _ in during) == {i: ("received", 0) for i, _ in during}

    stack.redis.start()  # empty, on the same port
    [worker] = [p for p in stack.procs if p.name == "worker"]
    worker.stop()
    stack.start_worker()  # queues the `received` events at start
    wait_for(lambda: pg.all_done(i for i, _ in events), timeout=60,
             what="the 70 events processed after Redis came back",
             diagnostics=lambda: f"{pg.status_counts()}\n{stack.diagnostics()}")

    assert pg.scalar("SELECT count(*) FROM stripe_events") == 100
    assert_processed_once(pg, events)
    assert set(pg.payment_states().values()) == {"succeeded"}
    assert outbox_problems(pg, {p.payment_id: "succeeded" for p in pays}) == []


def test_postgres_unreachable_intake_answers_503_and_redelivery_processes_once(
        make_stack, pg, faults_db):
    """gunicorn reaches PostgreSQL through a proxy that is then cut: every delivery gets a
    503 and nothing is stored; the proxy back, Stripe's redelivery is processed once."""
    real = make_url(faults_db)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    proxy.open()
    try:
        proxied = real.set(host="127.0.0.1", port=proxy.port,
                           query={"connect_timeout": "2"}).render_as_string(hide_password=False)
        stack = make_stack(web_env={"DATABASE_URL": proxied})  # the worker connects directly
        pays = seed_payments(stack, 20)
        client = stripe_client(stack)
        intents = [drive(client, p.intent_id, "succeeded") for p in pays]
        events = [intent_event(t, pi) for pi in intents
                  for t in ("payment_intent.created", "payment_intent.succeeded")]

        warm = [new_event("charge.updated", {"id": f"ch_warm_{n}"}) for n in range(8)]
        assert {s for _, s, _ in post_events(stack.web_url, warm)} == {200}
        assert proxy.open_connections() > 0  # gunicorn holds pooled connections through it

        proxy.close()  # refuse new connections, cut the pooled ones
        down = post_events(stack.web_url, events, senders=4)
        assert [(s, a.get("error", {}).get("code")) for _, s, a in down] == [
            (503, "storage_unavailable")] * len(events), down[:3]
        assert pg.event_states(i for i, _ in events) == {}  # nothing stored

        proxy.open()
        again = post_events(stack.web_url, events, senders=4)  # Stripe delivers them again
        assert {s for _, s, _ in again} == {200}, again[:5]
        wait_for(lambda: pg.all_done(i for i, _ in events), timeout=60,
                 what="the redelivered events processed",
                 diagnostics=lambda: f"{pg.status_counts()}\n{stack.diagnostics()}")
    finally:
        proxy.close()

    assert pg.scalar("SELECT count(*) FROM stripe_events") == len(events) + len(warm)
    assert_processed_once(pg, events)
    assert set(pg.payment_states().values()) == {"succeeded"}
    assert outbox_problems(pg, {p.payment_id: "succeeded" for p in pays}) == []


def test_worker_killed_mid_job_the_event_is_processed_once_after_restart(make_stack, pg,
                                                                        faults_db):
    """The job is held on the payment's row lock (taken by the test), the worker is killed
    with SIGKILL (that process only, as the OOM killer does), the lock released: nothing was
    applied; a new worker applies the event once."""
    stack = make_stack()
    [pay] = seed_payments(stack, 1)
    intent = drive(stripe_client(stack), pay.intent_id, "succeeded")
    [worker] = [p for p in stack.procs if p.name == "worker"]
    event_id, body = event = intent_event("payment_intent.succeeded", intent)

    with psycopg.connect(faults_db) as holder:
        holder.execute("SELECT id FROM payments WHERE id = %s FOR UPDATE", (pay.payment_id,))
        assert {s for _, s, _ in post_events(stack.web_url, [event])} == {200}
        blocked_pid, query = wait_for(
            lambda: pg.rows("SELECT pid, query FROM pg_stat_activity "
                            "WHERE %s = ANY(pg_blocking_pids(pid))",
                            (holder.info.backend_pid,)),
            timeout=30, what="the job waiting on the payment's row lock",
            diagnostics=stack.diagnostics)[0]
        # The payment's locking SELECT (pg_stat_activity keeps the first 1,024 bytes of a
        # query, so its FOR UPDATE clause may be cut off; the blocking pid says it waits).
        assert query.startswith("SELECT payments.")
        # Queued by the worker's dispatcher, taken by its job, which waits on the lock.
        assert pg.event_states([event_id]) == {event_id: ("queued", 0)}
        stack.kill(worker)  # SIGKILL, mid-job
        holder.rollback()  # release the lock

    # Nothing of the killed job is committed.
    assert pg.event_states([event_id]) == {event_id: ("queued", 0)}
    assert pg.payment_states() == {pay.payment_id: "requires_payment_method"}
    assert pg.outbox() == {}

    stack.start_worker()  # sweeps `queued` events at start
    wait_for(lambda: pg.all_done([event_id]), timeout=20,
             what="the event processed by the new worker",
             diagnostics=lambda: session_and_processes(pg, blocked_pid, stack))
    assert_processed_once(pg, [event])
    assert pg.payment_states() == {pay.payment_id: "succeeded"}
    assert outbox_problems(pg, {pay.payment_id: "succeeded"}) == []
