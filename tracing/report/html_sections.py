"""The HTML report's later sections: the trend, the agency by district table, the staff of
each agency, the QR codes outside the registry and the rejected scans."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from tracing.report.i18n import NONE, Labels
from tracing.report.model import Count, Mark, Period, Ratio, Report


def _n(text: str, value: Count | Ratio | None = None) -> str:
    cls = "n hidden" if isinstance(value, Mark) else "n"
    return f'<td class="{cls}">{escape(text)}</td>'


def _table(head: list[str], rows: list[str], first_left: int = 1) -> str:
    cells = "".join(
        f"<th>{escape(h)}</th>" if i < first_left else f'<th class="n">{escape(h)}</th>'
        for i, h in enumerate(head)
    )
    return (
        f'<div class="scroll"><table><thead><tr>{cells}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def edition_name(report: Report, labels: Labels) -> str:
    if report.edition is None:
        return labels("total")
    dim, key = report.edition
    return f"{labels('dim.' + dim)}: {labels.group(dim, key)}"  # type: ignore[arg-type]


def _trend(report: Report, labels: Labels, fig: Callable[[str], str]) -> list[str]:
    if not report.trend:
        return []
    weeks = [Period("week", m, m).label for m in report.trend_weeks]
    out = [f"<h2>{escape(labels('trend', n=len(weeks)))}</h2>", fig("chart.trend_total")]
    dims = []
    for s in report.trend:
        if s.dimension not in dims:
            dims.append(s.dimension)
    for dim in dims:
        if dim != "total":
            out.append(fig(f"chart.trend_{dim}"))
        name = labels("total") if dim == "total" else labels("dim." + dim)
        rows = []
        for s in (s for s in report.trend if s.dimension == dim):
            label = labels("total") if dim == "total" else labels.group(dim, s.key)  # type: ignore[arg-type]
            cells = "".join(
                _n(labels("no_data"))
                if p.scans is None
                else _n(
                    f"{labels.integer(p.scans)} / {labels.integer(p.scanners or 0)}",
                    p.scans if isinstance(p.scans, Mark) else p.scanners,
                )
                for p in s.points
            )
            rows.append(f"<tr><td>{escape(label)}</td>{cells}</tr>")
        head = [f"{name} ({labels('scans')} / {labels('scanners')})", *weeks]
        out.append(_table(head, rows))
    return out


def _cross(report: Report, labels: Labels) -> list[str]:
    cross = report.cross
    if cross is None:
        return []
    head = [labels("dim.agency"), *(labels.group("district", c) for c in cross.columns)]
    rows = []
    for agency, cells in cross.rows:
        tds = "".join(
            _n(f"{c.active}/{c.registered}; {labels.integer(c.scanners)}", c.scanners)
            if c.registered or c.active
            else _n(NONE)
            for c in cells
        )
        rows.append(f"<tr><td>{escape(labels.group('agency', agency))}</td>{tds}</tr>")
    return [f"<h2>{escape(labels('cross'))}</h2>", _table(head, rows)]


def _staff(report: Report, labels: Labels) -> list[str]:
    if report.staff is None:
        return []
    days = report.staff[0].daily if report.staff else ()
    head = [
        labels("dim.agency"),
        labels("headcount"),
        *(f"{labels.weekday(d)} {d:%d/%m}" for d, _ in days),
        labels("mean_daily"),
        labels("share_headcount"),
    ]
    rows = []
    for r in report.staff:
        tds = "".join(_n(labels.integer(n), n) for _, n in r.daily)
        rows.append(
            f"<tr><td>{escape(labels.group('agency', r.agency))}</td>"
            f"{_n(labels.integer(r.headcount))}{tds}"
            f"{_n(labels.number(r.mean_daily_scanners), r.mean_daily_scanners)}"
            f"{_n(labels.percent(r.share), r.share)}</tr>"
        )
    return [f"<h2>{escape(labels('staff'))}</h2>", _table(head, rows)]


def _unregistered(report: Report, labels: Labels) -> list[str]:
    out = [f"<h2>{escape(labels('unregistered'))}</h2>"]
    if not report.unregistered:
        return [*out, f"<p>{escape(labels('unregistered.none'))}</p>"]
    head = [
        labels("premises_id"),
        labels("scans"),
        labels("gateways"),
        labels("first_seen"),
        labels("last_seen"),
    ]
    rows = [
        f"<tr><td>{escape(u.premises_id)}</td>{_n(labels.integer(u.scans), u.scans)}"
        f"{_n(labels.integer(u.gateways))}{_n(labels.day(u.first_seen))}"
        f"{_n(labels.day(u.last_seen))}</tr>"
        for u in report.unregistered
    ]
    return [*out, _table(head, rows)]


def _rejected(report: Report, labels: Labels) -> list[str]:
    out = [f"<h2>{escape(labels('rejected'))}</h2>"]
    if not report.rejected:
        return [*out, f"<p>{escape(labels('rejected.none'))}</p>"]
    by_reason: dict[str, int] = {}
    for r in report.rejected:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + r.scans
    reasons = sorted(by_reason)
    gateways = sorted({r.gateway_id for r in report.rejected})
    counts = {(r.reason, r.gateway_id): r.scans for r in report.rejected}
    head = [labels("gateway"), *reasons]
    rows = [
        f"<tr><td>{escape(g or NONE)}</td>"
        + "".join(_n(labels.integer(counts.get((reason, g), 0))) for reason in reasons)
        + "</tr>"
        for g in gateways
    ]
    rows.append(
        f'<tr class="total"><td>{escape(labels("all_gateways"))}</td>'
        + "".join(_n(labels.integer(by_reason[reason])) for reason in reasons)
        + "</tr>"
    )
    return [*out, _table(head, rows)]


def sections_more(report: Report, labels: Labels, fig: Callable[[str], str]) -> list[str]:
    """The sections after the group tables, in page order."""
    return [
        *_trend(report, labels, fig),
        *_cross(report, labels),
        *_staff(report, labels),
        *_unregistered(report, labels),
        *_rejected(report, labels),
    ]
