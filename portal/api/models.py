"""Stored responses of POST requests made with an Idempotency-Key."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import IdMixin, UTCDateTime, utcnow


class IdempotencyKey(IdMixin, db.Model):
    __tablename__ = "api_idempotency_keys"
    __table_args__ = (sa.UniqueConstraint("user_id", "key"),)

    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(255))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))  # sha256 of method, path, body
    status_code: Mapped[int | None]  # None while the first request is running
    response_body: Mapped[dict | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
