"""Background jobs, started after commit: RQ on Redis when REDIS_URL is set, otherwise in
this process once the request (or job, or command) that queued them has ended.

``enqueue`` only records the job on the session. When the session commits, the jobs go to
Redis; when it rolls back, they are dropped: a worker never looks for a row that is not
there, and a refused request queues nothing. Without Redis (the embedded default) the
committed jobs run when the application context that queued them ends (after a request's
response is built, after a job, after a command), each in a fresh application context, a
fresh session and a transaction of its own (``database.unit_of_work``); a failure is logged
with its traceback, as a worker logs it, and never fails the request that queued it.

Jobs are plain functions that take ids, never ORM objects. If Redis is unreachable at commit
the enqueue is logged and dropped: the committed row is in a state (a webhook event still
``received``, a refund ``approved``) that reconciliation picks up later.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass

from flask import current_app, g, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from .database import unit_of_work
from .extensions import db

log = logging.getLogger(__name__)

# Named by purpose; workers listen in this order.
QUEUES = ("webhooks", "refunds", "payouts", "outbox", "default")
_PENDING = "portal_jobs"  # session.info key: the jobs of the open transaction


@dataclass(frozen=True)
class Job:
    path: str  # module.function
    args: tuple
    queue: str
    retry: tuple[int, ...]


def redis_connection():
    """A Redis client for REDIS_URL (cached on the app)."""
    from redis import Redis

    app = current_app
    conn = app.extensions.get("redis")
    if conn is None:
        conn = Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5)
        app.extensions["redis"] = conn
    return conn


def _queue(name: str):
    """The RQ Queue for ``name`` on the current Redis client (built once per app and client:
    a Queue is cheap to keep and costs a few objects and a version check to build)."""
    from rq import Queue

    conn = redis_connection()
    queues = current_app.extensions.setdefault("rq_queues", {})
    cached = queues.get(name)
    if cached is None or cached.connection is not conn:
        cached = queues[name] = Queue(name, connection=conn)
    return cached


def enqueue(func, *args, queue: str = "default", retry: tuple[int, ...] = ()) -> None:
    """Run ``func(*args)`` as a job once the current transaction commits.

    ``retry``: seconds to wait before each new attempt after a failure (RQ's Retry; the
    worker runs RQ's scheduler for the delays). In-process jobs are not retried.
    """
    enqueue_each(func, [args], queue=queue, retry=retry)


def enqueue_each(func, calls: list[tuple], *, queue: str = "default",
                 retry: tuple[int, ...] = ()) -> None:
    """One job per argument tuple in ``calls``, all sent in one round trip to Redis at
    commit (as ``enqueue``)."""
    path = f"{func.__module__}.{func.__name__}"
    session = db.session()
    if not session.in_transaction():
        session.begin()  # so that a rollback, even before any SQL, drops the job
    pending = session.info.setdefault(_PENDING, [])
    pending.extend(Job(path, tuple(args), queue, tuple(retry)) for args in calls)


def enqueue_now(func, calls: list[tuple], *, queue: str = "default",
                retry: tuple[int, ...] = ()) -> bool:
    """One job per argument tuple in ``calls``, sent to Redis now, in one round trip, before
    the current transaction commits; False (logged) if Redis failed. For rows the caller has
    locked and marks as queued in its transaction (a job that starts first waits on the lock);
    anything else uses ``enqueue``. Without Redis the jobs run in-process after the commit,
    as ``enqueue``'s do."""
    if not current_app.config.get("REDIS_URL"):
        enqueue_each(func, calls, queue=queue, retry=retry)
        return True
    path = f"{func.__module__}.{func.__name__}"
    return _send([Job(path, tuple(args), queue, tuple(retry)) for args in calls])


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    if current_app.config.get("REDIS_URL"):
        _send(pending)
    else:
        g.setdefault(_PENDING, []).extend(pending)


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:  # the whole transaction, not a savepoint
        session.info.pop(_PENDING, None)


def _send(pending: list[Job]) -> bool:
    """Queue committed jobs on Redis in one round trip; False (logged) when Redis failed."""
    from redis.exceptions import RedisError
    from rq import Retry

    try:
        conn = redis_connection()
        # One round trip: RQ otherwise sends the queue registration and each job in MULTI/EXEC
        # transactions of their own; given a pipeline it adds them to it.
        with conn.pipeline() as pipe:
            for job in pending:
                _queue(job.queue).enqueue(
                    run, job.path, *job.args, job_timeout=300, result_ttl=3600,
                    failure_ttl=7 * 24 * 3600,
                    retry=Retry(max=len(job.retry), interval=list(job.retry))
                    if job.retry else None,
                    pipeline=pipe)
            pipe.execute()
    except RedisError:
        log.exception("could not enqueue %d job(s) (%s); reconciliation picks their rows up",
                      len(pending), ", ".join(sorted({j.path for j in pending})))
        return False
    return True


def run_committed(exc: BaseException | None = None) -> None:
    """Without Redis: run the jobs committed in this application context, each in a fresh
    context and transaction (teardown_appcontext; also called by tests and commands)."""
    if not has_app_context():
        return
    app = current_app._get_current_object()
    while pending := g.pop(_PENDING, None):
        for job in pending:
            with app.app_context():
                try:
                    run(job.path, *job.args)
                except Exception:
                    log.exception("in-process job %s%r failed", job.path, job.args)


def run(path: str, *args) -> None:
    """Import and run a job in its own transaction inside an application context (a worker,
    or in-process). The jobs it enqueues start after its commit."""
    module, name = path.rsplit(".", 1)
    func = getattr(importlib.import_module(module), name)
    if has_app_context():
        _run_in_context(func, args)
        return
    # A worker process: build the application by name (the composition root, as RQ finds
    # this function by name), not by import, so that jobs stay below every feature package.
    create_app = importlib.import_module("portal").create_app
    with create_app().app_context():
        _run_in_context(func, args)


def _run_in_context(func, args) -> None:
    if os.getpid() != current_app.extensions.get("pid", os.getpid()):
        # A forked RQ work-horse must not reuse the parent's database connections.
        db.engine.dispose(close=False)
    try:
        with unit_of_work():
            func(*args)
        run_committed()
    finally:
        db.session.remove()
