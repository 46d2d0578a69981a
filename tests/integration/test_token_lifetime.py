"""Issue 15, finding 10: a token's lifetime is enforced when it is verified, not only when the
portal issues it. A correctly signed token issued for longer than its issuer's maximum
(JWT_TTL_SECONDS for the portal's own, AUTH_JWT_MAX_TTL_SECONDS for the auth service's), without
"iat", or issued in the future (beyond a few seconds of clock skew) is a 401."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from portal import create_app
from portal.config import Config
from tests.conftest import portal_env
from tests.helpers import bearer, make_user
from tests.integration.test_api_auth import (
    HISTORY,
    assert_401,
    auth_service_claims,
    portal_claims,
    with_token,
)

AUTH_SECRET = "auth-service-shared-secret-of-32-chars-or-more"


@pytest.fixture
def customer():
    return make_user("lifetime@example.test")


def portal_token(app, user, lifetime: timedelta, issued: timedelta = timedelta(0), **over):
    """A token signed with the portal's own key, issued at now + ``issued``."""
    iat = datetime.now(UTC) + issued
    claims = portal_claims(app, user, iat=iat, exp=iat + lifetime, **over)
    return jwt.encode(claims, app.config["JWT_SECRET"], app.config["JWT_ALGORITHM"])


def status(client, token: str) -> int:
    return client.get(HISTORY, headers=with_token(token)).status_code


# --- the portal's own tokens -----------------------------------------------------------------

def test_portal_token_valid_for_ten_years_is_401(app, client, customer):
    token = portal_token(app, customer, timedelta(days=3650))
    assert_401(client.get(HISTORY, headers=with_token(token)))


@pytest.mark.parametrize(
    ("lifetime", "issued"),
    [(timedelta(hours=1, minutes=1), timedelta(0)),  # a minute over JWT_TTL_SECONDS
     (timedelta(hours=2), -timedelta(minutes=90)),  # issued long ago, still 30 min to go
     (timedelta(minutes=10), timedelta(minutes=1))],  # issued a minute in the future
    ids=["over the lifetime", "old and over the lifetime", "issued in the future"],
)
def test_portal_token_outside_its_lifetime_is_401(app, client, customer, lifetime, issued):
    assert_401(client.get(HISTORY, headers=with_token(
        portal_token(app, customer, lifetime, issued))))


def test_portal_token_without_iat_is_401(app, client, customer):
    claims = portal_claims(app, customer, iat=None)
    assert "iat" not in claims
    assert_401(client.get(HISTORY, headers=with_token(
        jwt.encode(claims, app.config["JWT_SECRET"], "HS256"))))


@pytest.mark.parametrize("iat", ["yesterday", True, [0]], ids=["text", "boolean", "list"])
def test_portal_token_with_an_iat_that_is_not_a_time_is_401(app, client, customer, iat):
    claims = {**portal_claims(app, customer), "iat": iat}
    assert_401(client.get(HISTORY, headers=with_token(
        jwt.encode(claims, app.config["JWT_SECRET"], "HS256"))))


def test_portal_tokens_within_the_lifetime_and_the_clock_skew_are_accepted(app, client,
                                                                          customer):
    assert status(client, bearer(customer)["Authorization"].split()[1]) == 200  # as issued
    assert status(client, portal_token(app, customer, timedelta(hours=1))) == 200
    assert status(client, portal_token(app, customer, timedelta(hours=1, seconds=5))) == 200
    # Another instance's clock a few seconds ahead of ours.
    assert status(client, portal_token(app, customer, timedelta(hours=1),
                                       issued=timedelta(seconds=5))) == 200


def test_portal_token_lifetime_follows_jwt_ttl_seconds(pg_url, sandbox, customer):
    app = create_app(Config.from_env(portal_env(pg_url, sandbox.url, JWT_TTL_SECONDS="600")))
    client = app.test_client()
    assert status(client, portal_token(app, customer, timedelta(minutes=10))) == 200
    assert_401(client.get(HISTORY, headers=with_token(
        portal_token(app, customer, timedelta(minutes=30)))))


# --- tokens of the ShopSphere auth service ---------------------------------------------------

@pytest.fixture(scope="module")
def auth_apps(pg_url, sandbox):
    """Portals accepting the auth service's HS256 tokens, by AUTH_JWT_MAX_TTL_SECONDS."""
    made = {}

    def app_for(max_ttl: int | None):
        if max_ttl not in made:
            more = {} if max_ttl is None else {"AUTH_JWT_MAX_TTL_SECONDS": str(max_ttl)}
            env = portal_env(pg_url, sandbox.url, AUTH_JWT_SECRET=AUTH_SECRET,
                             AUTH_JWT_ISSUER="shopsphere-auth", **more)
            made[max_ttl] = create_app(Config.from_env(env))
        return made[max_ttl]

    return app_for


def auth_token(user, lifetime: timedelta, issued: timedelta = timedelta(0), **over) -> str:
    iat = datetime.now(UTC) + issued
    return jwt.encode(auth_service_claims(user.email, iat=iat, exp=iat + lifetime, **over),
                      AUTH_SECRET, "HS256")


@pytest.mark.parametrize(
    ("lifetime", "issued"),
    [(timedelta(days=3650), timedelta(0)), (timedelta(hours=2), timedelta(0)),
     (timedelta(minutes=10), timedelta(minutes=1))],
    ids=["ten years", "two hours", "issued in the future"],
)
def test_auth_service_token_outside_the_default_maximum_is_401(auth_apps, customer, lifetime,
                                                                issued):
    client = auth_apps(None).test_client()
    assert status(client, auth_token(customer, timedelta(hours=1))) == 200
    assert_401(client.get(HISTORY, headers=with_token(auth_token(customer, lifetime, issued))))


def test_auth_service_token_without_iat_is_401(auth_apps, customer):
    token = jwt.encode(auth_service_claims(customer.email, iat=None), AUTH_SECRET, "HS256")
    assert_401(auth_apps(None).test_client().get(HISTORY, headers=with_token(token)))


def test_auth_service_maximum_follows_auth_jwt_max_ttl_seconds(auth_apps, customer):
    client = auth_apps(4 * 3600).test_client()
    assert status(client, auth_token(customer, timedelta(hours=4))) == 200
    assert_401(client.get(HISTORY, headers=with_token(
        auth_token(customer, timedelta(hours=5)))))
    assert_401(client.get(HISTORY, headers=with_token(
        auth_token(customer, timedelta(days=3650)))))


def test_auth_service_maximum_is_not_the_portal_one(auth_apps, app, customer):
    """A portal token issued for 4 h stays refused where the auth service's may live 4 h."""
    client = auth_apps(4 * 3600).test_client()
    assert_401(client.get(HISTORY, headers=with_token(
        portal_token(auth_apps(4 * 3600), customer, timedelta(hours=4)))))
