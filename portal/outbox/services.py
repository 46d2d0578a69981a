"""The outbox: side effects are rows written with the state change that causes them, then
delivered by jobs, each at most once (row lock) and retried with backoff for 24 hours.

- ``record_payment_outcome`` (called under the payment's row lock when a payment reaches a
  final state) adds the order-service notification and, for a success, the receipt e-mail.
  The unique ``dedupe_key`` makes a second write of the same outcome a no-op.
- After the transaction commits the new messages are queued (RQ), or delivered at the end of
  the request in the embedded mode; ``sweep`` (rq cron, every minute) queues whatever is due
  (retries, and messages whose queueing was lost with Redis).
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
from datetime import timedelta
from email.message import EmailMessage

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy import event, orm

from .. import jobs
from ..extensions import db
from ..models_base import utcnow
from ..money import format_minor
from .models import OutboxMessage

log = logging.getLogger(__name__)
GIVE_UP_AFTER = timedelta(hours=24)
TIMEOUT_S = 5
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def backoff(attempts: int) -> timedelta:
    """30 s, 1, 2, 4 ... minutes, at most an hour between attempts."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def _add(payment_id: uuid.UUID, rows: list[tuple[str, str, dict]]) -> None:
    """Insert (kind, dedupe key, payload) rows in one statement; a key already there is
    skipped. The ids inserted are queued after the commit."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = utcnow()
    # Parameters as a list (executemany): one INSERT whose compiled form is cached, where
    # .values([...]) made a new statement, with new bind parameters, for every payment.
    inserted = db.session.scalars(
        insert(OutboxMessage).on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OutboxMessage.id),
        [{"id": uuid.uuid4(), "kind": kind, "dedupe_key": key, "payment_id": payment_id,
          "payload": payload, "status": "pending", "attempts": 0, "errors": [],
          "created_at": now, "next_attempt_at": now} for kind, key, payload in rows])
    db.session.info.setdefault("outbox_new", []).extend(str(i) for i in inserted)


def record_payment_outcome(payment) -> None:
    """A payment reached a final state: notify the order service, and e-mail the receipt
    when it succeeded. In the caller's transaction."""
    if payment.status not in ("succeeded", "canceled"):
        return
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
            "orderNumber": order.number,
            "amount": format_minor(payment.amount, payment.currency),
            "card": f"{(payment.card_brand or 'card').capitalize()} •••• {payment.card_last4}"
            if payment.card_last4 else None,
            "receiptNumber": payment.receipt_number, "receiptUrl": payment.receipt_url}))
    _add(payment.id, rows)


# --- Queueing after commit ------------------------------------------------------------------

@event.listens_for(orm.Session, "after_commit")
def _committed(session) -> None:
    new = session.info.pop("outbox_new", None)
    if not new or not has_app_context():
        return
    if current_app.config.get("REDIS_URL"):
        # Only Redis here (no SQL may run in this hook): one job per message, one round trip.
        jobs.enqueue_each(deliver, [(message_id,) for message_id in new], queue="outbox")
    else:
        session.info.setdefault("outbox_later", []).extend(new)


@event.listens_for(orm.Session, "after_rollback")
def _rolled_back(session) -> None:
    session.info.pop("outbox_new", None)


def deliver_pending_of_request(exc=None) -> None:
    """Embedded mode (no Redis): deliver what the request committed, after the request."""
    later = db.session.info.pop("outbox_later", None) if db.session.registry.has() else None
    for message_id in later or ():
        try:
            deliver(message_id)
        except Exception:  # never fail the request for it: the sweeper tries again
            db.session.rollback()
            log.exception("outbox message %s could not be delivered now", message_id)


# --- Delivery -------------------------------------------------------------------------------

def deliver(message_id: str, *, force: bool = False) -> str | None:
    """Send one message (the job). Its row is locked while sending, so two workers never send
    it twice; a failure is recorded and retried later, until 24 h have passed. Returns the
    message's status."""
    msg = db.session.scalar(sa.select(OutboxMessage).where(
        OutboxMessage.id == uuid.UUID(message_id)).with_for_update()
        .execution_options(populate_existing=True))  # never a stale copy from the session
    now = utcnow()
    if msg is None or msg.status != "pending" or (not force and msg.next_attempt_at > now):
        db.session.rollback()
        return msg.status if msg else None
    try:
        msg.status = (_notify if msg.kind == "order_notification" else _email)(msg)
    except Exception as exc:  # noqa: BLE001 - any failure of the far side is recorded
        msg.errors = [*(msg.errors or []), f"{now:%Y-%m-%dT%H:%M:%SZ} {exc}"[:500]][-50:]
        if now - msg.created_at >= GIVE_UP_AFTER:
            msg.status = "given_up"
            log.error("outbox message %s (%s) given up after %s attempts", msg.id, msg.kind,
                      msg.attempts + 1)
        else:
            msg.next_attempt_at = now + backoff(msg.attempts + 1)
    else:
        msg.sent_at = now if msg.status == "sent" else None
    msg.attempts += 1
    db.session.commit()
    return msg.status


def retry_given_up(message_id: uuid.UUID) -> bool:
    """Give a given-up message another 24 h of attempts (an admin's "Try again"); the caller
    commits, then delivers. False when the message is not given up (sent or retried
    meanwhile, say from another tab or a double click): nothing changes, nothing is sent
    again. One conditional UPDATE, so two clicks cannot both win, on SQLite too."""
    now = utcnow()
    return db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status == "given_up")
        .values(status="pending", created_at=now, next_attempt_at=now)
        .execution_options(synchronize_session=False)).rowcount == 1


def _notify(msg: OutboxMessage) -> str:
    base = current_app.extensions["portal_config"].ORDER_SERVICE_URL.rstrip("/")
    request = urllib.request.Request(  # noqa: S310 - http(s) only (checked in config)
        f"{base}/api/orders/{msg.payload['orderId']}/payment-status",
        data=json.dumps(msg.payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": str(msg.id)})
    try:
        with _opener.open(request, timeout=TIMEOUT_S) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code} from the order service") from None
    return "sent"


def _email(msg: OutboxMessage) -> str:
    cfg = current_app.extensions["portal_config"]
    if not cfg.SMTP_HOST:
        return "kept"  # no mail server: admins read it in the local outbox
    p = msg.payload
    mail = EmailMessage()
    mail["From"], mail["To"] = cfg.SMTP_FROM, p["to"]
    mail["Subject"] = f"Your ShopSphere receipt {p['receiptNumber']}"
    mail.set_content(
        f"Hello {p['name']},\n\nWe received your payment of {p['amount']} for order "
        f"#{p['orderNumber']}{' with ' + p['card'] if p.get('card') else ''}.\n"
        f"Receipt: {p['receiptNumber']}{chr(10) + p['receiptUrl'] if p.get('receiptUrl') else ''}"
        "\n\nShopSphere\n")
    with smtplib.SMTP(cfg.SMTP_HOST, cfg.SMTP_PORT, timeout=TIMEOUT_S) as smtp:
        if cfg.SMTP_USER:
            smtp.starttls()
            smtp.login(cfg.SMTP_USER, cfg.SMTP_PASSWORD)
        smtp.send_message(mail)
    return "sent"


def sweep(limit: int = 500) -> int:
    """Queue the messages that are due (rq cron, every minute). Returns how many."""
    ids = db.session.scalars(sa.select(OutboxMessage.id).where(
        OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= utcnow())
        .order_by(OutboxMessage.next_attempt_at).limit(limit)).all()
    db.session.rollback()
    return sum(jobs.enqueue(deliver, str(i), queue="outbox") for i in ids)
