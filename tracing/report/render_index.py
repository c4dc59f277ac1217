"""The index page of a set of editions (`--editions agency --out-dir DIR`)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import quote

from tracing.report.i18n import Labels, Lang
from tracing.report.model import Report
from tracing.report.text import document_title


def render_index(
    report: Report, dimension: str, entries: Sequence[tuple[str, str]], lang: Lang = "vi"
) -> str:
    """`entries`: (unit name, file name) in the order written."""
    labels = Labels(lang)
    title = document_title(report, labels)
    items = "".join(
        f'<li><a href="{escape(quote(name))}">{escape(labels.group(dimension, key))}</a></li>'  # type: ignore[arg-type]
        for key, name in entries
    )
    return (
        f'<!doctype html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(labels('index'))}: {escape(title)}</title>\n</head>\n<body>\n"
        f"<p>{escape(report.authority)}</p><p>{escape(report.province)}</p>"
        f"<h1>{escape(title)}</h1>\n<h2>{escape(labels('index'))} "
        f"({escape(labels('dim.' + dimension))})</h2>\n<ul>{items}</ul>\n</body>\n</html>\n"
    )
