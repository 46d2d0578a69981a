"""Payment history's filters (/payments): a payment's state in the customer's words, with
the statuses (and refunds) behind each, and a range of days, read from the query string with
a message per field. The JSON API keeps Stripe's statuses (api.schemas.HistoryQuery)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from ..days import parse_day
from ..ledger.models import Payment


@dataclass(frozen=True)
class State:
    """What a customer reads for a payment: ``label``, for the payments whose status is one of
    ``statuses`` and, for paid ones, whose refunds are ``refunded``: "none", "part" or "all"
    of the amount (None: any)."""

    key: str
    label: str
    statuses: tuple[str, ...]
    refunded: str | None = None

    def condition(self) -> sa.ColumnElement[bool]:
        """The payments in this state, in SQL (``of`` is the same in Python)."""
        refunds = {
            None: sa.true(),
            "none": Payment.amount_refunded == 0,
            "part": sa.and_(Payment.amount_refunded > 0,
                            Payment.amount_refunded < Payment.amount),
            "all": sa.and_(Payment.amount_refunded > 0,
                           Payment.amount_refunded >= Payment.amount),
        }[self.refunded]
        return sa.and_(Payment.status.in_(self.statuses), refunds)


STATES = (
    State("paid", "Paid", ("succeeded",), "none"),
    State("partially_refunded", "Partially refunded", ("succeeded",), "part"),
    State("refunded", "Refunded", ("succeeded",), "all"),
    # Not paid yet: no card given, a card to confirm, or 3-D Secure to complete.
    State("awaiting_payment", "Awaiting payment",
          ("pending", "requires_payment_method", "requires_confirmation", "requires_action")),
    State("processing", "Processing", ("processing",)),
    # A declined or unauthenticated attempt: the customer may try again.
    State("failed", "Failed", ("failed",)),
    State("canceled", "Canceled", ("canceled",)),
)
BY_KEY = {s.key: s for s in STATES}
_REFUNDED = {None: "none", "partially_refunded": "part", "refunded": "all"}


def of(payment: Payment) -> State:
    """The state a payment is shown in (the one of STATES whose condition it meets)."""
    refunded = _REFUNDED[payment.refund_state] if payment.status == "succeeded" else None
    return next(s for s in STATES if payment.status in s.statuses
                and s.refunded in (None, refunded))


BAD_DAY = "Enter a date as YYYY-MM-DD, from 2000-01-01 to 2100-12-31."
REVERSED = "The end date must not be before the start date."


@dataclass
class Filters:
    """The filters as read: the state, the days as times (UTC, both days included), what was
    given (for the pager's links and the form) and a message per field at fault."""

    state: State | None = None
    start: datetime | None = None
    end: datetime | None = None
    given: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def parse(args: MultiDict) -> Filters:
    """Read ?status=&from=&to= (empty: no filter)."""
    f = Filters()
    key = (args.get("status") or "").strip()
    if key:
        f.given["status"] = key
        f.state = BY_KEY.get(key)
        if f.state is None:
            f.errors["status"] = "Choose a status from the list."
    first, last = (_day(f, name, (args.get(name) or "").strip()) for name in ("from", "to"))
    if first and last and last < first:
        f.errors["to"] = REVERSED
    f.start = first
    f.end = last + timedelta(days=1, microseconds=-1) if last else None
    return f


def _day(f: Filters, name: str, text: str) -> datetime | None:
    if not text:
        return None
    f.given[name] = text
    day = parse_day(text)
    if day is None:
        f.errors[name] = BAD_DAY
    return day
