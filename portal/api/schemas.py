"""Request and response models of the JSON API (field names as in the original description).

The one source of truth of the API's shapes: requests are validated with these models, views
return response models (``Out``) that the ``operation`` decorator sends (openapi.py), and the
OpenAPI document is generated from both, so the document cannot drift from what is sent.
Errors are ``ErrorOut`` (built by errors.api_error).
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

from ..ledger.models import PAYMENT_STATUSES
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


class Out(BaseModel):
    """A response body: every field is sent (null too) and required in the document; a key
    the model does not declare cannot be sent."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True,
                              json_schema_serialization_defaults_required=True)


# --- errors -----------------------------------------------------------------------------

class ErrorDetail(Strict):
    code: str
    message: str
    fields: dict[str, str] = Field(default_factory=dict, description="Each input at fault "
                                   "and what is wrong with it; absent when none is")


class ErrorOut(Strict):
    """Every error of the API."""

    success: Literal[False]
    error: ErrorDetail


# --- auth -------------------------------------------------------------------------------

class TokenIn(Strict):
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^\x00]*$")
    password: str = Field(min_length=1, max_length=200)


class TokenOut(Out):
    success: Literal[True] = True
    token: str
    expiresAt: str = Field(description="ISO-8601 UTC")


# --- create-intent ----------------------------------------------------------------------

class CreateIntentIn(Strict):
    orderId: str = Field(min_length=1, max_length=64)
    amount: Amount
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    paymentMethodId: str | None = Field(None, pattern=r"^pm_[A-Za-z0-9_]+$", max_length=255,
                                        description="A saved card of the caller")


class IntentMetadata(Out):
    orderId: str
    userId: str


class IntentOut(Out):
    id: str
    clientSecret: str
    amount: int
    currency: str
    status: str
    metadata: IntentMetadata


class CreateIntentOut(Out):
    success: Literal[True] = True
    paymentIntent: IntentOut
    publishableKey: str


# --- confirm ----------------------------------------------------------------------------

class ConfirmIn(Strict):
    paymentIntentId: str = Field(pattern=r"^pi_[A-Za-z0-9_]+$", max_length=255)
    paymentMethodId: str = Field(pattern=r"^pm_[A-Za-z0-9_]+$", max_length=255)


class CardBrief(Out):
    brand: str | None
    last4: str | None


class ConfirmMethod(Out):
    id: str | None
    type: str
    card: CardBrief | None


class ConfirmedPayment(Out):
    id: str
    paymentIntentId: str
    status: PaymentStatus
    amount: int
    currency: str
    paymentMethod: ConfirmMethod | None
    receiptUrl: str | None
    createdAt: str


class ConfirmOut(Out):
    success: Literal[True] = True
    payment: ConfirmedPayment


class ActionRequired(Out):
    code: Literal["requires_action"] = "requires_action"
    message: str


class RequiresActionOut(Out):
    """402: the card asks for 3-D Secure; finish it with Stripe.js handleNextAction."""

    success: Literal[False] = False
    requiresAction: Literal[True] = True
    clientSecret: str
    error: ActionRequired


# --- payments/<id> ----------------------------------------------------------------------

class MethodOut(Out):
    type: str
    card: CardBrief | None


class Breakdown(Out):
    subtotal: int
    tax: int
    shipping: int
    discount: int
    platformFee: int | None = Field(description="Filled from the vendor split lines")
    vendorAmount: int | None


class PaymentDetail(Out):
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


class PaymentOut(Out):
    success: Literal[True] = True
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


class HistoryMethod(Out):
    type: str
    last4: str | None


class HistoryItem(Out):
    id: str = Field(alias="_id")
    orderId: str
    amount: int
    currency: str
    status: PaymentStatus
    amountRefunded: int
    refundStatus: Literal["partially_refunded", "refunded"] | None
    paymentMethod: HistoryMethod | None
    createdAt: str


class Pagination(Out):
    currentPage: int
    totalPages: int
    totalItems: int
    itemsPerPage: int


class HistoryOut(Out):
    success: Literal[True] = True
    payments: list[HistoryItem]
    pagination: Pagination


# --- orders -----------------------------------------------------------------------------

class OrderItemOut(Out):
    id: str = Field(description="The item's id: what a refund of items names (`itemId`)")
    vendorId: str
    description: str
    quantity: int
    unitAmount: int
    amount: int


class OrderDetail(Out):
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


class OrderOut(Out):
    success: Literal[True] = True
    order: OrderDetail


class WebhookOut(Out):
    received: Literal[True]


def iso(value: datetime) -> str:
    """'2024-01-15T10:30:00Z' as in the original description."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- payment methods (saved cards) ------------------------------------------------------

PaymentMethodId = Annotated[str, Field(pattern=r"^pm_[A-Za-z0-9_]+$", max_length=255)]


class SavedCardDetails(Out):
    brand: str | None
    last4: str | None
    expMonth: int | None
    expYear: int | None


class SavedMethod(Out):
    id: str
    type: str
    card: SavedCardDetails | None
    isDefault: bool


class ListedMethod(SavedMethod):
    createdAt: str


class MethodsOut(Out):
    success: Literal[True] = True
    paymentMethods: list[ListedMethod]


class AddMethodIn(Strict):
    paymentMethodId: PaymentMethodId
    setAsDefault: bool = False


class AddMethodOut(Out):
    success: Literal[True] = True
    message: str
    paymentMethod: SavedMethod


class MessageOut(Out):
    success: Literal[True] = True
    message: str


# --- refund -----------------------------------------------------------------------------

RefundReason = Literal[tuple(REASONS)]  # type: ignore[valid-type]


class RefundItemIn(Strict):
    itemId: str = Field(min_length=1, max_length=64, description="An order item's `id`")
    quantity: int = Field(gt=0, le=999_999, strict=True)


class RefundIn(Strict):
    paymentId: str = Field(min_length=1, max_length=64)
    amount: int | None = Field(None, gt=0, le=99_999_999, strict=True,
                               description="Minor units (10000 = 100.00 USD); default: all "
                                           "that can still be refunded. Not with `items`")
    reason: RefundReason = "customer_request"
    notes: str | None = Field(None, max_length=1000, pattern=r"^[^\x00]*$")
    items: list[RefundItemIn] | None = Field(
        None, min_length=1, max_length=100,
        description="Refund these items instead of an amount: each item's vendor bears its "
                    "refund, and an item's amount is what was paid for it (its share of tax "
                    "and shipping included) in proportion to the quantity")


class RefundDetail(Out):
    id: str = Field(description="Stripe's refund id (re_...); the request's id while the "
                                "refund waits to be sent to Stripe")
    paymentId: str
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed", "canceled"]
    reason: str
    createdAt: str


class RefundOut(Out):
    success: Literal[True] = True
    refund: RefundDetail


# --- vendor payouts ---------------------------------------------------------------------

class VendorPayoutsQuery(Strict):
    page: int = Field(1, ge=1, le=100_000)
    limit: int = Field(20, ge=1, le=100)
    status: Literal["pending", "processing", "paid", "failed"] | None = None
    currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$",
                                 description="Currency of the summary (default: the latest "
                                             "payout's)")


class PayoutPeriod(Out):
    start: str | None
    end: str


class PayoutBreakdown(Out):
    totalSales: int
    platformFee: int
    netAmount: int
    refunds: int


class PayoutItem(Out):
    id: str = Field(alias="_id")
    vendorId: str
    period: PayoutPeriod
    amount: int
    currency: str
    status: Literal["pending", "processing", "paid", "failed"]
    breakdown: PayoutBreakdown
    paymentCount: int
    paidAt: str | None


class PayoutSummary(Out):
    totalPaid: int
    totalPending: int
    nextPayoutDate: str
    currency: str | None


class VendorPayoutsOut(Out):
    success: Literal[True] = True
    payouts: list[PayoutItem]
    summary: PayoutSummary


# --- analytics ----------------------------------------------------------------------------

class AnalyticsQuery(BaseModel):
    """Unknown parameters are ignored, as on the admin's page."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    from_: str | None = Field(None, alias="from", description="First day, YYYY-MM-DD (UTC); "
                              "with `to`. Neither: the last 30 days, today included")
    to: str | None = Field(None, description="Last day, included, YYYY-MM-DD (UTC)")
    currency: str | None = Field(None, description="ISO code; default: the currency with the "
                                 "most volume")


class AnalyticsPeriod(Out):
    start: str  # YYYY-MM-DD, included
    end: str  # YYYY-MM-DD, included
    days: int


class AnalyticsTotals(Out):
    payments: int
    grossVolume: int
    platformFees: int
    feesReturned: int
    netRevenue: int
    refunded: int
    refundRate: float | None
    refunds: int  # refunds asked for in the period that succeeded
    averageOrderValue: int | None
    succeeded: int  # payments made in the period that succeeded
    failed: int  # payments made in the period that failed (and were not paid since)
    successRate: float | None
    customers: int  # who paid in the period
    newCustomers: int  # ... for the first time in this currency
    returningCustomers: int


class AnalyticsDay(Out):
    date: str
    payments: int
    grossVolume: int
    netRevenue: int
    refunded: int
    successRate: float | None


class AnalyticsDecline(Out):
    reason: str
    payments: int


class AnalyticsVendor(Out):
    vendorId: str
    email: str
    grossVolume: int
    fees: int


class AnalyticsOut(Out):
    success: Literal[True] = True
    currency: str
    currencies: list[str]
    period: AnalyticsPeriod
    previousPeriod: AnalyticsPeriod
    totals: AnalyticsTotals
    previousTotals: AnalyticsTotals
    payoutsPaid: int
    payoutsPending: int
    daily: list[AnalyticsDay]
    topVendorsByGrossVolume: list[AnalyticsVendor]
    topVendorsByFees: list[AnalyticsVendor]
    declines: list[AnalyticsDecline]
