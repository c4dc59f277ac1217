"""Times and periods as people and programs give them: one parser for every option that
takes a time, a day or a week.

Strict (`parse_strict`: the tracer API, whose callers are programs and whose answers must
not depend on the server's time zone): ISO 8601 with an offset (`2021-10-01T08:00:00+07:00`,
`...Z`) or epoch milliseconds, the scan contract's own rule (`ingest.contract`).

Lenient (`parse_instant`: the command line), the strict forms and also
- a local date or date-time without offset, in `SCANTRACE_TIMEZONE` (default
  Asia/Ho_Chi_Minh): `2021-10-01`, `2021-10-01T08:00`, `2021-10-01 08:00:00`;
- relative forms: `now`, `today`, `yesterday`, and `-14d`, `-6h`, `-30m`, `-2w` (before
  now; a day `-Nd` is N days before now, not a midnight).
A day given as the end of a period means its last millisecond: `--from 2021-10-01 --to
2021-10-14` is fourteen whole days.

Weeks (`parse_week`): `2021-W46`, a day inside the week in any form above (`2021-11-17`,
`today`, `-7d`), `last` (the week before this one) and `this`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.contract import ScanRejected, now_ms, parse_timestamp
from ingest.errors import InvalidInput

__all__ = [
    "EXAMPLES",
    "INTEGER",
    "MAX_INT_DIGITS",
    "TimeInputError",
    "TimeSettings",
    "ascii_int",
    "check_period",
    "parse_day",
    "parse_instant",
    "parse_strict",
    "parse_week",
]

DEFAULT_TIMEZONE: Final = "Asia/Ho_Chi_Minh"
# What a help text shows for an option that takes a time.
EXAMPLES: Final = "2021-10-01, 2021-10-01T08:00, 2021-10-01T08:00:00+07:00, today, -14d"

# An optional sign and ASCII digits only: `int()` also takes other scripts' digits
# (Arabic-Indic, fullwidth), blanks and underscores, and raises past 4,300 digits.
INTEGER: Final = re.compile(r"[+-]?[0-9]+", re.ASCII)
MAX_INT_DIGITS: Final = 18  # every bound the tracer takes fits; longer is out of range
_RELATIVE: Final = re.compile(r"-([0-9]{1,6})([smhdw])", re.ASCII)
_UNIT_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_LOCAL: Final = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[T ]([0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?))?",
    re.ASCII,
)
_WEEK: Final = re.compile(r"([0-9]{4})-?W([0-9]{2})", re.ASCII | re.IGNORECASE)


class TimeInputError(InvalidInput):
    """A time, day, week or period that cannot be read; the message says which form
    would do."""


class TimeSettings(BaseSettings):
    """`SCANTRACE_TIMEZONE`: the zone of local dates and times given without an offset."""

    model_config = SettingsConfigDict(env_prefix="SCANTRACE_", frozen=True, extra="ignore")

    timezone: str = DEFAULT_TIMEZONE

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Ho_Chi_Minh)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def ascii_int(value: str) -> int | None:
    """`value` as an int if it is a plain ASCII integer of at most MAX_INT_DIGITS digits
    (leading zeros aside), else None. Never raises."""
    if INTEGER.fullmatch(value) is None:
        return None
    if len(value.lstrip("+-").lstrip("0")) > MAX_INT_DIGITS:
        return None
    return int(value)


def parse_strict(value: str, name: str) -> int:
    """ISO 8601 with an offset, or epoch ms digits, to epoch ms; `TimeInputError`
    otherwise."""
    parsed: int | str = value
    if INTEGER.fullmatch(value) is not None and value[0] not in "+-":
        ms = ascii_int(value)
        if ms is None:
            raise TimeInputError(f"{name}: out of range")
        parsed = ms
    try:
        return parse_timestamp(parsed, name)
    except ScanRejected as exc:
        raise TimeInputError(f"{name}: {exc.detail or exc.reason}") from None


@dataclass(frozen=True, slots=True)
class _Clock:
    zone: ZoneInfo
    now: int

    def midnight(self, day: date) -> int:
        return int(datetime.combine(day, time(), self.zone).timestamp() * 1000)

    def today(self) -> date:
        return datetime.fromtimestamp(self.now / 1000, self.zone).date()


def _clock(zone: ZoneInfo | None, now: int | None) -> _Clock:
    return _Clock(zone or TimeSettings().zone, now_ms() if now is None else now)


def parse_instant(
    value: str,
    name: str,
    *,
    end: bool = False,
    zone: ZoneInfo | None = None,
    now: int | None = None,
) -> int:
    """Any form of the module docstring to epoch ms. `end`: a day (a date, `today`,
    `yesterday`) means its last millisecond instead of its first. `zone` and `now` default
    to `SCANTRACE_TIMEZONE` and the clock."""
    text = value.strip()
    lowered = text.lower()
    clock = _clock(zone, now)
    if lowered == "now":
        return clock.now
    if lowered in ("today", "yesterday"):
        day = clock.today() - timedelta(days=1 if lowered == "yesterday" else 0)
        return _day_bound(clock, day, end)
    relative = _RELATIVE.fullmatch(lowered)
    if relative is not None:
        return clock.now - int(relative[1]) * _UNIT_MS[relative[2]]
    local = _LOCAL.fullmatch(text)
    if local is not None:
        try:
            day = date.fromisoformat(local[1])
            if local[2] is None:
                return _in_range(_day_bound(clock, day, end), name)
            moment = datetime.combine(day, time.fromisoformat(local[2]), clock.zone)
        except ValueError as exc:
            raise TimeInputError(f"{name}: {exc}") from None
        return _in_range(int(moment.timestamp() * 1000), name)
    try:
        return parse_strict(text, name)
    except TimeInputError as exc:
        if "out of range" in str(exc):  # a time, but not one a scan can have
            raise
        raise TimeInputError(
            f"{name}: {value!r} is not a time; give one of: {EXAMPLES}, now, yesterday"
        ) from None


def _day_bound(clock: _Clock, day: date, end: bool) -> int:
    return clock.midnight(day + timedelta(days=1)) - 1 if end else clock.midnight(day)


def _in_range(ms: int, name: str) -> int:
    """`ms`, checked against the contract's range of times."""
    try:
        return parse_timestamp(ms, name)
    except ScanRejected as exc:
        raise TimeInputError(f"{name}: {exc.detail or exc.reason}") from None


def parse_day(
    value: str, name: str, *, zone: ZoneInfo | None = None, now: int | None = None
) -> date:
    """A local day: a date, `today`, `yesterday`, `-Nd`, or any time (its day in the zone)."""
    clock = _clock(zone, now)
    ms = parse_instant(value, name, zone=clock.zone, now=clock.now)
    return datetime.fromtimestamp(ms / 1000, clock.zone).date()


def parse_week(
    value: str, name: str = "week", *, zone: ZoneInfo | None = None, now: int | None = None
) -> str:
    """An ISO week as `YYYY-Www`: `2021-W46`, `last`, `this`, or a day inside it."""
    text = value.strip()
    week = _WEEK.fullmatch(text)
    if week is not None:
        year, number = int(week[1]), int(week[2])
        try:
            date.fromisocalendar(year, number, 1)
        except ValueError:
            raise TimeInputError(f"{name}: {year} has no week {number}") from None
        return f"{year}-W{number:02d}"
    clock = _clock(zone, now)
    lowered = text.lower()
    if lowered in ("last", "this"):
        day = clock.today() - timedelta(days=7 if lowered == "last" else 0)
    else:
        try:
            day = parse_day(text, name, zone=clock.zone, now=clock.now)
        except TimeInputError:
            raise TimeInputError(
                f"{name}: {value!r} is not an ISO week (2021-W46), a day inside one "
                "(2021-11-17, today, -7d), last or this"
            ) from None
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def check_period(from_ms: int, to_ms: int, names: tuple[str, str] = ("from", "to")) -> None:
    """`TimeInputError` when the period ends before it starts."""
    if from_ms > to_ms:
        zone = TimeSettings().zone
        start, stop = (
            datetime.fromtimestamp(t / 1000, zone).isoformat(timespec="seconds")
            for t in (from_ms, to_ms)
        )
        raise TimeInputError(
            f"the period's start ({names[0]} = {start}) is after its end ({names[1]} = {stop})"
        )
