"""The worker class `flask worker` runs: RQ's SimpleWorker with fewer Redis round trips.

RQ's SimpleWorker runs each job in its own process (no fork per job), but around each job it
made 18 round trips to Redis, one after the other (bench/webhooks.py): that bookkeeping, not
the job, was most of a webhook event's cost. PortalWorker leaves out the ones that repeat
what was just written or that cannot find anything for the portal's jobs:

- the worker's heartbeat (HSET + EXPIRE of its key) was sent on its own three times per job,
  besides the heartbeat RQ already pipelines with the suspension check at the top of every
  loop. The key lives ``worker_ttl + 60`` seconds (480 by default), so a lone heartbeat is
  skipped when one went out less than HEARTBEAT_EVERY seconds ago. A worker waiting for
  jobs still sends one before each blocking dequeue, as RQ does: that wait is longer;
- the state "idle" was written when a job ended and again before the next dequeue: the
  second write is skipped when the state has not changed in between;
- the job's own heartbeat once it has run (HSET of ``last_heartbeat`` on the job's hash) is
  kept in memory: the success pipeline that follows saves the whole job hash, that field
  included (after a failure the hash keeps the heartbeat of the job's start; RQ reads the
  field nowhere);
- after a success RQ WATCHes the job's dependents set and reads it (SMEMBERS), to enqueue
  the jobs that waited for this one. The portal never enqueues a job with ``depends_on``
  (portal.jobs.enqueue), so for its jobs (``portal.jobs.run``) the set is always empty and the
  two round trips are skipped;
- writes that RQ sends in separate round trips one right after the other go in one
  pipeline: the execution record, the job's start and the PERSIST of the job's key that
  Job.perform sends first (two pipelines and a command); and the success, the worker's
  "idle" state and the check for `rq suspend` (with a heartbeat) that the work loop makes
  before the next dequeue.

That leaves 4 round trips to Redis per job: the dequeue (LMOVE), reading the job (HGETALL),
the start and the success. Any job other than a portal job gets RQ's own handling
throughout. Everything else is RQ's own code: dequeue, the job's status, registries and
result, retries, failures, the scheduler, `rq info`.

**Only on the rq it was written against.** The eight methods below are copies of rq 2.12.0's
(Job.perform, and SimpleWorker's check_for_suspension, heartbeat, set_state,
prepare_execution, prepare_job_execution, handle_execution_ended, handle_job_success), and
PortalJob.perform uses a private name of RQ's (``rq.job._job_stack``). On another rq they
could leave out or undo what that rq does, silently. So ``worker_class`` (what `flask worker`
calls) and PortalWorker itself refuse to start unless ``rq.__version__`` is exactly
RQ_VERSION, the version pinned in requirements.txt, and the private name is there; the
error names both versions and what to do. ``PORTAL_RQ_WORKER=rq`` runs RQ's own
SimpleWorker instead, on any rq (slower, same behaviour: tests/integration/test_worker.py
runs its main checks with both). To move to another rq: compare each method here with the
new rq's, run tests/integration/test_worker.py, re-measure as below, then set RQ_VERSION
(tests/unit/test_rqworker.py checks that it matches requirements.txt) or, if the gain is gone,
drop this module for RQ's SimpleWorker.

**Measured gain** (2026-12-05, rq 2.12.0, 2 cores; bench/webhooks.py's worker phase: one
`flask --app wsgi worker --burst --queue webhooks` draining 3,000 stored and queued events,
events/s from the first to the last ``processed_at``; the same runs with
``PORTAL_RQ_WORKER=rq`` in the worker's environment for RQ's own SimpleWorker; 6 runs each,
alternating, on an idle machine; medians, range in brackets):

| events | PortalWorker | RQ's SimpleWorker | gain | CPU ms/event |
| --- | ---: | ---: | ---: | --- |
| unknown type (dispatch only) | 394/s (325-412) | 209/s (193-238) | +88 % | 2.9 / 4.7 |
| payment_intent.succeeded, settled | 286/s (231-339) | 182/s (175-202) | +57 % | 5.8 / 8.2 |

(At the commit before the unit-of-work changes, the same measurement gave +53 % and +52 %.)
Without it one worker is at or under the 200 events/s target of bench/webhooks.py. Re-measure
after any change to this module or to rq, as above; keep the module while the gain is well
above the noise (about 10 %).
"""

from __future__ import annotations

import os
import time

import rq
from rq import Queue, SimpleWorker, Worker
from rq.executions import Execution
from rq.job import Job
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import now
from rq.worker import WorkerStatus

try:  # RQ's private stack of running jobs (rq.job), which PortalJob.perform has to keep
    from rq.job import _job_stack
except ImportError:  # another RQ: check_rq() says so, and what to do, before any job runs
    _job_stack = None

# The exact rq that the methods copied below were read against and measured with: the one
# pinned in requirements.txt. Another rq, even a patch release, is refused by check_rq().
RQ_VERSION = "2.12.0"
# "portal" (the default): PortalWorker, on RQ_VERSION only; "rq": RQ's own SimpleWorker, on
# any rq (no copied code runs).
WORKER_ENV = "PORTAL_RQ_WORKER"
WORKER_CHOICES = ("portal", "rq")


class RQVersionError(RuntimeError):
    """The installed rq is not the one PortalWorker's copied methods were written against."""


def check_rq() -> None:
    """Refuse to run PortalWorker on an rq other than RQ_VERSION, loudly and saying what to do.

    Its methods are copies of RQ's, minus some round trips; on another rq they could skip or
    undo what the new RQ does (a status, a registry, a retry) without any error.
    """
    found = getattr(rq, "__version__", "unknown")
    if found != RQ_VERSION:
        problem = (f"rq {found} is installed, but portal.rqworker.PortalWorker overrides "
                   f"methods copied from rq {RQ_VERSION}")
    elif _job_stack is None:
        problem = (f"rq {found} has no rq.job._job_stack, the private name that "
                   "portal.rqworker.PortalJob.perform uses")
    else:
        return
    raise RQVersionError(
        f"{problem}. Either run RQ's own worker ({WORKER_ENV}=rq; a third to a half slower), or "
        f"port PortalWorker: compare each overridden method in portal/rqworker.py with rq "
        f"{found}'s, run tests/integration/test_worker.py, re-measure the worker with and "
        f"without it (bench/webhooks.py; see the docstring of portal/rqworker.py), and set "
        f"RQ_VERSION to {found!r} in portal/rqworker.py (and pin that rq in requirements.txt).")


def worker_class(fork: bool = False, environ=None) -> type[Worker]:
    """The RQ worker class for `flask worker`: RQ's forking Worker with ``fork``, otherwise
    PortalWorker (checked against the installed rq) or, with PORTAL_RQ_WORKER=rq, RQ's own
    SimpleWorker."""
    if fork:
        return Worker
    choice = (os.environ if environ is None else environ).get(WORKER_ENV, "").strip().lower()
    if choice not in ("", *WORKER_CHOICES):
        raise ValueError(f"{WORKER_ENV}={choice!r}: expected one of {', '.join(WORKER_CHOICES)}")
    if choice == "rq":
        return SimpleWorker
    check_rq()
    return PortalWorker


# Seconds between two heartbeats that RQ would send on their own. Far below the key's TTL.
HEARTBEAT_EVERY = 10
# The function every portal job runs as (portal.jobs.enqueue); such jobs have no dependents.
PORTAL_JOB = "portal.jobs.run"


class PortalJob(Job):
    """RQ's Job, except that for a portal job the PERSIST of the job's key that Job.perform
    sends first (its own round trip) went out with PortalWorker's start pipeline."""

    def perform(self):
        """Run the job (rq 2.12.0's Job.perform, minus the PERSIST)."""
        if self.func_name != PORTAL_JOB:
            return super().perform()
        _job_stack.push(self)
        try:
            self._result = self._execute()
        finally:
            if _job_stack.pop() is not self:  # (an assert would vanish, pop and all, with -O)
                raise RuntimeError("the job stack is out of order")
        return self._result


class PortalWorker(SimpleWorker):
    """SimpleWorker without the repeated or empty round trips (see the module)."""

    job_class = PortalJob
    # Not RQ's "job ... result is kept for 3600 seconds" after every job: portal jobs return
    # nothing that anyone reads. The dequeue, "Successfully completed" and "Job OK" lines stay.
    log_result_lifespan = False
    # Set by the success pipeline, which also checks `rq suspend` (see check_for_suspension).
    _not_suspended = False

    def __init__(self, *args, **kwargs):
        check_rq()  # before anything of RQ's runs
        super().__init__(*args, **kwargs)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's check (with a heartbeat), unless the success pipeline of the job that just
        ended made it, a moment ago."""
        if self._not_suspended:
            self._not_suspended = False
            return
        super().check_for_suspension(burst)

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        """Refresh the worker's key, unless a refresh with the default TTL was just sent."""
        if (pipeline is None and timeout is None and self.last_heartbeat is not None
                and (now() - self.last_heartbeat).total_seconds() < HEARTBEAT_EVERY):
            return
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline=None) -> None:
        """Write the worker's state, unless it is the state already written."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def prepare_execution(self, job):
        """RQ's (rq.executions.prepare_execution), but its writes wait for those of
        prepare_job_execution, which RQ runs right after: one round trip for both."""
        if job.func_name != PORTAL_JOB:
            return super().prepare_execution(job)
        pipeline = self.connection.pipeline()
        self.execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipeline,
                                          worker_name=self.name)
        self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
        self._preparation = pipeline
        return self.execution

    def prepare_job_execution(self, job, remove_from_intermediate_queue: bool = False) -> None:
        """RQ's (rq 2.12.0), in the pipeline prepare_execution left (see above)."""
        pipeline, self._preparation = getattr(self, "_preparation", None), None
        if pipeline is None:
            super().prepare_job_execution(job, remove_from_intermediate_queue)
            return
        with pipeline:
            self.set_current_job_id(job.id, pipeline=pipeline)
            self.set_current_job_working_time(0, pipeline=pipeline)
            heartbeat_ttl = self.get_heartbeat_ttl(job)
            self.heartbeat(heartbeat_ttl, pipeline=pipeline)
            job.heartbeat(now(), heartbeat_ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.persist(job.key)  # what PortalJob.perform leaves out
            if remove_from_intermediate_queue:
                queue = Queue(job.origin, connection=self.connection)
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            pipeline.execute()
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")

    def handle_execution_ended(self, job, queue, heartbeat_ttl: int) -> None:
        """As RQ's, but the job's last heartbeat is saved with the job by the next pipeline."""
        if job.func_name != PORTAL_JOB:
            super().handle_execution_ended(job, queue, heartbeat_ttl)
            return
        job.ended_at = job.last_heartbeat = now()

    def handle_job_success(self, job, queue, started_job_registry) -> None:
        """RQ's (rq 2.12.0), in one pipeline, without looking for dependents that portal jobs
        never have."""
        if job.func_name != PORTAL_JOB or job.repeats_left:
            super().handle_job_success(job, queue, started_job_registry)
            return
        with self.connection.pipeline() as pipeline:
            self.increment_successful_job_count(pipeline=pipeline)
            self.increment_total_working_time(job.ended_at - job.started_at, pipeline)
            result_ttl = job.get_result_ttl(self.default_result_ttl)
            if result_ttl != 0:
                execution = self.execution
                job._handle_success(
                    result_ttl, pipeline=pipeline, worker_name=self.name,
                    execution_id=execution.id if execution else None,
                    execution_started_at=execution.created_at if execution else None,
                    execution_ended_at=job.ended_at,
                )
            job.cleanup(result_ttl, pipeline=pipeline, remove_from_queue=False)
            self.cleanup_execution(job, pipeline=pipeline)
            # What SimpleWorker.execute_job writes on its own once this returns, and what the
            # work loop asks Redis next (check_for_suspension: a heartbeat and `rq suspend`).
            self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            self.heartbeat(pipeline=pipeline)
            pipeline.exists(WORKERS_SUSPENDED)
            self._not_suspended = not pipeline.execute()[-1]
        taken = job.ended_at - job.started_at
        if self.log_job_description:
            self.log.info("Successfully completed %s job in %ss on worker %s", job.description,
                          taken, self.name)
        else:
            self.log.info("Successfully completed job %s in %ss on worker %s", job.id, taken,
                          self.name)
