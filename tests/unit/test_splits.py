"""Split lines: a sale divided exactly between vendors and platform; refunds taken back
exactly, whatever the refunds and their order (property tests)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from portal.ledger.splits import allocate, fee_of, refund_targets, sale_shares
from portal.money import amount_step, exponent

CURRENCIES = ("USD", "JPY", "KWD", "EUR")


def test_allocate_gives_leftover_units_to_the_largest_remainders():
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(10, [2, 3]) == [4, 6]
    assert allocate(0, [5, 7]) == [0, 0]


def test_kwd_lines_end_in_0_as_stripe_requires():
    # 10.010 KWD, items 3.330 and 6.680: a 10 % fee of 0.333 / 0.668 would leave nets that
    # Stripe cannot transfer; in steps of 0.010 the fees are 0.330 and 0.670.
    assert sale_shares(10010, [3330, 6680], 10, step=10) == [(3330, 330), (6680, 670)]
    assert refund_targets([(3330, 330), (6680, 670)], 5000, 10010, step=10) == [
        (1660, 160), (3340, 330)]
    assert sale_shares(10015, [3333, 6677], 10, step=10) == sale_shares(10015, [3333, 6677], 10)


def test_the_original_descriptions_example():
    # 299.99 USD: 269.99 of goods (one vendor), 10 %: platform fee 27.00.
    assert sale_shares(29999, [26999], 10) == [(29999, 2700)]
    assert fee_of(26999, 10) == 2700 and fee_of(5, 10) == 1 and fee_of(4, 10) == 0


@st.composite
def orders(draw):
    currency = draw(st.sampled_from(CURRENCIES))
    step = 10 if exponent(currency) == 3 else 1  # KWD amounts end in 0 at Stripe
    subtotals = draw(st.lists(st.integers(0, 10_000_000).map(lambda v: v * step),
                              min_size=1, max_size=6))
    extras = draw(st.integers(0, 500_000)) * step  # tax + shipping - discount
    amount = sum(subtotals) + extras
    fee = draw(st.integers(0, 100))
    return currency, subtotals, max(amount, step), fee


@given(orders())
def test_lines_and_fees_sum_exactly_to_the_payment(order):
    currency, subtotals, amount, percent = order
    step = amount_step(currency)
    shares = sale_shares(amount, subtotals, percent, step)
    assert sum(gross for gross, _ in shares) == amount
    assert all(0 <= fee <= gross for gross, fee in shares)
    # KWD: every line ends in 0, so every payout is an amount Stripe can transfer.
    assert all(gross % step == 0 and fee % step == 0 for gross, fee in shares)
    platform = sum(fee for _, fee in shares)
    vendors = sum(gross - fee for gross, fee in shares)
    assert platform + vendors == amount


@given(orders(), st.data())
def test_refunds_take_back_exactly_and_a_full_refund_returns_everything(order, data):
    currency, subtotals, amount, percent = order
    step = amount_step(currency)
    shares = sale_shares(amount, subtotals, percent, step)
    cuts = [cut * step for cut in data.draw(st.lists(st.integers(1, amount // step),
                                                      max_size=5))] if amount > step else []
    refunded, given_back = 0, [(0, 0)] * len(shares)
    for total in [*sorted(set(cuts)), amount]:  # cumulative refunded after each refund
        if total == refunded:
            continue
        part, refunded = total - refunded, total
        targets = refund_targets(shares, refunded, amount, step)
        assert all(gross % step == 0 and fee % step == 0 for gross, fee in targets)
        # Each refund's lines are the difference to the new target: never giving back more
        # than the vendor had, and the refund's gross lines sum to the refund.
        deltas = [(t[0] - g[0], t[1] - g[1]) for t, g in zip(targets, given_back, strict=True)]
        assert sum(d for d, _ in deltas) == part
        assert all(0 <= t[0] <= s[0] and 0 <= t[1] <= s[1]
                   for t, s in zip(targets, shares, strict=True))
        given_back = targets
    assert given_back == shares


def test_a_refund_borne_by_one_vendor_is_taken_from_that_vendor_only():
    # The case: €10.00 of vera's (€33.50 of items) and €23.70 of victor's, both
    # refunded by item: each vendor gives back their own item, fees in proportion.
    shares = sale_shares(5720, [3350, 2370], 10)
    assert shares == [(3350, 335), (2370, 237)]
    assert refund_targets(shares, 1000, 5720, borne=[1000, 0]) == [(1000, 100), (0, 0)]
    assert refund_targets(shares, 3370, 5720, borne=[1000, 2370]) == [(1000, 100), (2370, 237)]
    # A shared €10.00 on top is shared in proportion to the vendors' gross...
    assert refund_targets(shares, 2000, 5720, borne=[1000, 0]) == [(1586, 158), (414, 41)]
    # ... but never beyond what a vendor kept: victor's item is refunded, vera takes it all.
    assert refund_targets(shares, 3370 + 1000, 5720, borne=[1000, 2370]) == [
        (2000, 200), (2370, 237)]


@given(orders(), st.data())
def test_borne_refunds_stay_exact_and_never_move_onto_another_vendor(order, data):
    """Refunds borne by one vendor (within what they may still bear: refunds.items) and
    shared ones, in any order: each refund's lines sum to it, no line exceeds the sale, a
    full refund returns everything, and a vendor bearing more leaves the others' lines as
    they were (but for a unit of rounding)."""
    currency, subtotals, amount, percent = order
    step = amount_step(currency)
    shares = sale_shares(amount, subtotals, percent, step)
    borne, shared = [0] * len(shares), 0
    before = refund_targets(shares, 0, amount, step, borne)
    for who in data.draw(st.lists(st.integers(-1, len(shares) - 1), max_size=6)):
        room = amount - shared - sum(borne)
        if who >= 0:  # what the vendor may still bear: gross less what they give back
            room = min(room, shares[who][0] - before[who][0])
        if room < step:
            continue
        part = data.draw(st.integers(1, room // step)) * step
        if who >= 0:
            borne[who] += part
        else:
            shared += part
        after = refund_targets(shares, shared + sum(borne), amount, step, borne)
        assert sum(gross for gross, _ in after) == shared + sum(borne)
        assert all(gross % step == 0 and fee % step == 0 for gross, fee in after)
        assert all(0 <= t[0] <= s[0] and 0 <= t[1] <= s[1]
                   for t, s in zip(after, shares, strict=True))
        if who >= 0:
            assert all(abs(after[i][0] - before[i][0]) <= step
                       for i in range(len(shares)) if i != who)
        before = after
    full = refund_targets(shares, amount, amount, step, borne)
    assert full == shares
    if not any(borne):
        assert before == refund_targets(shares, shared, amount, step)
