"""Degree-2 tie-breaking, on hand-made rows: an F2 person reached through several F1
persons at one premises names the one with the earliest contact; equal times, the
smallest id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
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
    client = connect(clickhouse_settings)
    try:
        client.execute(
            "INSERT INTO scans (event_id, person_id, premises_id, scanned_at, kind, gateway_id,"
            " processed_at, premises_name, category, district, ward, agency, dwell_minutes)"
            " VALUES",
            [
                (
                    f"e{i}",
                    person,
                    premises,
                    datetime.fromtimestamp(t / 1000, tz=UTC),
                    "checkin",
                    "gw",
                    datetime.fromtimestamp(t / 1000, tz=UTC),
                    premises,
                    "shop",
                    "d",
                    "w",
                    "a",
                    20,
                )
                for i, (person, premises, t) in enumerate(rows)
            ],
        )
    finally:
        client.disconnect()
    runner = ClickHouseRunner(clickhouse_settings)
    try:
        result = trace_person(runner, "CASE", t0 - MIN, t0 + 2000 * MIN, rule)
    finally:
        runner.close()
    f1 = {c.person_id for c in result.contacts if c.degree == 1}
    assert f1 == {"X1", "X2", "X3"}
    f2 = {(c.person_id, c.premises_id): c.via_person_id for c in result.contacts if c.degree == 2}
    assert f2 == {("Y", "P2"): "X1", ("Z", "P3"): "X3"}
