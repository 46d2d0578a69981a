"""Money: parse, format and round trips follow Stripe's currency rules; nothing is rounded."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.money import (
    MAX_AMOUNT,
    MoneyError,
    check_minor,
    exponent,
    format_minor,
    major_text,
    normalize_currency,
    to_decimal,
    to_minor,
)


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [("299.99", "USD", 29999), ("0.50", "EUR", 50), ("5000", "JPY", 5000),
     ("1.250", "KWD", 1250), ("1.25", "KWD", 1250), ("10", "USD", 1000)],
)
def test_to_minor_uses_the_currency_exponent(value, currency, minor):
    assert to_minor(value, currency) == minor


@pytest.mark.parametrize(
    ("value", "currency", "message"),
    [
        ("299.999", "USD", "at most 2 decimal"),
        ("5000.5", "JPY", "at most 0 decimal"),
        ("1.255", "KWD", "must end in 0"),
        ("0.49", "USD", "at least"),
        ("-1", "USD", "negative"),
        ("abc", "USD", "not a number"),
        ("NaN", "USD", "not a number"),
        ("1000000", "USD", "maximum"),
        # Beyond Decimal's default 28 digits a naive scaleb() rounds these to 50 and 1250.
        ("0.5000000000000000000000000000001", "USD", "at most 2 decimal"),
        ("1.2500000000000000000000000000001", "KWD", "at most 3 decimal"),
        ("1e999999999", "USD", "maximum"),  # refused before computing a billion digits
    ],
)
def test_unrepresentable_amounts_are_refused(value, currency, message):
    with pytest.raises(MoneyError, match=message):
        to_minor(value, currency)


def test_floats_are_refused():
    with pytest.raises(MoneyError, match="float"):
        to_minor(0.1, "USD")  # type: ignore[arg-type]


def test_check_minor_refuses_bools_and_non_integers():
    for bad in (True, 12.0, "100"):
        with pytest.raises(MoneyError):
            check_minor(bad, "USD")  # type: ignore[arg-type]


def test_unsupported_currency():
    assert normalize_currency(" usd ") == "USD"
    with pytest.raises(MoneyError, match="not supported"):
        normalize_currency("XXX")


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(29999, "USD", "$299.99"), (5000, "JPY", "¥5,000"), (1250, "KWD", "KWD1.250"),
     (5720, "EUR", "€57.20")],
)
def test_format(minor, currency, text):
    assert format_minor(minor, currency).replace("\xa0", "") == text


CURRENCIES = st.sampled_from(["USD", "EUR", "JPY", "KWD"])


@given(currency=CURRENCIES, minor=st.integers(min_value=0, max_value=MAX_AMOUNT))
def test_round_trip_minor_decimal_minor(currency, minor):
    if currency == "KWD":
        minor -= minor % 10
    assert to_minor(to_decimal(minor, currency), currency, minimum=False) == minor


@given(currency=CURRENCIES, minor=st.integers(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT))
def test_major_text_is_the_decimal_written_out(currency, minor):
    assert major_text(minor, currency) == str(to_decimal(minor, currency))


@given(currency=CURRENCIES, minor=st.integers(min_value=0, max_value=MAX_AMOUNT))
def test_formatted_amount_shows_exactly_the_minor_units(currency, minor):
    if currency == "KWD":
        minor -= minor % 10
    digits = "".join(ch for ch in format_minor(minor, currency) if ch.isdigit())
    assert int(digits) == minor


@given(
    currency=CURRENCIES,
    value=st.decimals(min_value=Decimal("0.5"), max_value=Decimal("999999"), places=4),
)
def test_parse_never_rounds(currency, value):
    try:
        minor = to_minor(value, currency)
    except MoneyError:
        return  # refused is fine; silently changed is not
    assert to_decimal(minor, currency) == value
    assert exponent(currency) in (0, 2, 3)
