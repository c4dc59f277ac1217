"""The exposure rules (docs/architecture.md "Exposure model") and their parameters.

`scan-window` (PC-COVID's rule, the default): person X is a contact of case C if X
scanned at a premises P within `window_min` minutes (inclusive) of a scan of C at P, C's
scan lying inside the asked period.

`overlap`: scans become visits (see `tracing.sql` for the exact construction); X is a
contact if one of X's visits at P overlaps one of C's visits at P, widened by
`buffer_min` on both sides, by at least `min_overlap_min` minutes (15 is the Ministry of
Health's F1 rule).

One place at a time (`cap_at_next_scan`, on by default under `overlap`): a person is
where they scanned last. A visit at P from `start` to `end` ends at the person's first
scan at a premises other than P strictly after `start`, when that scan lies before
`end`: an end inferred from the dwell time ends where the next visit elsewhere begins,
and a check-out later than a scan elsewhere was a forgotten one, done afterwards. Scans
at P itself (other visits there) and scans elsewhere at `start` exactly cap nothing.
The cap applies to every visit of the rule: the case's (its timeline) and every
co-visitor's, at both degrees; a capped visit is never longer than the uncapped one, so
capping removes F1 contacts and shortens their times, never adds one (a person who is no
longer F1 may then be found as F2). Under `scan-window`
contacts are scans, not visits, so the cap shapes only the timeline, and is off unless
asked for.

Every answer echoes the rule with all its parameters (`Rule.echo`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from ingest.errors import InvalidInput

RuleName = Literal["scan-window", "overlap"]
RULES: Final[tuple[RuleName, ...]] = ("scan-window", "overlap")
MINUTE_MS: Final = 60_000
# The longest dwell time of any category (accommodation, `ingest.premises.DWELL_MINUTES`).
MAX_DWELL_MIN: Final = 720


class RuleError(InvalidInput):
    """A rule parameter is out of range; the message is the reason shown to the caller."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: RuleName = "scan-window"
    window_min: int = 60
    buffer_min: int = 0
    min_overlap_min: int = 0
    # Repeated scans of one person at one premises this close together are one visit.
    merge_gap_min: int = 30
    # A check-out closes the visit its check-in opened at most this long before.
    max_visit_min: int = 1440
    depth: int = 1
    # One place at a time (module docstring); None: on under overlap, off otherwise.
    cap_at_next_scan: bool | None = None

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise RuleError(f"rule must be one of {', '.join(RULES)}")
        if self.cap_at_next_scan is None:
            object.__setattr__(self, "cap_at_next_scan", self.name == "overlap")
        elif not isinstance(self.cap_at_next_scan, bool):
            raise RuleError("cap_at_next_scan must be true or false")
        for field, top in (
            ("window_min", 7 * 1440),
            ("buffer_min", 1440),
            ("min_overlap_min", 1440),
            ("merge_gap_min", 1440),
            ("max_visit_min", 7 * 1440),
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise RuleError(f"{field} must be an integer from 0 to {top}")
        if self.depth not in (1, 2):
            raise RuleError("depth must be 1 or 2")

    @property
    def span_ms(self) -> int:
        """How far apart the first and the last scan of one visit can be: a check-in..
        check-out (`max_visit_min`) plus merged repeats."""
        return (self.max_visit_min + self.merge_gap_min) * MINUTE_MS

    @property
    def horizon_ms(self) -> int:
        """How far beyond the scans that matter a visit's other scans are read: a visit
        is never longer than its `span_ms` plus the longest dwell time."""
        return self.span_ms + MAX_DWELL_MIN * MINUTE_MS

    @property
    def capped(self) -> bool:
        """Whether visits end at the person's next scan elsewhere (`cap_at_next_scan`)."""
        return bool(self.cap_at_next_scan)

    def echo(self) -> dict[str, object]:
        """The rule as echoed in every answer, with every parameter (the visit-building
        ones shape the case's timeline under either rule)."""
        return {
            "name": self.name,
            "window_min": self.window_min,
            "buffer_min": self.buffer_min,
            "min_overlap_min": self.min_overlap_min,
            "merge_gap_min": self.merge_gap_min,
            "max_visit_min": self.max_visit_min,
            "depth": self.depth,
            "cap_at_next_scan": self.cap_at_next_scan,
        }
