"""Transactions and the database's dialects, in one place.

- **The unit of work.** A request, a job or a CLI command is one transaction: it commits once,
  at its edge (``commit_request`` after a view, ``unit_of_work`` around a job or a command).
  Services only change the session and raise ``errors.DomainError``, before changing
  anything, when they refuse; they never commit or roll back.
- **Workflows that call Stripe** are three phases (``in_phases``): *reserve* (lock, check,
  record the intent; commit), *call* Stripe with no lock held and no transaction open, *apply*
  (lock again, settle; commit). A crash between the phases leaves a reserved row that a retry
  or reconciliation finishes; Stripe's idempotency keys make the call safe to repeat.
- **Jobs start after commit** (``portal.jobs``): nothing is queued by a transaction that
  rolls back.
- **Dialects.** SQLite (the embedded default) ignores ``FOR UPDATE``; ``write_lock`` takes its
  one write lock instead, and ``insert_or_skip`` builds the dialect's ON CONFLICT DO NOTHING;
  ``plan_each_query`` keeps PostgreSQL from reusing one plan for a search's every value;
  ``uuid_text`` has the database write an id, ``stream`` reads rows while it finds more.
  Services call these and stay dialect-free.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import sqlalchemy as sa
from flask import Response
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .extensions import db

_COMMITS = "portal_commits"  # session.info: how many times the session committed
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")


@contextlib.contextmanager
def unit_of_work() -> Iterator[None]:
    """A job's or a command's transaction: commit at the end, roll back on any error (and
    re-raise). The jobs it enqueued start after the commit."""
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


@event.listens_for(Session, "after_commit")
def _counted(session: Session) -> None:
    session.info[_COMMITS] = session.info.get(_COMMITS, 0) + 1


def commits() -> int:
    """How many times the current session has committed: a caller compares two readings to
    know whether work in between committed anything (a phase that may have moved money)."""
    return db.session().info.get(_COMMITS, 0)


def commit_request(response: Response) -> Response:
    """The request's edge (after_request): commit what the view changed when it answered
    below 400; roll back otherwise (a refusal, a form shown again with its errors, an error
    page), so that a refused request changes nothing."""
    if response.status_code < 400:
        db.session.commit()
    else:
        db.session.rollback()
    return response


@contextlib.contextmanager
def phase() -> Iterator[None]:
    """One committed phase of a workflow (see ``in_phases``)."""
    with unit_of_work():
        yield


def in_phases(reserve: Callable[[], R | None], call: Callable[[R], S],
              apply: Callable[[R, S], T], *,
              failed: Callable[[R, Exception], T] | None = None,
              failures: tuple[type[Exception], ...] = ()) -> T | None:
    """Run a workflow that calls Stripe as three transactions.

    ``reserve()`` locks, checks and records what is about to happen; it commits (a domain
    error rolls it back and propagates). It returns what the call needs, or None when there
    is nothing to do (the workflow then returns None). ``call(reserved)`` talks to Stripe
    with no lock held and no transaction open. ``apply(reserved, result)`` locks again and
    settles; it commits. When the call raises one of ``failures``, ``failed(reserved, exc)``
    runs instead of ``apply``, in a transaction of its own, and its result is returned.
    """
    with phase():
        reserved = reserve()
    if reserved is None:
        return None
    try:
        result = call(reserved)
    except failures as exc:
        if failed is None:
            raise
        with phase():
            return failed(reserved, exc)
    with phase():
        return apply(reserved, result)


# --- Dialects ---------------------------------------------------------------------------------

def dialect() -> str:
    return db.session.get_bind().dialect.name


def write_lock(model, *where) -> None:
    """On SQLite, take the database's one write lock now and hold it until the commit.

    SQLite ignores FOR UPDATE / FOR SHARE, and its driver begins a transaction only at the
    first write: a read-check-write could act on a row that another writer changes before
    our first write. A no-op UPDATE of the rows ``where`` selects takes the lock now (waiting
    for a writer in progress to commit), so what we read next is current. On PostgreSQL this
    does nothing: the caller's FOR UPDATE / FOR SHARE locks the rows themselves.
    """
    if dialect() != "sqlite":
        return
    db.session.execute(sa.update(model).where(*where)
                       .values(updated_at=model.updated_at)
                       .execution_options(synchronize_session=False))


def insert_or_skip(model, index_elements: list[str] | None, index_where=None):
    """INSERT ... ON CONFLICT (index_elements) DO NOTHING, for the session's dialect
    (``index_elements`` None: a conflict on any unique constraint is skipped)."""
    insert = postgresql.insert if dialect() == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing(index_elements=index_elements,
                                                index_where=index_where)


def plan_each_query() -> None:
    """Plan the rest of the transaction's statements for the values they are sent with, and
    without JIT compilation (PostgreSQL; SQLite plans every statement anew and has no JIT).

    psycopg prepares a statement on the server once a connection has sent it five times, and
    five executions later PostgreSQL may settle on one generic plan for all values. For a
    search whose best plan depends on its values (a rare amount or a common one, a cursor
    deep in the table) that plan can read an index whole where the plan for the values reads
    a page (bench/admin_search.py: 200 ms instead of 6); planning each time costs well under
    a millisecond. JIT compiles a plan whose estimated cost is high, as a search that must
    sort many rows has, for expressions that then run for microseconds: 58 ms of compiling
    for the search by vendor before its indexes.
    """
    if dialect() == "postgresql":
        db.session.execute(sa.text(  # SET LOCAL of both, in one round trip
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
            "set_config('jit', 'off', true)"))


def stream(select: sa.Select, size: int) -> Iterator[Sequence]:
    """The rows of ``select`` in lists of ``size``, read while the database finds the next.

    On PostgreSQL, psycopg's ``Cursor.stream`` (libpq's chunked rows): the server sends rows
    as it finds them while Python works on the last ones, where a server-side cursor
    (SQLAlchemy's ``stream_results``) has each wait for the other: the CSV export of
    1,000,000 payments, timed without Flask, went from 45,000 to 65,000 rows/s. There the
    rows are psycopg's tuples, without SQLAlchemy's type processing, and the parameters go
    as psycopg adapts them: fine for text, numbers, UUIDs and aware datetimes, which is what
    the caller must select and filter on. A stream closed before its end cancels its query,
    which leaves the transaction only able to roll back: stream last. Elsewhere, SQLAlchemy's
    streamed result, a partition at a time.
    """
    connection = db.session.connection()
    if dialect() != "postgresql":
        yield from connection.execution_options(stream_results=True, yield_per=size) \
            .execute(select).partitions()
        return
    compiled = select.compile(dialect=connection.dialect,
                              compile_kwargs={"render_postcompile": True})
    with connection.connection.driver_connection.cursor() as cursor:
        rows = cursor.stream(str(compiled), compiled.construct_params(), size=size)
        try:
            while batch := list(itertools.islice(rows, size)):
                yield batch
        finally:
            rows.close()


def uuid_text(column) -> sa.ColumnElement[str]:
    """A UUID column as the database writes its canonical text (8-4-4-4-12 lower-case hex
    digits): an export that prints ids would otherwise build a uuid.UUID per id only to
    print it. PostgreSQL's uuid is that text; SQLite holds SQLAlchemy's 32 digits alone."""
    if dialect() == "postgresql":
        return sa.cast(column, sa.String)
    a, b, c, d, e = (sa.func.substr(column, start, length, type_=sa.String)
                     for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12)))
    return a + "-" + b + "-" + c + "-" + d + "-" + e


def any_of(column, ids: list, type_=sa.Uuid):
    """``column = ANY(:ids)`` on PostgreSQL (one bind parameter, whatever the list's size);
    ``column IN (...)`` elsewhere."""
    if dialect() == "postgresql":
        return column == sa.any_(sa.bindparam("ids", ids, type_=postgresql.ARRAY(type_)))
    return column.in_(ids)
