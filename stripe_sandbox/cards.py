"""Stripe's test cards (docs.stripe.com/testing) and what each one does in the sandbox.

Only data and small pure functions: the payment method, payment intent, setup intent and
refund modules ask here what a card number does.
"""

from __future__ import annotations

GENERIC_DECLINE = ("card_declined", "generic_decline", "Your card was declined.")

# Declined when charged: (code, decline_code, message). The last two decline after 3DS.
DECLINED_WHEN_CHARGED = {
    "4000000000000002": GENERIC_DECLINE,
    "4000000000000341": GENERIC_DECLINE,
    "4000000000009995": ("card_declined", "insufficient_funds",
                         "Your card has insufficient funds."),
    "4000000000009987": ("card_declined", "lost_card", "Your card was declined."),
    "4000000000009979": ("card_declined", "stolen_card", "Your card was declined."),
    "4100000000000019": ("card_declined", "fraudulent", "Your card was declined."),
    "4000000000000069": ("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": ("incorrect_cvc", "incorrect_cvc",
                         "Your card's security code is incorrect."),
    "4000000000000119": ("processing_error", "processing_error",
                         "An error occurred while processing your card. Try again in a little "
                         "bit."),
    "4000008260003178": ("card_declined", "insufficient_funds",
                         "Your card has insufficient funds."),
    "4000008400001629": GENERIC_DECLINE,
}
# Declined already when saved (attached, set up): every card above but 4000000000000341,
# which attaches and is declined only when charged, and those that ask for 3-D Secure first.
DECLINED_WHEN_SAVED = frozenset(DECLINED_WHEN_CHARGED) - {
    "4000000000000341", "4000008260003178", "4000008400001629", "4100000000000019"}

# 3-D Secure: always (the first three), or unless the card was set up for later payments.
THREE_D_SECURE = frozenset({"4000002760003184", "4000008260003178", "4000000000003220",
                            "4000000000003063", "4000008400001629"})
THREE_D_SECURE_UNLESS_SET_UP = "4000002500003155"

# Refunds: pending, then succeeded; succeeded, then failed (expired_or_canceled_card).
REFUND_PENDING = "4000000000007726"
REFUND_FAILS = "4000000000005126"

# Charges whose funds are available at once instead of after the platform's delay.
AVAILABLE_AT_ONCE = "4000000000000077"

# Stripe's international test cards are 400000 + ISO 3166 numeric country.
COUNTRIES = {"036": "AU", "076": "BR", "124": "CA", "250": "FR", "276": "DE", "380": "IT",
             "392": "JP", "528": "NL", "724": "ES", "826": "GB", "840": "US"}
FUNDING = {"4000056655665556": "debit", "5200828282828210": "debit",
           "5105105105105100": "prepaid"}

# Test PaymentMethod ids that stand for a new card (docs.stripe.com/testing#cards).
TEST_PAYMENT_METHODS = {
    "pm_card_visa": "4242424242424242",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_amex": "378282246310005",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_authenticationRequiredOnSetup": "4000002500003155",
    "pm_card_bypassPending": "4000000000000077",
}


def brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("51", "52", "53", "54", "55") or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number[:2] in ("34", "37"):
        return "amex"
    if number.startswith(("6011", "65", "644", "645", "646", "647", "648", "649")):
        return "discover"
    if number[:2] in ("30", "36", "38", "39"):
        return "diners"
    return {"35": "jcb", "62": "unionpay"}.get(number[:2], "unknown")


def country(number: str) -> str:
    return COUNTRIES.get(number[6:9], "US") if number.startswith("400000") else "US"


def funding(number: str) -> str:
    return FUNDING.get(number, "credit")


def luhn_valid(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    return sum(digits[0::2] + [sum(divmod(2 * d, 10)) for d in digits[1::2]]) % 10 == 0


def decline_when_charged(number: str | None):
    """(code, decline_code, message) when a charge of this card is declined, else None."""
    return DECLINED_WHEN_CHARGED.get(number or "")


def decline_when_saved(number: str | None):
    """(code, decline_code, message) when saving (attaching, setting up) is declined."""
    return DECLINED_WHEN_CHARGED[number] if number in DECLINED_WHEN_SAVED else None


def needs_three_d_secure(number: str | None, set_up: bool) -> bool:
    return number in THREE_D_SECURE or (number == THREE_D_SECURE_UNLESS_SET_UP and not set_up)
