"""The report as JSON: numbers as numbers, a suppressed cell as its mark ("<5" or "x"),
times ISO-8601 UTC, days as local dates."""

from __future__ import annotations

import json
from datetime import datetime

from tracing.models import iso_utc
from tracing.report.i18n import Labels, Lang
from tracing.report.model import TZ, GroupRow, Period, Report, StaffRow, TrendSeries
from tracing.report.tabular import Value, value
from tracing.report.text import notes


def iso_local(ms: int) -> str:
    """An instant as ISO-8601 with the report's offset (+07:00)."""
    return datetime.fromtimestamp(ms / 1000, tz=TZ).isoformat(timespec="seconds")


def _period(p: Period) -> dict[str, object]:
    return {
        "from": iso_local(p.start_ms),
        "to": iso_local(p.end_ms),
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


def _trend(s: TrendSeries, labels: Labels) -> dict[str, object]:
    return {
        "dimension": s.dimension,
        "key": s.key,
        "name": labels.group(None if s.dimension == "total" else s.dimension, s.key),  # type: ignore[arg-type]
        "weeks": [
            {
                "week": Period("week", p.week, p.week).label,
                "first_day": p.week.isoformat(),
                "active": p.active,
                "scans": None if p.scans is None else value(p.scans),
                "scanners": None if p.scanners is None else value(p.scanners),
            }
            for p in s.points
        ],
    }


def _staff(r: StaffRow) -> dict[str, object]:
    return {
        "agency": r.agency,
        "headcount": r.headcount,
        "working_days": r.working_days,
        "mean_daily_scanners": value(r.mean_daily_scanners),
        "share": value(r.share),
        "days": [{"day": d.isoformat(), "scanners": value(n)} for d, n in r.daily],
    }


def report_json(report: Report, lang: Lang = "vi") -> dict[str, object]:
    labels = Labels(lang)
    cross = report.cross
    return {
        "report": "weekly" if report.period.kind == "week" else "daily",
        "province": report.province,
        "authority": report.authority,
        "edition": (
            None
            if report.edition is None
            else dict(zip(("dimension", "key"), report.edition, strict=True))
        ),
        "timezone": "Asia/Ho_Chi_Minh",
        "period": _period(report.period),
        "previous": _period(report.previous),
        "generated_at": iso_local(report.generated_at_ms),
        "cutoff": iso_local(report.cutoff_ms),
        "complete": report.complete,
        "previous_empty": report.previous_empty,
        "suppression": {"threshold": report.threshold, "few": "<5", "hidden": "x"},
        "total": _row(report.total, labels("total")),
        "tables": {
            t.dimension: [_row(r, labels.group(t.dimension, r.key)) for r in t.rows]
            for t in report.tables
        },
        "days": [
            {
                "day": p.day.isoformat(),
                "current": p.current,
                "reported": p.reported,
                "active": p.active if p.reported else None,
                "scans": value(p.scans) if p.reported else None,
                "scanners": value(p.scanners) if p.reported else None,
            }
            for p in report.days
        ],
        "trend": [_trend(s, labels) for s in report.trend],
        "cross": (
            None
            if cross is None
            else {
                "columns": list(cross.columns),
                "rows": [
                    {
                        "agency": agency,
                        "cells": [
                            {
                                "registered": c.registered,
                                "active": c.active,
                                "scanners": value(c.scanners),
                            }
                            for c in cells
                        ],
                    }
                    for agency, cells in cross.rows
                ],
            }
        ),
        "staff": None if report.staff is None else [_staff(r) for r in report.staff],
        "unregistered": [
            {
                "premises_id": u.premises_id,
                "scans": value(u.scans),
                "gateways": u.gateways,
                "first_seen": u.first_seen.isoformat(),
                "last_seen": u.last_seen.isoformat(),
            }
            for u in report.unregistered
        ],
        "rejected": [
            {"reason": r.reason, "gateway_id": r.gateway_id, "scans": r.scans}
            for r in report.rejected
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
