"""One configuration, read from the environment and validated before the app starts.

Every setting has a safe default for the embedded setup (`make run`: SQLite, in-process jobs,
the Stripe sandbox). A value that would be dangerous or meaningless stops start-up with one
line naming the variable (``ConfigError``), because a payments service that starts with a
half-right configuration is worse than one that does not start.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# htmx is pinned: the CDN copy (with its SRI hash) for production, and `make` fetches the same
# version from the npm registry into static/vendor/ for offline use and tests.
HTMX_VERSION = "2.0.11"
HTMX_CDN_URL = f"https://unpkg.com/htmx.org@{HTMX_VERSION}/dist/htmx.min.js"
HTMX_CDN_SRI = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"

# The local sandbox's and development's own values, published on purpose: production refuses
# every one of them as a secret (PUBLISHED_SECRETS below), hence the nosec marks.
SANDBOX_API_BASE = "http://127.0.0.1:8420"
SANDBOX_SECRET_KEY = "sk_test_sandbox"  # nosec B105
SANDBOX_PUBLISHABLE_KEY = "pk_test_sandbox"
SANDBOX_WEBHOOK_SECRET = "whsec_sandbox"  # nosec B105
SANDBOX_CONNECT_WEBHOOK_SECRET = "whsec_sandbox_connect"  # nosec B105
# Signs sessions (and API tokens) outside production when SECRET_KEY is not set.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-deploy"  # nosec B105
STRIPE_API_BASE_DEFAULT = "https://api.stripe.com"
STRIPE_JS_URL_DEFAULT = "https://js.stripe.com/v3/"

ROLES = ("customer", "vendor", "admin", "service")

# Values anyone can read (this file, .env.example, the README): production refuses them as
# secrets, as it refuses the placeholders of .env.example (REPLACE_ME, CHANGE_ME).
PUBLISHED_SECRETS = frozenset({DEV_SECRET_KEY, SANDBOX_SECRET_KEY, SANDBOX_PUBLISHABLE_KEY,
                               SANDBOX_WEBHOOK_SECRET, SANDBOX_CONNECT_WEBHOOK_SECRET})
PLACEHOLDER_MARKERS = ("replaceme", "changeme")
SECRET_SETTINGS = ("SECRET_KEY", "JWT_SECRET", "AUTH_JWT_SECRET", "STRIPE_SECRET_KEY",
                   "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET",
                   "STRIPE_CONNECT_WEBHOOK_SECRET", "SMTP_PASSWORD")

# A host name, an IPv4 address or a [bracketed] IPv6 address, with an optional port.
_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}"
                   r"[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$")


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names the variable."""


def _int(env: dict, name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value} must be between {lo} and {hi}")
    return value


@dataclass
class Config:
    """The application's settings; see README.md "Configuration" for each one."""

    ENV: str = "development"
    PORT: int = 3006
    # The public host[:port] external URLs are built with (Stripe return URLs, onboarding
    # links); required in production. TRUSTED_HOSTS: more Host headers answered besides
    # SERVER_NAME's (comma-separated, ".example.com" for its subdomains); others get 400.
    SERVER_NAME: str = ""
    TRUSTED_HOSTS: str = ""
    SECRET_KEY: str = ""
    DATABASE_URL: str = ""
    REDIS_URL: str = ""
    STRIPE_SECRET_KEY: str = ""
    STRIPE_PUBLISHABLE_KEY: str = ""
    STRIPE_WEBHOOK_SECRET: str = ""
    # The Connect webhook endpoint's: events of the vendors' connected accounts
    # (account.updated) come there, signed with it.
    STRIPE_CONNECT_WEBHOOK_SECRET: str = ""
    STRIPE_API_BASE: str = ""
    STRIPE_JS_URL: str = ""
    HTMX_URL: str = ""
    HTMX_SRI: str = ""
    AUTH_SERVICE_URL: str = "http://localhost:3001"
    ORDER_SERVICE_URL: str = "http://localhost:3005"
    PLATFORM_FEE_PERCENT: int = 10
    # Vendor payouts: the period a scheduled run covers, and whether runs are executed
    # without an admin's approval.
    PAYOUT_SCHEDULE: str = "weekly"
    PAYOUT_AUTO_EXECUTE: bool = False
    # A refund of a sale already paid out to the vendor: "carry" takes it from the vendor's
    # next payouts (a negative balance until then; admins see vendors in debt); "reverse"
    # also takes it back at once from the transfer that paid it (Stripe transfer reversal).
    REFUND_AFTER_PAYOUT: str = "carry"
    # Receipt e-mails; without SMTP_HOST they stay in the local outbox (admins see them).
    SMTP_HOST: str = ""
    SMTP_PORT: int = 587
    SMTP_USER: str = ""
    SMTP_PASSWORD: str = ""
    SMTP_FROM: str = "ShopSphere Payments <payments@shopsphere.example>"
    # The platform's legal details on its invoices and credit notes (issue 20); an issued
    # document keeps those it was issued with.
    INVOICE_COMPANY_NAME: str = "ShopSphere Marketplace Ltd (demo)"
    INVOICE_COMPANY_ADDRESS: str = "1 Example Street, Demo City 00000"
    INVOICE_TAX_ID: str = "DEMO-TAX-000000"
    TRUSTED_PROXY_HOPS: int = 0
    SESSION_HOURS: int = 12
    JWT_SECRET: str = ""
    JWT_ALGORITHM: str = "HS256"
    JWT_ISSUER: str = "shopsphere-payments"
    JWT_AUDIENCE: str = "shopsphere-payments"
    JWT_TTL_SECONDS: int = 3600
    # Tokens of the ShopSphere auth service (optional): a shared secret or a public key.
    AUTH_JWT_SECRET: str = ""
    AUTH_JWT_PUBLIC_KEY: str = ""
    AUTH_JWT_ALGORITHM: str = "HS256"
    AUTH_JWT_ISSUER: str = ""
    AUTH_JWT_AUDIENCE: str = ""
    # Longest lifetime (exp - iat) accepted of the auth service's tokens.
    AUTH_JWT_MAX_TTL_SECONDS: int = 3600
    # Every logger's level (the Stripe SDK's: never below INFO), RQ's and gunicorn's too
    # (its access log at INFO and DEBUG only); `make run` sets WARNING unless told otherwise.
    LOG_LEVEL: str = "INFO"
    PREFERRED_URL_SCHEME: str = "http"
    # Flask and extension settings derived from the above in flask_settings().
    extra: dict = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.ENV == "production"

    @property
    def stripe_test_mode(self) -> bool:
        return self.STRIPE_SECRET_KEY.startswith(("sk_test_", "rk_test_"))

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> Config:
        """Read and validate the settings; raise ConfigError naming the first bad variable."""
        env = dict(os.environ if env is None else env)
        env.update({k: str(v) for k, v in overrides.items() if not isinstance(v, dict)})
        c = cls(extra=overrides.get("extra", {}))
        c.ENV = (env.get("PORTAL_ENV") or env.get("FLASK_ENV") or "development").lower()
        c.PORT = _int(env, "PORT", 3006, 1, 65535)
        c.PLATFORM_FEE_PERCENT = _int(env, "PLATFORM_FEE_PERCENT", 10, 0, 100)
        c.JWT_TTL_SECONDS = _int(env, "JWT_TTL_SECONDS", 3600, 60, 3600)
        c.AUTH_JWT_MAX_TTL_SECONDS = _int(env, "AUTH_JWT_MAX_TTL_SECONDS", 3600, 60, 86400)
        c.TRUSTED_PROXY_HOPS = _int(env, "TRUSTED_PROXY_HOPS", 0, 0, 5)
        c.SESSION_HOURS = _int(env, "SESSION_HOURS", 12, 1, 24 * 30)
        c.SMTP_PORT = _int(env, "SMTP_PORT", 587, 1, 65535)
        auto = env.get("PAYOUT_AUTO_EXECUTE", "false").strip().lower()
        if auto not in ("true", "false", "1", "0", ""):
            raise ConfigError(f"PAYOUT_AUTO_EXECUTE={auto!r} must be true or false")
        c.PAYOUT_AUTO_EXECUTE = auto in ("true", "1")
        for f in fields(cls):
            # ENV comes only from PORTAL_ENV/FLASK_ENV: a platform's stray ENV must not switch it.
            if f.type == "str" and f.name != "ENV" and env.get(f.name) not in (None, ""):
                setattr(c, f.name, env[f.name].strip())
        c._defaults_and_checks()
        return c

    def _defaults_and_checks(self) -> None:
        self._general_checks()
        self._secret_checks()
        self._database_checks()
        self._auth_service_checks()
        self._stripe_checks()
        self._host_checks()
        if self.production:
            self._no_published_secrets()
        if not self.HTMX_URL:
            # The pinned CDN copy, unless `make` has fetched the same version for offline use.
            if not self.production and (ROOT / "static" / "vendor" / "htmx.min.js").exists():
                self.HTMX_URL = "/static/vendor/htmx.min.js"
            else:
                self.HTMX_URL, self.HTMX_SRI = HTMX_CDN_URL, HTMX_CDN_SRI
        if self.production:
            self.PREFERRED_URL_SCHEME = "https"

    def _general_checks(self) -> None:
        if self.ENV not in ("development", "test", "production"):
            raise ConfigError(f"PORTAL_ENV={self.ENV!r} must be development, test or production")
        if self.LOG_LEVEL.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"LOG_LEVEL={self.LOG_LEVEL!r} is not a logging level")
        self.LOG_LEVEL = self.LOG_LEVEL.upper()
        for name in ("ORDER_SERVICE_URL", "AUTH_SERVICE_URL"):
            if not getattr(self, name).startswith(("http://", "https://")):
                raise ConfigError(f"{name} must be an http(s) URL")
        self.REFUND_AFTER_PAYOUT = self.REFUND_AFTER_PAYOUT.lower()
        if self.REFUND_AFTER_PAYOUT not in ("carry", "reverse"):
            raise ConfigError(f"REFUND_AFTER_PAYOUT={self.REFUND_AFTER_PAYOUT!r} must be carry "
                              "or reverse")
        for name, most in (("INVOICE_COMPANY_NAME", 200), ("INVOICE_COMPANY_ADDRESS", 500),
                           ("INVOICE_TAX_ID", 50)):
            value = getattr(self, name)
            if len(value) > most or any(ord(ch) < 32 and ch != "\n" for ch in value):
                raise ConfigError(f"{name} must be at most {most} printable characters")
        self.PAYOUT_SCHEDULE = self.PAYOUT_SCHEDULE.lower()
        if self.PAYOUT_SCHEDULE not in ("weekly", "monthly"):
            raise ConfigError(f"PAYOUT_SCHEDULE={self.PAYOUT_SCHEDULE!r} must be weekly or "
                              "monthly")

    def _secret_checks(self) -> None:
        if not self.SECRET_KEY:
            if self.production:
                raise ConfigError("SECRET_KEY is required in production")
            self.SECRET_KEY = DEV_SECRET_KEY
        elif self.production and len(self.SECRET_KEY) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters in production")
        if self.JWT_ALGORITHM not in ("HS256", "HS384", "HS512"):
            raise ConfigError(f"JWT_ALGORITHM={self.JWT_ALGORITHM!r} must be HS256, HS384 or HS512")
        if not self.JWT_SECRET:
            if self.production:
                raise ConfigError("JWT_SECRET is required in production")
            self.JWT_SECRET = self.SECRET_KEY
        elif self.production and len(self.JWT_SECRET) < 32:
            raise ConfigError("JWT_SECRET must be at least 32 characters in production")

    def _database_checks(self) -> None:
        if not self.DATABASE_URL:
            self.DATABASE_URL = f"sqlite:///{ROOT / 'instance' / 'portal.sqlite'}"
        if self.DATABASE_URL.startswith(("postgres://", "postgresql://")):
            # psycopg 3 is the driver we ship; accept the common spellings of the URL.
            self.DATABASE_URL = "postgresql+psycopg://" + self.DATABASE_URL.split("://", 1)[1]
        if not self.DATABASE_URL.startswith(("sqlite", "postgresql+psycopg")):
            raise ConfigError("DATABASE_URL must be a sqlite:/// or postgresql:// URL")

    def _host_checks(self) -> None:
        self.SERVER_NAME = self.SERVER_NAME.lower()
        if self.SERVER_NAME and not _HOST.match(self.SERVER_NAME):
            raise ConfigError(f"SERVER_NAME={self.SERVER_NAME!r} must be a host name with an "
                              "optional port, such as payments.example.com (no scheme, no path)")
        if not self.SERVER_NAME and self.production:
            raise ConfigError("SERVER_NAME is required in production (the public host name, "
                              "such as payments.example.com: external URLs are built with it)")
        for host in self.trusted_hosts:
            if not _HOST.match(host.removeprefix(".")):
                raise ConfigError(f"TRUSTED_HOSTS entry {host!r} must be a host name, such as "
                                  "payments.example.com or .example.com")

    @property
    def trusted_hosts(self) -> list[str]:
        """The Host headers answered: SERVER_NAME's host and TRUSTED_HOSTS (empty: any)."""
        listed = [h.strip().lower() for h in self.TRUSTED_HOSTS.split(",") if h.strip()]
        own = [re.sub(r":[0-9]+$", "", self.SERVER_NAME)] if self.SERVER_NAME else []
        return list(dict.fromkeys(own + listed))

    def _no_published_secrets(self) -> None:
        """Production: no secret anyone can read in this repository, no placeholder."""
        for name in SECRET_SETTINGS:
            value = getattr(self, name)
            if value in PUBLISHED_SECRETS:
                raise ConfigError(f"{name} is a published default value (portal/config.py), "
                                  "not a secret: set your own in production")
            squashed = re.sub(r"[^a-z]", "", value.lower())
            if any(marker in squashed for marker in PLACEHOLDER_MARKERS):
                raise ConfigError(f"{name} is still a placeholder (REPLACE_ME/CHANGE_ME of "
                                  ".env.example): set the real value in production")
        if self.JWT_SECRET == self.SECRET_KEY:
            raise ConfigError("JWT_SECRET must differ from SECRET_KEY in production")

    def _auth_service_checks(self) -> None:
        self.AUTH_JWT_PUBLIC_KEY = self.AUTH_JWT_PUBLIC_KEY.replace("\\n", "\n")
        asymmetric = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
        if self.AUTH_JWT_ALGORITHM not in ("HS256", "HS384", "HS512", *asymmetric):
            raise ConfigError(f"AUTH_JWT_ALGORITHM={self.AUTH_JWT_ALGORITHM!r} is not supported")
        if self.AUTH_JWT_PUBLIC_KEY and self.AUTH_JWT_SECRET:
            raise ConfigError("set AUTH_JWT_PUBLIC_KEY or AUTH_JWT_SECRET, not both")
        if self.AUTH_JWT_PUBLIC_KEY:
            if self.AUTH_JWT_ALGORITHM not in asymmetric:
                raise ConfigError("AUTH_JWT_ALGORITHM must be RS*/ES*/PS* with a public key")
            if "BEGIN PUBLIC KEY" not in self.AUTH_JWT_PUBLIC_KEY:
                raise ConfigError("AUTH_JWT_PUBLIC_KEY must be a PEM public key")
        elif self.AUTH_JWT_SECRET and self.AUTH_JWT_ALGORITHM in asymmetric:
            raise ConfigError("AUTH_JWT_ALGORITHM must be HS* with AUTH_JWT_SECRET")

    def _stripe_checks(self) -> None:
        if not self.STRIPE_SECRET_KEY:
            if self.production:
                raise ConfigError("STRIPE_SECRET_KEY is required in production")
            self._use_sandbox()
        self.STRIPE_API_BASE = (self.STRIPE_API_BASE or STRIPE_API_BASE_DEFAULT).rstrip("/")
        self.STRIPE_JS_URL = self.STRIPE_JS_URL or STRIPE_JS_URL_DEFAULT
        self._stripe_key_checks()
        self._stripe_webhook_checks()
        if not self.stripe_test_mode:
            self._live_key_checks()

    def _use_sandbox(self) -> None:
        """Offline: talk to the local Stripe sandbox exactly as we would talk to Stripe."""
        self.STRIPE_SECRET_KEY = SANDBOX_SECRET_KEY
        self.STRIPE_PUBLISHABLE_KEY = self.STRIPE_PUBLISHABLE_KEY or SANDBOX_PUBLISHABLE_KEY
        self.STRIPE_WEBHOOK_SECRET = self.STRIPE_WEBHOOK_SECRET or SANDBOX_WEBHOOK_SECRET
        self.STRIPE_CONNECT_WEBHOOK_SECRET = (self.STRIPE_CONNECT_WEBHOOK_SECRET
                                              or SANDBOX_CONNECT_WEBHOOK_SECRET)
        self.STRIPE_API_BASE = self.STRIPE_API_BASE or SANDBOX_API_BASE
        self.STRIPE_JS_URL = self.STRIPE_JS_URL or self.STRIPE_API_BASE + "/js.stripe.com/v3/"

    def _stripe_key_checks(self) -> None:
        if not self.STRIPE_SECRET_KEY.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
            raise ConfigError("STRIPE_SECRET_KEY must start with sk_test_ or sk_live_")
        if not self.STRIPE_PUBLISHABLE_KEY.startswith(("pk_test_", "pk_live_")):
            raise ConfigError("STRIPE_PUBLISHABLE_KEY must start with pk_test_ or pk_live_")
        if self.STRIPE_PUBLISHABLE_KEY.startswith("pk_test_") != self.stripe_test_mode:
            raise ConfigError("STRIPE_PUBLISHABLE_KEY and STRIPE_SECRET_KEY mix test and live keys")

    def _stripe_webhook_checks(self) -> None:
        if not self.STRIPE_WEBHOOK_SECRET:
            if self.production:
                raise ConfigError("STRIPE_WEBHOOK_SECRET is required in production")
            self.STRIPE_WEBHOOK_SECRET = SANDBOX_WEBHOOK_SECRET
        if not self.STRIPE_CONNECT_WEBHOOK_SECRET and self.production:
            raise ConfigError("STRIPE_CONNECT_WEBHOOK_SECRET is required in production (the "
                              "Connect endpoint's: vendors' account updates)")
        for name in ("STRIPE_WEBHOOK_SECRET", "STRIPE_CONNECT_WEBHOOK_SECRET"):
            if getattr(self, name) and not getattr(self, name).startswith("whsec_"):
                raise ConfigError(f"{name} must start with whsec_")

    def _live_key_checks(self) -> None:
        """A live key never reaches a sandbox, and only a production deployment may hold one."""
        if self.STRIPE_API_BASE != STRIPE_API_BASE_DEFAULT:
            raise ConfigError(f"STRIPE_API_BASE must be {STRIPE_API_BASE_DEFAULT} with a live key")
        if self.STRIPE_JS_URL != STRIPE_JS_URL_DEFAULT:
            raise ConfigError(f"STRIPE_JS_URL must be {STRIPE_JS_URL_DEFAULT} with a live key")
        if not self.production:
            raise ConfigError("STRIPE_SECRET_KEY is a live key: set PORTAL_ENV=production to "
                              "use it")

    def flask_settings(self) -> dict:
        """The settings as Flask's config mapping (upper-case keys)."""
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        settings.update(
            SQLALCHEMY_DATABASE_URI=self.DATABASE_URL,
            # No pre-ping: it costs a round trip at every connection checkout (several per
            # request). A connection broken by a database restart fails one request, and
            # SQLAlchemy then drops the whole pool; recycling bounds connection age.
            # hide_parameters: a database error (logged, or kept as an event's last error)
            # shows its SQL without the values, which can be customers' e-mails and
            # addresses.
            SQLALCHEMY_ENGINE_OPTIONS={"pool_recycle": 1800, "hide_parameters": True},
            # External URLs (url_for(..., _external=True)) name SERVER_NAME, never the request's
            # Host header. Hosts not trusted are refused by the app (portal/__init__.py), not
            # by Flask's TRUSTED_HOSTS: see there why.
            SERVER_NAME=self.SERVER_NAME or None,
            TRUSTED_HOSTS=None,
            # __Host-: the browser keeps it only if Secure, Path=/ and without Domain (Flask's
            # defaults: no SESSION_COOKIE_DOMAIN, the path of APPLICATION_ROOT "/"), so a
            # sibling subdomain cannot set or shadow it.
            SESSION_COOKIE_NAME="__Host-session" if self.production else "session",
            SESSION_COOKIE_HTTPONLY=True,
            PERMANENT_SESSION_LIFETIME=timedelta(hours=self.SESSION_HOURS),
            SESSION_COOKIE_SAMESITE="Lax",
            SESSION_COOKIE_SECURE=self.production,
            REMEMBER_COOKIE_SECURE=self.production,
            REMEMBER_COOKIE_HTTPONLY=True,
            RATELIMIT_STORAGE_URI=self.REDIS_URL or "memory://",
            RATELIMIT_HEADERS_ENABLED=True,
            # Redis down must not take logins down: count in memory until it is back.
            RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
            RATELIMIT_SWALLOW_ERRORS=True,
            WTF_CSRF_TIME_LIMIT=None,
            TESTING=self.ENV == "test",
        )
        settings.update(self.extra)
        return settings
