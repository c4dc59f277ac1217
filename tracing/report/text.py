"""The report's sentences: the period in words and the footer notes."""

from __future__ import annotations

from datetime import UTC, datetime

from tracing.report.i18n import Labels
from tracing.report.model import TZ, Report


def period_text(report: Report, labels: Labels) -> tuple[str, str]:
    """(the period, the period compared with) as the report's header says them."""
    p, q = report.period, report.previous
    year, week, _ = p.first.isocalendar()
    if p.kind == "week":
        now = labels("period.week", week=week, year=year, first=labels.day(p.first),
                     last=labels.day(p.last))  # fmt: skip
        before = labels("previous.week", first=labels.day(q.first), last=labels.day(q.last))
    else:
        now = labels("period.day", first=labels.day(p.first))
        before = labels("previous.day", first=labels.day(q.first))
    return now, before


def notes(report: Report, labels: Labels) -> list[str]:
    """The footer: the suppression rule, the time rule, how counts are made."""
    t = report.threshold
    out = [
        labels("note.suppression", t=t, t1=t - 1),
        labels(f"note.time.{report.period.kind}"),
        labels("note.counts"),
    ]
    if report.has_population:
        out.append(labels("note.uptake"))
    at = datetime.fromtimestamp(report.generated_at_ms / 1000, tz=UTC).astimezone(TZ)
    out.append(labels("generated", at=f"{labels.day(at.date())} {at:%H:%M}"))
    return out
