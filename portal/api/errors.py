"""The API's single error format: {"success": false, "error": {"code", "message", "fields"?}}."""

from __future__ import annotations

from flask import Response, jsonify
from pydantic import ValidationError


def api_error(status: int, code: str, message: str, fields: dict | None = None) -> Response:
    """A JSON error response with the given HTTP status."""
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    resp = jsonify(success=False, error=error)
    resp.status_code = status
    return resp


def too_many(code: str, message: str, wait: int) -> Response:
    """429 with Retry-After: an attempt budget (password guesses, card declines) is spent."""
    resp = api_error(429, code, message)
    resp.headers["Retry-After"] = str(wait)
    return resp


def validation_fields(exc: ValidationError) -> dict[str, str]:
    """pydantic's errors as {"items.0.quantity": "message"}."""
    fields = {}
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        fields.setdefault(loc, err["msg"])
    return fields
