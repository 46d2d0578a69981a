"""Item-level refunds: what each order item was paid, what of it is claimed, and who bears
a refund (ledger.splits' rule for borne refunds).

The rule (docs/design.md, "Refund"):
- an item's paid amount is its share of its vendor's share of the payment (the vendor's sale
  line's gross, divided between their items in proportion to their price by the largest
  remainder): tax, shipping and discount follow the items in proportion to price, and all of
  a vendor's items together were paid exactly the vendor's gross;
- refunding q of an item's n units brings what is claimed of it to floor(paid * claimed
  units / n) (in the currency's step), so the last unit takes what is left and refunding
  every unit returns exactly what was paid; but no more than its vendor may still bear: when
  amounts shared by all vendors already gave back part of the vendor's share, their items
  refund what is left of it;
- an item refund is borne by the item's vendor; a vendor's goodwill amount by that vendor;
  any other amount by all the order's vendors in proportion (splits.refund_targets);
- what may still be asked for counts every request not refused: waiting for a decision,
  approved, being made and made (``CLAIMED``). Of an item: its paid amount less its claims;
  of a vendor: their gross less what they would have given back once every claim is made
  (so what they bear more never moves a shared refund onto another vendor); of the payment:
  paid less all claims. Refunds made in Stripe's dashboard are amounts shared in
  proportion. An admin's request does not wait for the requests waiting for a decision
  (but for the units of items they name), so approval re-checks what vendors bear
  (``unbearable``); an item a waiting request would cut short is refused, not cut.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa

from ..extensions import db
from ..ledger import splits
from ..ledger.models import Payment, SplitLine
from ..money import amount_step, format_minor
from ..orders.models import OrderItem
from .models import CLAIMED, SETTLED, RefundItem, RefundRequest


class ItemsError(ValueError):
    """The items asked for cannot be refunded; the message says why, for the requester."""


@dataclass
class Claims:
    """What the requests of a payment not refused (``CLAIMED``) take, by item and vendor."""

    quantity: dict[uuid.UUID, int] = field(default_factory=lambda: defaultdict(int))
    amount: dict[uuid.UUID, int] = field(default_factory=lambda: defaultdict(int))
    borne: dict[uuid.UUID, int] = field(default_factory=lambda: defaultdict(int))
    total: int = 0  # every claim, borne or shared


@dataclass(frozen=True)
class _Payment:
    """A payment's items, sale lines, claims and what each vendor may still bear."""

    items: list[OrderItem]
    sales: dict[uuid.UUID, SplitLine]
    found: Claims
    paid: dict[uuid.UUID, int]
    rooms: dict[uuid.UUID, int]


@dataclass(frozen=True)
class ItemLine:
    """One order item as the refund form shows it."""

    item: OrderItem
    paid: int  # what was paid for it, tax and shipping included (the module's rule)
    claimed_quantity: int
    refundable: int  # at most, now: the item's, its vendor's and the payment's room

    @property
    def refundable_quantity(self) -> int:
        return self.item.quantity - self.claimed_quantity if self.refundable > 0 else 0


def _sales(payment: Payment) -> dict[uuid.UUID, SplitLine]:
    return {line.vendor_id: line for line in db.session.scalars(sa.select(SplitLine).where(
        SplitLine.payment_id == payment.id, SplitLine.kind == "sale"))}


def _items(payment: Payment) -> list[OrderItem]:
    return list(db.session.scalars(sa.select(OrderItem).where(
        OrderItem.order_id == payment.order_id).order_by(OrderItem.position, OrderItem.id)))


def paid_per_item(payment: Payment, items: list[OrderItem],
                  sales: dict[uuid.UUID, SplitLine]) -> dict[uuid.UUID, int]:
    """Item id -> what was paid for it (the module's rule); 0 without a sale line."""
    step = amount_step(payment.currency)
    by_vendor: dict[uuid.UUID, list[OrderItem]] = defaultdict(list)
    for item in items:
        by_vendor[item.vendor_id].append(item)
    paid = {}
    for vendor_id, theirs in by_vendor.items():
        sale = sales.get(vendor_id)
        gross = sale.gross if sale is not None else 0
        unit = step if gross % step == 0 else 1
        weights = [max(item.amount, 0) for item in theirs]
        shares = splits.allocate(gross // unit, weights if sum(weights) else [1] * len(weights))
        paid.update({item.id: share * unit for item, share in zip(theirs, shares, strict=True)})
    return paid


def claims(payment: Payment, *, waiting: bool = True,
           besides: uuid.UUID | None = None) -> Claims:
    """What the payment's requests not refused claim: of each item, all of them (``CLAIMED``,
    so that no unit is asked for twice); borne by each vendor and in all, without
    ``waiting``, only the approved, being made and made ones (``SETTLED``); never
    ``besides``."""
    counted = CLAIMED if waiting else SETTLED
    found = Claims()
    query = (sa.select(RefundRequest.id, RefundRequest.status, RefundItem.order_item_id,
                       RefundItem.vendor_id, RefundItem.quantity, RefundItem.amount)
             .join(RefundRequest, RefundRequest.id == RefundItem.refund_request_id)
             .where(RefundRequest.payment_id == payment.id,
                    RefundRequest.status.in_(CLAIMED)))
    for request_id, status, item_id, vendor_id, quantity, amount in db.session.execute(query):
        if request_id == besides:
            continue
        if status in counted:
            found.borne[vendor_id] += amount
        if item_id is not None:
            found.quantity[item_id] += quantity
            found.amount[item_id] += amount
    total = sa.select(sa.func.coalesce(sa.func.sum(
        sa.func.coalesce(RefundRequest.approved_amount, RefundRequest.amount)), 0)).where(
        RefundRequest.payment_id == payment.id, RefundRequest.status.in_(counted))
    if besides is not None:
        total = total.where(RefundRequest.id != besides)
    found.total = int(db.session.scalar(total))
    return found


def _state(payment: Payment, *, waiting: bool = True,
           besides: uuid.UUID | None = None) -> _Payment:
    """What the rule needs of the payment. A vendor's room: their gross less what they would
    have given back once every claim is made (splits.refund_targets), so that what they bear
    more never moves a shared refund onto another vendor; ``waiting``: the requests waiting
    for a decision count as claims (see ``claims``)."""
    items, found = _items(payment), claims(payment, waiting=waiting, besides=besides)
    sales = dict(sorted(_sales(payment).items(), key=lambda kv: str(kv[0])))
    targets = splits.refund_targets(
        [(line.gross, line.fee) for line in sales.values()],
        min(found.total, payment.amount), payment.amount, amount_step(payment.currency),
        [found.borne[vendor] for vendor in sales]) if sales else []
    rooms = {vendor: max(0, line.gross - gross)
             for (vendor, line), (gross, _) in zip(sales.items(), targets, strict=True)}
    return _Payment(items, sales, found, paid_per_item(payment, items, sales), rooms)


def borne_by_vendor(payment: Payment) -> dict[uuid.UUID, int]:
    """Vendor id -> what of the payment's succeeded refunds that vendor bears alone."""
    return {vendor_id: int(total) for vendor_id, total in db.session.execute(
        sa.select(RefundItem.vendor_id, sa.func.sum(RefundItem.amount))
        .join(RefundRequest, RefundRequest.id == RefundItem.refund_request_id)
        .where(RefundRequest.payment_id == payment.id, RefundRequest.status == "succeeded")
        .group_by(RefundItem.vendor_id))}


def vendor_room(payment: Payment, vendor_id: uuid.UUID, *, waiting: bool = True) -> int:
    """What more ``vendor_id`` may bear of the payment (see ``_state``)."""
    return _state(payment, waiting=waiting).rooms.get(vendor_id, 0)


def unbearable(request: RefundRequest, payment: Payment) -> str | None:
    """At approval: why a vendor cannot bear their rows of ``request`` any more (their room
    without the requests waiting, this one besides, is smaller: an admin's request took it
    meanwhile); None when they can."""
    if not request.items:
        return None
    rooms = _state(payment, waiting=False, besides=request.id).rooms
    borne: dict[uuid.UUID, int] = defaultdict(int)
    for row in request.items:
        borne[row.vendor_id] += row.amount
    for vendor, amount in borne.items():
        if amount > rooms.get(vendor, 0):
            shown = format_minor(rooms.get(vendor, 0), payment.currency)
            return (f"Its seller can bear only {shown} more of this payment now: reject it "
                    "and ask again.")
    return None


def item_lines(payment: Payment, room: int, vendor_id: uuid.UUID | None = None, *,
               waiting: bool = True) -> list[ItemLine]:
    """The payment's items (a vendor's only, with ``vendor_id``) and what each may still
    refund, at most ``room`` (what the payment may still refund)."""
    state = _state(payment, waiting=waiting)
    return [ItemLine(item, state.paid[item.id], state.found.quantity[item.id],
                     max(0, min(state.paid[item.id] - state.found.amount[item.id],
                                state.rooms.get(item.vendor_id, 0), room)))
            for item in state.items if vendor_id is None or item.vendor_id == vendor_id]


def plan(payment: Payment, quantities: dict[uuid.UUID, int],
         vendor_id: uuid.UUID | None = None, *, waiting: bool = True) -> list[RefundItem]:
    """The rows of a request refunding ``quantities`` (order item id -> units) of the
    payment's items: each item's amount by the module's rule. ItemsError names the first
    item that cannot be refunded so; ``vendor_id``: only that vendor's items may be named.
    ``waiting``: the requests waiting for a decision count (customers' and vendors'
    requests; not an admin's)."""
    state = _state(payment, waiting=False)
    by_id = {item.id: item for item in state.items}
    settled = dict(state.rooms)
    rooms = dict(_state(payment).rooms if waiting else settled)
    rows = []
    for position, (item_id, quantity) in enumerate(quantities.items()):
        item = by_id.get(item_id)
        if item is None or (vendor_id is not None and item.vendor_id != vendor_id):
            raise ItemsError("You can only ask to refund your own items of this order."
                             if item is not None else "This order has no such item.")
        # A vendor's share refunded already (amounts shared by all vendors) leaves less of
        # their items to refund: the items take what is left of it. What a request waiting
        # for a decision may take is not left: it is refused until that is decided.
        amount = min(_amount_of(payment, item, quantity, state), settled.get(item.vendor_id, 0))
        if amount <= 0:
            raise ItemsError(f"Nothing more of {item.description} can be refunded: its "
                             "vendor's share of the payment was refunded already.")
        if amount > rooms.get(item.vendor_id, 0):
            raise ItemsError(f"A request waiting for a decision covers part of "
                             f"{item.description}'s price: ask again once an admin has "
                             "decided on it.")
        settled[item.vendor_id] -= amount
        rooms[item.vendor_id] -= amount
        rows.append(RefundItem(vendor_id=item.vendor_id, order_item_id=item.id,
                               position=position, quantity=quantity, amount=amount))
    return rows


def _amount_of(payment: Payment, item: OrderItem, quantity: int, state: _Payment) -> int:
    """What refunding ``quantity`` more units of ``item`` refunds (the module's rule)."""
    done, paid = state.found.quantity[item.id], state.paid[item.id]
    if quantity <= 0 or done + quantity > item.quantity:
        left = item.quantity - done
        raise ItemsError(f"{item.description}: choose between 1 and {left}." if left
                         else f"{item.description} is already refunded or asked for.")
    unit = amount_step(payment.currency) if paid % amount_step(payment.currency) == 0 else 1
    target = (paid if done + quantity == item.quantity
              else paid // unit * (done + quantity) // item.quantity * unit)
    amount = target - state.found.amount[item.id]
    if amount <= 0:
        raise ItemsError(f"Nothing more of {item.description} can be refunded.")
    return amount


def borne_shares(payment: Payment, request_ids: list[uuid.UUID]) -> list[dict[uuid.UUID, int]]:
    """What each vendor bears of each of these refunds that have just succeeded, in this
    order, after the payment's other succeeded refunds: the difference each makes to the
    vendors' targets (splits.refund_targets), as their refund lines take it."""
    amounts = dict(db.session.execute(sa.select(
        RefundRequest.id, sa.func.coalesce(RefundRequest.approved_amount, RefundRequest.amount))
        .where(RefundRequest.payment_id == payment.id,
               RefundRequest.status == "succeeded")).all())
    rows: dict[uuid.UUID, list[tuple[uuid.UUID, int]]] = defaultdict(list)
    for request_id, vendor_id, amount in db.session.execute(
            sa.select(RefundItem.refund_request_id, RefundItem.vendor_id, RefundItem.amount)
            .where(RefundItem.refund_request_id.in_(list(amounts) or [uuid.uuid4()]))):
        rows[request_id].append((vendor_id, amount))
    sales = dict(sorted(_sales(payment).items(), key=lambda kv: str(kv[0])))
    if not sales:
        return [{} for _ in request_ids]
    shares = [(line.gross, line.fee) for line in sales.values()]
    step = amount_step(payment.currency)
    done = [rid for rid in amounts if rid not in request_ids]
    total = sum(amounts[rid] for rid in done)
    borne: dict[uuid.UUID, int] = defaultdict(int)
    for rid in done:
        for vendor, amount in rows[rid]:
            borne[vendor] += amount

    def targets() -> list[int]:
        return [gross for gross, _ in splits.refund_targets(
            shares, min(total, payment.amount), payment.amount, step,
            [borne[vendor] for vendor in sales])]

    found = []
    for rid in request_ids:
        before = targets()
        total += int(amounts.get(rid, 0))
        for vendor, amount in rows[rid]:
            borne[vendor] += amount
        found.append({vendor: after - was for vendor, was, after
                      in zip(sales, before, targets(), strict=True)})
    return found
