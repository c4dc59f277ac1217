"""The report's charts as PNG bytes, drawn with matplotlib's Agg canvas.

No pyplot: each chart is its own `Figure` on an explicit `FigureCanvasAgg`, so there is
no global figure state, no GUI backend, and nothing to close. DejaVu Sans (shipped with
matplotlib) has every Vietnamese letter. A hidden value is drawn as no bar, labelled.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tracing.report.i18n import Labels
from tracing.report.model import (
    DayPoint,
    Dimension,
    GroupRow,
    Mark,
    Period,
    PeriodKind,
    Ratio,
    Report,
    TrendSeries,
)

CURRENT: Final = "#1f5f8b"
PREVIOUS: Final = "#b3bcc6"
TEXT: Final = "#22313f"
WIDTH_IN: Final = 10.0
DPI: Final = 110


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    png: bytes


def _figure(height_in: float) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _value(x: Ratio | int) -> float | None:
    return None if x is None or isinstance(x, Mark) else float(x)


def bars(
    names: Sequence[str], values: Sequence[Ratio], labels: Labels, *, percent: bool = True
) -> bytes:
    """Horizontal bars, one per name (top to bottom), the value written at the bar's end."""
    fig = _figure(0.34 * len(names) + 0.9)
    ax = fig.add_subplot()
    ys = list(range(len(names)))[::-1]
    nums = [_value(v) for v in values]
    ax.barh(ys, [0.0 if n is None else n for n in nums], color=CURRENT, height=0.68)
    top = max([n for n in nums if n is not None] + [0.0])
    span = top if top > 0 else 1.0
    ax.set_xlim(0, span * 1.16)
    digits = percent_digits([float(t) for t in ax.get_xticks()])
    value_digits = 1 if digits == 0 else min(3, digits + 1)  # one more than the axis
    for y, n, v in zip(ys, nums, values, strict=True):
        if n is None:
            text = labels("chart.hidden")
        else:
            text = labels.percent(v, value_digits) if percent else labels.number(v, 2)
        ax.text((n or 0.0) + span * 0.01, y, text, va="center", ha="left", fontsize=8, color=TEXT)
    ax.set_yticks(ys, [_shorten(n) for n in names], fontsize=8.5)
    if percent:
        ax.xaxis.set_major_formatter(lambda x, _pos: labels.percent(x, digits))
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="x", color="#e3e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    return _png(fig)


def day_bars(days: Sequence[DayPoint], labels: Labels) -> bytes:
    """Scans per day: the previous period's bar beside the period's, per weekday."""
    current = [d for d in days if d.current]
    previous = [d for d in days if not d.current]
    fig = _figure(2.9)
    ax = fig.add_subplot()
    xs = list(range(len(current)))
    width = 0.4
    kind: PeriodKind = "week" if len(current) > 1 else "day"
    series = (
        (previous, -width / 2, PREVIOUS, labels.per("previous_period", kind)),
        (current, width / 2, CURRENT, labels.per("this_period", kind)),
    )
    top = max([float(d.scans) for d in days if not isinstance(d.scans, Mark)] + [1.0])
    for points, shift, color, name in series:
        nums = [_value(d.scans) for d in points]
        ax.bar(
            [x + shift for x in xs],
            [0.0 if n is None else n for n in nums],
            width=width,
            color=color,
            label=name,
        )
        for x, n in zip(xs, nums, strict=True):
            if n is None:
                ax.text(x + shift, top * 0.02, labels("chart.hidden"), ha="center", fontsize=7)
    ticks = [
        f"{labels.weekday(d.day)}\n{d.day:%d/%m}" if kind == "week" else labels.day(d.day)
        for d in current
    ]
    ax.set_xticks(xs, ticks, fontsize=8)
    ax.yaxis.set_major_formatter(lambda y, _pos: labels.integer(round(y)))
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylim(0, top * 1.12)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncols=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#e3e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    return _png(fig)


def percent_digits(ticks: Sequence[float]) -> int:
    """The fewest decimals that print every tick of a percent axis exactly (0..3)."""
    for digits in range(3):
        if all(abs(round(t * 100, digits) - t * 100) < 1e-9 for t in ticks):
            return digits
    return 3


def _shorten(name: str, limit: int = 38) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _share_chart(rows: Sequence[GroupRow], labels: Labels, dimension: Dimension) -> bytes:
    ordered = labels.ordered(dimension, rows, lambda r: r.key)
    names = [labels.group(dimension, r.key) for r in ordered]
    return bars(names, [r.share_active for r in ordered], labels)


def trend_lines(
    weeks: Sequence[str], series: Sequence[TrendSeries], labels: Labels, *, limit: int = 12
) -> bytes:
    """Scans per week, one line per group (the `limit` largest); a hidden or missing week
    is a gap in its line."""

    def total(s: TrendSeries) -> float:
        return sum(_value(p.scans) or 0.0 for p in s.points if p.scans is not None)

    chosen = sorted(series, key=total, reverse=True)[:limit]
    fig = _figure(3.4)
    ax = fig.add_subplot()
    xs = list(range(len(weeks)))
    for s in chosen:
        ys = [
            float("nan") if p.scans is None or isinstance(p.scans, Mark) else float(p.scans)
            for p in s.points
        ]
        name = labels("total") if s.dimension == "total" else s.key or labels("unknown")
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.4, label=_shorten(name, 28))
        if s.dimension == "total":
            scanners = [
                float("nan")
                if p.scanners is None or isinstance(p.scanners, Mark)
                else float(p.scanners)
                for p in s.points
            ]
            ax.plot(xs, scanners, marker="s", markersize=3, linewidth=1.2,
                    label=labels("scanners"))  # fmt: skip
    ax.set_xticks(xs, list(weeks), fontsize=8)
    ax.yaxis.set_major_formatter(lambda y, _pos: labels.integer(round(y)))
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#e3e7eb", linewidth=0.8)
    return _png(fig)


def report_charts(report: Report, labels: Labels) -> list[Chart]:
    """The charts of the HTML report, in page order."""
    out = [Chart(labels("chart.days"), day_bars(report.days, labels))]
    for table in report.tables:
        dimension = table.dimension
        rows = table.rows
        if rows:
            out.append(
                Chart(labels(f"chart.share_{dimension}"), _share_chart(rows, labels, dimension))
            )
    if report.trend:
        weeks = [Period("week", m, m).label for m in report.trend_weeks]
        dims = dict.fromkeys(s.dimension for s in report.trend)
        for dim in dims:
            series = [s for s in report.trend if s.dimension == dim]
            out.append(Chart(labels(f"chart.trend_{dim}"), trend_lines(weeks, series, labels)))
    if report.has_population and report.has("district"):
        districts = labels.ordered("district", report.table("district").rows, lambda r: r.key)
        known = [r for r in districts if r.population]
        if known:
            names = [labels.group("district", r.key) for r in known]
            uptake = bars(names, [r.uptake for r in known], labels)
            out.append(Chart(labels("chart.uptake"), uptake))
    return out
