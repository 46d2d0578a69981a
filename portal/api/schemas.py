"""Request and response models of the JSON API (field names as in the original description).

Requests are validated with these models; the OpenAPI document is generated from them.
Responses are built as dicts by the views and described here for the document and the
contract tests.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
)

from ..payments.models import PAYMENT_STATUSES
from ..refunds.models import REASONS

PaymentStatus = Literal[PAYMENT_STATUSES]  # type: ignore[valid-type]


def _decimal_amount(value: object) -> Decimal:
    # JSON numbers arrive as int or Decimal (see openapi._json_body); strings, booleans and
    # NaN/Infinity (floats) are not amounts.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("amount must be a JSON number, e.g. 299.99")
    return Decimal(value)


Amount = Annotated[
    Decimal,
    PlainValidator(_decimal_amount),
    WithJsonSchema({"type": "number", "description": "Decimal amount in major units, as "
                    "written on the order (299.99 USD, 500 JPY)."}),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors -----------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: dict[str, str] | None = None


class ErrorOut(BaseModel):
    """Every error of the API."""

    success: Literal[False]
    error: ErrorDetail


# --- auth -------------------------------------------------------------------------------

class TokenIn(Strict):
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^\x00]*$")
    password: str = Field(min_length=1, max_length=200)


class TokenOut(BaseModel):
    success: Literal[True]
    token: str
    expiresAt: str = Field(description="ISO-8601 UTC")


# --- create-intent ----------------------------------------------------------------------

class CreateIntentIn(Strict):
    orderId: str = Field(min_length=1, max_length=64)
    amount: Amount
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    paymentMethodId: str | None = Field(None, pattern=r"^pm_[A-Za-z0-9_]+$", max_length=255,
                                        description="A saved card of the caller")


class IntentMetadata(BaseModel):
    orderId: str
    userId: str


class IntentOut(BaseModel):
    id: str
    clientSecret: str
    amount: int
    currency: str
    status: str
    metadata: IntentMetadata


class CreateIntentOut(BaseModel):
    success: Literal[True]
    paymentIntent: IntentOut
    publishableKey: str


# --- confirm ----------------------------------------------------------------------------

class ConfirmIn(Strict):
    paymentIntentId: str = Field(pattern=r"^pi_[A-Za-z0-9_]+$", max_length=255)
    paymentMethodId: str = Field(pattern=r"^pm_[A-Za-z0-9_]+$", max_length=255)


class CardBrief(BaseModel):
    brand: str | None
    last4: str | None


class ConfirmMethod(BaseModel):
    id: str | None
    type: str
    card: CardBrief | None


class ConfirmedPayment(BaseModel):
    id: str
    paymentIntentId: str
    status: PaymentStatus
    amount: int
    currency: str
    paymentMethod: ConfirmMethod | None
    receiptUrl: str | None
    createdAt: str


class ConfirmOut(BaseModel):
    success: Literal[True]
    payment: ConfirmedPayment


class RequiresActionOut(BaseModel):
    """402: the card asks for 3-D Secure; finish it with Stripe.js handleNextAction."""

    success: Literal[False]
    requiresAction: Literal[True]
    clientSecret: str
    error: ErrorDetail


# --- payments/<id> ----------------------------------------------------------------------

class MethodOut(BaseModel):
    type: str
    card: CardBrief | None


class Breakdown(BaseModel):
    subtotal: int
    tax: int
    shipping: int
    discount: int
    platformFee: int | None = Field(description="Filled from the vendor split lines")
    vendorAmount: int | None


class PaymentDetail(BaseModel):
    id: str = Field(alias="_id")
    userId: str
    orderId: str
    paymentIntentId: str | None
    amount: int
    currency: str
    status: PaymentStatus
    paymentMethod: MethodOut | None
    breakdown: Breakdown
    amountRefunded: int = Field(description="Minor units refunded so far")
    refundStatus: Literal["partially_refunded", "refunded"] | None
    receiptUrl: str | None
    failureCode: str | None
    failureMessage: str | None
    createdAt: str
    updatedAt: str


class PaymentOut(BaseModel):
    success: Literal[True]
    payment: PaymentDetail


# --- history ----------------------------------------------------------------------------

def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+04:00 is before year 1 in UTC
        raise ValueError("date out of range") from None


def _iso_text(value: object) -> object:
    # ISO-8601 only: pydantic would also read 1700000000 as a Unix timestamp.
    if value is not None and not (isinstance(value, str) and _ISO.match(value.strip())):
        raise ValueError("must be an ISO-8601 date or date-time, e.g. 2026-01-31T12:00:00Z")
    return value


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


class HistoryQuery(Strict):
    page: int = Field(1, ge=1, le=100_000)
    limit: int = Field(20, ge=1, le=100)
    status: PaymentStatus | None = None
    startDate: datetime | None = Field(None, description="ISO-8601; UTC when no offset")
    endDate: datetime | None = Field(None, description="ISO-8601; UTC when no offset")

    @field_validator("startDate", mode="before")
    @classmethod
    def _start_iso(cls, value: object) -> object:
        return _iso_text(value)

    @field_validator("startDate")
    @classmethod
    def _start_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @field_validator("endDate", mode="before")
    @classmethod
    def _whole_end_day(cls, value: object) -> object:
        # endDate=2026-01-09 includes that day: up to its last microsecond.
        if isinstance(_iso_text(value), str) and len(value.strip()) == 10:
            return value.strip() + "T23:59:59.999999"
        return value

    @field_validator("endDate")
    @classmethod
    def _end_after_start(cls, value: datetime | None, info) -> datetime | None:
        value, start = _utc(value), info.data.get("startDate")
        if value is not None and start is not None and start > value:
            raise ValueError("endDate must not be before startDate")
        return value


class HistoryMethod(BaseModel):
    type: str
    last4: str | None


class HistoryItem(BaseModel):
    id: str = Field(alias="_id")
    orderId: str
    amount: int
    currency: str
    status: PaymentStatus
    amountRefunded: int
    refundStatus: Literal["partially_refunded", "refunded"] | None
    paymentMethod: HistoryMethod | None
    createdAt: str


class Pagination(BaseModel):
    currentPage: int
    totalPages: int
    totalItems: int
    itemsPerPage: int


class HistoryOut(BaseModel):
    success: Literal[True]
    payments: list[HistoryItem]
    pagination: Pagination


# --- orders -----------------------------------------------------------------------------

class OrderItemOut(BaseModel):
    vendorId: str
    description: str
    quantity: int
    unitAmount: int
    amount: int


class OrderDetail(BaseModel):
    id: str
    customerId: str
    status: str
    currency: str
    subtotal: int
    tax: int
    shipping: int
    discount: int
    total: int
    items: list[OrderItemOut]
    createdAt: str


class OrderOut(BaseModel):
    success: Literal[True]
    order: OrderDetail


class WebhookOut(BaseModel):
    received: Literal[True]


def iso(value: datetime) -> str:
    """'2024-01-15T10:30:00Z' as in the original description."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- payment methods (saved cards) ------------------------------------------------------

PaymentMethodId = Annotated[str, Field(pattern=r"^pm_[A-Za-z0-9_]+$", max_length=255)]


class SavedCardDetails(BaseModel):
    brand: str | None
    last4: str | None
    expMonth: int | None
    expYear: int | None


class SavedMethod(BaseModel):
    id: str
    type: str
    card: SavedCardDetails | None
    isDefault: bool


class ListedMethod(SavedMethod):
    createdAt: str


class MethodsOut(BaseModel):
    success: Literal[True]
    paymentMethods: list[ListedMethod]


class AddMethodIn(Strict):
    paymentMethodId: PaymentMethodId
    setAsDefault: bool = False


class AddMethodOut(BaseModel):
    success: Literal[True]
    message: str
    paymentMethod: SavedMethod


class MessageOut(BaseModel):
    success: Literal[True]
    message: str


# --- refund -----------------------------------------------------------------------------

RefundReason = Literal[tuple(REASONS)]  # type: ignore[valid-type]


class RefundIn(Strict):
    paymentId: str = Field(min_length=1, max_length=64)
    amount: int | None = Field(None, gt=0, le=99_999_999, strict=True,
                               description="Minor units (10000 = 100.00 USD); default: all "
                                           "that can still be refunded")
    reason: RefundReason = "customer_request"
    notes: str | None = Field(None, max_length=1000, pattern=r"^[^\x00]*$")


class RefundDetail(BaseModel):
    id: str = Field(description="Stripe's refund id (re_...); the request's id while the "
                                "refund waits to be sent to Stripe")
    paymentId: str
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed", "canceled"]
    reason: str
    createdAt: str


class RefundOut(BaseModel):
    success: Literal[True]
    refund: RefundDetail


# --- vendor payouts ---------------------------------------------------------------------

class VendorPayoutsQuery(Strict):
    page: int = Field(1, ge=1, le=100_000)
    limit: int = Field(20, ge=1, le=100)
    status: Literal["pending", "processing", "paid", "failed"] | None = None
    currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$",
                                 description="Currency of the summary (default: the latest "
                                             "payout's)")


class PayoutPeriod(BaseModel):
    start: str | None
    end: str


class PayoutBreakdown(BaseModel):
    totalSales: int
    platformFee: int
    netAmount: int
    refunds: int


class PayoutItem(BaseModel):
    id: str = Field(alias="_id")
    vendorId: str
    period: PayoutPeriod
    amount: int
    currency: str
    status: Literal["pending", "processing", "paid", "failed"]
    breakdown: PayoutBreakdown
    paymentCount: int
    paidAt: str | None


class PayoutSummary(BaseModel):
    totalPaid: int
    totalPending: int
    nextPayoutDate: str
    currency: str | None


class VendorPayoutsOut(BaseModel):
    success: Literal[True]
    payouts: list[PayoutItem]
    summary: PayoutSummary
