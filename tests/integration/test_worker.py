"""PortalWorker, the RQ worker of `flask worker`: RQ's bookkeeping with fewer round trips.

Jobs, their results, registries and the worker's counters must look as RQ's own SimpleWorker
leaves them; the methods it copies from RQ are checked here against the pinned rq (the only
rq PortalWorker starts on: portal.rqworker.RQ_VERSION, tests/unit/test_rqworker.py). The
first tests run with RQ's own SimpleWorker too, the worker of PORTAL_RQ_WORKER=rq.
"""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from portal import jobs
from portal.extensions import db
from portal.rqworker import PortalWorker, worker_class

RAN: list[str] = []


def record(value: str) -> None:
    """A portal job (run through portal.jobs.run)."""
    RAN.append(value)


def look_around(value: str) -> None:
    """Record, while running, what RQ has written about this job and its worker."""
    from rq import get_current_job

    job = get_current_job()
    conn = job.connection
    [worker_key] = [k for k in conn.smembers("rq:workers") if b"dead" not in k]
    RAN.append((value, job.get_status(refresh=True), job.worker_name,
                StartedJobRegistry("default", connection=conn).get_job_ids(),
                conn.hget(worker_key, "current_job").decode(),
                conn.hget(worker_key, "state").decode(), conn.ttl(job.key)))


def suspend_workers(value: str) -> None:
    """`rq suspend`, from inside a job."""
    from rq import get_current_job
    from rq.suspension import suspend

    RAN.append(value)
    suspend(get_current_job().connection)


def fail(value: str) -> None:
    RAN.append(value)
    raise RuntimeError(f"failing on purpose: {value}")


@pytest.fixture
def conn(app, redis_url, monkeypatch):
    """Jobs go to the test Redis database, emptied first."""
    monkeypatch.setitem(app.config, "REDIS_URL", redis_url)
    monkeypatch.delitem(app.extensions, "redis", raising=False)
    monkeypatch.delitem(app.extensions, "rq_queues", raising=False)
    RAN.clear()
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    yield redis
    redis.flushdb()


# PortalWorker, as `flask worker` runs it, and RQ's own SimpleWorker (PORTAL_RQ_WORKER=rq).
BOTH = pytest.mark.parametrize("worker_cls", [
    pytest.param(worker_class(environ={}), id="portal"),
    pytest.param(worker_class(environ={"PORTAL_RQ_WORKER": "rq"}), id="rq"),
])


def test_the_workers_compared_are_portals_and_rqs():
    assert worker_class(environ={}) is PortalWorker
    assert worker_class(environ={"PORTAL_RQ_WORKER": "rq"}) is SimpleWorker


def work(app, conn, queue: str = "default", worker_cls=PortalWorker) -> PortalWorker:
    with app.app_context():
        worker = worker_cls([queue], connection=conn)
        worker.work(burst=True)
    return worker


@BOTH
def test_a_portal_job_finishes_with_rqs_own_records(app, conn, worker_cls):
    with app.app_context():
        jobs.enqueue(record, "a")
        jobs.enqueue(record, "b")
        db.session.commit()  # jobs go to Redis at commit
    first, second = Queue("default", connection=conn).job_ids

    worker = work(app, conn, worker_cls=worker_cls)

    assert RAN == ["a", "b"]
    for job_id in (first, second):
        job = Job.fetch(job_id, connection=conn)
        assert job.get_status() == JobStatus.FINISHED
        assert job.started_at <= job.ended_at
        assert job.last_heartbeat is not None and job.last_heartbeat >= job.started_at
        assert job.latest_result().type.name == "SUCCESSFUL"
        assert conn.ttl(job.key) > 0  # kept for result_ttl, then gone
    assert set(FinishedJobRegistry("default", connection=conn).get_job_ids()) == {first, second}
    assert StartedJobRegistry("default", connection=conn).get_job_ids() == []
    worker.refresh()
    assert worker.successful_job_count == 2 and worker.failed_job_count == 0
    assert worker.total_working_time > 0


def test_jobs_queued_together_are_separate_jobs_run_in_order(app, conn):
    with app.app_context():
        jobs.enqueue_each(record, [("a",), ("b",), ("c",)], queue="outbox")
        db.session.commit()
    assert len(Queue("outbox", connection=conn).job_ids) == 3
    work(app, conn, "outbox")
    assert RAN == ["a", "b", "c"]


def test_without_redis_jobs_run_after_the_context_and_a_failure_stops_none(app):
    RAN.clear()
    with app.app_context():
        assert not app.config.get("REDIS_URL")
        jobs.enqueue_each(fail, [("x",), ("y",)])
        db.session.commit()
        assert RAN == []  # not in the caller's transaction: once its context ends
    assert RAN == ["x", "y"]  # each failure logged, none raised


@BOTH
def test_a_running_portal_job_is_started_in_rqs_records(app, conn, worker_cls):
    with app.app_context():
        jobs.enqueue(look_around, "a")
        db.session.commit()
    [job_id] = Queue("default", connection=conn).job_ids

    worker = work(app, conn, worker_cls=worker_cls)

    [(value, status, worker_name, started, current, state, ttl)] = RAN
    assert (value, status, worker_name) == ("a", JobStatus.STARTED, worker.name)
    assert started == [job_id] and current == job_id and state == "busy"
    assert ttl == -1  # a running job's key does not expire
    assert conn.hget(worker.key, "state") in (b"idle", None)  # None once it has died


@BOTH
def test_a_failing_portal_job_is_retried_then_failed(app, conn, worker_cls):
    with app.app_context():
        jobs.enqueue(fail, "x", retry=(0,))
        db.session.commit()
    [job_id] = Queue("default", connection=conn).job_ids

    worker = work(app, conn, worker_cls=worker_cls)

    assert RAN == ["x", "x"]  # the first run and its one retry
    job = Job.fetch(job_id, connection=conn)
    assert job.get_status() == JobStatus.FAILED
    assert "failing on purpose" in job.latest_result().exc_string
    assert FailedJobRegistry("default", connection=conn).get_job_ids() == [job_id]
    assert StartedJobRegistry("default", connection=conn).get_job_ids() == []
    worker.refresh()
    assert worker.failed_job_count == 2 and worker.successful_job_count == 0


def test_rq_suspend_stops_the_worker_before_its_next_job(app, conn):
    with app.app_context():
        jobs.enqueue(suspend_workers, "a")
        jobs.enqueue(record, "b")
        db.session.commit()

    work(app, conn)

    assert RAN == ["a"]
    assert len(Queue("default", connection=conn).job_ids) == 1  # "b" waits for `rq resume`


def test_other_jobs_keep_rqs_handling_of_dependents(app, conn):
    queue = Queue("default", connection=conn)
    parent = queue.enqueue(record, "parent")
    child = queue.enqueue(record, "child", depends_on=parent)

    work(app, conn)

    assert RAN == ["parent", "child"]
    assert child.get_status(refresh=True) == JobStatus.FINISHED


def test_portal_jobs_are_portal_jobs_run_without_dependencies(app, conn):
    """What the worker relies on: portal jobs are portal.jobs.run, without dependencies."""
    with app.app_context():
        jobs.enqueue(record, "a", retry=(10, 60))
        db.session.commit()
    [job_id] = Queue("default", connection=conn).job_ids
    job = Job.fetch(job_id, connection=conn)
    assert job.func_name == "portal.jobs.run"
    assert job.args == ("tests.integration.test_worker.record", "a")
    assert job.retries_left == 2 and job.retry_intervals == [10, 60]
    assert job.dependency_ids == []
