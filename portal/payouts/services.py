"""Vendor payouts: Connect onboarding, payout runs (set-based SQL), execution by transfer, and
what the vendor dashboard and the API show.

Every split line is written into its vendor's open payout in its currency (open_payouts), so
a line is in exactly one payout from the start. A run closes the open payouts whose total is
positive with one aggregate UPDATE, whatever the number of lines: it neither rewrites the
lines nor brings them into Python, so memory does not grow with them (bench/payouts.py). A
vendor whose unpaid lines sum to zero or less (refunds after a payout) keeps the open payout:
the lines wait for the next sales.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from .. import jobs
from .. import stripe_gateway as gateway
from ..auth.models import User
from ..extensions import db
from ..models_base import utcnow
from ..payments.models import SplitLine
from ..refunds.models import AuditEntry
from .models import PERIODS, Payout, PayoutRun, VendorAccount

log = logging.getLogger(__name__)
RETRY_DELAYS = (30, 120, 600, 1800, 3600)
NOT_CONNECTED = "Waiting for the vendor to connect a Stripe account that can receive payouts."


def _audit(action: str, actor: User | None, amount: int | None = None,
           currency: str | None = None, note: str | None = None) -> None:
    db.session.add(AuditEntry(actor_id=actor.id if actor else None, action=action,
                              amount=amount, currency=currency, note=note))


# --- Periods --------------------------------------------------------------------------------

def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) of the last complete period before ``now``: weeks start on Monday, months
    on the 1st, at 00:00 UTC."""
    today = now.astimezone(UTC).date()
    if period == "weekly":
        end = today - timedelta(days=today.weekday())
        start = end - timedelta(days=7)
    else:
        end = today.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
    as_dt = lambda d: datetime(d.year, d.month, d.day, tzinfo=UTC)  # noqa: E731
    return as_dt(start), as_dt(end)


def next_payout_date(period: str, now: datetime) -> datetime:
    """When the next scheduled run happens (the start of the next period)."""
    today = now.astimezone(UTC).date()
    if period == "weekly":
        day = today + timedelta(days=7 - today.weekday())
    else:
        day = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def schedule_period() -> str:
    return current_app.extensions["portal_config"].PAYOUT_SCHEDULE


# --- Runs -----------------------------------------------------------------------------------

def open_payouts(currency: str, vendor_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """vendor id -> id of the vendor's open payout in ``currency`` (created when missing),
    for new split lines. The rows are held (FOR SHARE) until the caller commits, so a run,
    which takes them FOR UPDATE, waits for the lines being written into them; rows are taken
    in vendor order, as the run takes them, so the two cannot deadlock."""
    wanted = sorted(set(vendor_ids), key=str)
    dialect = db.session.get_bind().dialect.name
    if dialect == "sqlite":
        # SQLite ignores FOR SHARE, and its driver starts a transaction only at the first
        # write: without this, the SELECT below could read a payout that a run then closes
        # before the lines go in. A write statement takes SQLite's one write lock now (it
        # waits for a run in progress to commit), and holds it until our commit.
        db.session.execute(sa.update(Payout).where(
            Payout.status == "open", Payout.currency == currency,
            Payout.vendor_id.in_(wanted)).values(updated_at=Payout.updated_at)
            .execution_options(synchronize_session=False))
    for _ in range(3):
        found = dict(db.session.execute(
            sa.select(Payout.vendor_id, Payout.id)
            .where(Payout.status == "open", Payout.currency == currency,
                   Payout.vendor_id.in_(wanted))
            .order_by(Payout.vendor_id).with_for_update(read=True)).all())
        missing = [v for v in wanted if v not in found]
        if not missing:
            return found
        # A concurrent writer (or a run leaving lines open) may create the same one: the
        # partial unique index keeps one, and the next SELECT finds it.
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Payout)
        now = utcnow()
        db.session.execute(
            insert.on_conflict_do_nothing(index_elements=["vendor_id", "currency"],
                                          index_where=sa.text("status = 'open'")),
            [{"id": uuid.uuid4(), "vendor_id": v, "currency": currency, "status": "open",
              "created_at": now, "updated_at": now} for v in missing])
    raise RuntimeError(f"no open payout for {missing} in {currency}")


def payable(until: datetime, now: datetime):
    """The lines a run pays: created before ``until``, and (sale lines) whose funds Stripe
    has made available by ``now``: a transfer needs available balance, and a card payment's
    funds stay pending for days (its balance transaction's available_on)."""
    return sa.and_(SplitLine.created_at < until,
                   sa.or_(SplitLine.available_at.is_(None), SplitLine.available_at <= now))


def run_payouts(*, period: str = "weekly", until: datetime | None = None,
                actor: User | None = None) -> PayoutRun | None:
    """Close every open payout whose payable lines (created before ``until``, default: the
    end of the last complete period, with their funds available at Stripe) sum to more than
    zero: it becomes pending, with their totals. Its other lines move to a new open payout;
    an open payout whose total is zero or less stays open (refunds after a payout wait for
    the next sales). None when there is nothing to pay. Commits."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    now = utcnow()
    start, default_until = period_bounds(period, now)
    until = min(until or default_until, now)
    # Hold every open payout: writers of new lines hold theirs FOR SHARE (open_payouts), so
    # from here on the totals below see every line in them, and no line can join them.
    held = db.session.scalars(sa.select(Payout.id).where(Payout.status == "open")
                              .order_by(Payout.vendor_id, Payout.currency)
                              .with_for_update()).all()
    # Only those: an open payout committed after the SELECT above (a vendor's first sale
    # since the last run) is not locked, and a line may be on its way into it. On SQLite
    # the run holds the one write lock from its first write (the flush below) to its commit,
    # so no line can be on its way; "open" is enough there.
    if db.session.get_bind().dialect.name == "postgresql":
        closable = Payout.id == sa.any_(sa.bindparam(
            "held", held, type_=postgresql.ARRAY(sa.Uuid)))
    else:
        closable = Payout.status == "open"
    run = PayoutRun(id=uuid.uuid4(), period=period, period_start=start, until=until,
                    created_at=now, created_by_id=actor.id if actor else None)
    db.session.add(run)
    db.session.flush()
    sums = (sa.select(
        SplitLine.payout_id.label("pid"),
        sa.func.sum(SplitLine.net).label("net"),
        sa.func.sum(sa.case((SplitLine.kind == "sale", SplitLine.gross), else_=0)).label("sales"),
        sa.func.sum(SplitLine.fee).label("fee"),
        sa.func.sum(sa.case((SplitLine.kind == "refund", SplitLine.gross), else_=0))
        .label("refunds"),
        sa.func.count(sa.distinct(SplitLine.payment_id)).label("payments"),
        sa.func.count().label("lines"))
        .where(SplitLine.payout_id.in_(sa.select(Payout.id).where(Payout.status == "open",
                                                                   closable)),
               payable(until, now))
        .group_by(SplitLine.payout_id).having(sa.func.sum(SplitLine.net) > 0).subquery())
    closed = db.session.execute(
        sa.update(Payout).where(Payout.id == sums.c.pid)
        .values(status="pending", run_id=run.id, created_at=now, updated_at=now,
                amount=sums.c.net, total_sales=sums.c.sales, platform_fee=sums.c.fee,
                refunds=sums.c.refunds, payment_count=sums.c.payments, line_count=sums.c.lines)
        .execution_options(synchronize_session=False)).rowcount
    if not closed:
        db.session.rollback()
        return None
    # The other lines of the payouts just closed go on waiting, in a new open payout of
    # their vendor and currency (few: those written since the period ended, and the sales of
    # the last days, whose funds are still pending at Stripe).
    in_run = sa.select(Payout.id).where(Payout.run_id == run.id)
    # not payable(): two ranges of the payouts' indexes (created_at, available_at), so that
    # the few such lines are found without reading every line of the run (an OR of the two
    # reads them all: 1.8 s a statement at 1,000,000 lines, bench/payouts.py).
    late = SplitLine.id.in_(sa.union(
        sa.select(SplitLine.id).where(SplitLine.payout_id.in_(in_run),
                                      SplitLine.created_at >= until),
        sa.select(SplitLine.id).where(SplitLine.payout_id.in_(in_run),
                                      SplitLine.available_at > now)))
    for currency, vendors in _by_currency(db.session.execute(
            sa.select(SplitLine.currency, SplitLine.vendor_id).where(late).distinct())).items():
        open_payouts(currency, vendors)
    reopened = aliased(Payout)
    db.session.execute(
        sa.update(SplitLine).where(late)
        .values(payout_id=sa.select(reopened.id).where(
            reopened.vendor_id == SplitLine.vendor_id, reopened.currency == SplitLine.currency,
            reopened.status == "open").scalar_subquery())
        .execution_options(synchronize_session=False))
    _audit("payout.run", actor, note=f"run {run.id}: {closed} payouts, lines before "
                                     f"{until:%Y-%m-%d %H:%M} UTC")
    db.session.commit()
    if current_app.extensions["portal_config"].PAYOUT_AUTO_EXECUTE:
        approve_run(None, run.id)
    return run


@dataclass(frozen=True)
class Waiting:
    """Sale lines not paid yet because Stripe has not made their funds available."""

    lines: int
    first: datetime | None  # when the first of them becomes payable


def waiting_for_funds(now: datetime | None = None, vendor: User | None = None) -> Waiting:
    """What the next runs will pay once Stripe makes the funds available (of ``vendor``, or
    of every vendor)."""
    now = now or utcnow()
    query = (sa.select(sa.func.count(), sa.func.min(SplitLine.available_at))
             .join(Payout, Payout.id == SplitLine.payout_id)
             .where(Payout.status == "open", SplitLine.available_at > now))
    if vendor is not None:
        query = query.where(SplitLine.vendor_id == vendor.id)
    count, first = db.session.execute(query).one()
    return Waiting(int(count or 0), first)


def waiting_note(now: datetime | None = None) -> str:
    """"3 sales wait for ...", for the run's message; "" when none does."""
    waiting = waiting_for_funds(now)
    if not waiting.lines:
        return ""
    sales = "1 sale waits" if waiting.lines == 1 else f"{waiting.lines} sales wait"
    return (f"{sales} for Stripe to make their funds available (the first on "
            f"{waiting.first:%d %b %Y, %H:%M} UTC): a later run pays them.")


def _by_currency(rows) -> dict[str, list[uuid.UUID]]:
    out: dict[str, list[uuid.UUID]] = {}
    for currency, vendor_id in rows:
        out.setdefault(currency, []).append(vendor_id)
    return out


def approve_run(admin: User | None, run_id: uuid.UUID) -> int:
    """Approve a run: queue the execution of its payouts that are not paid. Returns how many."""
    run = db.session.get(PayoutRun, run_id)
    run.approved_at, run.approved_by_id = utcnow(), admin.id if admin else None
    _audit("payout.run_approved", admin, note=f"run {run.id}")
    ids = [str(p.id) for p in run.payouts if p.status in ("pending", "failed")]
    db.session.commit()
    for payout_id in ids:
        jobs.enqueue(execute_payout, payout_id, queue="payouts", retry=RETRY_DELAYS)
    return len(ids)


def retry_payout(admin: User, payout_id: uuid.UUID) -> bool:
    """A failed (or waiting) payout is queued again."""
    payout = db.session.get(Payout, payout_id)
    if payout is None or payout.status not in ("failed", "pending"):
        return False
    _audit("payout.retried", admin, payout.amount, payout.currency, note=f"payout {payout.id}")
    db.session.commit()
    jobs.enqueue(execute_payout, str(payout.id), queue="payouts", retry=RETRY_DELAYS)
    return True


def execute_payout(payout_id: str) -> None:
    """The job: one Stripe transfer per payout (transfer_group = the payout id; idempotency
    key = the payout id and its attempt number, which moves on only after a 5xx that Stripe
    keeps under the old key, and only once the group shows no transfer). Timeouts and 5xx
    raise for RQ's retry; a 4xx ends the payout failed with Stripe's reason; a vendor without
    a ready account leaves it pending."""
    payout = db.session.scalar(sa.select(Payout).where(Payout.id == uuid.UUID(payout_id))
                               .with_for_update().execution_options(populate_existing=True))
    if payout is None or payout.status in ("paid", "open"):  # open: not closed by a run yet
        db.session.rollback()
        return
    account = db.session.scalar(sa.select(VendorAccount).where(
        VendorAccount.vendor_id == payout.vendor_id))
    if account is None or not account.ready:
        payout.status, payout.failure_reason = "pending", NOT_CONNECTED
        db.session.commit()
        return
    payout.status, payout.failure_reason = "processing", None
    amount, currency, destination = payout.amount, payout.currency, account.stripe_account_id
    attempt = payout.transfer_attempt
    db.session.commit()  # no lock held while Stripe works
    try:
        # A transfer made by an earlier attempt (even beyond the key's 24 h) is adopted.
        done = gateway.transfers_in_group(payout_id)
        transfer = done[0] if done else gateway.create_transfer(
            amount=amount, currency=currency, destination=destination,
            transfer_group=payout_id, description=f"ShopSphere payout {payout_id}",
            idempotency_key=f"payout-{payout_id}-{attempt}")
    except gateway.GatewayError as exc:
        if exc.retryable:
            if (exc.status or 0) >= 500:  # kept by Stripe under this key: next time, a new one
                db.session.execute(sa.update(Payout).where(
                    Payout.id == uuid.UUID(payout_id), Payout.transfer_attempt == attempt)
                    .values(transfer_attempt=attempt + 1))
                db.session.commit()
            raise
        payout = db.session.get(Payout, uuid.UUID(payout_id))
        payout.status, payout.failure_reason = "failed", exc.message[:500]
        # Stripe keeps a refusal under its key for 24 h: a retry (after a top-up, or once the
        # account is fixed) needs a new one. The group is listed before any new transfer.
        payout.transfer_attempt = attempt + 1
        _audit("payout.failed", None, amount, currency, note=f"payout {payout_id}: "
                                                            f"{exc.message}")
        db.session.commit()
        return
    payout = db.session.scalar(sa.select(Payout).where(Payout.id == uuid.UUID(payout_id))
                               .with_for_update().execution_options(populate_existing=True))
    if payout.status != "paid":
        payout.status, payout.stripe_transfer_id, payout.paid_at = "paid", transfer.id, utcnow()
        _audit("payout.paid", None, amount, currency, note=f"payout {payout_id}: {transfer.id}")
    db.session.commit()


# --- Connect onboarding ---------------------------------------------------------------------

def account_of(vendor: User) -> VendorAccount | None:
    return db.session.scalar(sa.select(VendorAccount).where(
        VendorAccount.vendor_id == vendor.id))


def _mirror_account(row: VendorAccount, account: gateway.Account) -> None:
    row.stripe_account_id = account.id
    row.charges_enabled, row.payouts_enabled = account.charges_enabled, account.payouts_enabled
    row.transfers_active = account.transfers_active
    row.details_submitted = account.details_submitted
    row.requirements_due, row.disabled_reason = account.requirements_due, account.disabled_reason


def start_onboarding(vendor: User, *, return_url: str, refresh_url: str) -> str:
    """The vendor's Express account (created once: row lock + idempotency key) and a fresh
    onboarding link to it. Commits."""
    row = account_of(vendor)
    if row is None or row.stripe_account_id is None:
        db.session.execute(sa.select(User.id).where(User.id == vendor.id).with_for_update())
        row = account_of(vendor) or VendorAccount(vendor_id=vendor.id)
        if row.stripe_account_id is None:
            account = gateway.create_account(email=vendor.email,
                                             metadata={"vendorId": str(vendor.id)},
                                             idempotency_key=f"account-{vendor.id}")
            _mirror_account(row, account)
            db.session.add(row)
            _audit("vendor.account_created", vendor, note=account.id)
        db.session.commit()
    return gateway.onboarding_link(row.stripe_account_id, return_url=return_url,
                                   refresh_url=refresh_url)


def sync_account(account_id: str) -> bool:
    """account.updated (and the return from onboarding): mirror what Stripe holds now. False
    when the account is not one of our vendors'. The caller commits."""
    row = db.session.scalar(sa.select(VendorAccount).where(
        VendorAccount.stripe_account_id == account_id))
    if row is None:
        return False
    account = gateway.retrieve_account(account_id)
    if account is not None:
        _mirror_account(row, account)
    return True


REQUIREMENT_TEXT = {
    "external_account": "a bank account for payouts",
    "tos_acceptance.date": "acceptance of Stripe's terms",
    "tos_acceptance.ip": "acceptance of Stripe's terms",
    "business_profile.url": "your business website",
    "business_profile.mcc": "your business category",
    "business_type": "your business type",
}


def missing(row: VendorAccount | None) -> list[str]:
    """What the vendor still has to give Stripe, in words."""
    if row is None or row.stripe_account_id is None:
        return ["a connected Stripe account"]
    words = []
    for field in row.requirements_due or []:
        text = REQUIREMENT_TEXT.get(field) or (
            "your personal details" if field.startswith(("individual.", "representative."))
            else field.replace("_", " ").replace(".", ": "))
        if text not in words:
            words.append(text)
    return words


# --- What vendors see -----------------------------------------------------------------------

@dataclass(frozen=True)
class Totals:
    currency: str
    sales: int
    fees: int
    refunds: int
    net: int
    paid: int
    pending: int


def totals(vendor: User) -> list[Totals]:
    """Per currency: sales, fees, refunds and net from the lines; paid vs not yet paid."""
    paid_line = sa.and_(SplitLine.payout_id == Payout.id, Payout.status == "paid")
    rows = db.session.execute(
        sa.select(SplitLine.currency,
                  sa.func.sum(sa.case((SplitLine.kind == "sale", SplitLine.gross), else_=0)),
                  sa.func.sum(SplitLine.fee),
                  sa.func.sum(sa.case((SplitLine.kind == "refund", SplitLine.gross), else_=0)),
                  sa.func.sum(SplitLine.net),
                  sa.func.sum(sa.case((Payout.status == "paid", SplitLine.net), else_=0)))
        .outerjoin(Payout, paid_line)
        .where(SplitLine.vendor_id == vendor.id)
        .group_by(SplitLine.currency).order_by(SplitLine.currency)).all()
    return [Totals(c, int(s), int(f), int(r), int(n), int(p), int(n) - int(p))
            for c, s, f, r, n, p in rows]


def daily_net(vendor: User, days: int, today: date) -> list[tuple[date, dict[str, int]]]:
    """Net per day (per currency) over the last ``days`` days, oldest first, every day
    present (zero when there were no lines)."""
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    day = sa.func.date(SplitLine.created_at)
    rows = db.session.execute(
        sa.select(day, SplitLine.currency, sa.func.sum(SplitLine.net))
        .where(SplitLine.vendor_id == vendor.id, SplitLine.created_at >= start)
        .group_by(day, SplitLine.currency)).all()
    by_day: dict[str, dict[str, int]] = {}
    for d, currency, net in rows:
        by_day.setdefault(str(d), {})[currency] = int(net)
    return [(first + timedelta(days=i), by_day.get(str(first + timedelta(days=i)), {}))
            for i in range(days)]


def payouts_of(vendor: User, *, status: str | None = None, page: int = 1,
               per_page: int = 20) -> tuple[list[Payout], int]:
    query = sa.select(Payout).where(Payout.vendor_id == vendor.id, Payout.status != "open")
    if status:
        query = query.where(Payout.status == status)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(Payout.created_at.desc(), Payout.id.desc())
                               .limit(per_page).offset((page - 1) * per_page)).all()
    return list(items), int(total or 0)


def payout_for(vendor: User, payout_id: uuid.UUID | None) -> Payout | None:
    """A payout of this vendor (admins: any); None means 404. An open payout is not one yet:
    the dashboard shows its lines as not paid."""
    payout = db.session.get(Payout, payout_id) if payout_id else None
    if payout is None or payout.status == "open" or (
            vendor.role != "admin" and payout.vendor_id != vendor.id):
        return None
    return payout


def lines_of(payout: Payout) -> list[SplitLine]:
    return list(db.session.scalars(sa.select(SplitLine).where(SplitLine.payout_id == payout.id)
                                   .order_by(SplitLine.created_at, SplitLine.id)))


def statement(vendor: User, start: datetime, end: datetime) -> list[tuple]:
    """The vendor's lines created in [start, end) with their order id and payout status,
    for the CSV statement."""
    from ..orders.models import Order
    from ..payments.models import Payment

    return list(db.session.execute(
        sa.select(SplitLine, Order.id, Payout.status)
        .join(Payment, Payment.id == SplitLine.payment_id)
        .join(Order, Order.id == Payment.order_id)
        .outerjoin(Payout, Payout.id == SplitLine.payout_id)
        .where(SplitLine.vendor_id == vendor.id, SplitLine.created_at >= start,
               SplitLine.created_at < end)
        .order_by(SplitLine.created_at, SplitLine.id)).all())
