"""The balance: every movement of money as a balance transaction, pending until it is
available, per currency, as at Stripe.

- A captured charge adds its amount to the platform's balance, *pending* for FUNDS_DELAY
  seconds (`--funds-delay`, default two days as Stripe's standard US schedule; the test card
  4000000000000077 is available at once, as at Stripe). Stripe's processing fees are not
  modelled (fee 0).
- A refund takes its amount from the available balance when it covers it, else from the
  pending balance, as Stripe does; a failed refund gives it back.
- A transfer to a connected account needs that much *available* balance in its currency
  (400 balance_insufficient otherwise, Stripe's message), unless it names the charge it pays
  out of (`source_transaction`): then it may run ahead of that charge's funds, up to the
  charge's amount not transferred yet. It credits the connected account's balance; a reversal
  gives it back.
- `GET /v1/balance` (the platform's, or with `Stripe-Account` a connected account's):
  available and pending per currency; `GET /v1/balance_transactions` (source, type, currency,
  created; newest first) and `/{id}`.
- Test hook `POST /_sandbox/balance/available`: every pending transaction becomes available
  now (the days Stripe waits, passed at once).
"""

from __future__ import annotations

from . import core
from .core import Page, Resource, invalid_request, newest_first

FUNDS_DELAY = 2 * 24 * 3600.0  # seconds from a charge to its funds being available

BALANCE_INSUFFICIENT = (
    "You have insufficient available funds in your Stripe account. Try adding funds directly "
    "to your available balance by creating Charges using the 4000000000000077 test card. "
    "See: https://stripe.com/docs/testing#available-balance"
)


class BalanceTransaction(Resource):
    object = "balance_transaction"
    prefix = "txn_"

    def __init__(self, amount, currency, type, reporting_category, source, *,
                 available_on=None, account=None, description=None):
        super().__init__()
        self.amount = amount
        self.currency = currency
        self.type = type
        self.reporting_category = reporting_category
        self.source = source
        self.available_on = self.created if available_on is None else int(available_on)
        self.account = account  # None: the platform; acct_...: a connected account's
        self.description = description
        entry = ledger.setdefault((account, currency), Entry())
        entry.pending.append(self)

    @property
    def status(self) -> str:
        return "available" if self.available_on <= core.now() else "pending"

    def to_dict(self) -> dict:
        return {
            "id": self.id, "object": "balance_transaction", "amount": self.amount,
            "available_on": self.available_on, "balance_type": "payments",
            "created": self.created, "currency": self.currency,
            "description": self.description, "exchange_rate": None, "fee": 0,
            "fee_details": [], "net": self.amount, "reporting_category": self.reporting_category,
            "source": self.source, "status": self.status, "type": self.type,
        }


class Entry:
    """One balance (an account, a currency): what is available, and what is still pending."""

    def __init__(self) -> None:
        self.available = 0
        self.pending: list[BalanceTransaction] = []

    def amounts(self) -> tuple[int, int]:
        now = core.now()
        due = [t for t in self.pending if t.available_on <= now]
        if due:
            self.available += sum(t.amount for t in due)
            self.pending = [t for t in self.pending if t.available_on > now]
        return self.available, sum(t.amount for t in self.pending)


ledger: dict[tuple[str | None, str], Entry] = {}  # (account or None, currency) -> Entry


def record(amount, currency, type, reporting_category, source, **fields) -> BalanceTransaction:
    return BalanceTransaction(amount, currency, type, reporting_category, source, **fields)


def debit(amount: int, currency: str, type: str, reporting_category: str, source: str,
          description: str | None = None) -> BalanceTransaction:
    """A refund of ``amount``: from the available balance when it covers it, else, as at
    Stripe, from the pending balance (it then leaves the balance when the pending funds would
    have become available)."""
    entry = ledger.get((None, currency))
    available_on = None
    if entry is not None:
        available, pending = entry.amounts()
        if available < amount and pending > 0:
            available_on = max(t.available_on for t in entry.pending if t.amount > 0)
    return record(-amount, currency, type, reporting_category, source,
                  available_on=available_on, description=description)


def charge_funds(charge_id: str, amount: int, currency: str, at_once: bool) -> str:
    """A captured charge: its funds, pending for FUNDS_DELAY (at once: available now)."""
    available_on = core.now() + (0 if at_once else int(FUNDS_DELAY))
    return record(amount, currency, "charge", "charge", charge_id,
                  available_on=available_on).id


def totals(account=None) -> dict[str, tuple[int, int]]:
    """currency -> (available, pending) of the platform (or of a connected account)."""
    return {currency: entry.amounts() for (owner, currency), entry in sorted(
        ledger.items(), key=lambda item: item[0][1]) if owner == account}


def available(currency: str, account=None) -> int:
    return totals(account).get(currency, (0, 0))[0]


def require_available(amount: int, currency: str) -> None:
    """Stripe's refusal of a transfer the available balance cannot cover."""
    if available(currency) < amount:
        raise invalid_request(BALANCE_INSUFFICIENT, code="balance_insufficient")


def get_balance():
    """GET /v1/balance: the platform's, or with Stripe-Account a connected account's."""
    account = core.current().account
    if account is not None and not core.is_account(account):
        raise core.account_invalid(account)
    amounts = totals(account) or {"usd": (0, 0)}

    def side(index):
        return [{"amount": a[index], "currency": c, "source_types": {"card": a[index]}}
                for c, a in sorted(amounts.items())]

    return {"object": "balance", "available": side(0), "pending": side(1), "livemode": False,
            "connect_reserved": [{"amount": 0, "currency": c} for c in sorted(amounts)]}


def list_balance_transactions(source=None, type=None, currency=None, created=None,
                              limit=None, starting_after=None, ending_before=None):
    account = core.current().account
    in_period = core.created_filter(created)
    items = newest_first(BalanceTransaction, lambda t: (
        t.account == account and source in (None, t.source) and type in (None, t.type)
        and currency in (None, t.currency) and in_period(t.created)))
    return Page("/v1/balance_transactions", items, limit, starting_after, ending_before)


def get_balance_transaction(id):
    return BalanceTransaction.retrieve(id)


def make_available():
    """POST /_sandbox/balance/available (sandbox only): pending funds become available."""
    now = core.now()
    for entry in ledger.values():
        for txn in entry.pending:
            txn.available_on = min(txn.available_on, now)
    return get_balance()


ROUTES = [
    ("GET", "/v1/balance", get_balance),
    ("GET", "/v1/balance_transactions", list_balance_transactions),
    ("GET", "/v1/balance_transactions/{id}", get_balance_transaction),
]
HOOKS = [
    ("POST", "/_sandbox/balance/available", make_available),
]
