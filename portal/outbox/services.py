"""The outbox: side effects are rows written with the state change that causes them, then
delivered by jobs, at least once, one delivery at a time, and retried with backoff for 24
hours (from the message's creation, or from an admin's "Try again").

- ``record_payment_outcome`` (called under the payment's row lock when a payment reaches a
  final state) adds the order-service notification and, for a success, the receipt e-mail,
  and queues their delivery in the same transaction: a job each, started after the commit
  (portal.jobs: RQ, or in-process after the request without Redis). The unique
  ``dedupe_key`` makes a second write of the same outcome a no-op that queues nothing.
- ``record_refund_outcome`` (called under the payment's row lock when a refund succeeds or
  fails) adds the customer's refund notice, and, for a refund that failed after it had
  succeeded, an alert to every admin; once each (the same dedupe keys).
- ``sweep`` (rq cron, every minute) queues whatever is due (retries, and messages whose
  queueing was lost with Redis).
- The order service gets ``Idempotency-Key: <message id>``: if we crash after it answered and
  before we recorded it, the retry can be recognised on its side.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

import sqlalchemy as sa
from flask import current_app

from .. import jobs
from ..auth.models import User
from ..database import in_phases, insert_or_skip
from ..documents import invoices, pdf
from ..extensions import db
from ..models_base import parse_uuid, utcnow
from ..money import format_minor
from .models import OutboxMessage

log = logging.getLogger(__name__)
GIVE_UP_AFTER = timedelta(hours=24)
TIMEOUT_S = 5
# While one delivery sends a message, it is not due for others (its row is not locked while
# the far side answers); a delivery that died meanwhile is retried by the sweeper after it.
SENDING_FOR = timedelta(minutes=2)
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def backoff(attempts: int) -> timedelta:
    """30 s, 1, 2, 4 ... minutes, at most an hour between attempts."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def _add(payment_id: uuid.UUID, rows: list[tuple[str, str, dict]]) -> list[str]:
    """Insert (kind, dedupe key, payload) rows in one statement; a key already there is
    skipped. The messages inserted are delivered by jobs started after the commit; returns
    their ids."""
    now = utcnow()
    # Parameters as a list (executemany): one INSERT whose compiled form is cached, where
    # .values([...]) made a new statement, with new bind parameters, for every payment.
    inserted = [str(i) for i in db.session.scalars(
        insert_or_skip(OutboxMessage, ["dedupe_key"]).returning(OutboxMessage.id),
        [{"id": uuid.uuid4(), "kind": kind, "dedupe_key": key, "payment_id": payment_id,
          "payload": payload, "status": "pending", "attempts": 0, "errors": [],
          "created_at": now, "next_attempt_at": now} for kind, key, payload in rows])]
    if inserted:
        jobs.enqueue_each(deliver, [(i,) for i in inserted], queue="outbox")
    return inserted


def record_payment_outcome(payment) -> list[str]:
    """A payment reached a final state: notify the order service, and e-mail the receipt
    when it succeeded. In the caller's transaction. Returns the ids of the messages added
    (none when this outcome was recorded before)."""
    if payment.status not in ("succeeded", "canceled"):
        return []
    order = payment.order
    rows = [("order_notification", f"order_notification:{payment.id}:{payment.status}", {
        "orderId": str(order.id), "paymentId": str(payment.id), "status": payment.status,
        "amount": payment.amount, "currency": payment.currency.lower(),
        "paymentIntentId": payment.stripe_payment_intent_id,
        "receiptNumber": payment.receipt_number,
        "paidAt": payment.succeeded_at.isoformat() if payment.succeeded_at else None})]
    if payment.status == "succeeded":
        rows.append(("receipt_email", f"receipt_email:{payment.id}", {
            "to": order.customer.email, "name": order.customer.name or "",
            "paymentId": str(payment.id),
            "orderNumber": order.number,
            "amount": format_minor(payment.amount, payment.currency),
            "card": _card(payment),
            "receiptNumber": payment.receipt_number, "receiptUrl": payment.receipt_url}))
    return _add(payment.id, rows)


def _card(payment) -> str | None:
    return (f"{(payment.card_brand or 'card').capitalize()} •••• {payment.card_last4}"
            if payment.card_last4 else None)


def record_refund_outcome(request, payment, *, was: str) -> list[str]:
    """A refund request reached succeeded or failed (``was``: its status before): e-mail the
    customer, once per outcome, with the amount and the card; a refund that failed after it
    had succeeded (the bank returned it) also alerts every admin, since the customer expects
    money that did not arrive. In the caller's transaction; returns the ids added."""
    if request.status not in ("succeeded", "failed"):
        return []
    order = payment.order
    amount = format_minor(request.refund_amount, request.currency)
    rows = [("refund_email", f"refund_email:{request.id}:{request.status}", {
        "to": order.customer.email, "name": order.customer.name or "",
        "orderNumber": order.number, "amount": amount, "card": _card(payment),
        "status": request.status, "failure": request.failure_message})]
    if request.status == "failed" and was == "succeeded":
        admins = db.session.scalars(sa.select(User.email).where(User.role == "admin")
                                    .order_by(User.email)).all()
        rows.append(("admin_alert", f"admin_alert:refund_failed:{request.id}", {
            "to": list(admins),
            "subject": f"Refund of {amount} for order #{order.number} failed after it succeeded",
            "text": f"The refund {request.stripe_refund_id} of {amount} for order "
                    f"#{order.number} ({order.customer.email}) was returned by the bank: "
                    f"{request.failure_message or 'no reason given'}. The customer has been "
                    "told; the amount is refundable again. Refund it another way or contact "
                    "the customer."}))
    return _add(payment.id, rows)


# --- Delivery -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Sending:
    message_id: uuid.UUID
    kind: str
    payload: dict
    started: datetime


def deliver(message_id: str, *, force: bool = False) -> str | None:
    """Send one message (the job), in three phases (database.in_phases): take it (pending
    and due, or ``force``: due or not) and make it not due while it is sent; send it, no
    lock held; record the outcome. A failure is retried later with backoff until 24 h have
    passed since the message was written (or tried again by an admin). Returns the
    message's status (None: no such message)."""
    status: list[str | None] = []  # as reserve found it

    def reserve() -> _Sending | None:
        msg = _locked(message_id)
        now = utcnow()
        status.append(msg.status if msg else None)
        if msg is None or msg.status != "pending" or (not force and msg.next_attempt_at > now):
            return None
        msg.next_attempt_at = now + SENDING_FOR
        return _Sending(msg.id, msg.kind, msg.payload, now)

    def call(s: _Sending) -> str:
        if s.kind == "order_notification":
            return _notify(s.message_id, s.payload)
        return _email(*_MAILS[s.kind](s.payload), attach=lambda: _attachments(s))

    def apply(s: _Sending, outcome: str) -> str:
        msg = _locked(message_id)
        msg.status, msg.attempts = outcome, msg.attempts + 1
        msg.sent_at = s.started if outcome == "sent" else None
        return msg.status

    def failed(s: _Sending, exc: Exception) -> str:
        msg = _locked(message_id)
        msg.errors = [*(msg.errors or []), f"{s.started:%Y-%m-%dT%H:%M:%SZ} {exc}"[:500]][-50:]
        if msg.status == "pending" and s.started - (msg.retried_at or msg.created_at) >= (
                GIVE_UP_AFTER):
            msg.status = "given_up"
            log.error("outbox message %s (%s) given up after %s attempts", msg.id, msg.kind,
                      msg.attempts + 1)
        elif msg.status == "pending":
            msg.next_attempt_at = s.started + backoff(msg.attempts + 1)
        msg.attempts += 1
        return msg.status

    # Any failure of the far side is recorded (and retried): failures=(Exception,).
    return in_phases(reserve, call, apply, failed=failed, failures=(Exception,)) or status[0]


def _locked(message_id: str) -> OutboxMessage | None:
    return db.session.scalar(sa.select(OutboxMessage).where(
        OutboxMessage.id == uuid.UUID(message_id)).with_for_update()
        .execution_options(populate_existing=True))  # never a stale copy from the session


def retry_given_up(message_id: uuid.UUID) -> bool:
    """Give a given-up message another 24 h of attempts (an admin's "Try again"), from now:
    ``retried_at`` (``created_at`` stays when the message was written); the caller commits,
    then delivers. False when the message is not given up (sent or retried meanwhile, say
    from another tab or a double click): nothing changes, nothing is sent again. One
    conditional UPDATE, so two clicks cannot both win, on SQLite too."""
    now = utcnow()
    return db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status == "given_up")
        .values(status="pending", retried_at=now, next_attempt_at=now)
        .execution_options(synchronize_session=False)).rowcount == 1


def _notify(message_id: uuid.UUID, payload: dict) -> str:
    base = current_app.extensions["portal_config"].ORDER_SERVICE_URL.rstrip("/")
    request = urllib.request.Request(  # noqa: S310 - http(s) only (checked in config)
        f"{base}/api/orders/{payload['orderId']}/payment-status",
        data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": str(message_id)})
    try:
        with _opener.open(request, timeout=TIMEOUT_S) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code} from the order service") from None
    return "sent"


def _receipt(p: dict) -> tuple[str | list[str], str, str]:
    return p["to"], f"Your ShopSphere receipt {p['receiptNumber']}", (
        f"Hello {p['name']},\n\nWe received your payment of {p['amount']} for order "
        f"#{p['orderNumber']}{' with ' + p['card'] if p.get('card') else ''}.\n"
        f"Receipt: {p['receiptNumber']}{chr(10) + p['receiptUrl'] if p.get('receiptUrl') else ''}"
        "\n\nShopSphere\n")


def _refund(p: dict) -> tuple[str | list[str], str, str]:
    to = f" to your {p['card']}" if p.get("card") else ""
    if p["status"] == "succeeded":
        return p["to"], f"Your refund of {p['amount']} for order #{p['orderNumber']}", (
            f"Hello {p['name']},\n\nWe refunded {p['amount']} for order #{p['orderNumber']}"
            f"{to}. Depending on your bank, it shows on your statement within 5 to 10 "
            "business days.\n\nShopSphere\n")
    reason = f" ({p['failure'].replace('_', ' ')})" if p.get("failure") else ""
    return p["to"], f"Your refund for order #{p['orderNumber']} could not be completed", (
        f"Hello {p['name']},\n\nThe refund of {p['amount']} for order #{p['orderNumber']}"
        f"{to} could not be completed by your bank{reason}. Our team has been told and will "
        "contact you to return the money another way.\n\nShopSphere\n")


def _alert(p: dict) -> tuple[str | list[str], str, str]:
    return p["to"], f"[ShopSphere] {p['subject']}", p["text"] + "\n"


_MAILS = {"receipt_email": _receipt, "refund_email": _refund, "admin_alert": _alert}


def _attachments(s: _Sending) -> list[tuple[str, bytes]]:
    """What a mail carries: the receipt, its payment's invoice as a PDF (once issued; a
    receipt written before invoices existed carries none)."""
    payment_id = parse_uuid(s.payload.get("paymentId") or "") if s.kind == "receipt_email" \
        else None
    invoice = invoices.invoice_by_payment(payment_id) if payment_id else None
    if invoice is None:
        return []
    return [(f"{invoice.number}.pdf", pdf.render("documents/_invoice.html",
                                                 f"Invoice {invoice.number}",
                                                 invoice=invoice, f=invoice.facts))]


def _email(to: str | list[str], subject: str, text: str,
           attach: Callable[[], list[tuple[str, bytes]]] | None = None) -> str:
    cfg = current_app.extensions["portal_config"]
    if not cfg.SMTP_HOST or not to:
        return "kept"  # no mail server (or no admin yet): admins read it in the local outbox
    mail = EmailMessage()
    mail["From"], mail["To"] = cfg.SMTP_FROM, to if isinstance(to, str) else ", ".join(to)
    mail["Subject"] = subject
    mail.set_content(text)
    for name, data in attach() if attach else []:  # rendered only when a mail is sent
        mail.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    with smtplib.SMTP(cfg.SMTP_HOST, cfg.SMTP_PORT, timeout=TIMEOUT_S) as smtp:
        if cfg.SMTP_USER:
            smtp.starttls()
            smtp.login(cfg.SMTP_USER, cfg.SMTP_PASSWORD)
        smtp.send_message(mail)
    return "sent"


def sweep(limit: int = 500) -> int:
    """Queue (after the commit) the messages that are due (rq cron, every minute). Returns
    how many."""
    ids = db.session.scalars(sa.select(OutboxMessage.id).where(
        OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= utcnow())
        .order_by(OutboxMessage.next_attempt_at).limit(limit)).all()
    jobs.enqueue_each(deliver, [(str(i),) for i in ids], queue="outbox")
    return len(ids)
