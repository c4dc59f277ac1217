"""The timeline beside the case's scans and the degree-1 query: a failure on either
connection fails the trace (never an answer without its timeline)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest

from tracing.rules import Rule
from tracing.runner import Row
from tracing.trace import trace_person

CASE_SCANS = [("P1", 1_000, 2_000, "Market", "D", "market", [1_000, 2_000])]


class Fake:
    """Answers `case_scans` and the degree-1 query; `fail` names the query kind to raise."""

    def __init__(self, fail: str = "", side: Fake | None = None) -> None:
        self.fail = fail
        self.side = side
        self.asked: list[str] = []

    def query(self, sql: str, params: Mapping[str, object]) -> list[Row]:
        kind = (
            "contacts"
            if "notEmpty(hits)" in sql or "notEmpty(c_from)" in sql
            else "timeline"
            if "arraySplit" in sql  # visits built
            else "scans"
        )
        self.asked.append(kind)
        if kind == self.fail:
            raise RuntimeError(f"{kind} failed")
        return list(CASE_SCANS) if kind == "scans" else []

    def iter_query(self, sql: str, params: Mapping[str, object]) -> Iterator[Row]:
        return iter(self.query(sql, params))

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        raise AssertionError("no inserts")

    def close(self) -> None:
        pass

    def sibling(self) -> Fake | None:
        return self.side


def test_the_timeline_runs_on_the_sibling() -> None:
    side = Fake()
    main = Fake(side=side)
    result = trace_person(main, "C", 0, 10_000, Rule("scan-window"))
    assert main.asked == ["scans", "contacts"] and side.asked == ["timeline"]
    assert result.contacts == [] and result.visits == []


@pytest.mark.parametrize("where", ["main", "side"])
def test_a_failure_on_either_connection_fails_the_trace(where: str) -> None:
    side = Fake(fail="timeline" if where == "side" else "")
    main = Fake(fail="contacts" if where == "main" else "", side=side)
    with pytest.raises(RuntimeError, match="failed"):
        trace_person(main, "C", 0, 10_000, Rule("scan-window"))
    assert side.asked == ["timeline"]  # ran (and was waited for) either way


def test_overlap_and_a_runner_without_sibling_run_one_after_the_other() -> None:
    main = Fake()
    trace_person(main, "C", 0, 10_000, Rule("overlap"))
    assert main.asked == ["timeline"]  # no visits: nothing more to ask
