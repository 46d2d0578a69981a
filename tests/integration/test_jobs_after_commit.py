"""Jobs start after commit (portal/jobs.py, docs/design.md section 4): a transaction that
rolls back queues nothing; without Redis a committed job runs after the request, in a fresh
session and a transaction of its own, and its failure is logged without failing the request;
with Redis the job reaches the queue only at the commit."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from flask import Blueprint
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

from portal import jobs
from portal.database import unit_of_work
from portal.extensions import db
from portal.ledger.models import Payment
from tests.helpers import committed, make_order, make_user

SEEN: list = []


def note(payment_id: str) -> None:
    """A job: what it sees of the payment, and whether its session is the request's."""
    payment = db.session.get(Payment, payment_id)
    SEEN.append((payment_id, payment.status if payment else None, id(db.session())))
    if payment is not None:
        payment.failure_message = "seen by the job"  # committed by the job's own edge


def explode(payment_id: str) -> None:
    SEEN.append(("exploded", payment_id))
    raise RuntimeError("the job failed on purpose")


def queue_then_fail(payment_id: str) -> None:
    """A job that queues another one, then fails: its transaction rolls back."""
    SEEN.append(("queued then failed", payment_id))
    jobs.enqueue(note, payment_id)
    raise RuntimeError("the job failed after queueing another")


bp = Blueprint("jobs_test", __name__)


@bp.post("/_test/pay/<int:fail>")
def pay(fail: int):
    """Changes a payment and queues jobs; answers 400 (rolled back) when ``fail``."""
    payment = db.session.scalar(sa.select(Payment))
    payment.status = "succeeded"
    SEEN.append(("request session", id(db.session())))
    jobs.enqueue(note, str(payment.id))
    jobs.enqueue(explode, str(payment.id))
    return ("refused", 400) if fail else ("ok", 200)


@pytest.fixture(scope="module")
def app(app):
    """An app of the same configuration with the test's route (an app that has served
    requests takes no new route)."""
    from portal import create_app

    own = create_app(app.extensions["portal_config"])
    own.register_blueprint(bp)
    return own


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def payment():
    customer, vendor = make_user("jo@example.test"), make_user("ve@example.test", "vendor")
    order = make_order(customer, vendor)
    found = Payment(user_id=customer.id, order_id=order.id, amount=order.total,
                    currency="USD", status="processing")
    db.session.add(found)
    db.session.commit()
    SEEN.clear()
    return found


def test_without_redis_a_committed_job_runs_after_the_request_in_its_own_transaction(
        client, payment, caplog):
    with caplog.at_level(logging.ERROR, logger="portal.jobs"):
        r = client.post("/_test/pay/0")
    assert r.status_code == 200  # the failing job did not fail the request
    (_, request_session), (pid, status, job_session), exploded = SEEN
    assert (pid, status) == (str(payment.id), "succeeded")  # it ran after the commit
    assert job_session != request_session  # in a session of its own
    assert exploded == ("exploded", str(payment.id))  # one failure stops no other job
    assert "in-process job tests.integration.test_jobs_after_commit.explode" in caplog.text
    assert "the job failed on purpose" in caplog.text  # with its traceback
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).failure_message == "seen by the job"


def test_a_refused_request_queues_nothing(client, payment):
    r = client.post("/_test/pay/1")
    assert r.status_code == 400
    assert [s for s in SEEN if s[0] != "request session"] == []
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "processing"  # rolled back


def test_a_job_enqueued_in_a_transaction_that_rolls_back_never_runs(test_app, payment):
    with pytest.raises(RuntimeError), unit_of_work():
        jobs.enqueue(note, str(payment.id))
        raise RuntimeError("the unit of work fails")
    jobs.run_committed()
    assert SEEN == []


def test_with_redis_the_job_reaches_the_queue_only_at_the_commit(app, redis_url, payment,
                                                                 monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", redis_url)
    monkeypatch.delitem(app.extensions, "redis", raising=False)
    monkeypatch.delitem(app.extensions, "rq_queues", raising=False)
    queue = Queue("default", connection=Redis.from_url(redis_url))
    queue.empty()
    with app.app_context():
        jobs.enqueue(note, str(payment.id))
        assert queue.count == 0  # recorded on the session, not sent
        db.session.commit()
        assert queue.count == 1
        [job] = queue.jobs
        assert job.func_name == "portal.jobs.run"
        assert job.args == ("tests.integration.test_jobs_after_commit.note", str(payment.id))
        jobs.enqueue(note, str(payment.id))
        db.session.rollback()
        db.session.commit()
        assert queue.count == 1  # the rolled-back one was dropped
    queue.empty()
    assert SEEN == []  # nothing ran in-process


def work(app, conn) -> bool:
    """An RQ worker on the default queue until it is empty; whether it ran any job."""
    with app.app_context():
        return SimpleWorker(["default"], connection=conn).work(burst=True)


def test_with_redis_a_refused_request_queues_nothing_so_no_worker_runs_its_jobs(
        app, client, redis, payment):
    queue = Queue("default", connection=redis)
    assert client.post("/_test/pay/1").status_code == 400
    assert queue.count == 0
    assert work(app, redis) is False  # a worker finds nothing to run
    assert [s for s in SEEN if s[0] != "request session"] == []
    db.session.expire_all()
    refused = db.session.get(Payment, payment.id)
    assert (refused.status, refused.failure_message) == ("processing", None)
    # The same request accepted: its two jobs are queued at the commit and a worker runs them.
    assert client.post("/_test/pay/0").status_code == 200
    assert queue.count == 2
    assert work(app, redis) is True
    assert [s[:2] for s in SEEN if s[0] != "request session"] == [
        (str(payment.id), "succeeded"), ("exploded", str(payment.id))]
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).failure_message == "seen by the job"


@pytest.mark.parametrize("where", ["in-process", "rq"])
def test_a_job_queued_by_a_job_that_fails_never_runs(app, redis_url, payment, where,
                                                     monkeypatch, request):
    """A job's own transaction rolls back when it fails: what it queued is dropped, in a
    worker (RQ) as in-process."""
    if where == "rq":
        conn = request.getfixturevalue("redis")
        failed = FailedJobRegistry("default", connection=conn)
        failures = failed.count
        with app.app_context():
            jobs.enqueue(queue_then_fail, str(payment.id))
            db.session.commit()
        assert Queue("default", connection=conn).count == 1
        assert work(app, conn) is True
        assert Queue("default", connection=conn).count == 0  # nothing queued by the job
        assert failed.count == failures + 1
    else:
        with committed():  # the job runs in-process after the commit, and fails (logged)
            jobs.enqueue(queue_then_fail, str(payment.id))
    [only] = SEEN  # `note` never ran
    assert only == ("queued then failed", str(payment.id))
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).failure_message is None
