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


def local_time(ms: int, labels: Labels) -> str:
    at = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(TZ)
    return f"{at:%H:%M} {labels.day(at.date())}"


def document_title(report: Report, labels: Labels) -> str:
    """The title as a provincial report has it: "Báo cáo kết quả thực hiện quét mã QR,
    tuần từ 15/11/2021 đến 21/11/2021"."""
    p = report.period
    return labels(f"doc.title.{p.kind}", first=labels.day(p.first), last=labels.day(p.last))


def status_lines(report: Report, labels: Labels) -> list[str]:
    """The cut-off, and what an incomplete period or an empty previous one means."""
    at = local_time(report.cutoff_ms, labels)
    out = [labels("cutoff", at=at)]
    if not report.complete:
        out.append(labels(f"incomplete.{report.period.kind}", at=at))
    if report.previous_empty:
        out.append(labels("previous_empty"))
    return out


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
    if report.staff is not None:
        out.append(labels("note.staff"))
    at = datetime.fromtimestamp(report.generated_at_ms / 1000, tz=UTC).astimezone(TZ)
    out.append(labels("generated", at=f"{labels.day(at.date())} {at:%H:%M}"))
    return out
