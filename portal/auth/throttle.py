"""Password guessing, limited per account whichever way the password comes (the web login,
the API's token endpoint), without handing an attacker a way to lock the owner out.

Only failed attempts count:
- per account and client address: 5 per 15 minutes and 20 per day: one address (the usual
  attacker) gets few guesses at an account, and locks out only itself;
- per account, all addresses together: 20 per hour, against guessing spread over many
  addresses. Exhausted, it refuses every client *except* a browser that signed in to this
  account before: a signed "known device" cookie (90 days) exempts it from this budget, not
  from its own per-address one. So an attacker who knows an e-mail can make the account
  refuse strangers for an hour, but not its owner on their own browser (OWASP's device-cookie
  defence; no CAPTCHA or e-mail link is needed). API clients have no such cookie: their
  per-account budget is the same 20 an hour.
- per address over all accounts: the routes' own limits (login 30 a minute, token 10).
A growing delay was the other choice; it slows the owner down as much as the attacker.

Accounts are keyed by a hash of the normalised e-mail, cut to 254 characters: a hostile value
neither grows the rate-limit keys nor reaches a log line. The counters live where
Flask-Limiter's do (Redis, or memory without REDIS_URL); if that store fails, attempts are
not limited (as the routes' own limits, RATELIMIT_SWALLOW_ERRORS).
"""

from __future__ import annotations

import hashlib

from flask import Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import parse, parse_many

from .. import budgets
from .services import normalize_email

PER_ACCOUNT_ADDRESS = parse_many("5 per 15 minutes; 20 per day")
PER_ACCOUNT = parse("20 per hour")
DEVICE_COOKIE = "known_device"  # "__Host-known_device" over https (production)
DEVICE_DAYS = 90


def account_key(email: str) -> str:
    """A fixed-size key for the account an e-mail names (existing or not)."""
    return hashlib.sha256(normalize_email(email)[:254].encode()).hexdigest()[:32]


def _limits(email: str, trusted: bool) -> list[budgets.Budget]:
    account = account_key(email)
    address = request.remote_addr or "-"
    found = [(item, ("password", account, address)) for item in PER_ACCOUNT_ADDRESS]
    if not trusted:
        found.append((PER_ACCOUNT, ("password", account)))
    return found


def refused(email: str, *, trusted: bool = False) -> int | None:
    """Seconds to wait before this client may try a password for this account again, or None
    when it may now. ``trusted``: it presented the account's known-device cookie."""
    return budgets.refused(_limits(email, trusted))


def failed(email: str, *, trusted: bool = False) -> None:
    """Count a failed attempt against the account (and this address's share of it)."""
    budgets.spend(_limits(email, trusted))


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="known-device")


def _cookie_name() -> str:
    # __Host-: only this host over https may set it (as the session cookie in production).
    secure = current_app.config.get("SESSION_COOKIE_SECURE", False)
    return f"__Host-{DEVICE_COOKIE}" if secure else DEVICE_COOKIE


def known_device(email: str) -> bool:
    """This browser signed in to this account before (its signed cookie says so)."""
    cookie = request.cookies.get(_cookie_name())
    if not cookie:
        return False
    try:
        return _serializer().loads(cookie, max_age=DEVICE_DAYS * 86400) == account_key(email)
    except BadSignature:
        return False


def remember_device(response: Response, email: str) -> None:
    """After a successful sign-in: this browser is a known device of the account."""
    response.set_cookie(_cookie_name(), _serializer().dumps(account_key(email)),
                        max_age=DEVICE_DAYS * 86400, httponly=True, samesite="Lax",
                        secure=current_app.config.get("SESSION_COOKIE_SECURE", False))


wait_text = budgets.wait_text
