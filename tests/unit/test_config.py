"""Configuration: safe offline defaults, and one clear line for every bad value."""

import subprocess
import sys

import pytest

from portal.config import ROOT, Config, ConfigError

LIVE = {"STRIPE_SECRET_KEY": "sk_live_x", "STRIPE_PUBLISHABLE_KEY": "pk_live_x"}


def test_defaults_talk_to_the_sandbox_on_sqlite():
    c = Config.from_env({})
    assert c.PORT == 3006 and c.PLATFORM_FEE_PERCENT == 10
    assert c.DATABASE_URL.startswith("sqlite:///") and "instance" in c.DATABASE_URL
    assert c.STRIPE_API_BASE == "http://127.0.0.1:8420"
    assert c.STRIPE_JS_URL == "http://127.0.0.1:8420/js.stripe.com/v3/"
    assert c.stripe_test_mode and not c.REDIS_URL
    assert c.HTMX_URL == "/static/vendor/htmx.min.js"


def test_postgres_urls_use_psycopg3():
    c = Config.from_env({"DATABASE_URL": "postgres://u@h/db"})
    assert c.DATABASE_URL == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PLATFORM_FEE_PERCENT": "101"}, "PLATFORM_FEE_PERCENT=101 must be between 0 and 100"),
        ({"PLATFORM_FEE_PERCENT": "ten"}, "PLATFORM_FEE_PERCENT='ten' is not a whole number"),
        ({"PORT": "0"}, "PORT=0"),
        ({**LIVE, "STRIPE_API_BASE": "http://127.0.0.1:8420", "PORTAL_ENV": "production",
          "SECRET_KEY": "x" * 32, "STRIPE_WEBHOOK_SECRET": "whsec_x", "JWT_SECRET": "y" * 32,
          "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_c"},
         "STRIPE_API_BASE must be https://api.stripe.com with a live key"),
        ({**LIVE, "STRIPE_JS_URL": "https://evil.example/v3/", "PORTAL_ENV": "production",
          "SECRET_KEY": "x" * 32, "STRIPE_WEBHOOK_SECRET": "whsec_x", "JWT_SECRET": "y" * 32,
          "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_c"},
         "STRIPE_JS_URL must be https://js.stripe.com/v3/ with a live key"),
        ({"PORTAL_ENV": "production", "SECRET_KEY": "x" * 40, "JWT_SECRET": "short"},
         "JWT_SECRET must be at least 32"),
        ({"JWT_ALGORITHM": "none"}, "JWT_ALGORITHM='none' must be HS256"),
        ({"TRUSTED_PROXY_HOPS": "9"}, "TRUSTED_PROXY_HOPS=9 must be between 0 and 5"),
        ({**LIVE}, "live key: set PORTAL_ENV=production"),
        ({"PORTAL_ENV": "production"}, "SECRET_KEY is required in production"),
        ({"PORTAL_ENV": "production", "SECRET_KEY": "x" * 40}, "JWT_SECRET is required"),
        ({"STRIPE_SECRET_KEY": "sk_test_a", "STRIPE_PUBLISHABLE_KEY": "pk_live_b"},
         "mix test and live"),
        ({"STRIPE_SECRET_KEY": "nope"}, "STRIPE_SECRET_KEY must start with"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Config.from_env(env)


def test_production_with_live_keys_and_https_is_accepted():
    c = Config.from_env({**LIVE, "PORTAL_ENV": "production", "SECRET_KEY": "s" * 40,
                         "JWT_SECRET": "j" * 40, "STRIPE_WEBHOOK_SECRET": "whsec_live",
                         "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_live_connect"})
    assert not c.stripe_test_mode
    assert c.STRIPE_API_BASE == "https://api.stripe.com"
    assert c.HTMX_URL.startswith("https://") and c.HTMX_SRI.startswith("sha384-")
    assert c.flask_settings()["SESSION_COOKIE_SECURE"] is True


def test_start_up_stops_with_one_line_naming_the_variable():
    proc = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, capture_output=True, text=True,
        env={"PLATFORM_FEE_PERCENT": "150", "PATH": ""},
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "configuration error: PLATFORM_FEE_PERCENT=150 must be between 0 and 100"
    ]
