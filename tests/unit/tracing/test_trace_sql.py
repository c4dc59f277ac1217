"""The SQL builders: values are always bound parameters, never part of the SQL text."""

from __future__ import annotations

from typing import cast

import pytest

from tracing import sql
from tracing.rules import MINUTE_MS, Rule, RuleError

EVIL = "x'); DROP TABLE scans; --"


@pytest.mark.parametrize(
    "rule",
    [
        Rule(),
        Rule("overlap", buffer_min=5, min_overlap_min=15),
        Rule("overlap", cap_at_next_scan=False),
    ],
)
def test_user_values_are_bound(rule: Rule) -> None:
    windows = sql.seed_windows(rule, [(EVIL, 1_000, 2_000)])
    queries = [
        sql.contacts(rule, [(EVIL, 1)], 2, [EVIL], windows=windows),
        sql.contacts(
            rule,
            [(EVIL, 1)],
            2,
            [EVIL],
            windows=windows,
            case=[sql.CaseVisit(EVIL, 1_000, 2_000, EVIL, EVIL, EVIL, (1_000, 2_000))],
        ),
        sql.case_visits(rule, EVIL, 1, 2),
        sql.premises_visitors(EVIL, 1, 2),
    ]
    for text, params in queries:
        assert EVIL not in text and "DROP" not in text
        assert EVIL in repr(params)
        # every placeholder has its value
        text % {k: "v" for k in params}


def test_table_names_are_checked() -> None:
    with pytest.raises(ValueError, match="plain table name"):
        sql.contacts(Rule(), [("a", 1)], 2, ["a"], sql.TraceTables(scans="scans; DROP"))
    assert sql.TraceTables(by_person="db.scans_by_person").q("by_person") == (
        "`db`.`scans_by_person`"
    )


def test_cluster_safe_sets() -> None:
    """Sets built from the seeds travel to every shard: GLOBAL IN."""
    for rule in (Rule(), Rule("overlap")):
        text, _ = sql.contacts(rule, [("a", 1)], 2, ["a"])
        assert "premises_id GLOBAL IN" in text


def test_windows_merge_per_premises() -> None:
    rule = Rule(window_min=60)
    h = 60 * MINUTE_MS
    got = sql.seed_windows(rule, [("B", 10 * h, 11 * h), ("A", 0, h), ("A", 2 * h, 3 * h)])
    # A's two visits are 1 h apart: widened by 60 min each, they merge.
    assert got == [("A", -h, 4 * h), ("B", 9 * h, 12 * h)]
    overlap = Rule("overlap", buffer_min=10)
    wide = sql.seed_windows(overlap, [("A", 0, h)])
    # Before: the longest dwell and a span (an overlapping visit ends after the widened
    # start); after: a span (it starts before the widened end).
    assert overlap.horizon_ms == overlap.span_ms + 720 * MINUTE_MS
    assert overlap.span_ms == (1440 + 30) * MINUTE_MS
    assert wide == [
        ("A", -10 * MINUTE_MS - overlap.horizon_ms, h + 10 * MINUTE_MS + overlap.span_ms)
    ]


def test_rule_ranges() -> None:
    with pytest.raises(RuleError):
        Rule("nope")  # type: ignore[arg-type]
    with pytest.raises(RuleError):
        Rule(window_min=-1)
    with pytest.raises(RuleError):
        Rule(depth=3)
    assert Rule().echo()["name"] == "scan-window"
    with pytest.raises(RuleError, match="cap_at_next_scan"):
        Rule("overlap", cap_at_next_scan="yes")  # type: ignore[arg-type]


def test_the_cap_is_on_by_default_under_overlap_only() -> None:
    assert Rule("overlap").echo()["cap_at_next_scan"] is True
    assert Rule("scan-window").echo()["cap_at_next_scan"] is False
    assert Rule("overlap", cap_at_next_scan=False).capped is False
    assert Rule("scan-window", cap_at_next_scan=True).capped is True
    assert Rule("overlap") == Rule("overlap", cap_at_next_scan=True)


def test_one_definition_of_the_cap_in_every_visit_query() -> None:
    """The timeline, degree 1 and degree 2 all end visits with `_capped_end` when the
    cap is on, and none does when it is off."""
    cap = sql._capped_end("S", "E", "P", "W").split(" S AND")[0]
    seeds = [sql.CaseVisit("P", 1_000, 2_000, "n", "d", "c", (1_000,))]
    for on in (True, False):
        rule = Rule("overlap", cap_at_next_scan=on)
        for text, _ in (
            sql.case_visits(rule, "a", 1, 2),
            sql.contacts(rule, [("a", 1)], 2, ["a"], case=seeds),
            sql.contacts(rule, [("a", 1), ("b", 1)], 2, ["a", "b"]),
        ):
            assert (cap in text) is on


def test_the_window_cap_counts_terms_not_windows() -> None:
    """Many windows on few days still narrow the read (one term per three days); more
    blocks than the cap fall back to the premises set and the span."""
    day = 86_400_000
    block = sql.TERM_DAYS * day
    rule = Rule("scan-window")
    # 60 premises on two days, one block apart, scans between 06:00 and 07:00 UTC
    times = [(f"P{i:03d}", (i % 2) * block + 6 * 3_600_000 + i * 60_000) for i in range(60)]
    spans = [(p, t, t) for p, t in times]
    windows = sql.seed_windows(rule, spans)
    assert windows is not None and len(windows) == 60
    terms = sql.window_terms(windows)
    assert len(terms) == 2
    assert [len(premises) for premises, _, _ in terms] == [30, 30]
    # each term spans exactly its windows: the first ends an hour after 06:58 on day 0
    assert terms[0][2] == 6 * 3_600_000 + 58 * 60_000 + 3_600_000
    # days of one block share a term
    assert len(sql.window_terms([("P1", 0, 1), ("P2", block - 1, block)])) == 1
    many = [("P1", d * block + 3_600_000 * 5, d * block + 3_600_000 * 5) for d in range(49)]
    assert sql.seed_windows(rule, many) is None
    assert sql.seed_windows(rule, many[:48]) is not None


def test_degree1_scan_window_binds_the_case_per_premises_and_bucket() -> None:
    """Degree 1 under scan-window reads `scans` once without a join: the case's scan
    times are bound per premises (visits of one premises merged) and time bucket, so a
    co-visitor scan is checked against its own and the neighbouring buckets only; the day
    terms only hint the key analysis."""
    h = 60 * MINUTE_MS
    case = [
        sql.CaseVisit("B", 5 * h, 9 * h, "b", "d2", "shop", (5 * h, 9 * h)),
        sql.CaseVisit("A", h, 2 * h, "a", "d1", "market", (h,)),
        sql.CaseVisit("A", 7 * h, 8 * h, "a", "d1", "market", (7 * h, 7 * h + 1, 8 * h)),
    ]
    windows = sql.seed_windows(Rule(), [("A", h, 8 * h), ("B", 5 * h, 9 * h)])
    text, params = sql.contacts(Rule(), [("C", 0)], 10, ["C"], case=case, windows=windows)
    assert "JOIN" not in text and "indexHint(" in text
    assert params["k_premises"] == ["A", "B"]
    assert params["k_name"] == ["a", "b"] and params["k_category"] == ["market", "shop"]
    assert (params["c_lo"], params["c_hi"]) == (h, 9 * h)
    # buckets of the 60-min window; offsets from two buckets before the earliest time
    stride = 1 << 32
    assert params["first_bucket"] == -1
    keys, times = cast(list[int], params["b_keys"]), cast(list[list[int]], params["b_times"])
    keyed = dict(zip(keys, times, strict=True))
    assert keyed == {
        stride + 2: [h],
        stride + 8: [7 * h, 7 * h + 1],
        stride + 9: [8 * h],
        2 * stride + 6: [5 * h],
        2 * stride + 10: [9 * h],
    }
    assert params["b_slots"] == [1, 2, 3, 4, 5]
    text % {k: "v" for k in params}


def test_degree1_overlap_binds_the_case_visits_per_premises() -> None:
    """Degree 1 under overlap reads `scans` once without a join and without the event
    id: the case's visits are bound as (from, to) arrays per premises; the rows are
    those within each case visit's reach at its premises (exactly, so the answer does
    not depend on the granules read), the day terms only guide the key analysis. (With
    the cap, the same, then a join to the candidates' scans everywhere.)"""
    h = 60 * MINUTE_MS
    rule = Rule("overlap", buffer_min=5, min_overlap_min=15, cap_at_next_scan=False)
    case = [
        sql.CaseVisit("B", 5 * h, 6 * h, "b", "d2", "shop", (5 * h,)),
        sql.CaseVisit("A", h, 2 * h, "a", "d1", "market", (h,)),
        sql.CaseVisit("A", 7 * h, 8 * h, "a", "d1", "market", (7 * h,)),
    ]
    windows = sql.seed_windows(rule, [(v.premises_id, v.time_from, v.time_to) for v in case])
    text, params = sql.contacts(rule, [("C", 0)], 10, ["C"], case=case, windows=windows)
    assert "JOIN" not in text.replace("ARRAY JOIN", "") and "event_id" not in text
    assert "indexHint((premises_id IN %(w0_p)s AND" in text
    assert "t >= s - %(before_ms)s AND t <= e + %(after_ms)s" in text
    assert (params["before_ms"], params["after_ms"]) == sql.overlap_reach(rule)
    assert params["k_premises"] == ["A", "B"] and params["k_name"] == ["a", "b"]
    assert params["cv_from"] == [[h, 7 * h], [5 * h]]
    assert params["cv_to"] == [[2 * h, 8 * h], [6 * h]]
    assert (params["c_lo"], params["c_hi"]) == (h, 8 * h)
    assert (params["buffer_ms"], params["min_overlap_ms"]) == (5 * MINUTE_MS, 15 * MINUTE_MS)
    text % {k: "v" for k in params}


def test_contact_rows_map_by_contact_columns() -> None:
    """`trace._contacts` builds contacts positionally from rows in CONTACT_COLUMNS order."""
    from tracing.trace import _contacts

    row = {c: f"v-{c}" for c in sql.CONTACT_COLUMNS}
    row |= {"case_from": 1, "case_to": 2, "contact_from": 3, "contact_to": 4, "overlap_ms": 60_000}
    (one,) = _contacts([tuple(row[c] for c in sql.CONTACT_COLUMNS)], 2)
    assert (one.person_id, one.premises_id, one.via_person_id) == (
        "v-person_id",
        "v-premises_id",
        "v-via",
    )
    assert (one.premises_name, one.district, one.category) == (
        "v-premises_name",
        "v-district",
        "v-category",
    )
    assert (one.case_time_from, one.case_time_to) == (1, 2)
    assert (one.contact_time_from, one.contact_time_to) == (3, 4)
    assert one.degree == 2 and one.overlap_minutes == 1.0
    (first,) = _contacts([tuple(row[c] for c in sql.CONTACT_COLUMNS)], 1)
    assert first.via_person_id is None
