"""User workflows: creation, password checks and API tokens."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from functools import cache

import jwt
import sqlalchemy as sa
from flask import current_app, request
from werkzeug.security import check_password_hash, generate_password_hash

from ..config import ROLES
from ..errors import DomainError, Forbidden
from ..extensions import db
from ..models_base import parse_uuid
from .models import User


@cache
def _dummy_hash() -> str:
    # Checked against for unknown e-mails, so login timing does not reveal which accounts exist.
    return generate_password_hash(secrets.token_hex(8))


class UserError(ValueError):
    """A user could not be created; the message names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def find_user(email: str) -> User | None:
    """The user with this e-mail (case-insensitive), or None."""
    return db.session.scalar(sa.select(User).where(User.email == normalize_email(email)))


def create_user(email: str, role: str, password: str, name: str = "") -> User:
    """Add a user to the session (the caller commits); UserError on bad input."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 254:
        raise UserError("email", "a valid e-mail address is required")
    if role not in ROLES:
        raise UserError("role", f"role must be one of {', '.join(ROLES)}")
    if len(password or "") < 8:
        raise UserError("password", "password must be at least 8 characters")
    if find_user(email) is not None:
        raise UserError("email", f"a user with e-mail {email} already exists")
    user = User(email=email, role=role, name=name.strip(), session_token=secrets.token_hex(16))
    user.set_password(password)
    db.session.add(user)
    return user


def authenticate(email: str, password: str) -> User | None:
    """The user if the password matches, else None (same work either way)."""
    user = find_user(email)
    if user is None:
        check_password_hash(_dummy_hash(), password or "")
        return None
    return user if user.check_password(password or "") else None


def end_sessions(user: User) -> None:
    """Invalidate every browser session of ``user`` (their cookies stop loading the user)."""
    user.session_token = secrets.token_hex(16)


def issue_token(user: User) -> tuple[str, datetime]:
    """A signed Bearer JWT for the API, valid at most JWT_TTL_SECONDS (<= 1 h)."""
    cfg = current_app.config
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=cfg["JWT_TTL_SECONDS"])
    claims = {
        "sub": str(user.id),
        "email": user.email,
        "role": user.role,
        "iat": now,
        "exp": expires,
        "iss": cfg["JWT_ISSUER"],
        "aud": cfg["JWT_AUDIENCE"],
    }
    return jwt.encode(claims, cfg["JWT_SECRET"], algorithm=cfg["JWT_ALGORITHM"]), expires


# Clocks of the issuers (other portal instances, the auth service) may run a little ahead of
# ours: an "iat" up to this far in the future, and a lifetime up to this much over the maximum,
# are accepted. Expiry itself gets no leeway.
JWT_CLOCK_SKEW_SECONDS = 10


def _verifiers(cfg) -> list[tuple[str, str, str | None, str | None, str, int]]:
    """(key, algorithm, issuer, audience, how to find the user, longest lifetime in seconds)
    for each accepted issuer."""
    found = [(cfg["JWT_SECRET"], cfg["JWT_ALGORITHM"], cfg["JWT_ISSUER"], cfg["JWT_AUDIENCE"],
              "id", cfg["JWT_TTL_SECONDS"])]
    key = cfg.get("AUTH_JWT_PUBLIC_KEY") or cfg.get("AUTH_JWT_SECRET")
    if key:
        # Tokens of the ShopSphere auth service name the user by e-mail.
        found.append((key, cfg["AUTH_JWT_ALGORITHM"], cfg.get("AUTH_JWT_ISSUER") or None,
                      cfg.get("AUTH_JWT_AUDIENCE") or None, "email",
                      cfg.get("AUTH_JWT_MAX_TTL_SECONDS", 3600)))
    return found


def _lifetime_ok(claims: dict, max_ttl: int) -> bool:
    """Issued now or before (within the skew), for at most ``max_ttl`` seconds: a correctly
    signed token with a far-away "exp" is refused."""
    issued, expires = claims["iat"], claims["exp"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (issued, expires)):
        return False  # NumericDate is a number (RFC 7519); NaN fails the comparisons below
    now = datetime.now(UTC).timestamp()
    return (issued <= now + JWT_CLOCK_SKEW_SECONDS
            and expires - issued <= max_ttl + JWT_CLOCK_SKEW_SECONDS)


def user_from_token(token: str) -> User | None:
    """The user a Bearer token names, or None if it is invalid, expired, issued for longer
    than its issuer's maximum lifetime, or for someone gone."""
    for key, algorithm, issuer, audience, lookup, max_ttl in _verifiers(current_app.config):
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],  # pinned: never "none", never the token's own choice
                audience=audience,
                issuer=issuer,
                # "iat" is checked by _lifetime_ok, with the clock skew (PyJWT's check would
                # share the leeway of "exp").
                options={"require": ["exp", "iat", "sub"], "verify_iat": False,
                         "verify_aud": audience is not None},
            )
        except jwt.PyJWTError:
            continue
        if not _lifetime_ok(claims, max_ttl):
            return None
        if lookup == "email":
            return find_user(str(claims.get("email") or ""))
        user_id = parse_uuid(claims["sub"])
        return db.session.get(User, user_id) if user_id else None
    return None


class Unauthorized(DomainError):
    """No valid Bearer token (the API answers it with WWW-Authenticate)."""

    status, code = 401, "unauthorized"


class BadCredentials(DomainError):
    """A wrong e-mail or password for a token (no WWW-Authenticate: not a Bearer failure)."""

    status, code = 401, "invalid_credentials"


def authenticate_bearer(roles: tuple[str, ...] = ()) -> User:
    """The user of the request's Bearer JWT (never the session cookie). Unauthorized without
    a valid token; Forbidden when ``roles`` are given and the user's is not one of them."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    user = user_from_token(token.strip()) if scheme.lower() == "bearer" and token else None
    if user is None:
        raise Unauthorized("a valid Bearer token is required")
    if roles and user.role not in roles:
        raise Forbidden("your role may not do this")
    return user
