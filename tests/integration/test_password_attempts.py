"""Password guessing (issue 15, findings 2, 3 and 7): one budget per account whichever way
the password comes, which an attacker cannot turn into a lockout of the owner's browser, and
keys and log lines a hostile e-mail cannot shape."""

from __future__ import annotations

import logging

import pytest

from portal.extensions import limiter
from tests.helpers import PASSWORD, make_user


@pytest.fixture
def owner():
    return make_user("owner@example.test")


def web(client, email, password, address="203.0.113.1"):
    return client.post("/login", data={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def api(client, email, password, address="203.0.113.1"):
    return client.post("/api/auth/token", json={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def test_the_token_endpoint_spends_the_same_budget_as_the_login_page(client, owner):
    assert [web(client, owner.email, "wrong-one").status_code for _ in range(5)] == [400] * 5
    refused = api(client, owner.email, PASSWORD)  # the right password, the API way
    assert refused.status_code == 429 and "too many attempts" in refused.json["error"]["message"]
    assert "token" not in refused.json
    # And the other way round, from another address.
    assert [api(client, owner.email, "wrong", "198.51.100.7").status_code
            for _ in range(5)] == [401] * 5
    assert web(client, owner.email, PASSWORD, "198.51.100.7").status_code == 429


def test_guessing_from_many_addresses_meets_the_accounts_own_budget(client, owner):
    for n in range(20):  # 4 addresses, 5 guesses each: each stays within its own share
        assert api(client, owner.email, "guess", f"192.0.2.{n // 5}").status_code == 401
    assert api(client, owner.email, PASSWORD, "192.0.2.99").status_code == 429
    assert web(client, owner.email, PASSWORD, "192.0.2.99").status_code == 429


def test_an_attacker_cannot_lock_the_owner_out_of_their_own_browser(app, client, owner):
    browser = app.test_client()
    assert web(browser, owner.email, PASSWORD, "198.51.100.1").status_code == 302  # known now
    browser.post("/logout")
    for n in range(25):  # someone else, everywhere, exhausting every budget of the account
        api(client, owner.email, "guess", f"192.0.2.{n}")
    assert web(client, owner.email, PASSWORD, "192.0.2.200").status_code == 429  # a stranger
    assert web(browser, owner.email, PASSWORD, "198.51.100.1").status_code == 302  # the owner
    # One address guessing locks out only itself.
    for _ in range(5):
        web(client, owner.email, "guess", "192.0.2.250")
    assert web(client, owner.email, PASSWORD, "192.0.2.250").status_code == 429


def test_keys_are_a_fixed_size_hash_and_log_lines_escape_what_users_type(client, caplog):
    from portal.auth import throttle

    email = "Victim@Example.test\nCRITICAL approved refund of $999999"
    assert throttle.account_key(email) == throttle.account_key(email.upper())
    assert len(throttle.account_key("x" * 400_000)) == 32
    api(client, "someone@example.test", "guess")
    keys = list(getattr(limiter.storage, "storage", {}))
    assert keys and not any("someone" in k for k in keys)
    with caplog.at_level(logging.WARNING):
        logging.getLogger("portal.test").warning("login failed for %s", "a@b\nCRITICAL forged")
    line = caplog.records[-1].getMessage()
    assert line == "login failed for a@b\\nCRITICAL forged" and "\n" not in line



def test_the_wait_named_is_that_of_the_longest_spent_budget(client, owner):
    """20 failures in a day from one address: the answer waits for the day's budget, not for
    the 15-minute window that happens to be spent too."""
    from unittest import mock

    now = [1_000_000.0]
    with mock.patch("time.time", lambda: now[0]):
        for window in range(4):  # four 15-minute windows of 5 guesses: the day's 20 spent
            now[0] += 16 * 60 if window else 0
            assert [web(client, owner.email, "guess").status_code
                    for _ in range(5)] == [400] * 5
        refused = web(client, owner.email, PASSWORD)  # both budgets spent now
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 20 * 3600
