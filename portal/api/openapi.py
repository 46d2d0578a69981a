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


# --- examples: what the reference shows for each request and response ----------------------
# One per request body and per documented status of every operation (a test holds every
# operation to it, and checks each example against the model that validates or sends it).
# An error status without an example of its own shows the common one of ERROR_EXAMPLES.

_ORDER = "7d1f3c2e-5b8a-4c6d-9e0f-1a2b3c4d5e6f"
_PAYMENT = "3f6c9a1e-2d4b-4f8a-b5c7-0e1d2c3b4a59"
_CUSTOMER = "c0a8b2d4-6e1f-4a3b-8c5d-7e9f0a1b2c3d"
_VENDOR = "9b8a7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d"
_ITEM = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
_PI = "pi_3QxYz2LkdIwHu7ix0a1b2c3d"
_PM = "pm_1QxYz2LkdIwHu7ixVisa4242"
_STAMP = "2026-01-15T10:30:00Z"


def error_example(code: str, message: str, fields: dict[str, str] | None = None) -> dict:
    """The body of every error: {"success": false, "error": {"code", "message", "fields"?}}."""
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"success": False, "error": error}


ERROR_EXAMPLES: dict[int, dict] = {
    400: error_example("validation_error", "the request is invalid",
                       {"amount": "Input should be greater than 0"}),
    401: error_example("unauthorized", "a valid Bearer token is required"),
    403: error_example("forbidden", "your role may not do this"),
    404: error_example("not_found", "Not found"),
    409: error_example("idempotency_key_reused",
                       "this Idempotency-Key was used with another request"),
    413: error_example("too_large", "The request is too large"),
    429: error_example("rate_limited", "Too many requests"),
    500: error_example("server_error", "Something went wrong"),
    503: error_example("processor_unavailable",
                       "the payment processor could not be reached; please retry"),
}

_ORDER_DETAIL = {
    "id": _ORDER, "customerId": _CUSTOMER, "status": "unpaid", "currency": "usd",
    "subtotal": 27999, "tax": 2000, "shipping": 0, "discount": 0, "total": 29999,
    "items": [{"id": _ITEM, "vendorId": _VENDOR, "description": "Walnut desk lamp",
               "quantity": 1, "unitAmount": 27999, "amount": 27999}],
    "createdAt": _STAMP,
}
_CARD = {"brand": "visa", "last4": "4242"}
_CONTROL = error_example("control_characters",
                         "The request contains control characters, which no field accepts.")
_TOO_MANY_DECLINES = error_example("too_many_declines", "This payment was declined too many "
                                   "times. You can try again in 1 hour, or contact support.")
_TOO_MUCH = "Only $249.99 of this payment can still be refunded. Refundable: 24999 minor units."
_ANALYTICS_TOTALS = {
    "payments": 412, "grossVolume": 2_451_830, "platformFees": 245_183, "feesReturned": 3_120,
    "netRevenue": 242_063, "refunded": 31_200, "refundRate": 0.0127, "refunds": 9,
    "averageOrderValue": 5951, "succeeded": 412, "failed": 23, "successRate": 0.9471,
    "customers": 301, "newCustomers": 88, "returningCustomers": 213,
}


@dataclass(frozen=True)
class Examples:
    """An operation's examples: its request body (when it takes one) and a body per status."""

    request: dict | None = None
    responses: dict[int, dict] = field(default_factory=dict)


EXAMPLES: dict[str, Examples] = {
    "POST /api/auth/token": Examples(
        request={"email": "orders-service@shopsphere.example",
                 "password": "s3cret-pass"},  # nosec B105 - an example, not a credential
        responses={
            200: {"success": True,  # nosec B105 - a made-up token: an example, no secret
                  "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjMGE4YjJkNCJ9.3q2",
                  "expiresAt": "2026-01-15T11:30:00Z"},
            400: error_example("validation_error", "the request is invalid",
                               {"password": "Field required"}),  # nosec B105 - a message
            401: error_example("invalid_credentials", "wrong e-mail or password"),
            429: error_example("rate_limited", "too many attempts for this account; retry "
                                               "in 15 minutes"),
        }),
    "POST /api/orders": Examples(
        request={"customerEmail": "ada@example.com", "currency": "USD", "tax": 2000,
                 "items": [{"vendorEmail": "lamps@example.com",
                            "description": "Walnut desk lamp", "quantity": 1,
                            "unitAmount": 27999}]},
        responses={
            201: {"success": True, "order": _ORDER_DETAIL},
            400: error_example("validation_error", "the order is invalid",
                               {"customerEmail": "no customer with this e-mail"}),
        }),
    "GET /api/orders/{orderId}": Examples(responses={
        200: {"success": True, "order": _ORDER_DETAIL},
        400: _CONTROL,
        404: error_example("not_found", "order not found"),
    }),
    "POST /api/payments/webhook": Examples(
        request={"id": "evt_1QxYz2LkdIwHu7ixAbCdEf", "object": "event",
                 "type": "payment_intent.succeeded", "created": 1768473000,
                 "livemode": False, "api_version": "2025-03-31.basil",
                 "data": {"object": {"id": _PI, "object": "payment_intent",
                                     "amount": 29999, "currency": "usd",
                                     "status": "succeeded",
                                     "metadata": {"paymentId": _PAYMENT}}}},
        responses={
            200: {"received": True},
            400: error_example("invalid_signature", "invalid or expired Stripe signature"),
            503: error_example("storage_unavailable",
                               "the event could not be stored; please deliver it again"),
        }),
    "POST /api/payments/create-intent": Examples(
        request={"orderId": _ORDER, "amount": 299.99, "currency": "USD"},
        responses={
            200: {"success": True,
                  "paymentIntent": {"id": _PI, "clientSecret": f"{_PI}_secret_Xy12Ab34",
                                    "amount": 29999, "currency": "usd",
                                    "status": "requires_payment_method",
                                    "metadata": {"orderId": _ORDER, "userId": _CUSTOMER}},
                  "publishableKey": "pk_test_51QxYz2LkdIwHu7ix"},
            400: error_example("amount_mismatch", "the amount must be the order's total, "
                                                  "299.99 USD", {"amount": "the amount must "
                                                                 "be the order's total, 299.99 "
                                                                 "USD"}),
            404: error_example("order_not_found", "order not found"),
            429: error_example("rate_limited", "Too many requests"),
            503: error_example("processor_unavailable", "We could not reach the payment "
                               "processor. Nothing was charged; please try again in a moment."),
        }),
    "POST /api/payments/confirm": Examples(
        request={"paymentIntentId": _PI, "paymentMethodId": _PM},
        responses={
            200: {"success": True, "payment": {
                "id": _PAYMENT, "paymentIntentId": _PI, "status": "succeeded",
                "amount": 29999, "currency": "usd",
                "paymentMethod": {"id": _PM, "type": "card", "card": _CARD},
                "receiptUrl": "https://pay.stripe.com/receipts/payment/CAcaFwoV",
                "createdAt": _STAMP}},
            400: error_example("card_declined", "Your card was declined."),
            402: {"success": False, "requiresAction": True,
                  "clientSecret": f"{_PI}_secret_Xy12Ab34",
                  "error": {"code": "requires_action",
                            "message": "the card asks for authentication (3-D Secure)"}},
            404: error_example("payment_method_not_found",
                               "paymentMethodId is not one of your saved cards",
                               {"paymentMethodId": "paymentMethodId is not one of your saved "
                                                   "cards"}),
            429: _TOO_MANY_DECLINES,
        }),
    "GET /api/payments/payments/{paymentId}": Examples(responses={
        200: {"success": True, "payment": {
            "_id": _PAYMENT, "userId": _CUSTOMER, "orderId": _ORDER, "paymentIntentId": _PI,
            "amount": 29999, "currency": "usd", "status": "succeeded",
            "paymentMethod": {"type": "card", "card": _CARD},
            "breakdown": {"subtotal": 27999, "tax": 2000, "shipping": 0, "discount": 0,
                          "platformFee": 2800, "vendorAmount": 27199},
            "amountRefunded": 5000, "refundStatus": "partially_refunded",
            "receiptUrl": "https://pay.stripe.com/receipts/payment/CAcaFwoV",
            "failureCode": None, "failureMessage": None,
            "createdAt": _STAMP, "updatedAt": "2026-01-16T09:12:44Z"}},
        400: _CONTROL,
        404: error_example("payment_not_found", "payment not found"),
    }),
    "GET /api/payments/history": Examples(responses={
        200: {"success": True,
              "payments": [{"_id": _PAYMENT, "orderId": _ORDER, "amount": 29999,
                            "currency": "usd", "status": "succeeded", "amountRefunded": 5000,
                            "refundStatus": "partially_refunded",
                            "paymentMethod": {"type": "card", "last4": "4242"},
                            "createdAt": _STAMP}],
              "pagination": {"currentPage": 1, "totalPages": 1, "totalItems": 1,
                             "itemsPerPage": 20}},
        400: error_example("validation_error", "the query is invalid",
                           {"page": "Input should be greater than or equal to 1"}),
    }),
    "GET /api/payments/methods": Examples(responses={
        200: {"success": True, "paymentMethods": [
            {"id": _PM, "type": "card", "isDefault": True, "createdAt": _STAMP,
             "card": {"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2030}}]},
    }),
    "POST /api/payments/methods": Examples(
        request={"paymentMethodId": _PM, "setAsDefault": True},
        responses={
            201: {"success": True, "message": "Payment method added successfully",
                  "paymentMethod": {"id": _PM, "type": "card", "isDefault": True, "card": {
                      "brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2030}}},
            400: error_example("card_declined", "Your card was declined."),
            404: error_example("payment_method_not_found", "no such payment method"),
            409: error_example("payment_method_exists", "this card is already saved"),
            429: _TOO_MANY_DECLINES,
        }),
    "DELETE /api/payments/methods/{paymentMethodId}": Examples(responses={
        200: {"success": True, "message": "Payment method removed successfully"},
        400: _CONTROL,
        404: error_example("payment_method_not_found", "payment method not found"),
    }),
    "PUT /api/payments/methods/{paymentMethodId}/default": Examples(responses={
        200: {"success": True, "message": "Default payment method updated"},
        400: _CONTROL,
        404: error_example("payment_method_not_found", "payment method not found"),
    }),
    "POST /api/payments/refund": Examples(
        request={"paymentId": _PAYMENT, "amount": 5000, "reason": "damaged",
                 "notes": "Lamp arrived with a cracked shade"},
        responses={
            200: {"success": True, "refund": {
                "id": "re_3QxYz2LkdIwHu7ix1f2g3h4i", "paymentId": _PAYMENT, "amount": 5000,
                "currency": "usd", "status": "succeeded", "reason": "damaged",
                "createdAt": "2026-01-16T09:12:40Z"}},
            400: error_example("invalid_refund_amount", _TOO_MUCH, {"amount": _TOO_MUCH}),
            404: error_example("payment_not_found", "payment not found"),
        }),
    "GET /api/payments/vendor/payouts": Examples(responses={
        200: {"success": True,
              "payouts": [{"_id": "0e1d2c3b-4a59-4f8a-b5c7-3f6c9a1e2d4b", "vendorId": _VENDOR,
                           "period": {"start": "2026-01-01T00:00:00Z",
                                      "end": "2026-01-07T23:59:59Z"},
                           "amount": 125_930, "currency": "usd", "status": "paid",
                           "breakdown": {"totalSales": 139_920, "platformFee": 13_990,
                                         "netAmount": 125_930, "refunds": 0},
                           "paymentCount": 7, "paidAt": "2026-01-08T06:00:12Z"}],
              "summary": {"totalPaid": 125_930, "totalPending": 27_199,
                          "nextPayoutDate": "2026-01-22T06:00:00Z", "currency": "usd"}},
        400: error_example("validation_error", "the query is invalid",
                           {"status": "Input should be 'pending', 'processing', 'paid' or "
                                      "'failed'"}),
    }),
    "GET /api/payments/analytics": Examples(responses={
        200: {"success": True, "currency": "usd", "currencies": ["eur", "usd"],
              "period": {"start": "2025-12-17", "end": "2026-01-15", "days": 30},
              "previousPeriod": {"start": "2025-11-17", "end": "2025-12-16", "days": 30},
              "totals": _ANALYTICS_TOTALS,
              "previousTotals": {**_ANALYTICS_TOTALS, "payments": 380,
                                 "grossVolume": 2_210_400, "succeeded": 380},
              "payoutsPaid": 1_980_220, "payoutsPending": 214_377,
              "daily": [{"date": "2026-01-15", "payments": 14, "grossVolume": 83_210,
                         "netRevenue": 8_321, "refunded": 0, "successRate": 0.9333}],
              "topVendorsByGrossVolume": [{"vendorId": _VENDOR, "email": "lamps@example.com",
                                           "grossVolume": 911_400, "fees": 91_140}],
              "topVendorsByFees": [{"vendorId": _VENDOR, "email": "lamps@example.com",
                                    "grossVolume": 911_400, "fees": 91_140}],
              "declines": [{"reason": "insufficient_funds", "payments": 11}]},
        400: error_example("validation_error", "the query is invalid",
                           {"to": "The end must not be before the start."}),
    }),
}


def _examples(op: Operation) -> Examples:
    return EXAMPLES.get(f"{op.method} {op.path}", Examples())


def _response_example(op: Operation, status: int) -> dict | None:
    return _examples(op).responses.get(status, ERROR_EXAMPLES.get(status))


def _request_body(op: Operation, components: dict) -> dict | None:
    example = _examples(op).request
    if op.body is not None:
        schema = _schema_ref(op.body, components)
    elif example is not None:  # the webhook: a raw body no model parses (signed bytes)
        schema = {"type": "object", "description": "A Stripe event as Stripe sends it, "
                  "verified against the `Stripe-Signature` header before it is read"}
    else:
        return None
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {"application/json": media}}


def _statuses(op: Operation) -> dict[int, type[Out] | None]:
    """The operation's declared statuses and those its wrapper and the app may answer."""
    statuses = dict(op.responses)
    if op.auth:
        statuses.setdefault(401, None)
        if op.roles:
            statuses.setdefault(403, None)
    if op.body is not None or op.query is not None or op.path_params:
        statuses.setdefault(400, None)  # control characters in a path parameter too
    if op.body is not None:
        statuses.setdefault(413, None)
    statuses.setdefault(500, None)
    return dict(sorted(statuses.items()))


def _responses(op: Operation, components: dict, error_ref: dict) -> dict:
    responses: dict[str, Any] = {}
    for status, model in _statuses(op).items():
        ref = _schema_ref(model, components) if model is not None else error_ref
        media: dict[str, Any] = {"schema": ref}
        example = _response_example(op, status)
        if example is not None:
            media["example"] = example
        response: dict[str, Any] = {"description": STATUS_TEXT.get(status, str(status)),
                                    "content": {"application/json": media}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        if status in (429, 503):
            response["headers"] = {"Retry-After": {
                "description": "Seconds to wait", "schema": {"type": "string"}}}
        responses[str(status)] = response
    return responses


def _parameters(op: Operation, components: dict) -> list[dict]:
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in op.path_params]
    if op.query is not None:
        parameters += _query_parameters(op.query, components)
    if op.idempotent:
        parameters.append({
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Replays the first response for 24 h; another body with the "
                           "same key answers 409.",
            "schema": {"type": "string", "maxLength": 255},
        })
    return parameters


API_DESCRIPTION = """Card payments for the ShopSphere marketplace, with Stripe.

**Authentication.** Every endpoint but the token and Stripe's webhook takes
`Authorization: Bearer <JWT>`: get one from `POST /api/auth/token` (valid at most 1 hour),
or `flask users token EMAIL` on the server.

**Amounts.** Responses give integers in the currency's minor unit (`29999` is 299.99 USD,
`500` is 500 JPY) beside a lower-case ISO currency code; `create-intent` takes the decimal
amount written on the order (`299.99`).

**Errors.** Every error has one shape, whatever the status:

```json
{"success": false, "error": {"code": "validation_error", "message": "the request is invalid",
 "fields": {"amount": "Input should be greater than 0"}}}
```

`code` is stable and meant for programs, `message` for people, and `fields` (absent when no
input is at fault) names each input and what is wrong with it. 429 and 503 carry
`Retry-After`.

**Retries.** `create-intent`, `confirm` and `refund` accept an `Idempotency-Key` header: a
retry with the same key and body is answered the first response again, and nothing is done
twice.
"""


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
        }
        if op.description:
            entry["description"] = op.description
        parameters = _parameters(op, components)
        if parameters:
            entry["parameters"] = parameters
        body = _request_body(op, components)
        if body is not None:
            entry["requestBody"] = body
        if op.auth:
            entry["security"] = [{"bearerAuth": []}]
        entry["responses"] = _responses(op, components, error_ref)
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ShopSphere Payment Service API",
            "version": "1.0.0",
            "description": API_DESCRIPTION,
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"}},
        },
    }
