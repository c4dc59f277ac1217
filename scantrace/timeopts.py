"""Click parameter types for times, days and weeks: every option that takes one reads it
with `ingest.timeparse`, in all its forms (ISO 8601 with an offset, a local date or
date-time in SCANTRACE_TIMEZONE, `today`, `yesterday`, `-14d`, `now`)."""

from __future__ import annotations

from datetime import date
from typing import Any, Final

import click

from ingest.timeparse import EXAMPLES, TimeInputError, parse_day, parse_instant, parse_week

__all__ = ["DAY", "END", "START", "TIME_HELP", "WEEK", "Day", "Instant", "Week"]

TIME_HELP: Final = f"e.g. {EXAMPLES} (local: SCANTRACE_TIMEZONE, default Asia/Ho_Chi_Minh)"


class Instant(click.ParamType):
    """A time to epoch ms. `end`: a day means its last millisecond (the end of a period)."""

    name = "TIME"

    def __init__(self, *, end: bool = False) -> None:
        self.end = end

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_instant(str(value), _name(param), end=self.end)
        except TimeInputError as exc:
            self.fail(_reason(exc, param), param, ctx)


class Day(click.ParamType):
    """A local day."""

    name = "DAY"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return parse_day(str(value), _name(param))
        except TimeInputError as exc:
            self.fail(_reason(exc, param), param, ctx)


class Week(click.ParamType):
    """An ISO week as `YYYY-Www`."""

    name = "WEEK"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_week(str(value), _name(param))
        except TimeInputError as exc:
            self.fail(_reason(exc, param), param, ctx)


def _reason(exc: TimeInputError, param: click.Parameter | None) -> str:
    """The parser's message without the option's name, which click puts first."""
    return str(exc).removeprefix(f"{_name(param)}: ")


def _name(param: click.Parameter | None) -> str:
    """The option as the user typed it, without dashes (`from` for `--from`)."""
    if param is None or not param.opts:
        return "time"
    return param.opts[0].lstrip("-")


START: Final = Instant()
END: Final = Instant(end=True)
DAY: Final = Day()
WEEK: Final = Week()
