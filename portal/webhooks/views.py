"""Admin pages: the Stripe event log (filter, inspect, replay) and the outbox."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..days import parse_day
from ..extensions import db
from ..htmx import render
from ..models_base import parse_uuid
from ..outbox.models import STATUSES as OUTBOX_STATUSES
from ..outbox.models import OutboxMessage
from ..refunds.models import AuditEntry
from .jobs import enqueue_processing
from .models import EVENT_STATUSES, StripeEvent

bp = Blueprint("events", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def _admins_only():
    if current_user.role != "admin":
        abort(403)


@bp.route("/events")
def event_log():
    """Stored Stripe events, newest first; filters by type, status and day swap the table."""
    kind = (request.args.get("type") or "").strip()[:100]
    status = request.args.get("status") if request.args.get("status") in EVENT_STATUSES else None
    start, end = parse_day(request.args.get("from")), parse_day(request.args.get("to"))
    query = sa.select(StripeEvent).order_by(StripeEvent.received_at.desc()).limit(200)
    if kind:
        query = query.where(StripeEvent.type.startswith(kind.rstrip("*"), autoescape=True))
    if status:
        query = query.where(StripeEvent.status == status)
    if start:
        query = query.where(StripeEvent.received_at >= start)
    if end:
        query = query.where(StripeEvent.received_at < end + timedelta(days=1))
    failed = db.session.scalar(sa.select(sa.func.count()).select_from(StripeEvent)
                               .where(StripeEvent.status == "failed"))
    return render("events/index.html", "events/_table.html", events=db.session.scalars(query)
                  .all(), kind=kind, status=status, statuses=EVENT_STATUSES, failed=failed,
                  start=request.args.get("from", ""), end=request.args.get("to", ""))


@bp.route("/events/<event_id>")
def event_detail(event_id: str):
    """One event: its payload and the last error with its traceback."""
    event = db.session.get(StripeEvent, event_id[:255])
    if event is None:
        abort(404)
    return render_template("events/detail.html", event=event,
                           payload=json.dumps(event.payload, indent=2, sort_keys=True))


def _replay(ids: list[str]) -> int:
    db.session.execute(sa.update(StripeEvent).where(StripeEvent.id.in_(ids))
                       .values(status="received"))
    db.session.add(AuditEntry(actor_id=current_user.id, action="events.replayed",
                              note=f"{len(ids)} event(s): {', '.join(ids[:20])}"))
    db.session.commit()
    # Processing twice is a no-op: handlers re-read Stripe and states only move forward.
    return sum(enqueue_processing(i) for i in ids)


@bp.route("/events/<event_id>/replay", methods=["POST"])
def replay(event_id: str):
    """Process one event again."""
    if db.session.get(StripeEvent, event_id[:255]) is None:
        abort(404)
    _replay([event_id])
    flash(f"Event {event_id} was queued again.", "info")
    return redirect(url_for("events.event_detail", event_id=event_id))


@bp.route("/events/replay-failed", methods=["POST"])
def replay_failed():
    """Process every failed event again."""
    ids = list(db.session.scalars(sa.select(StripeEvent.id)
                                  .where(StripeEvent.status == "failed")))
    flash(f"{_replay(ids) if ids else 0} failed event(s) queued again.", "info")
    return redirect(url_for("events.event_log"))


@bp.route("/outbox")
def outbox():
    """Notifications and receipts: sent, waiting, given up, or kept (no SMTP server)."""
    status = request.args.get("status") if request.args.get("status") in OUTBOX_STATUSES \
        else None
    query = sa.select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(200)
    if status:
        query = query.where(OutboxMessage.status == status)
    return render_template("events/outbox.html", messages=db.session.scalars(query).all(),
                           status=status, statuses=OUTBOX_STATUSES)


@bp.route("/outbox/<message_id>/retry", methods=["POST"])
def outbox_retry(message_id: str):
    """Try a given-up message again (another 24 h of attempts)."""
    from ..outbox.services import deliver, retry_given_up

    pid = parse_uuid(message_id)
    msg = db.session.get(OutboxMessage, pid) if pid else None
    if msg is None:
        abort(404)
    if not retry_given_up(pid):
        db.session.rollback()
        flash("Only a message that was given up can be tried again; this one was not "
              "sent again.", "error")
        return redirect(url_for("events.outbox"))
    db.session.add(AuditEntry(actor_id=current_user.id, action="outbox.retried",
                              payment_id=msg.payment_id, note=f"{msg.kind} {msg.id}"))
    db.session.commit()
    status = deliver(str(msg.id))
    flash(f"Tried again: {(status or '').replace('_', ' ')}.",
          "info" if status in ("sent", "kept") else "error")
    return redirect(url_for("events.outbox"))
