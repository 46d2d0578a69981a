"""The analytics page's server-drawn bar charts (portal/charts.py)."""

from datetime import date, timedelta

from portal.charts import HEIGHT, WIDTH, bar_chart


def days(values):
    return [(date(2026, 3, 1) + timedelta(days=i), v) for i, v in enumerate(values)]


def test_one_bar_a_day_with_its_tooltip_and_table_row():
    c = bar_chart("v", "Gross volume", days([100, 0, 300]), lambda v: f"${v / 100:.2f}")
    assert [b.title for b in c.bars] == ["2026-03-01: $1.00", "2026-03-02: $0.00",
                                         "2026-03-03: $3.00"]
    assert c.rows == [("2026-03-01", "$1.00"), ("2026-03-02", "$0.00"), ("2026-03-03", "$3.00")]
    tallest = max(c.bars, key=lambda b: b.height)
    assert tallest.title.endswith("$3.00") and tallest.y == 10  # reaches the top of the plot
    assert c.bars[0].height * 3 == tallest.height and c.bars[1].height == 0
    assert [label for _, label in c.y_ticks] == ["$0.00", "$3.00"]  # zero, then the top
    assert [label for _, label in c.x_labels] == ["Mar 1", "Mar 2", "Mar 3"]
    assert all(c.left <= b.x and b.x + b.width <= c.right <= WIDTH for b in c.bars)


def test_a_negative_day_is_drawn_below_zero():
    c = bar_chart("n", "Net revenue", days([200, -100]), str)
    zero = [y for y, label in c.y_ticks if label == "0"][0]
    up, down = c.bars
    assert up.y + up.height == zero and down.y == zero and down.height * 2 == up.height
    assert zero + down.height <= HEIGHT


def test_no_days_draws_an_empty_chart():
    c = bar_chart("e", "Payments", [], str)
    assert (c.bars, c.rows, c.x_labels) == ([], [], [])


def test_a_day_with_nothing_to_say_has_no_bar_and_reads_a_dash():
    c = bar_chart("s", "Success rate", days([50.0, None, 100.0]), lambda v: f"{v:.1f} %")
    assert [b.title for b in c.bars] == ["2026-03-01: 50.0 %", "2026-03-03: 100.0 %"]
    assert c.rows[1] == ("2026-03-02", "—")
