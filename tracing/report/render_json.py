"""The report as JSON: numbers as numbers, a suppressed cell as its mark ("<5" or "x"),
times ISO-8601 UTC, days as local dates."""

from __future__ import annotations

import json

from tracing.models import iso_utc
from tracing.report.i18n import Labels, Lang
from tracing.report.model import DIMENSIONS, GroupRow, Period, Report
from tracing.report.tabular import Value, value
from tracing.report.text import notes


def _period(p: Period) -> dict[str, object]:
    return {
        "kind": p.kind,
        "label": p.label,
        "first_day": p.first.isoformat(),
        "last_day": p.last.isoformat(),
        "start": iso_utc(p.start_ms),
        "end": iso_utc(p.end_ms),
    }


def _row(r: GroupRow, name: str) -> dict[str, Value]:
    return {
        "key": r.key,
        "name": name,
        "registered": r.registered,
        "active": r.active,
        "share_active": value(r.share_active),
        "scans": value(r.scans),
        "scanners": value(r.scanners),
        "scans_per_active": value(r.scans_per_active),
        "change_share_pp": value(r.change_share_pp),
        "change_scans": value(r.change_scans),
        "change_scanners": value(r.change_scanners),
        "population": r.population,
        "uptake": value(r.uptake),
    }


def report_json(report: Report, lang: Lang = "vi") -> dict[str, object]:
    labels = Labels(lang)
    return {
        "report": "weekly" if report.period.kind == "week" else "daily",
        "timezone": "Asia/Ho_Chi_Minh",
        "period": _period(report.period),
        "previous": _period(report.previous),
        "generated_at": iso_utc(report.generated_at_ms),
        "suppression": {"threshold": report.threshold, "few": "<5", "hidden": "x"},
        "total": _row(report.total, labels("total")),
        "tables": {
            d: [_row(r, labels.group(d, r.key)) for r in report.table(d).rows] for d in DIMENSIONS
        },
        "days": [
            {
                "day": p.day.isoformat(),
                "current": p.current,
                "active": p.active,
                "scans": value(p.scans),
                "scanners": value(p.scanners),
            }
            for p in report.days
        ],
        "inactive": [
            {
                "premises_id": p.premises_id,
                "name": p.name,
                "category": p.category,
                "district": p.district,
                "ward": p.ward,
                "agency": p.agency,
            }
            for p in report.inactive
        ],
        "notes": notes(report, labels),
    }


def render_json(report: Report, lang: Lang = "vi") -> str:
    return json.dumps(report_json(report, lang), ensure_ascii=False, indent=2) + "\n"
