"""API operations declared once: the pydantic models that validate a request and those that
a view returns are the ones the OpenAPI 3.1 document is generated from (pydantic emits JSON
Schema 2020-12, the dialect of OpenAPI 3.1, so no translation layer is needed).

    @operation(bp, "POST", "/payments/create-intent", body=CreateIntentIn,
               responses={200: CreateIntentOut, 404: None}, summary="...")
    def create_intent(body: CreateIntentIn) -> CreateIntentOut: ...

The wrapper authenticates (Bearer JWT unless ``auth=False``), parses the JSON body (numbers as
Decimal, so money keeps its digits) or the query string into the model (400 with the fields
on a validation error), honours ``Idempotency-Key`` where ``idempotent=True``, calls the view
with ``body=`` / ``query=``, and sends the response model the view returns with the status
the operation declares for that model: what is sent is what the document says. Refusals are
``errors.DomainError``s, answered by ``errors.handle_domain_error`` (``None`` in
``responses``: the error format).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import wraps
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from pydantic import BaseModel, ValidationError

from ..auth.services import authenticate_bearer
from ..errors import DomainError, handle_domain_error, validation_fields
from .schemas import ErrorOut, Out


@dataclass
class Operation:
    method: str
    path: str  # OpenAPI style: /payments/{paymentId}
    summary: str
    description: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    responses: dict[int, type[Out] | None]
    auth: bool
    roles: tuple[str, ...]
    tag: str
    idempotent: bool
    path_params: list[str] = field(default_factory=list)

    def send(self, body: Out) -> Response:
        """``body`` as JSON, with the status this operation declares for its model."""
        status = next((s for s, model in self.responses.items() if type(body) is model), None)
        if status is None:
            raise TypeError(f"{self.method} {self.path} declares no {type(body).__name__}")
        resp = jsonify(body.model_dump(mode="json", by_alias=True))
        resp.status_code = status
        return resp


OPERATIONS: list[Operation] = []

STATUS_TEXT = {200: "OK", 201: "Created", 400: "Invalid request", 401: "Missing or invalid token",
               402: "Additional authentication required", 403: "Not allowed for this role",
               404: "Not found", 409: "Conflict", 413: "Request body over 1 MiB",
               429: "Too many requests", 500: "Server error",
               503: "Temporarily unavailable (Stripe unreachable or failing; the webhook: "
                    "storage): retry after Retry-After seconds, nothing is done twice"}


def _json_body() -> Any:
    raw = request.get_data(cache=True)
    if not raw:
        return None
    # Decimal keeps 299.99 exact; NaN/Infinity arrive as floats and are refused by the models.
    return json.loads(raw, parse_float=Decimal)


def operation(bp: Blueprint, method: str, path: str, *, summary: str, description: str = "",
              body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
              responses: dict[int, type[Out] | None], auth: bool = True,
              roles: tuple[str, ...] = (), tag: str = "payments", idempotent: bool = False):
    """Register a Flask view on ``bp`` and describe it in the OpenAPI document."""
    flask_path = path.replace("{", "<").replace("}", ">")
    params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
    op = Operation(method, (bp.url_prefix or "") + path, summary, description, body, query,
                   responses, auth, roles, tag, idempotent, params)
    OPERATIONS.append(op)

    def decorator(view):
        @wraps(view)
        def wrapper(**kwargs):
            if auth:
                g.api_user = authenticate_bearer(roles)
            if body is not None:
                kwargs["body"] = _parsed(body, _json_object(), "the request is invalid")
            if query is not None:
                kwargs["query"] = _parsed(query, request.args.to_dict(), "the query is invalid")
            if idempotent:
                from .idempotency import idempotent_call

                return idempotent_call(lambda: _answered(op, view, kwargs))
            return op.send(view(**kwargs))

        bp.add_url_rule(flask_path, endpoint=view.__name__, view_func=wrapper,
                        methods=[method])
        return wrapper

    return decorator


def _json_object() -> dict:
    try:
        data = _json_body()
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." bodies
        raise DomainError("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise DomainError("the body must be a JSON object", code="invalid_body")
    return data


def _parsed(model: type[BaseModel], data: dict, message: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DomainError(message, code="validation_error",
                          fields=validation_fields(exc)) from None


def _answered(op: Operation, view, kwargs: dict) -> Response:
    """The view's response, a refusal included: answered here rather than by the app's
    handler so that an Idempotency-Key stores and replays it (a retry of a declined
    confirmation is answered the decline again, the card is not tried twice)."""
    try:
        return op.send(view(**kwargs))
    except DomainError as exc:
        return handle_domain_error(exc)


def _schema_ref(model: type[BaseModel], components: dict) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}",
                                     mode="serialization")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel], components: dict) -> list[dict]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required,
         "description": prop.get("description", ""),
         "schema": {k: v for k, v in prop.items() if k != "description"}}
        for name, prop in schema.get("properties", {}).items()
    ]


def build_spec(server_url: str = "/") -> dict:
    """The OpenAPI 3.1 document for every registered operation."""
    components: dict[str, Any] = {}
    error_ref = _schema_ref(ErrorOut, components)
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": op.summary.lower().replace(" ", "_").replace("-", "_"),
            "tags": [op.tag],
            "parameters": [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in op.path_params
            ],
            "responses": {},
        }
        if op.description:
            entry["description"] = op.description
        if op.query is not None:
            entry["parameters"] += _query_parameters(op.query, components)
        if op.idempotent:
            entry["parameters"].append({
                "name": "Idempotency-Key", "in": "header", "required": False,
                "description": "Replays the first response for 24 h; another body with the "
                               "same key answers 409.",
                "schema": {"type": "string", "maxLength": 255},
            })
        if not entry["parameters"]:
            del entry["parameters"]
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _schema_ref(op.body, components)}}}
        statuses = dict(op.responses)
        if op.auth:
            entry["security"] = [{"bearerAuth": []}]
            statuses.setdefault(401, None)
            if op.roles:
                statuses.setdefault(403, None)
        if op.body is not None or op.query is not None or op.path_params:
            statuses.setdefault(400, None)  # control characters in a path parameter too
        if op.body is not None:
            statuses.setdefault(413, None)
        statuses.setdefault(500, None)
        for status, model in sorted(statuses.items()):
            ref = _schema_ref(model, components) if model is not None else error_ref
            response: dict[str, Any] = {"description": STATUS_TEXT.get(status, str(status)),
                                        "content": {"application/json": {"schema": ref}}}
            if status == 401:
                response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
            if status in (429, 503):
                response["headers"] = {"Retry-After": {
                    "description": "Seconds to wait", "schema": {"type": "string"}}}
            entry["responses"][str(status)] = response
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ShopSphere Payment Service API",
            "version": "1.0.0",
            "description": "Card payments for the ShopSphere marketplace. Amounts in "
                           "responses are integers in the currency's minor unit. Errors are "
                           '`{"success": false, "error": {"code", "message", "fields"?}}`.',
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"}},
        },
    }
