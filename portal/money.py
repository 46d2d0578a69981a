"""Currency rules and the only place where decimal amounts become minor units and back.

Stripe's rules (https://docs.stripe.com/currencies): amounts are integers in the currency's
minor unit; zero-decimal currencies have no minor unit; three-decimal currencies must end in 0
(Stripe rounds to two decimals); each currency has a minimum charge; at most 8 digits.
We never round silently: anything not representable is refused with a message.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, Inexact, InvalidOperation

from babel.numbers import format_currency

ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()
)
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
# Minimum charge amounts in minor units (Stripe's table; others default to 50 minor units).
MINIMUM_CHARGE = {
    "USD": 50, "EUR": 50, "GBP": 30, "JPY": 50, "CAD": 50, "AUD": 50, "CHF": 50,
    "DKK": 250, "NOK": 300, "SEK": 300, "HKD": 400, "MXN": 1000, "SGD": 50, "NZD": 50,
    "KWD": 500, "BHD": 500, "JOD": 500, "OMR": 500, "TND": 500, "INR": 50, "PLN": 200,
}
MAX_AMOUNT = 99_999_999  # Stripe's 8-digit maximum, in minor units
_EXACT = Context(prec=40, traps=[Inexact, InvalidOperation])
# The currencies this marketplace settles in; the rest of the tables are kept for parsing.
SUPPORTED = frozenset(["USD", "EUR", "GBP", "JPY", "KWD", "CAD", "AUD", "CHF"])


class MoneyError(ValueError):
    """An amount or currency that cannot be charged; the message says why."""


def normalize_currency(code: str | None) -> str:
    """Upper-case ISO code of a supported currency, or MoneyError."""
    cur = (code or "").strip().upper()
    if cur not in SUPPORTED:
        raise MoneyError(f"currency {code!r} is not supported")
    return cur


def exponent(currency: str) -> int:
    """Number of decimals of the currency's minor unit, as Stripe counts them."""
    cur = currency.upper()
    if cur in ZERO_DECIMAL:
        return 0
    if cur in THREE_DECIMAL:
        return 3
    return 2


_EXPONENTS = {code: exponent(code) for code in SUPPORTED}


def amount_step(currency: str) -> int:
    """The smallest amount Stripe moves in the currency, in minor units: 10 for three-decimal
    currencies (their amounts must end in 0), 1 otherwise."""
    return 10 if currency.upper() in THREE_DECIMAL else 1


def check_minor(amount: int, currency: str, *, minimum: bool = True) -> int:
    """Validate an amount already in minor units; return it or raise MoneyError."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise MoneyError("amount must be a whole number of minor units")
    if amount > MAX_AMOUNT:
        raise MoneyError(f"amount exceeds the maximum of {format_minor(MAX_AMOUNT, currency)}")
    if amount < 0:
        raise MoneyError("amount must not be negative")
    if amount % amount_step(currency):
        raise MoneyError(f"{currency.upper()} amounts must end in 0 in the third decimal")
    low = MINIMUM_CHARGE.get(currency.upper(), 50) if minimum else 0
    if amount < low:
        raise MoneyError(f"amount must be at least {format_minor(low, currency)}")
    return amount


def to_minor(value: str | int | Decimal, currency: str, *, minimum: bool = True) -> int:
    """Parse a decimal amount ('299.99') into minor units (29999); refuse what Stripe can't take."""
    if isinstance(value, float):
        raise MoneyError("amounts must not be floats")
    try:
        dec = Decimal(str(value).strip())
    except InvalidOperation:
        raise MoneyError(f"{value!r} is not a number") from None
    if not dec.is_finite():
        raise MoneyError(f"{value!r} is not a number")
    if dec.adjusted() > 8:  # before any arithmetic: "1e999999999" is not worth computing
        raise MoneyError(f"amount exceeds the maximum of {format_minor(MAX_AMOUNT, currency)}")
    try:
        # Exact or refused: Inexact traps any digit beyond the currency's minor unit.
        minor = dec.quantize(Decimal(1).scaleb(-exponent(currency)), context=_EXACT)
    except (Inexact, InvalidOperation):
        raise MoneyError(
            f"{currency.upper()} allows at most {exponent(currency)} decimal places"
        ) from None
    return check_minor(int(minor.scaleb(exponent(currency))), currency, minimum=minimum)


# What a person may type as an amount: ASCII digits, optionally one point and more digits. The
# minus sign is let through only for to_minor to say that negative amounts are refused.
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def parse_amount(text: str, currency: str, *, minimum: bool = True) -> int:
    """An amount typed into a form ('40', '40.50') in minor units, or MoneyError. Only plain
    decimals: Decimal() alone would also take '1_0', '1e1', '+10' and other scripts' digits
    ('١٠'); and a comma is refused rather than guessed (thousands or decimal separator?)."""
    value = (text or "").strip()
    if not _PLAIN_DECIMAL.fullmatch(value):
        raise MoneyError(f"{value!r} is not a number: use digits and at most one decimal "
                         f"point, e.g. 40.00")
    return to_minor(value, currency, minimum=minimum)


def to_decimal(amount: int, currency: str) -> Decimal:
    """Minor units as a Decimal in major units (29999 USD -> Decimal('299.99'))."""
    return Decimal(amount).scaleb(-exponent(currency))


def major_text(amount: int, currency: str) -> str:
    """Minor units as text in major units, exactly as ``str(to_decimal(...))`` writes them
    (29999 USD -> '299.99', 1500 JPY -> '1500'), with integer arithmetic: an export writes
    two per row, and building Decimals was a sixth of its time."""
    digits = _EXPONENTS.get(currency)
    if digits is None:
        digits = exponent(currency)
    if not digits:
        return str(amount)
    if amount < 0:
        return "-" + major_text(-amount, currency)
    whole, part = divmod(amount, 10 ** digits)
    return f"{whole}.{part:0{digits}}"


def format_minor(amount: int, currency: str, locale: str = "en_US") -> str:
    """Human format with Babel ('$299.99', '¥5,000', 'KWD 1.250')."""
    cur = currency.upper()
    digits = exponent(cur)
    pattern = None
    if digits != 2:
        # Babel's CLDR digits agree with Stripe for JPY/KWD; state them so they always do.
        pattern = "¤#,##0" + ("." + "0" * digits if digits else "")
    return format_currency(
        to_decimal(amount, cur), cur, format=pattern, locale=locale, currency_digits=digits == 2
    )
