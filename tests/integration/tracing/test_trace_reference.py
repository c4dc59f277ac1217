"""The exposure queries on the real ClickHouse agree with a brute-force reference.

One generated province per module (thousands of persons, hundreds of premises, several
days), inserted straight into `scans`; every case is traced under both rules at depth 1
and 2 and compared row for row with `tracegen.reference_trace`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from tracegen import (
    INSERT_COLUMNS,
    Province,
    Reference,
    Scan,
    generate,
    reference_trace,
    rows_for_insert,
)

from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from tracing import sql
from tracing.rules import MINUTE_MS, Rule
from tracing.runner import ClickHouseRunner, Row
from tracing.trace import trace_person, trace_premises

SEED = 20211015
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def province() -> Province:
    return generate(SEED)


@pytest.fixture
def loaded(
    clickhouse_settings: ClickHouseSettings, province: Province
) -> Iterator[ClickHouseRunner]:
    client = connect(clickhouse_settings)
    try:
        client.execute(f"INSERT INTO scans ({INSERT_COLUMNS}) VALUES", rows_for_insert(province))
    finally:
        client.disconnect()
    runner = ClickHouseRunner(clickhouse_settings)
    try:
        yield runner
    finally:
        runner.close()


def _periods(p: Province) -> list[tuple[int, int]]:
    """A whole-data period, and one that cuts the middle days mid-evening."""
    return [
        (p.start_ms - DAY_MS, p.start_ms + (p.days + 1) * DAY_MS),
        (p.start_ms + DAY_MS + 18 * 60 * MINUTE_MS, p.start_ms + 3 * DAY_MS + 7 * 60 * MINUTE_MS),
    ]


def _keyed(rows: list[Any]) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    return {
        (r[0], r[1], r[2]): r[3:]
        for r in rows  # person, premises, degree -> the rest
    }


RULES = [
    Rule("scan-window", depth=2),
    Rule("scan-window", window_min=15, depth=2),
    Rule("overlap", depth=2),
    Rule("overlap", min_overlap_min=15, depth=2),
    Rule("overlap", buffer_min=10, min_overlap_min=5, merge_gap_min=20, depth=2),
    Rule("overlap", depth=2, cap_at_next_scan=False),
    Rule("overlap", min_overlap_min=15, depth=2, cap_at_next_scan=False),
]


def _rule_id(r: Rule) -> str:
    return f"{r.name}-{r.window_min}-{r.buffer_min}-{r.min_overlap_min}-cap{int(r.capped)}"


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
def test_both_degrees_match_the_reference(
    loaded: ClickHouseRunner, province: Province, rule: Rule
) -> None:
    compared = f1_total = f2_total = 0
    for case in province.cases:
        for frm, to in _periods(province):
            got = trace_person(loaded, case, frm, to, rule)
            want = reference_trace(province, rule, case, frm, to)
            got_rows = _keyed(
                [
                    (
                        c.person_id,
                        c.premises_id,
                        c.degree,
                        c.via_person_id if c.degree == 2 else case,
                        c.case_time_from,
                        c.case_time_to,
                        c.contact_time_from,
                        c.contact_time_to,
                        c.overlap_ms,
                    )
                    for c in got.contacts
                ]
            )
            want_rows = _keyed(
                [
                    (
                        c.person_id,
                        c.premises_id,
                        c.degree,
                        c.via,
                        c.case_from,
                        c.case_to,
                        c.contact_from,
                        c.contact_to,
                        c.overlap_ms,
                    )
                    for c in want
                ]
            )
            # The sets of (person, premises, degree) first: the definition of done.
            assert set(got_rows) == set(want_rows), (case, frm, to)
            # Then every field, via_person (tie-break: earliest contact, then smallest id)
            # and the times included.
            assert got_rows == want_rows, (case, frm, to)
            assert len(got.contacts) == len(got_rows), "one row per person and premises"
            # Every row names its premises as stored (at degree 2 joined after the grouping).
            for c in got.contacts:
                pr = province.premises[c.premises_id]
                assert (c.premises_name, c.district, c.category) == (
                    pr.name,
                    pr.district,
                    pr.category,
                ), (case, c)
            assert case not in {c.person_id for c in got.contacts}
            f1 = {c.person_id for c in got.contacts if c.degree == 1}
            assert not f1 & {c.person_id for c in got.contacts if c.degree == 2}
            f1_total += len(f1)
            f2_total += sum(1 for c in got.contacts if c.degree == 2)
            # Depth 1 is the degree-1 part of depth 2.
            d1 = trace_person(loaded, case, frm, to, Rule(**{**_fields(rule), "depth": 1}))
            assert [c for c in got.contacts if c.degree == 1] == d1.contacts
            compared += 1
    # The data must exercise the rules: many F1 and F2 contacts over all cases.
    assert compared == len(province.cases) * 2
    assert f1_total > 50
    assert f2_total > 500


class _OneConnection:
    """A runner without a second connection: `trace_person` then runs the timeline and
    the degree-1 query one after the other."""

    def __init__(self, runner: ClickHouseRunner) -> None:
        self.runner = runner

    def query(self, sql: str, params: Mapping[str, object]) -> list[Row]:
        return self.runner.query(sql, params)

    def iter_query(self, sql: str, params: Mapping[str, object]) -> Iterator[Row]:
        return self.runner.iter_query(sql, params)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        self.runner.insert(table, columns, rows)

    def close(self) -> None:
        pass

    def sibling(self) -> None:
        return None


def test_side_by_side_and_one_after_the_other_agree(
    loaded: ClickHouseRunner, province: Province
) -> None:
    """Under scan-window, with a second connection the timeline runs beside the degree-1
    query, seeded by a plain read of the case's scans; without, by the timeline's visits.
    Both give the same visits and contacts (and the reference test checks the first)."""
    alone = _OneConnection(loaded)
    for rule in RULES[:2]:
        for case in province.cases:
            for frm, to in _periods(province):
                beside = trace_person(loaded, case, frm, to, rule)
                assert beside == trace_person(alone, case, frm, to, rule), (rule, case)
    assert loaded.sibling() is loaded.sibling()  # one second connection, made once


def _fields(rule: Rule) -> dict[str, Any]:
    return {f: getattr(rule, f) for f in Rule.__dataclass_fields__}


def test_window_edges_are_inclusive(loaded: ClickHouseRunner, province: Province) -> None:
    """The generator put co-visitors at exactly W, W + 1 ms and W - 1 ms from case scans:
    exactly-W is in, W + 1 ms is out (checked against the reference above); here, that the
    edge scans are really there and decide the answer."""
    case = province.cases[0]
    frm, to = _periods(province)[0]
    wide = trace_person(loaded, case, frm, to, Rule("scan-window", window_min=60))
    narrow = trace_person(loaded, case, frm, to, Rule("scan-window", window_min=59))
    edge = {
        (c.person_id, c.premises_id)
        for c in wide.contacts
        if any(
            abs(c.contact_time_from - v.time_from) == 60 * MINUTE_MS
            or abs(c.contact_time_to - v.time_from) == 60 * MINUTE_MS
            for v in wide.visits
        )
    }
    assert edge, "no co-visitor exactly on the window edge"
    assert len(narrow.contacts) < len(wide.contacts)


def test_exact_duplicates_change_nothing(
    clickhouse_settings: ClickHouseSettings, loaded: ClickHouseRunner, province: Province
) -> None:
    """A replayed batch (same event_ids) before any merge: answers stay the same."""
    frm, to = _periods(province)[0]

    def answers() -> dict[tuple[str, str], tuple[object, object]]:
        out: dict[tuple[str, str], tuple[object, object]] = {}
        for r in RULES[::2]:
            for case in province.cases[:2]:
                result = trace_person(loaded, case, frm, to, r)
                out[(r.name, case)] = (result.visits, result.contacts)
        return out

    before = answers()
    client = connect(clickhouse_settings)
    try:
        client.execute(
            f"INSERT INTO scans ({INSERT_COLUMNS}) VALUES", rows_for_insert(province)[::3]
        )
        assert client.execute("SELECT count() FROM scans")[0][0] > len(province.scans)
    finally:
        client.disconnect()
    assert answers() == before  # the timelines (scan counts) and the contacts
    visitors = trace_premises(loaded, province.scans[0].premises_id, frm, to).visitors
    want: dict[str, set[str]] = {}
    for s in province.scans:
        if s.premises_id == province.scans[0].premises_id and frm <= s.t <= to:
            want.setdefault(s.person_id, set()).add(s.event_id)
    assert {v.person_id: v.scans for v in visitors} == {k: len(v) for k, v in want.items()}


def test_case_timeline_has_the_case_visits(loaded: ClickHouseRunner, province: Province) -> None:
    case = province.cases[1]
    frm, to = _periods(province)[0]
    result = trace_person(loaded, case, frm, to, Rule("overlap"))
    mine = [s for s in province.scans if s.person_id == case]
    assert sum(v.scans for v in result.visits) == len(mine)
    assert {v.premises_id for v in result.visits} == {s.premises_id for s in mine}
    assert all(v.time_from <= v.time_to for v in result.visits)
    assert result.visits == sorted(result.visits, key=lambda v: (v.time_from, v.premises_id))


@pytest.mark.parametrize(
    "rule",
    [
        Rule("overlap"),
        Rule("overlap", merge_gap_min=0, max_visit_min=120),
        Rule("overlap", cap_at_next_scan=False),
        Rule("scan-window", cap_at_next_scan=True),
    ],
    ids=_rule_id,
)
def test_case_timeline_matches_the_reference(
    loaded: ClickHouseRunner, province: Province, rule: Rule
) -> None:
    """Every case's timeline (`sql.case_visits`) is the reference's visits of the case
    with a scan in the period: premises, start, end, scans, and the scan times inside."""
    ref = Reference(province, rule).visits()
    for frm, to in _periods(province):
        for case in province.cases:
            want = sorted(
                (
                    v.premises_id,
                    v.start,
                    v.end,
                    len(v.scan_times),
                    sorted({t for t in v.scan_times if frm <= t <= to}),
                )
                for (person, _), visits in ref.items()
                if person == case
                for v in visits
                if any(frm <= t <= to for t in v.scan_times)
            )
            got = sorted(
                (p, t0, t1, n, list(times))
                for p, t0, t1, n, _, _, _, times in loaded.query(
                    *sql.case_visits(rule, case, frm, to)
                )
            )
            assert got == want, (case, frm, to)


def test_unknown_case_has_no_contacts(loaded: ClickHouseRunner, province: Province) -> None:
    frm, to = _periods(province)[0]
    for rule in (Rule("scan-window", depth=2), Rule("overlap", depth=2)):
        result = trace_person(loaded, "nobody", frm, to, rule)
        assert result.contacts == [] and result.visits == []


@pytest.mark.parametrize("rule", [Rule("scan-window"), Rule("overlap", buffer_min=5)])
def test_windows_narrow_without_changing_the_answer(
    loaded: ClickHouseRunner, province: Province, rule: Rule
) -> None:
    """Degree 1 reads `scans` only inside windows around the case's visits; the same
    query without them (premises IN + time span only) gives the same rows, and so does the
    degree-1 query seeded with the case's visits as bound values (`case=`), with and
    without windows."""
    frm, to = _periods(province)[1]
    narrowed_cases = 0
    for case in province.cases:
        visits = trace_person(loaded, case, frm, to, rule).visits
        windows = sql.seed_windows(rule, [(v.premises_id, v.time_from, v.time_to) for v in visits])
        if not windows:
            continue
        narrowed_cases += 1
        narrowed = loaded.query(*sql.contacts(rule, [(case, frm)], to, [case], windows=windows))
        plain = loaded.query(*sql.contacts(rule, [(case, frm)], to, [case]))
        assert sorted(narrowed) == sorted(plain)
        seeds = [
            sql.CaseVisit(p, t0, t1, name, district, cat, tuple(times))
            for p, t0, t1, _, name, district, cat, times in loaded.query(
                *sql.case_visits(rule, case, frm, to)
            )
        ]
        for w in (windows, None):
            bound = loaded.query(
                *sql.contacts(rule, [(case, frm)], to, [case], windows=w, case=seeds)
            )
            assert sorted(bound) == sorted(plain)
    assert narrowed_cases >= 4
    assert sql.seed_windows(rule, [("P", i * 10**9, i * 10**9 + 1) for i in range(60)]) is None


def _inside_elsewhere(scans: list[Scan], premises: str, lo: int, hi: int) -> bool:
    """Whether a person with these `scans` scanned at another premises strictly inside
    (lo, hi) at a time after which they did not scan at `premises` again by `hi`: a row
    of the answer spans all of a person's visits at one premises that count, so a scan
    elsewhere may lie between two of them, never inside one."""
    return any(
        s.premises_id != premises
        and lo < s.t < hi
        and not any(o.premises_id == premises and s.t <= o.t <= hi for o in scans)
        for s in scans
    )


def test_one_place_at_a_time(loaded: ClickHouseRunner, province: Province) -> None:
    """With the cap (the default under overlap) no visit of the case's timeline contains a
    scan of the case at another premises strictly inside it, and no contact's time does
    either (but between two of its visits at the premises); without it, both happen in
    this data, capping only removes degree-1 contacts, and it removes some."""
    frm, to = _periods(province)[0]
    by_person: dict[str, list[Scan]] = {}
    for s in province.scans:
        by_person.setdefault(s.person_id, []).append(s)
    removed = 0
    for rule in (Rule("overlap", depth=2), Rule("overlap", buffer_min=10, min_overlap_min=5)):
        uncapped = Rule(**{**_fields(rule), "cap_at_next_scan": False})
        broken_timeline = broken_contacts = 0
        for case in province.cases:
            got = trace_person(loaded, case, frm, to, rule)
            assert got.rule.echo()["cap_at_next_scan"] is True
            for v in got.visits:
                assert not _inside_elsewhere(
                    by_person[case], v.premises_id, v.time_from, v.time_to
                ), (case, v)
            for c in got.contacts:
                assert not _inside_elsewhere(
                    by_person[c.person_id], c.premises_id, c.contact_time_from, c.contact_time_to
                ), (case, c)
            before = trace_person(loaded, case, frm, to, uncapped)
            broken_timeline += sum(
                _inside_elsewhere(by_person[case], v.premises_id, v.time_from, v.time_to)
                for v in before.visits
            )
            broken_contacts += sum(
                _inside_elsewhere(
                    by_person[c.person_id], c.premises_id, c.contact_time_from, c.contact_time_to
                )
                for c in before.contacts
            )
            f1 = {(c.person_id, c.premises_id) for c in got.contacts if c.degree == 1}
            f1_before = {(c.person_id, c.premises_id) for c in before.contacts if c.degree == 1}
            assert f1 <= f1_before, case
            removed += len(f1_before - f1)
        assert broken_timeline > 0 and broken_contacts > 0, rule
    assert removed > 0
