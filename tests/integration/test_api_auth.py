"""API authentication (issue 3): POST /api/auth/token, Bearer JWTs of the portal and of the
ShopSphere auth service, and what is refused with 401 + WWW-Authenticate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta

import jsonschema_rs
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from portal import create_app
from portal.api.schemas import ErrorOut, TokenOut
from portal.auth.models import User
from portal.config import Config
from portal.extensions import db
from tests.conftest import portal_env
from tests.helpers import PASSWORD, bearer, login, make_user

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
HISTORY = "/api/payments/history"
AUTH_ISSUER = "shopsphere-auth"


# --- helpers ---------------------------------------------------------------------------------

def get_token(client, body):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/api/auth/token", data=data, headers={"Content-Type": "application/json"})


def with_token(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_401(r) -> None:
    assert r.status_code == 401, r.json
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json == {"success": False, "error": {
        "code": "unauthorized", "message": "a valid Bearer token is required"}}


def conforms(spec: dict, path: str, method: str, r) -> None:
    """The response's status is documented for the operation and its body fits the schema."""
    responses = spec["paths"][path][method]["responses"]
    assert str(r.status_code) in responses, r.status_code
    schema = responses[str(r.status_code)]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**schema, "components": spec["components"]})
    assert [e.message for e in validator.iter_errors(r.json)] == []


def portal_claims(app, user, **over) -> dict:
    """The claims of a token `users token` / POST /api/auth/token would issue."""
    now = datetime.now(UTC)
    claims = {"sub": str(user.id), "email": user.email, "role": user.role, "iat": now,
              "exp": now + timedelta(minutes=10), "iss": app.config["JWT_ISSUER"],
              "aud": app.config["JWT_AUDIENCE"]}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def auth_service_claims(user_email: str, **over) -> dict:
    """The claims of a token of the ShopSphere auth service (it names users by e-mail)."""
    now = datetime.now(UTC)
    claims = {"sub": "507f1f77bcf86cd799439012", "email": user_email, "iss": AUTH_ISSUER,
              "iat": now, "exp": now + timedelta(minutes=10)}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def hs256_by_hand(claims: dict, key: bytes) -> str:
    """An HS256 JWT signed with any bytes (PyJWT refuses a PEM key as an HMAC secret)."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims, default=lambda d: int(d.timestamp())).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spec(app):
    return app.test_client().get("/api/payments/openapi.json").json


@pytest.fixture
def customer():
    return make_user("tokens@example.test")


@pytest.fixture(scope="module")
def auth_service_key():
    return rsa_key()


@pytest.fixture(scope="module")
def auth_service_app(pg_url, sandbox, auth_service_key):
    """A portal configured to accept the ShopSphere auth service's RS256 tokens."""
    env = portal_env(pg_url, sandbox.url, AUTH_JWT_PUBLIC_KEY=public_pem(auth_service_key),
                     AUTH_JWT_ALGORITHM="RS256", AUTH_JWT_ISSUER=AUTH_ISSUER)
    return create_app(Config.from_env(env, extra={"WTF_CSRF_ENABLED": False}))


@pytest.fixture
def auth_client(auth_service_app):
    return auth_service_app.test_client()


# --- POST /api/auth/token --------------------------------------------------------------------

def test_token_answers_the_documented_shape_and_opens_the_api(client, spec, customer):
    before = datetime.now(UTC).replace(microsecond=0)
    r = get_token(client, {"email": customer.email, "password": PASSWORD})
    assert r.status_code == 200, r.json
    conforms(spec, "/api/auth/token", "post", r)
    TokenOut.model_validate(r.json)
    assert set(r.json) == {"success", "token", "expiresAt"} and r.json["success"] is True
    assert ISO_Z.match(r.json["expiresAt"])
    expires = datetime.strptime(r.json["expiresAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before < expires <= before + timedelta(hours=1, seconds=1)
    claims = jwt.decode(r.json["token"], options={"verify_signature": False})
    assert claims["sub"] == str(customer.id) and claims["exp"] == int(expires.timestamp())
    history = client.get(HISTORY, headers=with_token(r.json["token"]))
    assert history.status_code == 200 and history.json["success"] is True


def test_token_email_is_case_insensitive(client, customer):
    r = get_token(client, {"email": "  Tokens@Example.TEST", "password": PASSWORD})
    assert r.status_code == 200, r.json


@pytest.mark.parametrize("email", ["tokens@example.test", "nobody@example.test"])
def test_wrong_password_or_unknown_email_is_the_same_401(client, spec, customer, email):
    r = get_token(client, {"email": email, "password": "not-the-password"})
    assert r.status_code == 401
    conforms(spec, "/api/auth/token", "post", r)
    assert r.json == {"success": False, "error": {"code": "invalid_credentials",
                                                  "message": "wrong e-mail or password"}}


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "email"), ({"email": "tokens@example.test"}, "password"),
     ({"password": PASSWORD}, "email"),
     ({"email": 42, "password": PASSWORD}, "email"),
     ({"email": "tokens@example.test", "password": ""}, "password"),
     ({"email": "tokens@example.test", "password": PASSWORD, "role": "admin"}, "role")],
)
def test_malformed_token_request_is_400_naming_the_field(client, spec, customer, body, field):
    r = get_token(client, body)
    assert r.status_code == 400, r.json
    conforms(spec, "/api/auth/token", "post", r)
    ErrorOut.model_validate(r.json)
    assert r.json["error"]["code"] == "validation_error"
    assert field in r.json["error"]["fields"], r.json


@pytest.mark.parametrize(("raw", "code"), [("not json", "invalid_json"),
                                           ('["a", "b"]', "invalid_body")])
def test_token_request_that_is_not_a_json_object_is_400(client, customer, raw, code):
    r = get_token(client, raw)
    assert r.status_code == 400 and r.json["error"]["code"] == code


def test_token_endpoint_is_rate_limited(client, spec, customer):
    """The account's password budget (auth.throttle): 5 guesses from one address."""
    codes = [get_token(client, {"email": customer.email, "password": "guess-number-x"})
             .status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    r = get_token(client, {"email": customer.email, "password": PASSWORD})
    assert r.status_code == 429  # even the right password waits
    conforms(spec, "/api/auth/token", "post", r)
    assert r.json["success"] is False and "Retry-After" in r.headers


# --- refused tokens --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "how",
    ["another secret", "expired", "alg none", "no exp", "another issuer", "another audience",
     "no audience", "sub is not a user id", "garbage", "empty"],
)
def test_bad_portal_token_is_401(app, client, customer, how):
    secret = app.config["JWT_SECRET"]
    tokens = {
        "another secret": lambda: jwt.encode(portal_claims(app, customer),
                                             "another-secret-of-32-characters-x", "HS256"),
        "expired": lambda: jwt.encode(portal_claims(
            app, customer, exp=datetime.now(UTC) - timedelta(seconds=5)), secret, "HS256"),
        "alg none": lambda: jwt.encode(portal_claims(app, customer), None, "none"),
        "no exp": lambda: jwt.encode({k: v for k, v in portal_claims(app, customer).items()
                                      if k != "exp"}, secret, "HS256"),
        "another issuer": lambda: jwt.encode(portal_claims(app, customer, iss="someone-else"),
                                             secret, "HS256"),
        "another audience": lambda: jwt.encode(portal_claims(app, customer, aud="other-api"),
                                               secret, "HS256"),
        "no audience": lambda: jwt.encode({k: v for k, v in portal_claims(app, customer).items()
                                           if k != "aud"}, secret, "HS256"),
        "sub is not a user id": lambda: jwt.encode(portal_claims(app, customer, sub="admin"),
                                                   secret, "HS256"),
        "garbage": lambda: "eyJhbGciOiJIUzI1NiJ9.e30.x",
        "empty": lambda: "",
    }
    assert_401(client.get(HISTORY, headers=with_token(tokens[how]())))


def test_token_of_a_deleted_user_is_401(client):
    user = make_user("leaving@example.test")
    headers = bearer(user)
    assert client.get(HISTORY, headers=headers).status_code == 200
    db.session.delete(db.session.get(User, user.id))
    db.session.commit()
    assert_401(client.get(HISTORY, headers=headers))


def test_session_cookie_alone_is_401(client, customer):
    assert login(client, customer.email).status_code == 302
    assert client.get("/payments").status_code == 200  # the cookie works on the pages...
    assert_401(client.get(HISTORY))  # ...never on the API


# --- tokens of the ShopSphere auth service (RS256, public key configured) --------------------

def test_auth_service_token_is_accepted(auth_client, auth_service_key, customer):
    token = jwt.encode(auth_service_claims(customer.email), auth_service_key, "RS256")
    r = auth_client.get(HISTORY, headers=with_token(token))
    assert r.status_code == 200 and r.json["success"] is True


def test_portal_tokens_still_work_next_to_the_auth_service(auth_client, customer):
    assert auth_client.get(HISTORY, headers=bearer(customer)).status_code == 200


def test_auth_service_token_signed_by_another_key_is_401(auth_client, customer):
    token = jwt.encode(auth_service_claims(customer.email), rsa_key(), "RS256")
    assert_401(auth_client.get(HISTORY, headers=with_token(token)))


def test_hs256_token_signed_with_the_public_key_is_401(auth_client, auth_service_key,
                                                       customer):
    token = hs256_by_hand(auth_service_claims(customer.email),
                          public_pem(auth_service_key).encode())
    assert_401(auth_client.get(HISTORY, headers=with_token(token)))


@pytest.mark.parametrize(
    "over",
    [{"iss": "someone-else"}, {"iss": None}, {"exp": None},
     {"exp": datetime.now(UTC) - timedelta(minutes=1)}, {"email": "nobody@example.test"},
     {"email": None}],
    ids=["another issuer", "no issuer", "no exp", "expired", "unknown e-mail", "no e-mail"],
)
def test_bad_auth_service_token_is_401(auth_client, auth_service_key, customer, over):
    token = jwt.encode(auth_service_claims(customer.email, **over), auth_service_key, "RS256")
    assert_401(auth_client.get(HISTORY, headers=with_token(token)))


def test_auth_service_token_is_refused_where_no_key_is_configured(client, auth_service_key,
                                                                  customer):
    token = jwt.encode(auth_service_claims(customer.email), auth_service_key, "RS256")
    assert_401(client.get(HISTORY, headers=with_token(token)))


# --- errors outside the operations -----------------------------------------------------------

@pytest.mark.parametrize("accept", [None, "text/html"])
def test_unknown_api_route_is_a_json_404(client, customer, accept):
    headers = {**bearer(customer), **({"Accept": accept} if accept else {})}
    r = client.get("/api/payments/nope", headers=headers)
    assert r.status_code == 404 and r.is_json
    assert r.json == {"success": False, "error": {"code": "not_found", "message": "Not found"}}


def test_wrong_method_on_an_api_route_is_a_json_405(client, customer):
    r = client.get("/api/payments/create-intent", headers=bearer(customer))
    assert r.status_code == 405 and r.is_json
    assert r.json["success"] is False and r.json["error"]["code"] == "method_not_allowed"
