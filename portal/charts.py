"""Daily bar charts drawn on the server as SVG (templates/analytics/_chart.html): axes, labels,
a ``<title>`` tooltip per bar, and the same points as a table for screen readers and for
anyone who wants the numbers. No script: the CSP allows none but Stripe.js and htmx. Shared
by the back office's analytics and the vendor dashboard (one chart per currency), so it
imports no package of the portal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, BOTTOM, TOP = 84, 28, 24, 10  # room for the labels around the plot


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass
class Chart:
    id: str
    title: str
    bars: list[Bar]
    y_ticks: list[tuple[float, str]]  # (y, label)
    x_labels: list[tuple[float, str]]  # (x, label)
    rows: list[tuple[str, str]]  # (day, value) for the table
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    base: int = HEIGHT - BOTTOM


def bar_chart(chart_id: str, title: str, points: list[tuple[date, float | None]],
              label: Callable[[float], str]) -> Chart:
    """One bar a day; a negative value (more given back than taken) draws below the axis
    at zero; None (nothing to say that day, as a rate without attempts) draws no bar and
    reads "—". ``label`` formats a value (an amount in its currency, a count, a rate)."""
    values = [v for _, v in points if v is not None]
    top, bottom = max([0, *values]), min([0, *values])
    span = (top - bottom) or 1
    plot_h = HEIGHT - BOTTOM - TOP
    zero = TOP + plot_h * top / span
    step = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    bars = []
    for i, (day, value) in enumerate(points):
        if value is None:
            continue
        h = plot_h * abs(value) / span
        bars.append(Bar(LEFT + i * step + step * 0.1, zero - h if value >= 0 else zero,
                        max(step * 0.8, 1), h, f"{day:%Y-%m-%d}: {label(value)}"))
    ticks = sorted({top, bottom, 0})
    y_ticks = [(TOP + plot_h * (top - v) / span, label(v)) for v in ticks]
    picks = sorted({0, len(points) // 2, len(points) - 1}) if points else []
    x_labels = [(LEFT + i * step + step / 2, f"{points[i][0]:%b %-d}") for i in picks]
    return Chart(chart_id, title, bars, y_ticks, x_labels,
                 [(f"{day:%Y-%m-%d}", "—" if v is None else label(v)) for day, v in points])
