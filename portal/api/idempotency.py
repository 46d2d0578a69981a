"""`Idempotency-Key` for POST endpoints: the first response is replayed for 24 h.

Same key + same body → the stored response again; same key + another body (or another
endpoint) → 409; a second request while the first is still running → 409. Keys are per user.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from flask import Response, current_app, g, make_response, request
from sqlalchemy.exc import IntegrityError

from ..database import commits, phase
from ..errors import api_error
from ..extensions import db
from ..models_base import utcnow
from .models import IdempotencyKey

TTL = timedelta(hours=24)


def _fingerprint() -> str:
    return hashlib.sha256(
        request.method.encode() + b" " + request.path.encode() + b"\n" + request.get_data()
    ).hexdigest()


class _ServerError(Exception):
    """The call answered 5xx: its changes are rolled back and its key freed."""

    def __init__(self, response: Response):
        super().__init__(response.status_code)
        self.response = response


def idempotent_call(call) -> Response:
    """Run ``call`` at most once per (user, Idempotency-Key) and replay its response.

    The key is reserved in a transaction of its own (committed before the call), then the
    call runs in a phase that stores its response with whatever it changed (a refusal too:
    ``call`` answers domain errors, see openapi.operation). A 503 (Stripe unreachable: try
    again later; the reserved rows key the Stripe calls, so the retry does nothing twice)
    frees the key. Another server error (a 500, an exception) frees it only when the call
    committed nothing: once one of its phases has committed (a refund reserved, maybe made
    at Stripe), the outcome is stored as it is, as Stripe stores its own 500s, and a retry
    with the key replays it instead of acting twice; reconciliation finishes what the
    failed call left in flight.
    """
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return make_response(call())
    if len(key) > 255 or not key.isprintable():
        return api_error(400, "invalid_idempotency_key", "Idempotency-Key is invalid",
                         {"Idempotency-Key": "at most 255 printable characters"})
    user_id, fingerprint = g.api_user.id, _fingerprint()
    try:
        with phase():
            # Core statements, not the unit of work: this runs in front of every keyed request.
            db.session.execute(sa.insert(IdempotencyKey).values(
                user_id=user_id, key=key, fingerprint=fingerprint))
    except IntegrityError:
        return _replay(user_id, key, fingerprint, call)
    before = commits()
    try:
        with phase():
            response = make_response(call())
            if response.status_code == 503 or (
                    response.status_code >= 500 and commits() == before):
                raise _ServerError(response)
            _store(user_id, key, response)
    except _ServerError as exc:
        _forget(user_id, key)  # nothing was done: the same key may try again
        return exc.response
    except Exception:
        if commits() == before:
            _forget(user_id, key)
        else:
            with phase():
                _store(user_id, key, api_error(500, "server_error", "Something went wrong"))
        raise
    return response


def _store(user_id, key: str, response: Response) -> None:
    db.session.execute(
        sa.update(IdempotencyKey)
        .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
        .values(status_code=response.status_code,
                response_body={"sealed": _box().encrypt(response.get_data()).decode()})
        .execution_options(synchronize_session=False))


def _replay(user_id, key: str, fingerprint: str, call) -> Response:
    row = db.session.scalar(sa.select(IdempotencyKey).where(
        IdempotencyKey.user_id == user_id, IdempotencyKey.key == key))
    if row is not None and row.created_at < utcnow() - TTL:
        _forget(user_id, key)  # expired: the key is free again
        return idempotent_call(call)
    if row is None or row.fingerprint != fingerprint:
        return api_error(409, "idempotency_key_reused",
                         "this Idempotency-Key was used with another request")
    if row.status_code is None:
        return api_error(409, "request_in_progress",
                         "a request with this Idempotency-Key is still being processed")
    try:
        body = _box().decrypt(row.response_body["sealed"].encode())
    except (InvalidToken, KeyError, TypeError):  # SECRET_KEY rotated since: cannot replay
        return api_error(409, "idempotency_key_reused",
                         "this Idempotency-Key was used and its response is no longer available")
    response = make_response(body, row.status_code)
    response.mimetype = "application/json"
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _box() -> Fernet:
    # Stored responses hold PaymentIntent client secrets: they are kept encrypted, with a key
    # derived from SECRET_KEY, never in clear text.
    digest = hashlib.sha256(b"idempotency:" + current_app.config["SECRET_KEY"].encode())
    return Fernet(base64.urlsafe_b64encode(digest.digest()))


def _forget(user_id, key: str) -> None:
    with phase():
        db.session.execute(sa.delete(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id, IdempotencyKey.key == key))


def purge_expired() -> int:
    """Delete keys older than 24 h (a job, scheduled hourly by `rq cron portal.cron_config`)."""
    result = db.session.execute(
        sa.delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - TTL))
    return result.rowcount
