"""`flask worker`: an RQ worker bound to the app (jobs run with its configuration)."""

from __future__ import annotations

import gc
import logging
import os
import threading

import click
from flask import current_app
from flask.cli import with_appcontext

from .database import unit_of_work
from .extensions import db
from .jobs import QUEUES, redis_connection
from .webhooks.jobs import dispatch_received, sweep_received

log = logging.getLogger(__name__)
DISPATCH_EVERY = 0.1  # seconds between a worker's looks for stored events to queue


@click.command("worker")
@click.option("--queue", "queues", multiple=True, help="Queues to listen on (default: all).")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--fork", is_flag=True,
              help="Run each job in a forked process (RQ's default Worker) instead of in the "
                   "worker itself.")
@with_appcontext
def worker_command(queues: tuple[str, ...], burst: bool, fork: bool) -> None:
    """Run an RQ worker for the portal's queues.

    By default jobs run in the worker process (RQ's SimpleWorker, as portal.rqworker's
    PortalWorker, which skips RQ's repeated round trips to Redis): no fork, no new database
    connection and no new app per job, which is what makes hundreds of webhook events per
    second possible (bench/webhooks.py). PortalWorker runs only on the rq it was written
    against and refuses to start on another; PORTAL_RQ_WORKER=rq runs RQ's own SimpleWorker
    instead. Jobs are short, each a transaction of its own (portal.jobs.run); a worker killed
    mid-job leaves the event "received", and it is queued again at the next start.
    """
    from .rqworker import RQVersionError, worker_class

    try:  # before anything else: on another rq, say so and what to do
        chosen = worker_class(fork)
    except (RQVersionError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not current_app.config.get("REDIS_URL"):
        raise click.ClickException("REDIS_URL is not set: jobs run in-process, no worker needed")
    # Jobs in forked work-horses compare against this pid and drop inherited DB connections.
    current_app.extensions["pid"] = os.getpid()
    # Events stored since the last dispatch, and those whose job was lost (Redis down or
    # restarted, a worker stopped mid-job): queued before listening.
    with unit_of_work():
        queued = max(dispatch_received(), 0) + sweep_received(older_than_seconds=0)
    if queued:
        click.echo(f"queued {queued} stored webhook event(s) not processed yet")
    if not burst:
        Dispatcher(current_app._get_current_object()).start()
    # RQ forks its scheduler (and, with --fork, every job). A child must not inherit an open
    # database connection: if this process is killed, the child would keep the socket open
    # and PostgreSQL would keep the killed job's transaction, and its row locks, forever.
    os.register_at_fork(before=db.engine.dispose)
    worker = chosen(list(queues or QUEUES), connection=redis_connection())
    # The app and its imports are long-lived: keep the garbage collector's full collections
    # from walking them again and again (as gunicorn.conf.py does for the web processes).
    gc.collect()
    gc.freeze()
    # The scheduler moves jobs waiting for a retry delay back onto their queue. RQ's loggers
    # are at INFO whatever the root's: LOG_LEVEL, as every other logger.
    worker.work(burst=burst, with_scheduler=True,
                logging_level=current_app.config["LOG_LEVEL"])


class Dispatcher(threading.Thread):
    """Queues the webhook events the intake stores ("received"), every DISPATCH_EVERY
    seconds and at once while there are more than a batch (webhooks.jobs.dispatch_received).
    One per worker; dispatchers of several workers share the rows without taking one twice.
    A daemon thread of the worker process, with its own app context, session and database
    connection: jobs run in the main thread."""

    def __init__(self, app, every: float = DISPATCH_EVERY) -> None:
        super().__init__(name="webhook-dispatcher", daemon=True)
        self.app, self.every = app, every
        self.stopped = threading.Event()

    def run(self) -> None:
        with self.app.app_context():
            while not self.stopped.wait(self.every):
                try:
                    if dispatch_received() < 0:  # Redis refused them (logged): back off
                        self.stopped.wait(5)
                except Exception:  # PostgreSQL away: the next look tries again
                    log.exception("webhook dispatcher: could not queue stored events")
                    self.stopped.wait(5)
                finally:
                    db.session.remove()
