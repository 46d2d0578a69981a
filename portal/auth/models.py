"""The portal's users and their roles."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from ..config import ROLES
from ..extensions import db
from ..models_base import IdMixin, UTCDateTime, utcnow


class User(IdMixin, UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        # The admin search finds users by the beginning of their e-mail (LIKE 'ab%'): under a
        # collation other than C, PostgreSQL reads a btree for LIKE only with text_pattern_ops.
        # SQLite gets a plain second index on email (its LIKE ignores case and no index).
        sa.Index("ix_users_email_prefix", "email", postgresql_ops={"email": "text_pattern_ops"}),
    )

    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120), default="")
    role: Mapped[str] = mapped_column(
        sa.Enum(*ROLES, name="user_role", native_enum=False, create_constraint=True)
    )
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    # Changing it (password change, forced logout) invalidates every session of the user.
    session_token: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def get_id(self) -> str:
        # Flask-Login stores this in the session; tying it to session_token allows revocation.
        return f"{self.id}:{self.session_token}"

    @property
    def display_name(self) -> str:
        return self.name or self.email
