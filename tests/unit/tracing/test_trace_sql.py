"""The SQL builders: values are always bound parameters, never part of the SQL text."""

from __future__ import annotations

import pytest

from tracing import sql
from tracing.rules import MINUTE_MS, Rule, RuleError

EVIL = "x'); DROP TABLE scans; --"


@pytest.mark.parametrize("rule", [Rule(), Rule("overlap", buffer_min=5, min_overlap_min=15)])
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
    wide = sql.seed_windows(Rule("overlap", buffer_min=10), [("A", 0, h)])
    assert wide == [
        ("A", -10 * MINUTE_MS - Rule().horizon_ms, h + 10 * MINUTE_MS + Rule().horizon_ms)
    ]


def test_rule_ranges() -> None:
    with pytest.raises(RuleError):
        Rule("nope")  # type: ignore[arg-type]
    with pytest.raises(RuleError):
        Rule(window_min=-1)
    with pytest.raises(RuleError):
        Rule(depth=3)
    assert Rule().echo()["name"] == "scan-window"


def test_the_window_cap_counts_day_terms_not_windows() -> None:
    """Many windows on few days still narrow the read (one term a day); more days than the
    cap fall back to the premises set and the span."""
    day = 86_400_000
    rule = Rule("scan-window")
    # 60 premises on two days, scans between 06:00 and 07:00 UTC: 60 windows, 2 terms
    times = [(f"P{i:03d}", (i % 2) * day + 6 * 3_600_000 + i * 60_000) for i in range(60)]
    spans = [(p, t, t) for p, t in times]
    windows = sql.seed_windows(rule, spans)
    assert windows is not None and len(windows) == 60
    assert len(sql.window_terms(windows)) == 2
    many_days = [("P1", d * day + 3_600_000 * 5, d * day + 3_600_000 * 5) for d in range(49)]
    assert sql.seed_windows(rule, many_days) is None
    assert sql.seed_windows(rule, many_days[:48]) is not None


def test_degree1_scan_window_binds_the_case_per_premises() -> None:
    """Degree 1 under scan-window reads `scans` once without a join: the case's scan
    times are one bound array per premises (visits of one premises merged), the day terms
    only hint the key analysis."""
    case = [
        sql.CaseVisit("B", 5, 9, "b", "d2", "shop", (5, 9)),
        sql.CaseVisit("A", 1, 2, "a", "d1", "market", (1,)),
        sql.CaseVisit("A", 7, 8, "a", "d1", "market", (7, 8)),
    ]
    windows = sql.seed_windows(Rule(), [("A", 1, 8), ("B", 5, 9)])
    text, params = sql.contacts(Rule(), [("C", 0)], 10, ["C"], case=case, windows=windows)
    assert "JOIN" not in text and "indexHint(" in text
    assert params["k_premises"] == ["A", "B"]
    assert params["k_times"] == [[1, 7, 8], [5, 9]]
    assert params["k_name"] == ["a", "b"] and params["k_category"] == ["market", "shop"]
    assert (params["c_lo"], params["c_hi"]) == (1, 9)
    text % {k: "v" for k in params}
