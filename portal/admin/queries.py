"""What the admin pages list, a page at a time.

Every list is a keyset page, newest first: a cursor names the (time, id) of the row a page
ends at, so "Older" continues right after the last row shown whatever was added or decided
above it (a numbered page 2 would skip as many requests as were decided on page 1), and no
row is ever hidden by a cap. Each page says how many rows match its filters, and loads what
its template shows in a fixed number of queries, whatever the number of rows.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload

from ..audit.models import AuditEntry
from ..database import any_of
from ..days import parse_day
from ..extensions import db
from ..ledger.models import Payment, Payout, PayoutRun
from ..models_base import parse_uuid
from ..orders.models import Order
from ..outbox.models import OutboxMessage
from ..refunds.models import IN_FLIGHT, RefundRequest
from ..webhooks.models import StripeEvent

PAGE_SIZE = 50
RUNS_PAGE_SIZE = 20  # a run shows all of its payouts


@dataclass(frozen=True)
class Page:
    rows: list
    total: int  # rows matching the filters, on every page
    newer: str | None  # cursor of the "Newer" link (None: this is the newest page)
    older: str | None  # cursor of the "Older" link (None: nothing older)


_CURSOR = re.compile(r"([0-9]{20})\.(.{1,255})", re.DOTALL)


@dataclass(frozen=True)
class Keyset:
    """A list's order, newest first: a time column, then the id (ties)."""

    at: sa.orm.InstrumentedAttribute
    id: sa.orm.InstrumentedAttribute

    def cursor(self, row) -> str:
        at, key = getattr(row, self.at.key), getattr(row, self.id.key)
        key = key.hex if isinstance(key, uuid.UUID) else key
        return f"{at.astimezone(UTC):%Y%m%d%H%M%S%f}.{key}"

    def parse(self, text: str | None) -> tuple[datetime, object] | None:
        """The (time, id) of a cursor; None when it is not one (a bad link is ignored)."""
        found = _CURSOR.fullmatch(text or "")
        if not found:
            return None
        try:
            at = datetime.strptime(found.group(1), "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)
        except ValueError:
            return None
        if not isinstance(self.id.type, sa.Uuid):
            return at, found.group(2)
        key = parse_uuid(found.group(2))
        return (at, key) if key else None

    def beyond(self, key: tuple[datetime, object], newer: bool):
        """The rows after ``key`` in the list (older), or before it (``newer``)."""
        at, rid = key
        # The first term is implied by the second; it is there for the planner: a bound on
        # the time column starts an index range scan at the cursor (an OR alone is only a
        # filter, so page 51 would read the 50 pages before it again).
        if newer:
            return sa.and_(self.at >= at,
                           sa.or_(self.at > at, sa.and_(self.at == at, self.id > rid)))
        return sa.and_(self.at <= at, sa.or_(self.at < at, sa.and_(self.at == at, self.id < rid)))


def keyset_page(query: sa.Select, keys: Keyset, where: list, *, before: str | None = None,
                after: str | None = None, per_page: int = PAGE_SIZE) -> Page:
    """One page of ``query`` (a select of one model, with its loader options) filtered by
    ``where``. ``before``: the rows older than that cursor; ``after``: the rows just newer
    than it (the "Newer" link; when fewer than a page are newer, the newest page). Two or
    three queries: the rows, then the total and whether rows lie beyond either end."""
    query = query.where(*where).limit(per_page)
    rows: list = []
    if (cursor := keys.parse(after)) is not None:
        rows = list(db.session.scalars(query.where(keys.beyond(cursor, newer=True))
                                       .order_by(keys.at.asc(), keys.id.asc())))[::-1]
    if len(rows) < per_page:  # the first page, or "Newer" reached it: a full first page
        cursor = keys.parse(before) if not after else None
        if cursor is not None:
            query = query.where(keys.beyond(cursor, newer=False))
        rows = list(db.session.scalars(query.order_by(keys.at.desc(), keys.id.desc())))
    model = keys.at.class_
    columns = [sa.select(sa.func.count()).select_from(model).where(*where).scalar_subquery()]
    if rows:
        columns += [sa.exists().where(*where, keys.beyond(_key(keys, row), newer))
                    for row, newer in ((rows[0], True), (rows[-1], False))]
    total, *beyond = db.session.execute(sa.select(*columns)).one()
    return Page(rows=rows, total=int(total or 0),
                newer=keys.cursor(rows[0]) if rows and beyond[0] else None,
                older=keys.cursor(rows[-1]) if rows and beyond[1] else None)


def _key(keys: Keyset, row) -> tuple[datetime, object]:
    return getattr(row, keys.at.key), getattr(row, keys.id.key)


def day_range(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """The filters' days (YYYY-MM-DD, both included) as [start, end) times; a day that is not
    one the portal accepts is no filter."""
    first, last = parse_day(start), parse_day(end)
    return first, last + timedelta(days=1) if last else None


# --- Refund requests ----------------------------------------------------------------------------

REQUESTS = Keyset(RefundRequest.created_at, RefundRequest.id)


def _requests() -> sa.Select:
    """Refund requests with what the queue's rows show (payment, order, people) joined in."""
    return sa.select(RefundRequest).options(
        joinedload(RefundRequest.payment).joinedload(Payment.order).joinedload(Order.customer),
        joinedload(RefundRequest.requested_by), joinedload(RefundRequest.decided_by))


def refund_queue(status: str | None, start: datetime | None, end: datetime | None, *,
                 before: str | None = None, after: str | None = None,
                 per_page: int = PAGE_SIZE) -> Page:
    """The admin queue, newest first, filtered by status and creation times [start, end).
    Its rows are (request, what its payment can still refund)."""
    where = []
    if status:
        where.append(RefundRequest.status == status)
    if start:
        where.append(RefundRequest.created_at >= start)
    if end:
        where.append(RefundRequest.created_at < end)
    page = keyset_page(_requests(), REQUESTS, where, before=before, after=after,
                       per_page=per_page)
    return replace(page, rows=with_refundable(page.rows))


def refund_request(request_id: str) -> RefundRequest | None:
    rid = parse_uuid(request_id)
    return db.session.scalar(_requests().where(RefundRequest.id == rid)) if rid else None


def refund_requests(ids: list[uuid.UUID]) -> list[tuple[RefundRequest, int]]:
    """These requests (the bulk form's), newest first, with their payments' remainders."""
    if not ids:
        return []
    return with_refundable(list(db.session.scalars(
        _requests().where(any_of(RefundRequest.id, ids))
        .order_by(RefundRequest.created_at.desc(), RefundRequest.id.desc()))))


@dataclass(frozen=True)
class PaymentRequests:
    """The queue's requests of one payment (a page's rows grouped by payment, in the order
    of their newest), what it can still refund, and per request the other requests waiting
    for a decision on it (``overlaps``: request id -> [(other, items they share)])."""

    payment: Payment
    left: int
    rows: list[RefundRequest]
    overlaps: dict[uuid.UUID, list[tuple[RefundRequest, list[str]]]]


def grouped(rows: list[tuple[RefundRequest, int]]) -> list[PaymentRequests]:
    """The queue's rows grouped per payment, with the waiting requests each overlaps."""
    groups: dict[uuid.UUID, list[tuple[RefundRequest, int]]] = {}
    for r, left in rows:
        groups.setdefault(r.payment_id, []).append((r, left))
    waiting: dict[uuid.UUID, list[RefundRequest]] = {}
    if groups:
        for r in db.session.scalars(_requests().options(selectinload(RefundRequest.items))
                                    .where(any_of(RefundRequest.payment_id, list(groups)),
                                           RefundRequest.status == "requested")
                                    .order_by(RefundRequest.created_at)):
            waiting.setdefault(r.payment_id, []).append(r)
    found = []
    for payment_id, members in groups.items():
        others = waiting.get(payment_id, [])
        overlaps = {r.id: [(o, _shared_items(r, o)) for o in others if o.id != r.id]
                    for r, _ in members if r.status == "requested"}
        found.append(PaymentRequests(members[0][0].payment, members[0][1],
                                     [r for r, _ in members], overlaps))
    return found


def _shared_items(one: RefundRequest, other: RefundRequest) -> list[str]:
    """The items both requests name (an amount shared by all vendors touches every item)."""
    mine = {i.order_item_id: i for i in one.items if i.order_item_id}
    return [i.order_item.description for i in other.items if i.order_item_id in mine]


def with_refundable(requests: list[RefundRequest]) -> list[tuple[RefundRequest, int]]:
    """Each request with what its payment can still refund: refunds.services.remaining's
    rule (paid - refunded - approved and not yet made; 0 unless succeeded), for all their
    payments in one grouped query instead of one per row."""
    payments = {r.payment_id: r.payment for r in requests}
    in_flight = dict(db.session.execute(
        sa.select(RefundRequest.payment_id, sa.func.sum(
            sa.func.coalesce(RefundRequest.approved_amount, RefundRequest.amount)))
        .where(any_of(RefundRequest.payment_id, list(payments)),
               RefundRequest.status.in_(IN_FLIGHT))
        .group_by(RefundRequest.payment_id)).all()) if payments else {}
    left = {pid: max(0, p.amount - p.amount_refunded - int(in_flight.get(pid) or 0))
            if p.status == "succeeded" else 0 for pid, p in payments.items()}
    return [(r, left[r.payment_id]) for r in requests]


# --- The audit log, Stripe events, the outbox, payout runs --------------------------------------

AUDIT = Keyset(AuditEntry.at, AuditEntry.id)
EVENTS = Keyset(StripeEvent.received_at, StripeEvent.id)
OUTBOX = Keyset(OutboxMessage.created_at, OutboxMessage.id)
RUNS = Keyset(PayoutRun.created_at, PayoutRun.id)


def audit_log(*, before: str | None = None, after: str | None = None,
              per_page: int = PAGE_SIZE) -> Page:
    """Money-moving actions, newest first, with their actors."""
    return keyset_page(sa.select(AuditEntry).options(joinedload(AuditEntry.actor)), AUDIT,
                       [], before=before, after=after, per_page=per_page)


def events(kind: str, status: str | None, start: datetime | None, end: datetime | None, *,
           before: str | None = None, after: str | None = None,
           per_page: int = PAGE_SIZE) -> Page:
    """Stored Stripe events, newest first: types starting with ``kind`` (a trailing "*" is
    allowed; "%" and "_" are themselves), a status, received in [start, end)."""
    where = []
    if kind:
        where.append(StripeEvent.type.startswith(kind.rstrip("*"), autoescape=True))
    if status:
        where.append(StripeEvent.status == status)
    if start:
        where.append(StripeEvent.received_at >= start)
    if end:
        where.append(StripeEvent.received_at < end)
    return keyset_page(sa.select(StripeEvent), EVENTS, where, before=before, after=after,
                       per_page=per_page)


def other_api_versions(pinned: str) -> list[tuple[str, int]]:
    """The API versions of stored events other than ``pinned``, with their counts."""
    return [tuple(row) for row in db.session.execute(
        sa.select(StripeEvent.api_version, sa.func.count())
        .where(StripeEvent.api_version != pinned)
        .group_by(StripeEvent.api_version).order_by(StripeEvent.api_version))]


def failed_events() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(StripeEvent)
                             .where(StripeEvent.status == "failed")) or 0


def event(event_id: str) -> StripeEvent | None:
    return db.session.get(StripeEvent, event_id[:255])


def outbox(status: str | None, *, before: str | None = None, after: str | None = None,
           per_page: int = PAGE_SIZE) -> Page:
    """Notifications and receipts, newest first, optionally of one status."""
    where = [OutboxMessage.status == status] if status else []
    return keyset_page(sa.select(OutboxMessage), OUTBOX, where, before=before, after=after,
                       per_page=per_page)


def payout_runs(*, before: str | None = None, after: str | None = None,
                per_page: int = RUNS_PAGE_SIZE) -> Page:
    """Payout runs, newest first, each with its payouts and their vendors."""
    query = sa.select(PayoutRun).options(
        selectinload(PayoutRun.payouts).joinedload(Payout.vendor))
    return keyset_page(query, RUNS, [], before=before, after=after, per_page=per_page)


def payout_run(run_id: str) -> PayoutRun | None:
    rid = parse_uuid(run_id)
    return db.session.get(PayoutRun, rid) if rid else None
