"""One error model: the domain errors services raise, and their one mapping to HTTP.

Services raise a ``DomainError`` (or a subclass) before changing anything; views let it
propagate (``create_app`` registers ``handle_domain_error``) or catch it only to show a form
again with the message under its field. The JSON API's single format is
``{"success": false, "error": {"code", "message", "fields"?}}``.

| error | status |
| --- | --- |
| DomainError (invalid input, a rule refused) | 400 |
| Forbidden | 403 |
| NotFound (also: another user's object) | 404 |
| Conflict | 409 |
| TooMany (an attempt budget is spent) | 429 + Retry-After |
| Unavailable (Stripe unreachable, 5xx, rate limited) | 503 + Retry-After |
"""

from __future__ import annotations

from flask import Response, jsonify, render_template, request
from pydantic import ValidationError


class DomainError(Exception):
    """A request the domain refuses; ``message`` is safe to show, ``field`` names the input
    at fault (a form shows the message under it; the API lists it in ``fields``)."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None,
                 fields: dict[str, str] | None = None):
        super().__init__(message)
        self.message, self.field = message, field
        if code is not None:
            self.code = code
        self.fields = fields if fields is not None else ({field: message} if field else None)

    def for_api(self) -> str:
        """The message the JSON API gives (the pages show ``message``)."""
        return self.message


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    status, code = 409, "conflict"


class TooMany(DomainError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """An upstream (Stripe) is unreachable or failing: try again later. Nothing was done
    twice: every Stripe call carries an idempotency key."""

    status, code = 503, "processor_unavailable"
    retry_after = 30


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


def handle_domain_error(exc: DomainError) -> Response | tuple:
    """The one mapping of domain errors to HTTP: JSON under /api/, the error page elsewhere
    (with X-Error-Message, which static/js/portal.js shows for htmx requests)."""
    if request.path.startswith("/api/"):
        resp = api_error(exc.status, exc.code, exc.for_api(), exc.fields)
    else:
        resp = Response(render_template("error.html", status=exc.status, message=exc.message),
                        status=exc.status, headers={"X-Error-Message": exc.message})
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp
