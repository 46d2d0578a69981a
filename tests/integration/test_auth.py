"""Login, logout, redirects after login, CSRF and rate limits."""

import pytest

from portal import create_app
from portal.config import Config
from tests.conftest import portal_env
from tests.helpers import csrf_token, login, make_user


@pytest.fixture
def customer():
    return make_user("carol@example.test")


def test_wrong_password_re_renders_with_a_message(client, customer):
    r = login(client, customer.email, "wrong-password")
    assert r.status_code == 400 and "Wrong e-mail or password." in r.text
    r = login(client, "nobody@example.test", "whatever-pass")
    assert r.status_code == 400 and "Wrong e-mail or password." in r.text


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/payments", "/payments"), ("//evil.example/x", "/orders"),
     ("https://evil.example/", "/orders"), ("/\\evil.example", "/orders")],
)
def test_next_only_goes_to_local_paths(client, customer, target, expected):
    r = client.post(f"/login?next={target}", data={"email": customer.email,
                                                   "password": "correct-horse-battery"})
    assert r.status_code == 302 and r.location == expected


def test_login_rotates_the_session_and_logout_needs_csrf(pg_url, sandbox, customer):
    app = create_app(Config.from_env(portal_env(pg_url, sandbox.url)))
    c = app.test_client()
    page = c.get("/login")
    anon_token = csrf_token(page.text)
    r = c.post("/login", data={"email": customer.email, "password": "correct-horse-battery",
                               "csrf_token": anon_token})
    assert r.status_code == 302
    orders = c.get("/orders")
    assert csrf_token(orders.text) != anon_token  # a fresh session after login
    assert c.post("/logout").status_code == 400  # no CSRF token
    out = c.post("/logout", data={"csrf_token": csrf_token(orders.text)})
    assert out.status_code == 302
    assert c.get("/orders").status_code == 302


def test_login_is_rate_limited(client, customer):
    codes = [login(client, customer.email, "bad-password").status_code for _ in range(11)]
    assert codes[:10] == [400] * 10 and codes[10] == 429
    r = login(client, customer.email)  # even the right password waits
    assert r.status_code == 429 and "Too many attempts" in r.text


def test_security_headers(client):
    r = client.get("/login")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self' http://127.0.0.1:" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
