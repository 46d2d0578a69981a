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


@pytest.mark.parametrize(("role", "home", "heading"), [
    ("customer", "/orders", "Your orders"), ("vendor", "/vendor", "Vendor dashboard"),
    ("admin", "/admin/payments", "Payments"), ("service", "/api/payments/docs", None)])
def test_each_role_lands_on_its_own_home(client, role, home, heading):
    """After signing in, on "/" and on the login page again: the role's home, never a
    placeholder."""
    user = make_user(f"{role}-home@example.test", role)
    r = login(client, user.email)
    assert r.status_code == 302 and r.location == home
    assert client.get("/").location == home
    assert client.get("/login").location == home
    page = client.get(home)
    assert page.status_code == 200
    if heading:
        assert f"<h1>{heading}</h1>" in page.text and "on their way" not in page.text


@pytest.mark.parametrize("role", ["vendor", "admin"])
def test_the_orders_page_is_for_customers(client, role):
    login(client, make_user(f"{role}-orders@example.test", role).email)
    assert client.get("/orders").status_code == 403


def test_home_needs_a_sign_in(client):
    r = client.get("/")
    assert r.status_code == 302 and r.location.startswith("/login")


def test_login_rotates_the_session_and_logout_needs_csrf(pg_url, sandbox, customer):
    app = create_app(Config.from_env(portal_env(pg_url, sandbox.url)))
    c = app.test_client()
    page = c.get("/login")
    with c.session_transaction() as sess:
        anon_secret = sess["csrf_token"]
    r = c.post("/login", data={"email": customer.email, "password": "correct-horse-battery",
                               "csrf_token": csrf_token(page.text)})
    assert r.status_code == 302
    orders = c.get("/orders")
    with c.session_transaction() as sess:
        assert sess["csrf_token"] != anon_secret  # nothing of the anonymous session survives
    assert c.post("/logout").status_code == 400  # no CSRF token
    out = c.post("/logout", data={"csrf_token": csrf_token(orders.text)})
    assert out.status_code == 302
    assert c.get("/orders").status_code == 302


def test_login_is_rate_limited_per_account(client, customer):
    codes = [login(client, customer.email, "bad-password").status_code for _ in range(6)]
    assert codes[:5] == [400] * 5 and codes[5] == 429
    r = login(client, customer.email)  # even the right password waits, from this address
    assert r.status_code == 429 and "Too many attempts for this account" in r.text
    assert int(r.headers["Retry-After"]) > 0
    # Someone guessing this account's password does not lock others out.
    other = make_user("dave@example.test")
    assert login(client, other.email).status_code == 302


def test_login_is_rate_limited_per_address(client):
    codes = [login(client, f"user{n}@example.test", "whatever-pw").status_code
             for n in range(31)]
    assert codes[:30] == [400] * 30 and codes[30] == 429


def test_logout_ends_the_users_other_sessions(app, customer):
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, customer.email)
    login(phone, customer.email)
    assert phone.get("/orders").status_code == 200
    assert laptop.post("/logout").status_code == 302
    r = phone.get("/orders")
    assert r.status_code == 302 and "/login" in r.location


def test_security_headers(client):
    r = client.get("/login")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self' http://127.0.0.1:" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
