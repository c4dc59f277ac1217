"""Answers as JSON (ISO-8601 UTC), CSV (formula-injection safe) or a text table
(Asia/Ho_Chi_Minh times: docs/architecture.md, "Time and privacy")."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from operator import attrgetter
from typing import Final, Literal
from zoneinfo import ZoneInfo

from tracing.models import (
    CONTACT_FIELDS,
    EPOCH,
    TIME_FIELDS,
    VISIT_FIELDS,
    VISITOR_FIELDS,
    Contact,
    PremisesResult,
    TraceResult,
    Visit,
    Visitor,
    iso_utc,
)

Format = Literal["table", "json", "csv"]
FORMATS: Final[tuple[Format, ...]] = ("table", "json", "csv")
LOCAL_TZ: Final = ZoneInfo("Asia/Ho_Chi_Minh")
# A spreadsheet reads a cell starting with one of these as a formula (OWASP: CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: a leading formula character gets a `'`."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _as_dict(fields: Sequence[str]) -> Callable[[Contact | Visit | Visitor], dict[str, object]]:
    """A row as its JSON object: `fields` in order, times as ISO-8601 UTC."""
    get = attrgetter(*fields)
    is_time = tuple(f in TIME_FIELDS for f in fields)

    def as_dict(row: Contact | Visit | Visitor) -> dict[str, object]:
        values = get(row)
        return {f: iso_utc(v) if t else v for f, t, v in zip(fields, is_time, values, strict=True)}

    return as_dict


_contact_dict: Final = _as_dict(CONTACT_FIELDS)
_visit_dict: Final = _as_dict(VISIT_FIELDS)
_visitor_dict: Final = _as_dict(VISITOR_FIELDS)


def period(from_ms: int, to_ms: int) -> dict[str, str]:
    return {"from": iso_utc(from_ms), "to": iso_utc(to_ms)}


def trace_json(r: TraceResult, contacts: Sequence[Contact] | None = None) -> dict[str, object]:
    """The JSON document of a trace (`contacts` narrows it to one page)."""
    return {
        "case": r.case,
        "period": period(r.period_from, r.period_to),
        "rule": r.rule.echo(),
        "visits": [_visit_dict(v) for v in r.visits],
        "contacts": [_contact_dict(c) for c in (r.contacts if contacts is None else contacts)],
    }


def premises_json(
    r: PremisesResult, visitors: Sequence[Visitor] | None = None
) -> dict[str, object]:
    return {
        "premises_id": r.premises_id,
        "period": period(r.period_from, r.period_to),
        "visitors": [_visitor_dict(v) for v in (r.visitors if visitors is None else visitors)],
    }


def csv_lines(header: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> str:
    """CSV lines (CRLF), every cell made formula-safe (`safe_cell`), the header too."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header is not None:
        writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


def _csv(fields: Sequence[str], rows: Iterable[dict[str, object]], *, header: bool = True) -> str:
    return csv_lines(fields if header else None, ([row[f] for f in fields] for row in rows))


def contacts_csv(contacts: Iterable[Contact], *, header: bool = True) -> str:
    """Contacts as CSV lines (a streamed answer is these, a chunk at a time)."""
    return _csv(CONTACT_FIELDS, (_contact_dict(c) for c in contacts), header=header)


def visitors_csv(visitors: Iterable[Visitor], *, header: bool = True) -> str:
    return _csv(VISITOR_FIELDS, (_visitor_dict(v) for v in visitors), header=header)


def trace_csv(r: TraceResult) -> str:
    """The contacts, one row per person and premises (times ISO-8601 UTC)."""
    return contacts_csv(r.contacts)


def premises_csv(r: PremisesResult) -> str:
    return visitors_csv(r.visitors)


def local_time(ms: int) -> str:
    """Epoch ms as Asia/Ho_Chi_Minh wall time (for people reading a table)."""
    at = (EPOCH + timedelta(milliseconds=ms)).astimezone(LOCAL_TZ)
    return f"{at:%Y-%m-%d %H:%M:%S}"


def _table(fields: Sequence[str], rows: list[dict[str, object]]) -> str:
    def cell(field: str, value: object) -> str:
        if value is None:
            return "-"
        if field in TIME_FIELDS and isinstance(value, int):
            return local_time(value)
        # A terminal is not a spreadsheet, but control characters still do harm there.
        return "".join(ch if ch.isprintable() else "?" for ch in str(value))

    body = [[cell(f, r[f]) for f in fields] for r in rows]
    widths = [max([len(f), *(len(b[i]) for b in body)]) for i, f in enumerate(fields)]
    lines = ["  ".join(f.ljust(w) for f, w in zip(fields, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(line.rstrip() for line in lines)


def _raw(obj: Contact | Visit | Visitor, fields: Sequence[str]) -> dict[str, object]:
    return {f: getattr(obj, f) for f in fields}


def trace_table(r: TraceResult) -> str:
    head = (
        f"case {r.case}, {local_time(r.period_from)} .. {local_time(r.period_to)}"
        f" (Asia/Ho_Chi_Minh), rule " + ", ".join(f"{k}={v}" for k, v in r.rule.echo().items())
    )
    visits = _table(VISIT_FIELDS, [_raw(v, VISIT_FIELDS) for v in r.visits])
    contacts = _table(CONTACT_FIELDS, [_raw(c, CONTACT_FIELDS) for c in r.contacts])
    return (
        f"{head}\n\nvisits ({len(r.visits)}):\n{visits}\n\n"
        f"contacts ({len(r.contacts)}):\n{contacts}\n"
    )


def premises_table(r: PremisesResult) -> str:
    head = (
        f"premises {r.premises_id}, {local_time(r.period_from)} .. {local_time(r.period_to)}"
        " (Asia/Ho_Chi_Minh)"
    )
    visitors = _table(VISITOR_FIELDS, [_raw(v, VISITOR_FIELDS) for v in r.visitors])
    return f"{head}\n\nvisitors ({len(r.visitors)}):\n{visitors}\n"
