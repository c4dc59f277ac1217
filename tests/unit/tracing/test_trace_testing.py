"""`tracing.testing`'s fake recognises every query the tracer sends (a change of the
builders in `tracing.sql` that it no longer recognises fails here), the answer cache's
bounds, and the query settings' limits merged with the spill thresholds."""

from __future__ import annotations

from tracing import sql
from tracing.api.cache import AnswerCache
from tracing.audit import Actor, AuditRecord, AuditWriter, read_audit
from tracing.rules import Rule
from tracing.testing import FakeClickHouse, query_kind
from tracing.trace import SCHEMA_VERSION, check_schema, trace_person, trace_premises

CASE = [sql.CaseVisit("P1", 1_000, 2_000, "Market", "D", "market", (1_000, 2_000))]


def test_every_builder_is_recognised() -> None:
    for rule in (Rule("scan-window"), Rule("overlap")):
        assert query_kind(*sql.case_visits(rule, "C", 0, 10)) == "timeline"
        assert query_kind(*sql.contacts(rule, [("C", 0)], 10, ["C"], case=CASE)) == "contacts"
        degree2 = sql.contacts(rule, [("A", 0), ("B", 5)], 10, ["C", "A", "B"])
        assert query_kind(*degree2) == "contacts2"
        assert query_kind(*sql.in_contact_order(degree2)) == "contacts2"
    assert query_kind(*sql.case_scans("C", 0, 10)) == "case_scans"
    assert query_kind(*sql.premises_visitors("P1", 0, 10)) == "visitors"
    assert query_kind("SELECT max(version) FROM schema_migrations", {}) == "schema"


def test_the_fake_answers_and_records_the_audit_rows() -> None:
    db = FakeClickHouse(contacts=4, visitors=2)
    runner = db.runner()
    check_schema(runner)
    assert db.version == SCHEMA_VERSION
    result = trace_person(runner, "C", 0, 10**13, Rule(depth=2))
    assert [c.degree for c in result.contacts] == [1] * 4 + [2] * 4
    assert len(trace_premises(runner, "P1", 0, 10).visitors) == 2
    AuditWriter(runner).write(AuditRecord(Actor("A", "tracer", "api"), "trace", "C", 0, 10, 5))
    (row,) = read_audit(runner, 0)
    assert (row["actor"], row["action"], row["ok"]) == ("A", "trace", True)
    assert read_audit(runner, 6) == []


def test_cache_bounded_by_rows_and_age() -> None:
    now = [0.0]
    cache: AnswerCache[str] = AnswerCache(max_rows=10, ttl_s=5, clock=lambda: now[0])
    cache.put("a", "A", 4)
    cache.put("b", "B", 4)
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("c", "C", 4)  # 15 > 10: the least recently used (b) goes
    assert cache.get("b") is None and cache.get("a") == "A" and cache.get("c") == "C"
    assert cache.rows == 10
    cache.put("huge", "H", 10)  # larger than the whole cache: not kept
    assert cache.get("huge") is None and cache.get("a") == "A"
    now[0] = 5.0
    assert cache.get("a") is None and cache.get("c") is None
    for i in range(100):  # empty answers cost a row each: bounded too
        cache.put(i, "x", 0)
    assert len(cache) <= 10


def test_limits_merge_with_the_spill_thresholds() -> None:
    assert sql.query_settings() == sql.QUERY_SETTINGS
    s = sql.query_settings(30, 4 * 2**30)
    assert s["max_execution_time"] == 30 and s["max_memory_usage"] == 4 * 2**30
    assert s["max_bytes_before_external_group_by"] == 2_000_000_000  # below half the limit
    s = sql.query_settings(0, 2**30)
    assert "max_execution_time" not in s
    assert s["max_bytes_before_external_group_by"] == 2**29  # half of a smaller limit
    assert s["max_bytes_before_external_sort"] == 2**29
    assert s["max_query_size"] == sql.QUERY_SETTINGS["max_query_size"]
