"""Times as people read and type them: Asia/Ho_Chi_Minh wall time, without an offset.

Storage and the API stay in UTC epoch ms; every time a person reads in the workbench is
local, and every time typed into a form (an HTML `datetime-local` value) is read as local.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Final

from tracing.formatting import LOCAL_TZ
from tracing.models import EPOCH

DAY_MS: Final = 86_400_000
# `datetime-local` sends minutes, or seconds when the page set a step below a minute.
_INPUT_FORMATS: Final = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")


class LocalTimeError(ValueError):
    """A form's time is not a local date and time."""


def local(ms: int) -> datetime:
    return (EPOCH + timedelta(milliseconds=ms)).astimezone(LOCAL_TZ)


def parse_local(value: str) -> int:
    """`YYYY-MM-DDTHH:MM[:SS]` read as Asia/Ho_Chi_Minh wall time, to epoch ms."""
    text = value.strip()
    for fmt in _INPUT_FORMATS:
        try:
            at = datetime.strptime(text, fmt).replace(tzinfo=LOCAL_TZ)
        except ValueError:
            continue
        return int((at - EPOCH).total_seconds() * 1000)
    raise LocalTimeError(value[:40])


def parse_local_date(value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise LocalTimeError(value[:40]) from None


def input_value(ms: int) -> str:
    """The value of a `datetime-local` input showing `ms`."""
    return f"{local(ms):%Y-%m-%dT%H:%M}"


def text(ms: int | None, lang: str = "vi", *, seconds: bool = False) -> str:
    """A time for reading: `dd/mm/yyyy HH:MM` in Vietnamese, ISO-like in English."""
    if ms is None:
        return ""
    at = local(int(ms))
    clock = "%H:%M:%S" if seconds else "%H:%M"
    return at.strftime(f"%d/%m/%Y {clock}" if lang == "vi" else f"%Y-%m-%d {clock}")


def iso_local(ms: int) -> str:
    """ISO-8601 with the +07:00 offset (the public exposure sites)."""
    return local(ms).isoformat(timespec="seconds")


def day_start(ms: int) -> int:
    """Epoch ms of the local midnight on or before `ms`."""
    at = local(ms)
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return int((midnight - EPOCH).total_seconds() * 1000)


def days(from_ms: int, to_ms: int, most: int = 60) -> list[int]:
    """The local midnights of the days that [from_ms, to_ms] touches (at most `most`)."""
    out: list[int] = []
    t = day_start(from_ms)
    while t <= to_ms and len(out) < most:
        out.append(t)
        t = day_start(t + DAY_MS + 3_600_000)  # no DST here, but never drift
    return out
