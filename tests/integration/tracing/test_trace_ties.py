"""Degree-2 tie-breaking, on hand-made rows: an F2 person reached through several F1
persons at one premises names the one with the earliest contact; equal times, the
smallest id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tracegen import insert_scans

from sinks.clickhouse_settings import ClickHouseSettings
from tracing.rules import Rule
from tracing.runner import ClickHouseRunner
from tracing.trace import trace_person

MIN = 60_000


@pytest.mark.parametrize("rule", [Rule("scan-window", depth=2), Rule("overlap", depth=2)])
def test_via_is_the_earliest_then_smallest(
    clickhouse_settings: ClickHouseSettings, rule: Rule
) -> None:
    t0 = int(datetime.now(tz=UTC).timestamp() * 1000) - 86_400_000
    rows = [
        ("CASE", "P1", t0),
        ("X2", "P1", t0 + MIN),  # F1
        ("X1", "P1", t0 + MIN),  # F1, same time
        ("X3", "P1", t0 + 2 * MIN),  # F1
        # Y: with X1 and X2 at P2 at the same time -> X1 (smallest id)
        ("X1", "P2", t0 + 300 * MIN),
        ("X2", "P2", t0 + 300 * MIN),
        ("Y", "P2", t0 + 301 * MIN),
        # Z: with X3 first, X1 later, at P3 -> X3 (earliest contact)
        ("X3", "P3", t0 + 600 * MIN),
        ("Z", "P3", t0 + 601 * MIN),
        ("X1", "P3", t0 + 700 * MIN),
        ("Z", "P3", t0 + 701 * MIN),
    ]
    insert_scans(
        clickhouse_settings,
        [(f"e{i}", person, premises, t, "checkin") for i, (person, premises, t) in enumerate(rows)],
    )
    runner = ClickHouseRunner(clickhouse_settings)
    try:
        result = trace_person(runner, "CASE", t0 - MIN, t0 + 2000 * MIN, rule)
    finally:
        runner.close()
    f1 = {c.person_id for c in result.contacts if c.degree == 1}
    assert f1 == {"X1", "X2", "X3"}
    f2 = {(c.person_id, c.premises_id): c.via_person_id for c in result.contacts if c.degree == 2}
    assert f2 == {("Y", "P2"): "X1", ("Z", "P3"): "X3"}


def test_overlap_visits_with_equal_times(clickhouse_settings: ClickHouseSettings) -> None:
    """Scans of one person at one premises equal in time and kind (a replayed event
    stored twice before a merge, or two events) make one visit; a check-in and a
    check-out in the same millisecond close a visit of length zero. The degree-1 query
    does not order such ties by event id (`tracing.sql._degree1_overlap`): these are the
    visits `_visits` builds with it."""
    t0 = int(datetime.now(tz=UTC).timestamp() * 1000) - 86_400_000
    rows = [
        ("c1", "CASE", t0, "checkin"),
        ("x1", "X", t0 + 5 * MIN, "checkin"),
        ("x1", "X", t0 + 5 * MIN, "checkin"),  # the same event, stored twice
        ("x2", "X", t0 + 5 * MIN, "checkin"),
        ("y1", "Y", t0 + 10 * MIN, "checkout"),
        ("y2", "Y", t0 + 10 * MIN, "checkin"),
        ("z1", "Z", t0 + 21 * MIN, "checkin"),  # after the case's visit (20-min dwell)
    ]
    insert_scans(clickhouse_settings, [(e, p, "P1", t, k) for e, p, t, k in rows])
    runner = ClickHouseRunner(clickhouse_settings)
    try:
        result = trace_person(runner, "CASE", t0 - MIN, t0 + 60 * MIN, Rule("overlap"))
    finally:
        runner.close()
    got = {
        c.person_id: (c.contact_time_from, c.contact_time_to, c.overlap_ms) for c in result.contacts
    }
    assert got == {
        "X": (t0 + 5 * MIN, t0 + 25 * MIN, 15 * MIN),
        "Y": (t0 + 10 * MIN, t0 + 10 * MIN, 0),
    }
    assert {(c.case_time_from, c.case_time_to) for c in result.contacts} == {(t0, t0 + 20 * MIN)}


def test_overlap_reaches_the_longest_visits(clickhouse_settings: ClickHouseSettings) -> None:
    """The degree-1 overlap query reads each case visit's premises from a span plus the
    longest dwell time before it to a span after it (`tracing.sql.overlap_reach`): a
    visit that starts 36 h 20 min before the case's (a check-in..check-out of 23 h 55
    min, a repeat, then a hotel's 12-h dwell) and one that ends 24 h after it keep their
    whole extent."""
    t0 = int(datetime.now(tz=UTC).timestamp() * 1000) - 3 * 86_400_000
    hour = 60 * MIN
    rows = [
        ("c1", "CASE", "SHOP", t0, "checkin"),
        ("c2", "CASE", "HOTEL", t0, "checkin"),
        # at the shop (20-min dwell): in for a day before, out 5 min into the case's visit
        ("a1", "A", "SHOP", t0 - 23 * hour - 50 * MIN, "checkin"),
        ("a2", "A", "SHOP", t0 + 5 * MIN, "checkout"),
        # in 10 min into the case's visit, out 23 h 55 min later
        ("b1", "B", "SHOP", t0 + 10 * MIN, "checkin"),
        ("b2", "B", "SHOP", t0 + 10 * MIN + 23 * hour + 55 * MIN, "checkout"),
        # at the hotel (12-h dwell): a day's stay, then a repeat 25 min after the check-out
        # whose dwell ends as the case arrives
        ("e1", "E", "HOTEL", t0 - 36 * hour - 20 * MIN, "checkin"),
        ("e2", "E", "HOTEL", t0 - 12 * hour - 25 * MIN, "checkout"),
        ("e3", "E", "HOTEL", t0 - 12 * hour, "checkin"),
    ]
    places = {
        "SHOP": ("Shop", "shop", "d", "w", "a", 20),
        "HOTEL": ("Hotel", "accommodation", "d", "w", "a", 720),
    }
    insert_scans(clickhouse_settings, rows, places)
    runner = ClickHouseRunner(clickhouse_settings)
    try:
        result = trace_person(runner, "CASE", t0 - MIN, t0 + MIN, Rule("overlap"))
    finally:
        runner.close()
    got = {
        (c.person_id, c.premises_id): (c.contact_time_from, c.contact_time_to, c.overlap_ms)
        for c in result.contacts
    }
    assert got == {
        ("A", "SHOP"): (t0 - 23 * hour - 50 * MIN, t0 + 5 * MIN, 5 * MIN),
        ("B", "SHOP"): (t0 + 10 * MIN, t0 + 10 * MIN + 23 * hour + 55 * MIN, 10 * MIN),
        ("E", "HOTEL"): (t0 - 36 * hour - 20 * MIN, t0, 0),
    }
