"""Vendor payouts: Connect onboarding, payout runs (set-based SQL), execution by transfer, and
what the vendor dashboard and the API show (a vendor's balance itself: ledger.balances).

Every split line is written into its vendor's open payout in its currency (open_payouts), so
a line is in exactly one payout from the start. A run closes the open payouts whose total is
positive with one aggregate UPDATE, whatever the number of lines: it neither rewrites the
lines nor brings them into Python, so memory does not grow with them (bench/payouts.py). A
vendor whose unpaid lines sum to zero or less (refunds after a payout) keeps the open payout:
the lines wait for the next sales.

Services change the session; the request, job or command that calls them commits. A
transfer is sent in three phases (database.in_phases).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import aliased

from .. import jobs
from .. import stripe_gateway as gateway
from ..audit.services import audit
from ..auth.models import User
from ..database import any_of, in_phases
from ..errors import NotFound
from ..extensions import db
from ..ledger.balances import Totals, daily_net, totals  # noqa: F401 - its callers' names
from ..ledger.models import PERIODS, Payment, Payout, PayoutRun, SplitLine, VendorAccount
from ..ledger.splits import open_payouts
from ..models_base import utcnow
from ..orders.models import Order

log = logging.getLogger(__name__)
RETRY_DELAYS = (30, 120, 600, 1800, 3600)
NOT_CONNECTED = "Waiting for the vendor to connect a Stripe account that can receive payouts."
# The same, as the vendor reads it (the stored reason is the admins' wording).
NOT_CONNECTED_YOU = ("Waiting for you to connect your Stripe account: connect it on your "
                     "dashboard and this payout is sent.")
NO_FUNDS = ("Waiting for the platform's available balance at Stripe to cover it; sent again "
            "automatically once it does. Stripe said: ")
NO_FUNDS_YOU = ("Waiting for the platform's funds at Stripe: sent to you automatically once "
                "they are available. Nothing to do on your side.")


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
    the next sales). None when there is nothing to pay. The caller commits: the open payouts
    stay locked until then."""
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
    # since the last run) is not locked, and a line may be on its way into it. (PostgreSQL
    # binds the ids as one array, whatever their number: database.any_of.)
    closable = any_of(Payout.id, held)
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
        db.session.delete(run)  # nothing to pay: no run either
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
    audit("payout.run", actor=actor, note=f"run {run.id}: {closed} payouts, lines before "
                                       f"{until:%Y-%m-%d %H:%M} UTC")
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


def approve_run(admin: User | None, run_id: uuid.UUID) -> int | None:
    """Approve a run: its payouts that are not paid are executed after the commit. Returns
    how many; None when the run was approved already (two admins confirming at once: the
    conditional update lets one of them approve it). NotFound when there is no such run."""
    run = db.session.get(PayoutRun, run_id)
    if run is None:
        raise NotFound("No such payout run.")
    approved = db.session.execute(
        sa.update(PayoutRun).where(PayoutRun.id == run_id, PayoutRun.approved_at.is_(None))
        .values(approved_at=utcnow(), approved_by_id=admin.id if admin else None)
        .execution_options(synchronize_session="fetch"))
    if approved.rowcount == 0:
        return None
    audit("payout.run_approved", actor=admin, note=f"run {run.id}")
    ids = [(str(p.id),) for p in run.payouts if p.status in ("pending", "failed")]
    jobs.enqueue_each(execute_payout, ids, queue="payouts", retry=RETRY_DELAYS)
    return len(ids)


@dataclass(frozen=True)
class ToSend:
    """What approving a run sends, for the admin to confirm: its payouts not paid yet, their
    total per currency, how many vendors, and a token naming exactly those payouts and
    amounts (the confirmation carries it; a run that changed since asks again)."""

    payouts: list[Payout]
    totals: dict[str, int]  # currency -> sum of the amounts, currencies sorted
    vendors: int
    token: str


def to_send(run: PayoutRun) -> ToSend:
    """What ``approve_run`` would send for ``run`` now (read only)."""
    sending = [p for p in run.payouts if p.status in ("pending", "failed")]
    sums: dict[str, int] = {}
    for p in sending:
        sums[p.currency] = sums.get(p.currency, 0) + p.amount
    named = "|".join([str(run.id), *sorted(f"{p.id}:{p.currency}:{p.amount}" for p in sending)])
    return ToSend(sending, dict(sorted(sums.items())), len({p.vendor_id for p in sending}),
                  hashlib.sha256(named.encode()).hexdigest()[:32])


def retry_payout(admin: User, payout_id: uuid.UUID) -> bool:
    """A failed (or waiting) payout is executed again after the commit. False (nothing
    changes) when there is no such payout or it is not failed or pending."""
    payout = db.session.get(Payout, payout_id)
    if payout is None or payout.status not in ("failed", "pending"):
        return False
    audit("payout.retried", actor=admin, amount=payout.amount, currency=payout.currency,
          note=f"payout {payout.id}")
    jobs.enqueue(execute_payout, str(payout.id), queue="payouts", retry=RETRY_DELAYS)
    return True


@dataclass(frozen=True)
class _Transfer:
    payout_id: uuid.UUID
    amount: int
    currency: str
    destination: str
    attempt: int


def _locked_payout(payout_id: uuid.UUID) -> Payout | None:
    return db.session.scalar(sa.select(Payout).where(Payout.id == payout_id)
                             .with_for_update().execution_options(populate_existing=True))


def execute_payout(payout_id: str) -> None:
    """The job: one Stripe transfer per payout (transfer_group = the payout id; idempotency
    key = the payout id and its attempt number, which moves on only after a 5xx that Stripe
    keeps under the old key, and only once the group shows no transfer), in three phases
    (database.in_phases): mark it processing; send (adopting a transfer an earlier attempt
    made); mark it paid. Timeouts and 5xx raise for RQ's retry; a 4xx ends the payout failed
    with Stripe's reason; a vendor without a ready account leaves it pending."""
    def reserve() -> _Transfer | None:
        payout = _locked_payout(uuid.UUID(payout_id))
        if payout is None or payout.status in ("paid", "open"):  # open: not closed by a run
            return None
        account = db.session.scalar(sa.select(VendorAccount).where(
            VendorAccount.vendor_id == payout.vendor_id))
        if account is None or not account.ready:
            payout.status, payout.failure_reason = "pending", NOT_CONNECTED
            return None
        payout.status, payout.failure_reason, payout.waiting_since = "processing", None, None
        return _Transfer(payout.id, payout.amount, payout.currency, account.stripe_account_id,
                         payout.transfer_attempt)

    def call(t: _Transfer) -> gateway.Transfer:
        # A transfer made by an earlier attempt (even beyond the key's 24 h) is adopted.
        done = gateway.transfers_in_group(payout_id)
        return done[0] if done else gateway.create_transfer(
            amount=t.amount, currency=t.currency, destination=t.destination,
            transfer_group=payout_id, description=f"ShopSphere payout {payout_id}",
            idempotency_key=f"payout-{payout_id}-{t.attempt}")

    def apply(t: _Transfer, transfer: gateway.Transfer) -> None:
        payout = _locked_payout(t.payout_id)
        if payout.status != "paid":
            payout.status, payout.stripe_transfer_id, payout.paid_at = (
                "paid", transfer.id, utcnow())
            audit("payout.paid", actor=None, amount=t.amount, currency=t.currency,
                  note=f"payout {payout_id}: {transfer.id}")

    def failed(t: _Transfer, exc: gateway.GatewayError) -> gateway.GatewayError | None:
        """What is left to do: the error to raise once this phase commits (RQ retries)."""
        if exc.retryable:
            if (exc.stripe_status or 0) >= 500:  # kept by Stripe under this key: a new one
                db.session.execute(sa.update(Payout).where(
                    Payout.id == t.payout_id, Payout.transfer_attempt == t.attempt)
                    .values(transfer_attempt=t.attempt + 1))
            return exc
        payout = _locked_payout(t.payout_id)
        # Stripe keeps a refusal under its key for 24 h: a retry (after a top-up, or once the
        # account is fixed) needs a new one. The group is listed before any new transfer.
        payout.transfer_attempt = t.attempt + 1
        if exc.stripe_code == "balance_insufficient":  # not the vendor's fault: wait
            payout.status, payout.waiting_since = "pending", utcnow()
            payout.failure_reason = (NO_FUNDS + exc.message)[:500]
            audit("payout.waiting", actor=None, amount=t.amount, currency=t.currency,
                  note=f"payout {payout_id}: {exc.message}")
            return None
        payout.status, payout.failure_reason = "failed", exc.message[:500]
        audit("payout.failed", actor=None, amount=t.amount, currency=t.currency,
              note=f"payout {payout_id}: {exc.message}")
        return None

    error = in_phases(reserve, call, apply, failed=failed, failures=(gateway.GatewayError,))
    if error is not None:
        raise error


@dataclass(frozen=True)
class _Waiting:
    payout_id: uuid.UUID
    currency: str
    amount: int


def resume_waiting() -> int:
    """The job (balance.available, and rq cron every 10 minutes): queue again the payouts
    waiting for funds that Stripe's available balance now covers, oldest first, in three
    phases (database.in_phases): list them; read the balance (no Stripe call when none
    waits); clear each one's wait with a conditional UPDATE and queue it. A payout is thus
    queued once per wait, and a wait follows each refusal, which moved the transfer's
    attempt (its idempotency key) on: each key is tried once. Returns how many."""
    def reserve() -> list[_Waiting] | None:
        return [_Waiting(p.id, p.currency, p.amount) for p in db.session.scalars(
            sa.select(Payout).where(Payout.status == "pending", Payout.waiting_since.is_not(None))
            .order_by(Payout.waiting_since, Payout.id))] or None

    def call(_: list[_Waiting]) -> dict[str, int]:
        return gateway.available_balance()

    def apply(waiting: list[_Waiting], available: dict[str, int]) -> int:
        queued = []
        for w in waiting:
            left = available.get(w.currency.lower(), 0)
            if w.amount > left:
                continue
            if db.session.execute(
                    sa.update(Payout).where(Payout.id == w.payout_id, Payout.status == "pending",
                                            Payout.waiting_since.is_not(None))
                    .values(waiting_since=None).execution_options(synchronize_session=False)
            ).rowcount:
                available[w.currency.lower()] = left - w.amount
                queued.append((str(w.payout_id),))
                audit("payout.resumed", actor=None, amount=w.amount, currency=w.currency,
                      note=f"payout {w.payout_id}: the available balance covers it")
        jobs.enqueue_each(execute_payout, queued, queue="payouts", retry=RETRY_DELAYS)
        return len(queued)

    return in_phases(reserve, call, apply) or 0


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
    """The vendor's Express account, created once, and a fresh onboarding link to it.

    A missing account is created in three phases (database.in_phases): see that the vendor
    has none; create it at Stripe (its idempotency key is the vendor's: a concurrent or
    repeated attempt gets the same account); record it under the vendor's row lock, unless a
    concurrent attempt recorded it first. The link is asked for once that is committed."""
    known: list[str] = []

    def reserve() -> str | None:
        row = account_of(vendor)
        if row is not None and row.stripe_account_id is not None:
            known.append(row.stripe_account_id)
            return None
        return vendor.email

    def call(email: str) -> gateway.Account:
        return gateway.create_account(email=email, metadata={"vendorId": str(vendor.id)},
                                      idempotency_key=f"account-{vendor.id}")

    def apply(_: str, account: gateway.Account) -> str:
        db.session.execute(sa.select(User.id).where(User.id == vendor.id).with_for_update())
        row = account_of(vendor) or VendorAccount(vendor_id=vendor.id)
        if row.stripe_account_id is None:
            _mirror_account(row, account)
            db.session.add(row)
            audit("vendor.account_created", actor=vendor, note=account.id)
        return row.stripe_account_id

    account_id = in_phases(reserve, call, apply) or known[0]
    return gateway.onboarding_link(account_id, return_url=return_url, refresh_url=refresh_url)


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


# --- What vendors see (totals and the daily net: ledger.balances) ----------------------------

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


def failure_for_vendor(reason: str | None) -> str | None:
    """A payout's failure reason as its vendor reads it: about "you", not "the vendor"."""
    if reason == NOT_CONNECTED:
        return NOT_CONNECTED_YOU
    if reason and reason.startswith(NO_FUNDS):
        return NO_FUNDS_YOU
    return reason


@dataclass(frozen=True)
class PayoutLine:
    """A line of a payout, with the order it comes from (its number and its payment's date)."""

    line: SplitLine
    order_number: str
    order_date: datetime


def lines_of(payout: Payout) -> list[PayoutLine]:
    """The payout's lines, oldest first, each with its order's number and payment date."""
    rows = db.session.execute(
        sa.select(SplitLine, Order, Payment.created_at)
        .join(Payment, Payment.id == SplitLine.payment_id)
        .join(Order, Order.id == Payment.order_id)
        .where(SplitLine.payout_id == payout.id)
        .order_by(SplitLine.created_at, SplitLine.id))
    return [PayoutLine(line, order.number, made) for line, order, made in rows]


@dataclass(frozen=True)
class Balance:
    """A vendor's balance in one currency: what is not paid out yet, split by whether
    Stripe has made the payments' funds available (refund lines are available at once)."""

    currency: str
    available: int  # funds available: the next payout run pays it
    pending: int  # waiting for Stripe to make the payments' funds available

    @property
    def total(self) -> int:
        return self.available + self.pending


def balances(vendor: User, now: datetime) -> list[Balance]:
    """Per currency (sorted): the net of the vendor's lines in payouts not paid yet (the
    open payout, and closed ones still being sent), available vs pending at ``now``."""
    waiting = SplitLine.available_at > now
    rows = db.session.execute(
        sa.select(SplitLine.currency,
                  sa.func.sum(sa.case((waiting, 0), else_=SplitLine.net)),
                  sa.func.sum(sa.case((waiting, SplitLine.net), else_=0)))
        .join(Payout, Payout.id == SplitLine.payout_id)
        .where(SplitLine.vendor_id == vendor.id, Payout.status != "paid")
        .group_by(SplitLine.currency).order_by(SplitLine.currency)).all()
    return [Balance(c, int(a), int(p)) for c, a, p in rows]
