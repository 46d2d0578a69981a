"""The API reference (issue 19, item 4): every operation of the served OpenAPI document shows
a request example where it takes a body and an example for every documented status, each one
a body the API really accepts or sends; the page loads the pinned viewer from our own files.

No database: an app instance that only serves the document and the page (as in
tests/integration/test_api_fuzz.py).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from portal import create_app
from portal.api import views
from portal.api.openapi import OPERATIONS
from portal.api.schemas import ErrorOut
from portal.config import ROOT, Config
from tests.conftest import portal_env

APP = create_app(Config.from_env(portal_env(
    "postgresql://postgres@127.0.0.1:9/unused", "http://127.0.0.1:9")))
SPEC = APP.test_client().get("/api/payments/openapi.json").json
SERVED = [(f"{method.upper()} {path}", op) for path, item in SPEC["paths"].items()
          for method, op in item.items()]
WITH_BODY = [(label, op) for label, op in SERVED if "requestBody" in op]
MODELS = {f"{op.method} {op.path}": op for op in OPERATIONS}


def _wire(example):
    """The example as the API reads it off the wire (numbers with a fraction as Decimal)."""
    return json.loads(json.dumps(example), parse_float=Decimal)


def test_the_document_has_every_operation_and_each_body():
    assert sorted(label for label, _ in SERVED) == sorted(MODELS)
    # Stripe's webhook takes a body (the event) that no model parses: documented all the same.
    assert sorted(label for label, _ in WITH_BODY) == sorted(
        label for label, op in MODELS.items() if op.body is not None or op.auth is False)


@pytest.mark.parametrize(("label", "op"), WITH_BODY, ids=[label for label, _ in WITH_BODY])
def test_every_request_body_has_an_example_the_api_accepts(label, op):
    example = op["requestBody"]["content"]["application/json"].get("example")
    assert example is not None, f"{label}: no request example"
    model = MODELS[label].body
    if model is None:  # Stripe's webhook: the signed event, parsed by no model of ours
        assert {"id", "type", "data"} <= example.keys()
    else:
        model.model_validate(_wire(example))


@pytest.mark.parametrize(("label", "op"), SERVED, ids=[label for label, _ in SERVED])
def test_every_documented_status_has_an_example_of_what_is_sent(label, op):
    declared = MODELS[label].responses
    for status, response in op["responses"].items():
        example = response["content"]["application/json"].get("example")
        assert example is not None, f"{label} {status}: no example"
        model = declared.get(int(status))
        if model is None:
            # The one error shape; its `fields` only when an input is at fault.
            ErrorOut.model_validate(example)
            assert example["success"] is False and example["error"].get("fields", True)
        else:
            # Exactly what the view would send: every field present, nothing else.
            sent = model.model_validate(_wire(example)).model_dump(mode="json", by_alias=True)
            assert sent == example, f"{label} {status}"


def test_descriptions_are_markdown_the_viewer_renders():
    """Inline code in backticks and a fenced example of the error shape, not escaped text."""
    description = SPEC["info"]["description"]
    assert "`Authorization: Bearer <JWT>`" in description
    fenced = re.search(r"```json\n(.*?)```", description, re.S)
    assert fenced and ErrorOut.model_validate_json(fenced.group(1))


def _makefile_pin(name: str) -> str:
    text = (ROOT / "Makefile").read_text()
    return re.search(rf"^{name} := (\S+)$", text, re.M).group(1)


def test_the_page_pins_the_files_the_makefile_checks():
    assert _makefile_pin("SWAGGER_UI_VERSION") == views.SWAGGER_UI_VERSION
    assert _makefile_pin("SWAGGER_UI_JS_SRI") == views.SWAGGER_UI_FILES["script"][1]
    assert _makefile_pin("SWAGGER_UI_CSS_SRI") == views.SWAGGER_UI_FILES["style"][1]


def test_the_page_loads_the_viewer_from_our_files_with_their_hashes():
    """Same origin, SRI on both files, and the portal's own policy: no other origin, no
    inline script, no eval, no worker."""
    r = APP.test_client().get("/api/payments/docs")
    assert r.status_code == 200
    version, (script, script_sri), (style, style_sri) = (
        views.SWAGGER_UI_VERSION, views.SWAGGER_UI_FILES["script"],
        views.SWAGGER_UI_FILES["style"])
    assert (f'src="/static/vendor/swagger-ui-{version}/{script}" integrity="{script_sri}"'
            in r.text)
    assert (f'href="/static/vendor/swagger-ui-{version}/{style}" integrity="{style_sri}"'
            in r.text)
    assert 'data-spec-url="/api/payments/openapi.json"' in r.text
    assert "<script>" not in r.text
    assert r.headers["Content-Security-Policy"] == APP.test_client().get(
        "/login").headers["Content-Security-Policy"]
    csp = r.headers["Content-Security-Policy"]
    assert "unsafe-eval" not in csp and "worker-src" not in csp and "blob:" not in csp


def test_without_the_viewer_the_page_says_so_and_links_the_document(monkeypatch):
    monkeypatch.setattr(views, "SWAGGER_UI_VERSION", "0.0.0-not-fetched")
    r = APP.test_client().get("/api/payments/docs")
    assert r.status_code == 200
    assert "The reference viewer is not installed on this server" in r.text
    assert 'href="/api/payments/openapi.json"' in r.text and "swagger-ui" not in r.text
