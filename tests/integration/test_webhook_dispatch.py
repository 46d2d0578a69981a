"""With Redis the intake only stores an event; a worker's dispatcher queues the stored events
in batches (webhooks.jobs.dispatch_received), several workers' dispatchers sharing them."""

import threading
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa
from rq import Queue

from portal.extensions import db
from portal.models_base import utcnow
from portal.webhooks.jobs import dispatch_received, sweep_received
from portal.webhooks.models import StripeEvent
from tests.helpers import post_event


def stored(n: int, status: str = "received", age: timedelta = timedelta(0)) -> list[str]:
    """n events stored as the intake stores them (committed)."""
    ids = [f"evt_dispatch_{status}_{age.seconds}_{i:05d}" for i in range(n)]
    db.session.execute(sa.insert(StripeEvent), [
        {"id": i, "type": "customer.updated", "object_id": "cus_1", "stripe_created": 0,
         "payload": {"id": i}, "status": status, "attempts": 0,
         "received_at": utcnow() - age} for i in ids])
    db.session.commit()
    return ids


def statuses() -> dict[str, int]:
    db.session.expire_all()
    return dict(db.session.execute(sa.select(StripeEvent.status, sa.func.count())
                                   .group_by(StripeEvent.status)).all())


def queued_ids(redis) -> list[str]:
    """The event id of each job on the webhooks queue, duplicates kept."""
    queue = Queue("webhooks", connection=redis)
    return [job.args[1] for job in queue.get_jobs()]


def test_the_intake_stores_the_event_and_queues_nothing(app, client, redis):
    assert post_event(client, "customer.updated", {"id": "cus_1"},
                      event_id="evt_intake_only").status_code == 200
    assert db.session.get(StripeEvent, "evt_intake_only").status == "received"
    assert redis.llen("rq:queue:webhooks") == 0  # no round trip to Redis in the delivery
    with app.app_context():  # the app configured with Redis, as a worker's
        assert dispatch_received() == 1
    assert queued_ids(redis) == ["evt_intake_only"]
    assert statuses() == {"queued": 1}


@pytest.mark.commits
def test_dispatchers_of_several_workers_queue_each_event_exactly_once(app, redis):
    ids = stored(600)
    counts: list[int] = []
    start = threading.Barrier(3)

    def dispatcher():
        with app.app_context():
            start.wait()
            counts.append(dispatch_received(batch=40))
            db.session.remove()

    threads = [threading.Thread(target=dispatcher) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(counts) == 600
    assert sorted(queued_ids(redis)) == ids  # each once
    assert statuses() == {"queued": 600}


@pytest.mark.commits
def test_redis_refusing_a_batch_leaves_its_events_received(app, redis, redis_url, monkeypatch,
                                                           caplog):
    def redis_at(url):
        monkeypatch.setitem(app.config, "REDIS_URL", url)
        monkeypatch.delitem(app.extensions, "redis", raising=False)
        monkeypatch.delitem(app.extensions, "rq_queues", raising=False)

    ids = stored(3)
    redis_at("redis://127.0.0.1:1/0")  # nothing listens
    with app.app_context():
        assert dispatch_received() == -1
    assert statuses() == {"received": 3}
    assert "could not enqueue 3 job(s)" in caplog.text
    redis_at(redis_url)  # Redis back: the next look queues them
    with app.app_context():
        assert dispatch_received() == 3
    assert sorted(queued_ids(redis)) == ids


@pytest.mark.commits
def test_the_sweeper_queues_again_events_whose_job_was_lost(app, redis):
    """Queued or received over a minute ago: queued again; a newer queued event waits its
    turn in the queue and is left alone."""
    old_queued = stored(2, "queued", timedelta(minutes=5))
    stored(1, "queued")
    old_received = stored(1, "received", timedelta(minutes=5))
    stored(1, "processed", timedelta(minutes=5))
    with app.app_context():
        assert sweep_received() == 3
    assert sorted(queued_ids(redis)) == sorted(old_queued + old_received)
    assert statuses() == {"queued": 4, "processed": 1}


@pytest.mark.commits
def test_a_redelivery_does_not_wait_for_the_job_holding_its_event(client, pg_url):
    """The job holds its event's row, as updated, while it asks Stripe; a redelivery of
    that event is answered at once, not when the job commits."""
    assert post_event(client, "customer.updated", {"id": "cus_1"},
                      event_id="evt_held").status_code == 200
    answers: list[int] = []
    with psycopg.connect(pg_url.replace("+psycopg", "")) as job:
        job.execute("UPDATE stripe_events SET status = 'processed' WHERE id = 'evt_held'")
        redelivery = threading.Thread(target=lambda: answers.append(post_event(
            client, "customer.updated", {"id": "cus_1"}, event_id="evt_held").status_code))
        redelivery.start()
        redelivery.join(10)
        held = redelivery.is_alive()
        job.rollback()
    redelivery.join(10)
    assert not held, "the redelivery waited for the job's transaction"
    assert answers == [200]
