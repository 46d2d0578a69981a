"""Background jobs: RQ on Redis when REDIS_URL is set, otherwise run in-process.

Jobs are plain functions that take ids, never ORM objects. Callers enqueue only after their
transaction has committed, so a worker never looks for a row that is not there yet. If Redis
is unreachable the enqueue is logged and dropped: the caller's row is already committed in a
state (e.g. a webhook event still ``received``) that a sweeper can pick up later.
"""

from __future__ import annotations

import importlib
import logging
import os

from flask import current_app, has_app_context

from .extensions import db

log = logging.getLogger(__name__)

# Named by purpose; workers listen in this order.
QUEUES = ("webhooks", "refunds", "payouts", "outbox", "default")


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


def enqueue(func, *args, queue: str = "default", retry: tuple[int, ...] = ()) -> bool:
    """Run ``func(*args)`` as a job; return False when it could not be queued.

    ``retry``: seconds to wait before each new attempt after a failure (RQ's Retry; the
    worker runs RQ's scheduler for the delays). In-process jobs are not retried.
    """
    return enqueue_each(func, [args], queue=queue, retry=retry)


def enqueue_each(func, calls: list[tuple], *, queue: str = "default",
                 retry: tuple[int, ...] = ()) -> bool:
    """One job per argument tuple in ``calls``, all queued in one round trip to Redis (as
    ``enqueue``); False when they could not be queued."""
    path = f"{func.__module__}.{func.__name__}"
    if not current_app.config.get("REDIS_URL"):
        # Embedded mode: run now, in this process. A failure is logged and recorded by the
        # job itself (as a worker would); it must not fail the request that enqueued it.
        for args in calls:
            try:
                func(*args)
            except Exception:
                log.exception("in-process job %s%r failed", path, args)
        return True
    from redis.exceptions import RedisError
    from rq import Retry

    try:
        rq_queue = _queue(queue)
        # One round trip: RQ otherwise sends the queue registration and each job in MULTI/EXEC
        # transactions of their own; given a pipeline it adds them to it.
        with rq_queue.connection.pipeline() as pipe:
            for args in calls:
                rq_queue.enqueue(
                    run, path, *args, job_timeout=300, result_ttl=3600,
                    failure_ttl=7 * 24 * 3600,
                    retry=Retry(max=len(retry), interval=list(retry)) if retry else None,
                    pipeline=pipe,
                )
            pipe.execute()
    except RedisError:
        log.exception("could not enqueue %s%r on %s; it stays for the sweeper", path, calls,
                      queue)
        return False
    return True


def run(path: str, *args) -> None:
    """Import and run a job inside an application context (worker or in-process)."""
    module, name = path.rsplit(".", 1)
    func = getattr(importlib.import_module(module), name)
    if has_app_context():
        _run_in_context(func, args)
        return
    from . import create_app

    with create_app().app_context():
        _run_in_context(func, args)


def _run_in_context(func, args) -> None:
    if os.getpid() != current_app.extensions.get("pid", os.getpid()):
        # A forked RQ work-horse must not reuse the parent's database connections.
        db.engine.dispose(close=False)
    try:
        func(*args)
    finally:
        db.session.remove()
