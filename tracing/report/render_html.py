"""The report as one self-contained HTML page: inline CSS, charts as base64 PNG, no script,
no external resource (it opens from a file, a mail attachment or an offline laptop)."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Sequence
from html import escape
from typing import Final

from tracing.report.charts import Chart, report_charts
from tracing.report.html_sections import edition_name, sections_more
from tracing.report.i18n import NONE, Labels, Lang, vi_key
from tracing.report.model import (
    Count,
    Dimension,
    GroupRow,
    InactivePremises,
    Mark,
    Ratio,
    Report,
)
from tracing.report.text import document_title, local_time, notes, period_text, status_lines

_CSS: Final = """
:root { --ink: #22313f; --muted: #5b6b7a; --line: #dde3e8; --accent: #1f5f8b; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f6f8; color: var(--ink);
       font: 14px/1.45 "Segoe UI", "Noto Sans", "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 40px; background: #fff; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 12px; margin-bottom: 18px; }
h1 { margin: 0; font-size: 26px; }
h2 { font-size: 19px; margin: 30px 0 10px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.sub, .muted { color: var(--muted); }
.period { font-size: 17px; font-weight: 600; margin: 6px 0 2px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr));
        gap: 10px; }
.kpi { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.kpi .v { font-size: 22px; font-weight: 700; font-variant-numeric: tabular-nums; }
.kpi .l { color: var(--muted); font-size: 12.5px; }
.kpi .c { font-size: 12.5px; }
figure { margin: 8px 0 14px; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-bottom: 4px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; vertical-align: top; }
th { background: #eef2f5; text-align: left; font-weight: 600; font-size: 12.5px;
     vertical-align: bottom; }
th.n { text-align: right; }
th.c { text-align: center; border-bottom: 1px solid #c5ced6; }
th.g { min-width: 190px; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; }
table.list { table-layout: fixed; }
table.list th:nth-child(1) { width: 11%; } table.list th:nth-child(2) { width: 39%; }
table.list th:nth-child(3), table.list th:nth-child(4) { width: 16%; }
tr.total td { font-weight: 700; border-top: 2px solid var(--ink); }
.hidden { color: #8a5a00; }
.up { color: #1d7a3e; } .down { color: #b3261e; }
footer { margin-top: 30px; border-top: 1px solid var(--line); padding-top: 10px;
         color: var(--muted); font-size: 12.5px; }
footer p { margin: 4px 0; }
.authority { text-transform: uppercase; font-weight: 600; font-size: 13px; margin: 0; }
.banner { border: 1px solid #e0b252; background: #fff7e0; padding: 8px 12px; border-radius: 6px;
          margin: 10px 0; }
td.nr { color: var(--muted); font-style: italic; text-align: right; }
@page { size: A4; margin: 14mm 12mm 16mm;
        @bottom-right { content: "{page} " counter(page) " / " counter(pages);
                        font: 9pt "DejaVu Sans", sans-serif; color: #5b6b7a; } }
@media print {
  body { background: #fff; font-size: 11px; } main { padding: 0; max-width: none; }
  h2, h3 { break-after: avoid; } figure, tr, .kpi { break-inside: avoid; }
  thead { display: table-header-group; } .scroll { overflow: visible; }
  table { font-size: 10px; } th.g { min-width: 0; }
}
"""


def _cell(text: str, value: Count | Ratio = None) -> str:
    if isinstance(value, Mark):
        return f'<td class="n hidden" title="{escape(value.value)}">{escape(text)}</td>'
    if isinstance(value, float) and text.startswith(("+", "-")):
        cls = "up" if value > 0 else "down"
        return f'<td class="n {cls}">{escape(text)}</td>'
    return f'<td class="n">{escape(text)}</td>'


def _change(text: str, value: Ratio, labels: Labels, empty: bool) -> str:
    return _cell(labels("no_data"), None) if empty and value is None else _cell(text, value)


def _row_cells(row: GroupRow, labels: Labels, population: bool, empty: bool = False) -> str:
    cells = [
        _cell(labels.integer(row.registered)),
        _cell(labels.integer(row.active)),
        _cell(labels.percent(row.share_active), row.share_active),
        _cell(labels.integer(row.scans), row.scans),
        _cell(labels.integer(row.scanners), row.scanners),
        _cell(labels.number(row.scans_per_active), row.scans_per_active),
        _change(labels.points(row.change_share_pp), row.change_share_pp, labels, empty),
        _change(labels.change(row.change_scans), row.change_scans, labels, empty),
        _change(labels.change(row.change_scanners), row.change_scanners, labels, empty),
    ]
    if population:
        pop = labels.integer(row.population) if row.population is not None else NONE
        cells += [_cell(pop), _cell(labels.percent(row.uptake, 2), row.uptake)]
    return "".join(cells)


def _group_table(report: Report, labels: Labels, dimension: Dimension) -> str:
    """Two header rows: the period's columns, then the changes grouped under one title."""
    kind = report.period.kind
    population = dimension == "district" and report.has_population
    now = [
        labels("registered"),
        labels("active"),
        labels("share_active"),
        labels("scans"),
        labels("scanners"),
        labels("scans_per_active"),
    ]
    changes = [labels("change.share_pp"), labels("scans"), labels("scanners")]
    tail = [labels("population"), labels("uptake")] if population else []
    first = (
        f'<th rowspan="2" class="g">{escape(labels("dim." + dimension))}</th>'
        + "".join(f'<th rowspan="2" class="n">{escape(c)}</th>' for c in now)
        + f'<th colspan="3" class="c">{escape(labels.per("previous_short", kind))}</th>'
        + "".join(f'<th rowspan="2" class="n">{escape(c)}</th>' for c in tail)
    )
    second = "".join(f'<th class="n">{escape(c)}</th>' for c in changes)
    rows = labels.ordered(dimension, report.table(dimension).rows, lambda r: r.key)
    body = [
        f"<tr><td>{escape(labels.group(dimension, r.key))}</td>"
        f"{_row_cells(r, labels, population, report.previous_empty)}</tr>"
        for r in rows
    ]
    body.append(
        f'<tr class="total"><td>{escape(labels("total"))}</td>'
        f"{_row_cells(report.total, labels, population, report.previous_empty)}</tr>"
    )
    return (
        f'<div class="scroll"><table class="groups"><thead><tr>{first}</tr><tr>{second}</tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _kpis(report: Report, labels: Labels) -> str:
    t, kind = report.total, report.period.kind

    def change(key: str, text: str) -> str:
        if report.previous_empty:
            return labels("no_data")
        return labels(f"{key}.{kind}", x=text)

    cards = [
        (labels("registered"), labels.integer(t.registered), ""),
        (labels("active"), labels.integer(t.active), ""),
        (
            labels("share_active"),
            labels.percent(t.share_active),
            change("kpi.change_pp", labels.points(t.change_share_pp)),
        ),
        (
            labels("scans"),
            labels.integer(t.scans),
            change("kpi.change", labels.change(t.change_scans)),
        ),
        (
            labels("scanners"),
            labels.integer(t.scanners),
            change("kpi.change", labels.change(t.change_scanners)),
        ),
        (labels("scans_per_active"), labels.number(t.scans_per_active), ""),
    ]
    if report.has_population:
        cards.append((labels("uptake"), labels.percent(t.uptake, 2), ""))
    return (
        '<section class="kpis">'
        + "".join(
            f'<div class="kpi"><div class="v">{escape(v)}</div><div class="l">{escape(name)}</div>'
            + (f'<div class="c">{escape(c)}</div>' if c else "")
            + "</div>"
            for name, v, c in cards
        )
        + "</section>"
    )


def _days_table(report: Report, labels: Labels) -> str:
    head = (
        f"<th>{escape(labels('day'))}</th><th class='n'>{escape(labels('active'))}</th>"
        f"<th class='n'>{escape(labels('scans'))}</th>"
        f"<th class='n'>{escape(labels('scanners'))}</th>"
    )
    rows = []
    for d in report.days:
        name = f"{labels.weekday(d.day)} {labels.day(d.day)}"
        style = "" if d.current else ' class="muted"'
        if not d.reported:
            cells = f'<td class="nr" colspan="3">{escape(labels("not_reported"))}</td>'
        else:
            cells = (
                f"{_cell(labels.integer(d.active))}{_cell(labels.integer(d.scans), d.scans)}"
                f"{_cell(labels.integer(d.scanners), d.scanners)}"
            )
        rows.append(f"<tr{style}><td>{escape(name)}</td>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _inactive(report: Report, labels: Labels) -> str:
    kind = report.period.kind
    out = [f"<h2>{escape(labels.per('inactive', kind))}</h2>"]
    if not report.inactive:
        out.append(f"<p>{escape(labels('inactive.none'))}</p>")
        return "".join(out)
    by_agency: dict[str, list[InactivePremises]] = defaultdict(list)
    for p in report.inactive:
        by_agency[p.agency].append(p)
    head = "".join(
        f"<th>{escape(c)}</th>"
        for c in (
            labels("premises_id"),
            labels("name"),
            labels("dim.category"),
            labels("dim.district"),
            labels("ward"),
        )
    )
    for agency in sorted(by_agency, key=vi_key):
        items = by_agency[agency]
        title = labels.group("agency", agency)
        count = labels("inactive.count", n=labels.integer(len(items)))
        rows = "".join(
            f"<tr><td>{escape(p.premises_id)}</td><td>{escape(p.name)}</td>"
            f"<td>{escape(labels.group('category', p.category))}</td>"
            f"<td>{escape(labels.group('district', p.district))}</td>"
            f"<td>{escape(p.ward)}</td></tr>"
            for p in items
        )
        out.append(
            f"<h3>{escape(title)} <span class='muted'>({escape(count)})</span></h3>"
            f'<table class="list"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        )
    return "".join(out)


def _figure(chart: Chart) -> str:
    data = base64.b64encode(chart.png).decode("ascii")
    return (
        f"<figure><figcaption>{escape(chart.title)}</figcaption>"
        f'<img alt="{escape(chart.title)}" src="data:image/png;base64,{data}"></figure>'
    )


def render_html(report: Report, lang: Lang = "vi", charts: Sequence[Chart] | None = None) -> str:
    labels = Labels(lang)
    kind = report.period.kind
    title = document_title(report, labels)
    now, before = period_text(report, labels)
    drawn = list(charts) if charts is not None else report_charts(report, labels)
    figures = {c.title: _figure(c) for c in drawn}

    def fig(key: str) -> str:
        return figures.get(labels(key), "")

    sections = [
        f"<h2>{escape(labels('summary'))}</h2>",
        _kpis(report, labels),
        f"<h2>{escape(labels('days'))}</h2>",
        fig("chart.days"),
        _days_table(report, labels),
    ]
    for t in report.tables:
        d = t.dimension
        sections.append(f"<h2>{escape(labels('by.' + d))}</h2>")
        sections.append(fig(f"chart.share_{d}"))
        if d == "district" and report.has_population:
            sections.append(fig("chart.uptake"))
        sections.append(_group_table(report, labels, d))
    sections += sections_more(report, labels, fig)
    sections.append(_inactive(report, labels))
    footer = "".join(f"<p>{escape(n)}</p>" for n in notes(report, labels))
    css = _CSS.replace("{page}", labels("page"))
    authority = report.authority or labels("authority.default")
    edition = (
        f'<p class="period">{escape(labels("edition", unit=edition_name(report, labels)))}</p>'
        if report.edition
        else ""
    )
    generated = labels("generated", at=local_time(report.generated_at_ms, labels))
    status = "".join(
        f'<p class="{"banner" if i else "muted"}">{escape(line)}</p>'
        for i, line in enumerate(status_lines(report, labels))
    )
    return (
        f'<!doctype html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(labels.per('title', kind))} {escape(report.period.label)}: "
        f"{escape(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n<main>\n"
        f'<header><p class="authority">{escape(authority)}</p>'
        + (f'<p class="authority">{escape(report.province)}</p>' if report.province else "")
        + f"<h1>{escape(title)}</h1>{edition}"
        f'<p class="sub">{escape(labels("subtitle"))}</p>'
        f'<p class="period">{escape(now)}</p><p class="muted">{escape(before)}</p>'
        f'<p class="muted">{escape(generated)}</p>'
        f"{status}</header>\n"
        + "\n".join(s for s in sections if s)
        + f"\n<footer>{footer}</footer>\n</main>\n</body>\n</html>\n"
    )
