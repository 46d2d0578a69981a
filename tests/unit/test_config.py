"""Configuration: safe offline defaults, and one clear line for every bad value."""

import re
import subprocess
import sys

import pytest
from flask import url_for

from portal import create_app
from portal.config import ROOT, Config, ConfigError

LIVE = {"STRIPE_SECRET_KEY": "sk_live_x", "STRIPE_PUBLISHABLE_KEY": "pk_live_x"}
# A production configuration with secrets of its own (Stripe test keys).
PROD = {"PORTAL_ENV": "production", "SECRET_KEY": "s" * 40, "JWT_SECRET": "j" * 40,
        "STRIPE_SECRET_KEY": "sk_test_own", "STRIPE_PUBLISHABLE_KEY": "pk_test_own",
        "STRIPE_WEBHOOK_SECRET": "whsec_own", "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_own_c",
        "SERVER_NAME": "payments.example.com", "LOG_LEVEL": "WARNING"}
DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-deploy"  # printed in portal/config.py


def raises_naming(message: str):
    return pytest.raises(ConfigError, match=re.escape(message))


def test_defaults_talk_to_the_sandbox_on_sqlite():
    c = Config.from_env({})
    assert c.PORT == 3006 and c.PLATFORM_FEE_PERCENT == 10 and c.REFUND_AFTER_PAYOUT == "carry"
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
        ({"REFUND_AFTER_PAYOUT": "forgive"},
         "REFUND_AFTER_PAYOUT='forgive' must be carry or reverse"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Config.from_env(env)


def test_production_with_live_keys_and_https_is_accepted():
    c = Config.from_env({**LIVE, "PORTAL_ENV": "production", "SECRET_KEY": "s" * 40,
                         "JWT_SECRET": "j" * 40, "STRIPE_WEBHOOK_SECRET": "whsec_live",
                         "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_live_connect",
                         "SERVER_NAME": "payments.example.com"})
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


# --- issue 15, finding 9: published defaults and placeholders are not secrets in production ---

@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECRET_KEY": DEV_SECRET_KEY}, "SECRET_KEY is a published default value"),
        ({"JWT_SECRET": DEV_SECRET_KEY}, "JWT_SECRET is a published default value"),
        ({"STRIPE_WEBHOOK_SECRET": "whsec_sandbox"},
         "STRIPE_WEBHOOK_SECRET is a published default value"),
        ({"STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_sandbox_connect"},
         "STRIPE_CONNECT_WEBHOOK_SECRET is a published default value"),
        ({"STRIPE_SECRET_KEY": "sk_test_sandbox"}, "STRIPE_SECRET_KEY is a published default"),
        ({"STRIPE_PUBLISHABLE_KEY": "pk_test_sandbox"},
         "STRIPE_PUBLISHABLE_KEY is a published default"),
        ({"STRIPE_WEBHOOK_SECRET": "whsec_REPLACE_ME"},
         "STRIPE_WEBHOOK_SECRET is still a placeholder"),
        ({"STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_REPLACE_ME"},
         "STRIPE_CONNECT_WEBHOOK_SECRET is still a placeholder"),
        ({"STRIPE_SECRET_KEY": "sk_test_REPLACE_ME"}, "STRIPE_SECRET_KEY is still a placeholder"),
        ({"STRIPE_PUBLISHABLE_KEY": "pk_test_REPLACE_ME"},
         "STRIPE_PUBLISHABLE_KEY is still a placeholder"),
        ({"SECRET_KEY": "CHANGE_ME-to-something-at-least-32-chars"},
         "SECRET_KEY is still a placeholder"),
        ({"JWT_SECRET": "please-change-me-before-going-live-0123"},
         "JWT_SECRET is still a placeholder"),
        ({"AUTH_JWT_SECRET": "REPLACE_ME"}, "AUTH_JWT_SECRET is still a placeholder"),
        ({"JWT_SECRET": "s" * 40}, "JWT_SECRET must differ from SECRET_KEY in production"),
    ],
)
def test_production_refuses_published_defaults_and_placeholders_as_secrets(env, message):
    with raises_naming(message):
        Config.from_env({**PROD, **env})


def test_production_refuses_env_example_as_shipped():
    """.env.example with only the empty values filled in still holds its placeholders."""
    shipped = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert shipped["PORTAL_ENV"] == "production"
    filled = {k: v or PROD.get(k, "") for k, v in shipped.items()}
    with raises_naming("STRIPE_SECRET_KEY is still a placeholder"):
        Config.from_env(filled)


def test_production_start_up_stops_on_the_sandbox_webhook_secret():
    env = {**PROD, "STRIPE_WEBHOOK_SECRET": "whsec_sandbox", "PATH": "",
           "DATABASE_URL": "sqlite:////nonexistent/portal.sqlite"}
    proc = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, capture_output=True,
                          text=True, env=env)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "configuration error: STRIPE_WEBHOOK_SECRET is a published default value "
        "(portal/config.py), not a secret: set your own in production"
    ]


def test_development_and_test_keep_the_published_defaults():
    for env in ("development", "test"):
        c = Config.from_env({"PORTAL_ENV": env})
        assert c.SECRET_KEY == c.JWT_SECRET == DEV_SECRET_KEY
        assert (c.STRIPE_SECRET_KEY, c.STRIPE_WEBHOOK_SECRET, c.STRIPE_CONNECT_WEBHOOK_SECRET) \
            == ("sk_test_sandbox", "whsec_sandbox", "whsec_sandbox_connect")
        assert not c.SERVER_NAME


# --- finding 10: the auth service's longest token lifetime -----------------------------------

def test_auth_service_token_lifetime_defaults_to_an_hour():
    assert Config.from_env({}).AUTH_JWT_MAX_TTL_SECONDS == 3600
    assert Config.from_env({"AUTH_JWT_MAX_TTL_SECONDS": "86400"}).AUTH_JWT_MAX_TTL_SECONDS == 86400


@pytest.mark.parametrize("value", ["59", "86401", "0", "-5"])
def test_auth_service_token_lifetime_out_of_range_names_the_variable(value):
    with raises_naming(f"AUTH_JWT_MAX_TTL_SECONDS={value} must be between 60 and 86400"):
        Config.from_env({"AUTH_JWT_MAX_TTL_SECONDS": value})


# --- finding 11: host, HSTS, session cookie --------------------------------------------------

@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERVER_NAME": ""}, "SERVER_NAME is required in production"),
        ({"SERVER_NAME": "https://payments.example.com"},
         "SERVER_NAME='https://payments.example.com' must be a host name"),
        ({"SERVER_NAME": "payments.example.com/portal"}, "SERVER_NAME="),
        ({"TRUSTED_HOSTS": "internal.example, bad host"},
         "TRUSTED_HOSTS entry 'bad host' must be a host name"),
    ],
)
def test_production_host_settings_name_the_variable(env, message):
    with raises_naming(message):
        Config.from_env({**PROD, **env})


@pytest.fixture
def production_app(tmp_path):
    env = {**PROD, "DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite'}",
           "TRUSTED_HOSTS": "portal.internal.example", "TRUSTED_PROXY_HOPS": "1"}
    return create_app(Config.from_env(env))


@pytest.mark.parametrize("path", ["/login", "/api/payments/openapi.json"])
def test_production_answers_400_to_another_host(production_app, path):
    client = production_app.test_client()
    assert client.get(path, base_url="https://payments.example.com").status_code == 200
    assert client.get(path, base_url="https://portal.internal.example").status_code == 200
    assert client.get(path, base_url="https://evil.example").status_code == 400
    forwarded = client.get(path, base_url="https://payments.example.com",
                           headers={"X-Forwarded-Host": "evil.example"})
    assert forwarded.status_code == 400


def test_production_health_check_answers_any_host(production_app):
    r = production_app.test_client().get("/healthz", base_url="http://127.0.0.1:3006")
    assert r.status_code == 200 and r.json == {"ok": True}


def test_production_external_urls_name_server_name_not_the_host_header(production_app):
    with production_app.test_request_context(
            "/payouts/connect", base_url="https://portal.internal.example"):
        assert url_for("payouts.connect_return", _external=True).startswith(
            "https://payments.example.com/")
        assert url_for("cards.added", _external=True).startswith("https://payments.example.com/")


def test_production_sends_hsts_with_subdomains_and_a_host_prefixed_session_cookie(
        production_app):
    r = production_app.test_client().get("/login", base_url="https://payments.example.com")
    assert r.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    session = [c for c in r.headers.getlist("Set-Cookie") if "session=" in c]
    assert len(session) == 1 and session[0].startswith("__Host-session=")
    attributes = [a.strip().lower() for a in session[0].split(";")[1:]]
    assert "secure" in attributes and "path=/" in attributes
    assert not any(a.startswith("domain=") for a in attributes)


def test_development_keeps_the_plain_session_cookie_and_any_host(tmp_path):
    app = create_app(Config.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite'}",
                                      "LOG_LEVEL": "WARNING"}))
    r = app.test_client().get("/login", base_url="http://127.0.0.1:3006")
    assert r.status_code == 200 and "Strict-Transport-Security" not in r.headers
    assert any(c.startswith("session=") for c in r.headers.getlist("Set-Cookie"))
