"""Pure SQL builders for the exposure queries: each returns `(sql, params)`.

Every value from a caller is a bound parameter (`%(name)s`, substituted and escaped by
clickhouse-driver); only table names from the operator's settings are formatted in,
after `_ident` checked them.

Shape of every query (docs/architecture.md "Exposure model"):
1. the seeds' scans: for degree 2 the F1 contacts' through the by-person access path
   (`person_id IN ...`); for degree 1 the case's, already read by the timeline query
   (`case_visits`) or, under scan-window, by `case_scans`, passed back as bound arrays
   (`CaseVisit`), so the degree-1 query reads `scans` once, by premises and time only;
2. co-visitor scans narrowed by `premises_id GLOBAL IN (the seeds' premises)` (a bound
   set at degree 1) and by the seeds' time span (constants), and at degree 1 by one
   premises-and-time term per three days around the case's visits (`seed_windows`,
   `window_terms`), so the `(premises_id, scanned_at)` primary key does the work;
3. a join of the two on premises, filtered by the rule, grouped to one row per
   (person, premises), keeping the seed with the earliest contact (ties: smallest id);
   degree 1 needs no join: under scan-window the case's times are bound arrays per
   premises and time bucket that each co-visitor scan is checked against
   (`_degree1_scan_window`), under overlap the case's visits are bound arrays per
   premises that each co-visitor visit is checked against (`_degree1_overlap`).
`GLOBAL IN` makes the sets travel to every shard when `scans` is a Distributed table
(sharded by premises_id: a person's scans at one premises are on one shard, so the
per-(person, premises) visits are whole there too); on one node it is `IN`.

Exact duplicates (one event_id stored twice before a ReplacingMergeTree merge) cannot
change an answer: every result is a set, a min/max or a count of distinct event_ids, so no
FINAL is needed (it would cost the primary-key narrowing a merge per query).

Visits (overlap rule, and the case's timeline): a person's scans at one premises, in
order of (scanned_at, kind), are cut into visits; scan i continues the visit of
scan i-1 when it follows within `merge_gap_min`, or when it is a check-out following a
check-in within `max_visit_min`. A visit runs from its first scan to its last scan, plus
the premises' dwell time unless it has a check-in and its last scan is a check-out.
Visits are built from the scans within `Rule.horizon_ms` of the times that matter (at
degree 1 under overlap, within `overlap_reach` of the case's visits: what a visit that
overlaps one can reach); a chain of repeats longer than that would be cut (no real visit
is).
"""

# Templates with `_ident`-checked table names only; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from tracing.rules import MAX_DWELL_MIN, MINUTE_MS, Rule

_IDENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?$")
# A query that carries thousands of F1 ids in its text is longer than the 256 KiB default.
# A degree-2 query groups by (person, premises, F1 person): with some 20k F1 persons its
# groups outgrow the server's memory limit, and only a spill to disk lets it answer
# (bench/RESULTS.md "Scans by week"). Smaller queries never reach the threshold.
_SPILL_BYTES: Final = 2_000_000_000
QUERY_SETTINGS: Final[dict[str, object]] = {
    "max_query_size": 64 * 1024 * 1024,
    "max_bytes_before_external_group_by": _SPILL_BYTES,
    "max_bytes_before_external_sort": _SPILL_BYTES,
}


def query_settings(
    max_execution_s: float | None = None, max_memory_bytes: int | None = None
) -> dict[str, object]:
    """`QUERY_SETTINGS` with a query's limits (None or 0: none): `max_execution_time`
    (the server stops the query and answers TIMEOUT_EXCEEDED) and `max_memory_usage`
    (MEMORY_LIMIT_EXCEEDED). Grouping and sorting then spill to disk from half the memory
    limit (ClickHouse's advice), never later than `_SPILL_BYTES`: a spill threshold above
    the limit would fail a query that could have spilled. The per-query `SETTINGS`
    clauses of the queries below name other settings, which the server adds to these."""
    out = dict(QUERY_SETTINGS)
    if max_execution_s:
        out["max_execution_time"] = max_execution_s
        out["timeout_overflow_mode"] = "throw"
    if max_memory_bytes:
        out["max_memory_usage"] = max_memory_bytes
        spill = min(_SPILL_BYTES, max_memory_bytes // 2)
        out["max_bytes_before_external_group_by"] = spill
        out["max_bytes_before_external_sort"] = spill
    return out


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain table name: {name!r}")
    return ".".join(f"`{part}`" for part in name.split("."))


@dataclass(frozen=True, slots=True)
class TraceTables:
    """Where the queries read and write. `by_person` is the by-person access path: a table
    with the columns of `scans` ordered by person (`sinks.schema`, migration 8). `places`
    is the narrow one the cap at the next scan elsewhere reads: (person_id, scanned_at,
    premises_id, kind) at small granules (`sinks.schema`, migration 14)."""

    scans: str = "scans"
    by_person: str = "scans_by_person"
    places: str = "places_by_person"
    audit: str = "audit_log"

    def q(self, which: str) -> str:
        return _ident(getattr(self, which))


Query = tuple[str, dict[str, object]]


def _ms(column: str) -> str:
    return f"toUnixTimestamp64Milli({column})"


def _at(param: str) -> str:
    return f"fromUnixTimestamp64Milli(toInt64({param}), 'UTC')"


def _seed_scans(tables: TraceTables, *, lo: str, hi: str, extra: str = "") -> str:
    """The seeds' scans in [lo, hi] (ms expressions), through the by-person path (a table
    ordered by person): only the columns the rule needs are read, the time bounds prune
    week partitions. Each row's `since` is its seed's by `transform`, not a
    `mapFromArrays(...)[person_id]`: with thousands of F1 seeds the map costs the degree-2
    query several times its time (bench/RESULTS.md "Trace latency")."""
    return f"""
        SELECT person_id, premises_id, {_ms("scanned_at")} AS t, toUInt8(kind) AS k,
               dwell_minutes AS dwell{extra},
               transform(person_id, %(seed_ids)s, CAST(%(seed_since)s AS Array(Int64)),
                         toInt64(0)) AS since
        FROM {tables.q("by_person")}
        WHERE person_id IN %(seed_set)s
          AND scanned_at >= {_at(lo)} AND scanned_at <= {_at(hi)}"""


# When scan (t, k) continues the visit of the scan (pt, pk) before it (same person and
# premises, in time order; pk = 0: none before): within the merge gap, or a check-out
# closing a check-in within the longest visit (`_array_visits`).
_NEW_VISIT: Final = (
    "pk = 0 OR NOT (t - pt <= %(gap_ms)s OR (k = 2 AND pk = 1 AND t - pt <= %(max_visit_ms)s))"
)


def _capped_end(start: str, end: str, premises: str, everywhere: str) -> str:
    """One place at a time (`tracing.rules`), the one definition of the cap: the end of a
    visit at `premises` from `start` to `end`, capped at the person's first scan at
    another premises strictly after `start`. `everywhere` is the person's scans as
    (time, premises) tuples, premises written as `premises` is (an id or an index), at
    least those between the visit's start and end; a scan at or after `end` caps
    nothing, so neither does an empty array."""
    return (
        f"arrayMin(arrayPushBack(arrayFilter(y -> y.1 > {start} AND y.2 != {premises},"
        f" {everywhere}).1, {end}))"
    )


def _array_visits(scans: str, extra: str = "", cap: tuple[str, str] | None = None) -> str:
    """The visits of `scans`, one person's scans at one premises as an array of
    (t, k, dwell, ...) tuples in ascending order, as (start, end{extra}) tuples (the
    visits of the module docstring). `extra` adds elements computed from `x`,
    the visit's tuples. Scans equal in time and kind are interchangeable for every step
    (the split compares times and kinds, the end takes the last kind and the longest
    dwell), so their order among themselves does not matter. `cap`: (the person's scans
    everywhere, this premises) as `_capped_end` takes them, to end each visit there."""
    previous = (
        f"arrayPopBack(arrayPushFront({scans}.1, toInt64(0))),"
        f" arrayPopBack(arrayPushFront({scans}.2, toUInt8(0)))"
    )
    end = f"""x[-1].1 + if(x[-1].2 = 2 AND arrayExists(y -> y.2 = 1, x),
                                 0, arrayMax(y -> y.3, x) * {MINUTE_MS})"""
    if cap is not None:
        end = _capped_end("x[1].1", end, cap[1], cap[0])
    return f"""arrayMap(x -> (x[1].1, {end}{extra}),
                arraySplit((x, n) -> n, {scans},
                           arrayMap((t, k, pt, pk) -> {_NEW_VISIT},
                                    {scans}.1, {scans}.2, {previous})))"""


def _rule_params(rule: Rule) -> dict[str, object]:
    return {
        "window_ms": rule.window_min * MINUTE_MS,
        "buffer_ms": rule.buffer_min * MINUTE_MS,
        "min_overlap_ms": rule.min_overlap_min * MINUTE_MS,
        "gap_ms": rule.merge_gap_min * MINUTE_MS,
        "max_visit_ms": rule.max_visit_min * MINUTE_MS,
        "horizon_ms": rule.horizon_ms,
    }


# The joins of seed scans (or visits) with co-visitor scans (or visits) are equi-joins on
# (premises_id, time bucket): each side lists the buckets it touches, so only rows close
# in time are paired, instead of every pair at a premises. A pair of visits sharing several
# buckets is met in each; only the meeting in the bucket where their overlap starts is kept
# (that bucket is on both lists whenever they overlap), so the grouping after the join
# takes each pair once: the aggregates (min, max) would not mind the copies, but their
# number makes the grouping spill to disk (bench/RESULTS.md "places_by_person").
OVERLAP_BUCKET_MS: Final = 60 * MINUTE_MS


def _bucket_ms(rule: Rule) -> int:
    if rule.name == "scan-window":
        return max(rule.window_min, 1) * MINUTE_MS
    return OVERLAP_BUCKET_MS


def _exclude_set(exclude: list[str]) -> tuple[str, ...]:
    """The bound set of `person_id NOT IN %(exclude)s`: never empty (`IN ()` is an error)."""
    return tuple(exclude) if exclude else ("",)


def _seed_params(
    seeds: list[tuple[str, int]], to_ms: int, exclude: list[str], rule: Rule
) -> dict[str, object]:
    if not seeds:
        raise ValueError("no seeds")
    ids = [s for s, _ in seeds]
    return {
        "seed_ids": ids,
        "seed_since": [int(t) for _, t in seeds],
        "seed_set": tuple(ids),
        "min_since": min(int(t) for _, t in seeds),
        "to_ms": int(to_ms),
        "exclude": _exclude_set(exclude),
        "bucket_ms": _bucket_ms(rule),
        **_rule_params(rule),
    }


# One row per contact: person_id, premises_id, via (the seed), case_from, case_to,
# contact_from, contact_to, overlap_ms (NULL under scan-window), premises_name, district,
# category. Times are epoch ms.
CONTACT_COLUMNS: Final = (
    "person_id",
    "premises_id",
    "via",
    "case_from",
    "case_to",
    "contact_from",
    "contact_to",
    "overlap_ms",
    "premises_name",
    "district",
    "category",
)

# How answers list contacts after their degree: by contact start, then person, then
# premises (one row per person and premises and degree: a total order).
CONTACT_ORDER: Final = ("contact_from", "person_id", "premises_id")


def in_contact_order(query: Query) -> Query:
    """`query` (rows in `CONTACT_COLUMNS` order) sorted by `CONTACT_ORDER` in ClickHouse,
    so that its rows can be streamed in the answer's order instead of sorted in memory.
    Positional keys: the wrapped query's column names depend on its aliases."""
    text, params = query
    keys = ", ".join(str(CONTACT_COLUMNS.index(c) + 1) for c in CONTACT_ORDER)
    return (
        f"SELECT * FROM ({text}\n)\nORDER BY {keys}\nSETTINGS enable_positional_arguments = 1",
        params,
    )


_PREMISES_COLS = "premises_name, district, category"


def _premises_any(of: str = "") -> str:
    """The premises' columns of a grouping, taken with `any` from the rows of `of` (a
    table's alias with its dot, "c.", or nothing)."""
    return "".join(f", any({of}{c}) AS {c}" for c in _PREMISES_COLS.split(", "))


def _earliest_seed(
    pairs: str,
    case: tuple[str, str],
    contact: tuple[str, str],
    overlap: str | None = None,
    names: bool = False,
) -> str:
    """One contact row per (person, premises) from the (co-visitor `x`, seed `c`) pairs
    of `pairs` (its FROM and WHERE): that of the seed whose pairs reach the person
    earliest (the least `contact[0]`, then the least seed id), its times from that seed's
    pairs only: `case` and `contact` are the (from, to) expressions of a pair, `overlap`
    its overlap, `names` the premises' columns taken from the seeds' rows. One grouping by
    (person, premises) that keeps each group's pairs of the chosen seed, rather than a
    grouping by (person, premises, seed) and the first of each sorted: a person meets
    nearly every seed once, so that grouping had about as many groups as there are pairs,
    and all of them were sorted (bench/RESULTS.md "Depth 2: the earliest seed")."""
    extra = f", {overlap}" if overlap else ""
    overlap_ms = (
        "toNullable(arrayMax(p -> p.5, mine))" if overlap else "CAST(NULL AS Nullable(Int64))"
    )
    return f"""
SELECT person_id, premises_id, via,
       arrayMin(p -> p.2, mine) AS case_from, arrayMax(p -> p.3, mine) AS case_to,
       contact_from, arrayMax(p -> p.4, mine) AS contact_to,
       {overlap_ms} AS overlap_ms{", " + _PREMISES_COLS if names else ""}
FROM (
    SELECT x.person_id AS person_id, x.premises_id AS premises_id,
           argMin(c.seed, ({contact[0]}, c.seed)) AS via, min({contact[0]}) AS contact_from,
           arrayFilter(p -> p.1 = via,
                       groupArray((c.seed, {case[0]}, {case[1]}, {contact[1]}{extra}))) AS mine
           {_premises_any("c.") if names else ""}
    {pairs}
    GROUP BY person_id, premises_id
)"""


# PREWHERE is off for the degree-1, timeline and case's-scans reads: their filters are on
# the columns they read anyway, and moving them to PREWHERE costs more than it saves
# (bench/RESULTS.md "Trace latency").
_NO_PREWHERE: Final = "optimize_move_to_prewhere = 0"
# The key analysis of the window terms splits each part's marks in 2 at each step, not
# 8: it takes less of the degree-1 queries' time under both rules (bench/RESULTS.md
# "Trace latency").
_DEGREE1: Final = f"\nSETTINGS {_NO_PREWHERE}, merge_tree_coarse_index_granularity = 2"

Window = tuple[str, int, int]
# Key analysis of an OR of ranges costs more than linearly in their number (measured:
# 10 ranges 13 ms, 74 ranges 160 ms of planning); the windows are grouped into one term
# per TERM_DAYS days (`window_terms`), and beyond MAX_TERMS terms the seed-derived
# `premises IN` + time span narrowing alone is used. (The cap counts terms, not windows:
# the scan-window path widens each of the case's scans, not each visit, so it has more
# windows for the same days.) Three days a term on the week partitions of `scans`
# (migration 9): fewer days a term cost the degree-1 queries more key analysis, more days
# gain nothing under overlap (bench/RESULTS.md "Scans by week").
TERM_DAYS: Final = 3
MAX_TERMS: Final = 48
# A (premises, time bucket) key of `_degree1_scan_window`: premises index * stride +
# bucket offset; the offsets of one period stay far below the stride.
_KEY_STRIDE: Final = 1 << 32


def overlap_reach(rule: Rule) -> tuple[int, int]:
    """How far before the start and after the end of a case's visit the scans of a visit
    that overlaps it (widened by the buffer) can lie: such a visit ends after the widened
    start, so its last scan is at most the longest dwell time earlier and its first scan
    a span before that (`Rule.horizon_ms`); it starts before the widened end, so its
    scans are at most a span later (`Rule.span_ms`)."""
    buffer = rule.buffer_min * MINUTE_MS
    return buffer + rule.horizon_ms, buffer + rule.span_ms


def seed_windows(
    rule: Rule, visits: list[tuple[str, int, int]], max_terms: int = MAX_TERMS
) -> list[Window] | None:
    """(premises_id, lo_ms, hi_ms) ranges of `scans` that hold every row a degree-1
    query can use, from the case's visits (`case_visits`: the same visits, built with the
    same rule) or its scans in the period (scan-window, `case_scans`): each widened by the
    window (scan-window) or as `overlap_reach` says (overlap), merged per premises. None
    when they make too many window terms to help."""
    before = after = rule.window_min * MINUTE_MS
    if rule.name == "overlap":
        before, after = overlap_reach(rule)
    by_premises: dict[str, list[tuple[int, int]]] = {}
    for premises_id, lo, hi in visits:
        by_premises.setdefault(premises_id, []).append((lo - before, hi + after))
    out: list[Window] = []
    for premises_id, spans in sorted(by_premises.items()):
        spans.sort()
        cur_lo, cur_hi = spans[0]
        for lo, hi in spans[1:]:
            if lo <= cur_hi:
                cur_hi = max(cur_hi, hi)
            else:
                out.append((premises_id, cur_lo, cur_hi))
                cur_lo, cur_hi = lo, hi
        out.append((premises_id, cur_lo, cur_hi))
    return out if len(window_terms(out)) <= max_terms else None


Term = tuple[tuple[str, ...], int, int]


def window_terms(windows: list[Window], days: int = TERM_DAYS) -> list[Term]:
    """The windows grouped by the block of `days` UTC days they start in: one (premises
    ids, lo, hi) term per block, covering every window of that block. A case is at a few
    premises a day, so the co-visitor read selects a few more granules than with one term
    per window, while the key analysis, whose cost grows faster than linearly with the
    number of OR terms, gets a few terms a period."""
    block_ms = days * 86_400_000
    by_block: dict[int, list[Window]] = {}
    for w in windows:
        by_block.setdefault(w[1] // block_ms, []).append(w)
    return [
        (
            tuple(sorted({p for p, _, _ in ws})),
            min(lo for _, lo, _ in ws),
            max(hi for _, _, hi in ws),
        )
        for _, ws in sorted(by_block.items())
    ]


def _windows_filter(
    windows: list[Window] | None, params: dict[str, object], *, hint_only: bool = False
) -> str:
    """`AND (premises_id IN ... AND scanned_at BETWEEN ... OR ...)`, one term per block
    (`window_terms`), values bound: lets the (premises_id, scanned_at) primary key read
    only the granules around the case. `hint_only`: inside `indexHint`, used by the key
    analysis but not evaluated row by row, for a query that filters its rows exactly by
    other means."""
    if not windows:
        return ""
    terms = []
    for i, (premises, lo, hi) in enumerate(window_terms(windows)):
        params[f"w{i}_p"], params[f"w{i}_lo"], params[f"w{i}_hi"] = premises, lo, hi
        terms.append(
            f"(premises_id IN %(w{i}_p)s AND scanned_at >= {_at(f'%(w{i}_lo)s')}"
            f" AND scanned_at <= {_at(f'%(w{i}_hi)s')})"
        )
    wrap = "indexHint" if hint_only else ""
    return f"\n          AND {wrap}(" + "\n               OR ".join(terms) + ")"


@dataclass(frozen=True, slots=True)
class CaseVisit:
    """One row of `case_visits` (a visit of the case with a scan in the period) or of
    `case_scans` (the case's scans in the period at one premises)."""

    premises_id: str
    time_from: int
    time_to: int
    premises_name: str
    district: str
    category: str
    period_times: tuple[int, ...]  # its scan times inside [from, to]


def contacts(
    rule: Rule,
    seeds: list[tuple[str, int]],
    to_ms: int,
    exclude: list[str],
    tables: TraceTables | None = None,
    windows: list[Window] | None = None,
    case: list[CaseVisit] | None = None,
) -> Query:
    """Contacts of `seeds` ((person_id, since_ms) pairs: each seed's scans from `since`
    to `to_ms` count) under `rule`, never listing a person in `exclude`.

    Degree 1 is `seeds=[(case, from)]`, `exclude=[case]`; degree 2 is the F1 persons
    with their earliest contact time, excluding the case and every F1 person. `windows`
    (`seed_windows`) narrows the co-visitor read further; the answer is the same without
    (for visits within the horizon: module docstring).
    `case` (degree 1 only): the case's visits from `case_visits` under the same rule and
    period (under scan-window the rows of `case_scans` serve too); the seed rows are then
    bound values instead of a second by-person read, and the premises set and time span
    are constants the primary key analysis uses directly.
    The premises' name, district and category come from the seeds' own rows (few), so
    the co-visitor read is three narrow columns."""
    tables = tables or TraceTables()
    if case is not None and len(seeds) != 1:
        raise ValueError("case rows are for degree 1: one seed")
    if case is not None and not case:
        raise ValueError("no case visits: nothing to trace")
    if case is not None and rule.name == "scan-window":
        return _degree1_scan_window(rule, seeds[0][0], case, exclude, tables, windows)
    if case is not None:
        return _degree1_overlap(rule, seeds[0][0], case, exclude, tables, windows)
    params = _seed_params(seeds, to_ms, exclude, rule)
    near_from = _near_from(rule, tables, _windows_filter(windows, params))
    if rule.name == "scan-window":
        return _scan_window_contacts(tables, near_from), params
    return _overlap_contacts(rule, tables, near_from), params


# How far the co-visitor read reaches beyond the seeds' own times: the window
# (scan-window), or the buffer and what a visit can span (overlap).
_SCAN_WINDOW_PAD: Final = "%(window_ms)s"
_OVERLAP_PAD: Final = "(%(buffer_ms)s + %(horizon_ms)s)"


def _near_span(rule: Rule) -> tuple[str, str]:
    """The time span of the co-visitor read (ms expressions of bound values). The seeds'
    scans lie in [min_since, to] (scan-window); their visits (overlap) start after
    min_since - horizon and end before to + horizon + the longest dwell time: constants,
    so no scalar subquery re-reads the seeds."""
    if rule.name == "scan-window":
        return _at(f"%(min_since)s - {_SCAN_WINDOW_PAD}"), _at(f"%(to_ms)s + {_SCAN_WINDOW_PAD}")
    return (
        _at(f"%(min_since)s - %(horizon_ms)s - {_OVERLAP_PAD}"),
        _at(f"%(to_ms)s + %(horizon_ms)s + {MAX_DWELL_MIN * MINUTE_MS} + {_OVERLAP_PAD}"),
    )


def _near_from(rule: Rule, tables: TraceTables, narrow: str) -> str:
    """FROM and WHERE of the co-visitor read (`near`): the scans at the premises of the
    seeds' rows (the `case_scans` or `case_visits` CTE), over `_near_span`, of persons not
    excluded, narrowed by the window terms `narrow` (`_windows_filter`)."""
    seeds = "case_scans" if rule.name == "scan-window" else "case_visits"
    lo, hi = _near_span(rule)
    return f"""
        FROM {tables.q("scans")}
        WHERE premises_id GLOBAL IN (SELECT premises_id FROM {seeds})
          AND scanned_at >= {lo}
          AND scanned_at <= {hi}
          AND person_id NOT IN %(exclude)s{narrow}"""


def _scan_window_contacts(tables: TraceTables, near_from: str) -> str:
    """The seeds' scans joined with the co-visitor scans on (premises, time bucket), each
    pair within the window: one row per (person, premises), its earliest seed's."""
    t = _ms("scanned_at")
    seed_rows = f"""
        SELECT person_id AS seed, premises_id, t, premises_name, district, category FROM ({
        _seed_scans(tables, lo="%(min_since)s", hi="%(to_ms)s", extra=", " + _PREMISES_COLS)
    })
        WHERE t >= since"""
    pairs = """FROM near AS x
    INNER JOIN case_buckets AS c ON x.premises_id = c.premises_id AND x.b = c.b
    WHERE x.t >= c.t - %(window_ms)s AND x.t <= c.t + %(window_ms)s AND x.person_id != c.seed"""
    return f"""
WITH
    case_scans AS ({seed_rows}
    ),
    case_buckets AS (
        -- a row per time bucket the scan's window touches: the join key with `near`
        SELECT seed, premises_id, t, premises_name, district, category, b
        FROM case_scans
        ARRAY JOIN range(intDiv(t - %(window_ms)s, %(bucket_ms)s),
                         intDiv(t + %(window_ms)s, %(bucket_ms)s) + 1) AS b
    ),
    near AS (
        SELECT person_id, premises_id, {t} AS t, intDiv(t, %(bucket_ms)s) AS b{near_from}
    )
{_earliest_seed(pairs, ("c.t", "c.t"), ("x.t", "x.t"), names=True)}"""


def _overlap_seed_rows(rule: Rule, tables: TraceTables) -> str:
    """The seeds' visits with a scan in their period, one row each: (seed, premises_id,
    vs, ve, premises_name, district, category). Built as arrays per (seed, premises), as
    at degree 1 (`_array_visits`), not by window functions over every scan; with the cap,
    each seed's scans everywhere are its per-premises arrays gathered over its groups."""
    seed_scans = _seed_scans(
        tables,
        lo="%(min_since)s - %(horizon_ms)s",
        hi="%(to_ms)s + %(horizon_ms)s",
        extra=", " + _PREMISES_COLS,
    )
    in_period = ", arrayExists(y -> y.1 >= since AND y.1 <= %(to_ms)s, x)"
    grouped = f"""person_id AS seed, premises_id, since, arraySort(groupArray((t, k, dwell))) AS a
                   {_premises_any()}"""
    if rule.capped:
        seed_visits = f"""
            SELECT seed, premises_id, since, premises_name, district, category,
                   {_array_visits("a", in_period, cap=("everywhere", "premises_id"))} AS visits
            FROM (
                SELECT {grouped},
                       arrayFlatten(groupArray(arrayMap(x -> (x.1, premises_id), a))
                                    OVER (PARTITION BY seed)) AS everywhere
                FROM ({seed_scans})
                GROUP BY person_id, premises_id, since
            )"""
    else:
        seed_visits = f"""
            SELECT {grouped},
                   {_array_visits("a", in_period)} AS visits
            FROM ({seed_scans})
            GROUP BY person_id, premises_id, since"""
    return f"""
        SELECT seed, premises_id, v.1 AS vs, v.2 AS ve, premises_name, district, category
        FROM ({seed_visits}
        )
        ARRAY JOIN visits AS v
        WHERE v.3"""


def _overlap_contacts(rule: Rule, tables: TraceTables, near_from: str) -> str:
    """The seeds' visits joined with the co-visitors' visits on (premises, hour bucket),
    each pair overlapping by the minimum: one row per (person, premises), its earliest
    seed's. The co-visitors' visits are arrays per (person, premises) too, and the
    premises' names are joined to the answer instead of carried through the grouping by
    (person, premises, F1 person) (three string states a group, millions of groups): the
    same rows in about half the time (bench/RESULTS.md "Depth 2 under overlap")."""
    near_visits = f"""
            SELECT person_id, premises_id, arraySort(groupArray((t, k, dwell))) AS a,
                   {_array_visits("a")} AS visits
            FROM near
            GROUP BY person_id, premises_id"""
    # The seeds' visits are read three times (four with the cap), and with the cap `near`
    # twice: computed once each (`_MATERIALIZED`), not once a use.
    if rule.capped:
        near_visits = _capped_degree2(
            tables,
            _near_span(rule)[0],
            _at(f"%(to_ms)s + %(horizon_ms)s + {2 * MAX_DWELL_MIN * MINUTE_MS} + {_OVERLAP_PAD}"),
        )
    overlap = "least(x.ve, c.ve + %(buffer_ms)s) - greatest(x.vs, c.vs - %(buffer_ms)s)"
    pairs = f"""FROM near_visits AS x
    INNER JOIN case_buckets AS c ON x.premises_id = c.premises_id AND x.b = c.b
    WHERE {overlap} >= %(min_overlap_ms)s
      AND x.b = intDiv(greatest(x.vs, c.vs - %(buffer_ms)s), %(bucket_ms)s)
      AND x.person_id != c.seed"""
    return f"""
WITH
    case_visits AS MATERIALIZED ({_overlap_seed_rows(rule, tables)}
    ),
    near AS {"MATERIALIZED " if rule.capped else ""}(
        SELECT person_id, premises_id, {_ms("scanned_at")} AS t, toUInt8(kind) AS k,
               dwell_minutes AS dwell{near_from}
    ),
    case_buckets AS (
        SELECT seed, premises_id, vs, ve, b
        FROM case_visits
        ARRAY JOIN range(intDiv(vs - %(buffer_ms)s, %(bucket_ms)s),
                         intDiv(ve + %(buffer_ms)s, %(bucket_ms)s) + 1) AS b
    ),
    near_visits AS (
        SELECT person_id, premises_id, v.1 AS vs, v.2 AS ve, b
        FROM ({near_visits}
        )
        ARRAY JOIN visits AS v
        ARRAY JOIN range(intDiv(v.1, %(bucket_ms)s), intDiv(v.2, %(bucket_ms)s) + 1) AS b
    )
SELECT r.person_id, r.premises_id, r.via, r.case_from, r.case_to, r.contact_from,
       r.contact_to, r.overlap_ms, n.premises_name, n.district, n.category
FROM ({_earliest_seed(pairs, ("c.vs", "c.ve"), ("x.vs", "x.ve"), overlap)}
) AS r
INNER JOIN (
    SELECT premises_id, any(premises_name) AS premises_name, any(district) AS district,
           any(category) AS category
    FROM case_visits
    GROUP BY premises_id
) AS n ON r.premises_id = n.premises_id
SETTINGS {_MATERIALIZED}, {_BIG_SETS}"""


def _capped_degree2(tables: TraceTables, lo: str, hi: str) -> str:
    """The co-visitors' capped visits at the seeds' premises, one row per (person,
    premises) with its `visits`, as the degree-2 query's `near_visits` reads them: each
    visit is built from the person's scans at that premises (`near`, with their kinds and
    dwell times) and capped at the person's scans everywhere, read from the narrow
    `places` path (`hi`: the span widened by the longest dwell time, where the scans that
    cap a visit of the span can lie), one sorted array a person joined to that person's
    groups. The premises are numbered as in the seeds' sorted set (0: none of them, which
    is elsewhere for every visit here), so that the arrays hold and compare integers. The
    persons are too many for the key analysis of their set (`_BIG_SETS`): the span of
    `places` is read whole and filtered row by row."""
    index = "transform(premises_id, seeds_at, arrayEnumerate(seeds_at), toUInt32(0))"
    return f"""
            WITH (SELECT arraySort(groupUniqArray(premises_id)) FROM case_visits) AS seeds_at
            SELECT n.person_id AS person_id, n.premises_id AS premises_id,
                   {_array_visits("n.a", cap=("p.everywhere", "n.j"))} AS visits
            FROM (
                SELECT person_id, premises_id, any({index}) AS j,
                       arraySort(groupArray((t, k, dwell))) AS a
                FROM near
                GROUP BY person_id, premises_id
            ) AS n
            LEFT JOIN (
                SELECT person_id, arraySort(groupArray(({_ms("scanned_at")}, {index})))
                           AS everywhere
                FROM {tables.q("places")}
                WHERE person_id GLOBAL IN (SELECT person_id FROM near)
                  AND scanned_at >= {lo}
                  AND scanned_at <= {hi}
                GROUP BY person_id
            ) AS p ON n.person_id = p.person_id"""


def _premises_params(case: list[CaseVisit], premises: list[str]) -> dict[str, object]:
    """The case's premises bound for a degree-1 query without a join: `premises` (sorted)
    numbered from 1 (`_PREMISES_INDEX`; 0 is none of them), with their names from the
    case's rows (`_PREMISES_NAMES`)."""
    names: dict[str, tuple[str, str, str]] = {}
    for v in case:
        names.setdefault(v.premises_id, (v.premises_name, v.district, v.category))
    return {
        "k_premises": premises,
        "k_index": list(range(1, len(premises) + 1)),
        "k_name": [names[p][0] for p in premises],
        "k_district": [names[p][1] for p in premises],
        "k_category": [names[p][2] for p in premises],
        "k_set": tuple(premises),
    }


_PREMISES_INDEX: Final = (
    "transform(premises_id, CAST(%(k_premises)s AS Array(String)),"
    " CAST(%(k_index)s AS Array(UInt32)), toUInt32(0))"
)
_PREMISES_NAMES: Final = """CAST(%(k_name)s AS Array(String))[{i}] AS premises_name,
       CAST(%(k_district)s AS Array(String))[{i}] AS district,
       CAST(%(k_category)s AS Array(String))[{i}] AS category"""


def _degree1_scan_window(
    rule: Rule,
    person_id: str,
    case: list[CaseVisit],
    exclude: list[str],
    tables: TraceTables,
    windows: list[Window] | None,
) -> Query:
    """Degree 1 under scan-window without a join: the case's scan times in the period
    are bound as arrays, one per premises and time bucket (at least the window wide), and
    each co-visitor scan keeps the case's times within the window among those of its own
    and the two neighbouring buckets (`hits`); a scan with none is no contact. Bucketed,
    a scan is checked against a few case times, not all of a premises' (a case who works
    there can have hundreds). The window terms of `windows` serve the key analysis only
    (`indexHint`), the rows are filtered by `hits` exactly. No join of the case's scans
    with bucketed co-visitor scans: the same rows, without the join's planning
    (bench/RESULTS.md "Trace latency")."""
    bucket_ms = max(rule.window_min * MINUTE_MS, MINUTE_MS)
    times: dict[str, set[int]] = {}
    for v in case:
        times.setdefault(v.premises_id, set()).update(v.period_times)
    premises = sorted(p for p in times if times[p])
    if not premises:
        raise ValueError("no case scans in the period: nothing to trace")
    c_lo = min(min(times[p]) for p in premises)
    first = c_lo // bucket_ms - 2  # every key's bucket offset is >= 1, its neighbours >= 0
    buckets: dict[int, list[int]] = {}
    for i, p in enumerate(premises, start=1):
        for t in sorted(times[p]):
            buckets.setdefault(i * _KEY_STRIDE + t // bucket_ms - first, []).append(t)
    keys = sorted(buckets)
    params: dict[str, object] = {
        "case": person_id,
        "exclude": _exclude_set(exclude),
        "window_ms": rule.window_min * MINUTE_MS,
        "bucket_ms": bucket_ms,
        "first_bucket": first,
        **_premises_params(case, premises),
        "b_keys": keys,
        "b_slots": list(range(1, len(keys) + 1)),
        "b_times": [buckets[k] for k in keys],
        "c_lo": c_lo,
        "c_hi": max(max(times[p]) for p in premises),
    }
    narrow = _windows_filter(windows, params, hint_only=True)
    slot = (
        "transform({key}, CAST(%(b_keys)s AS Array(Int64)),"
        " CAST(%(b_slots)s AS Array(UInt32)), toUInt32(0))"
    )
    near = ", ".join(f"b_times[{slot.format(key=k)}]" for k in ("key - 1", "key", "key + 1"))
    sql = f"""
WITH CAST(%(b_times)s AS Array(Array(Int64))) AS b_times
SELECT person_id, premises_id, %(case)s AS via,
       min(arrayMin(hits)) AS case_from, max(arrayMax(hits)) AS case_to,
       min(t) AS contact_from, max(t) AS contact_to,
       CAST(NULL AS Nullable(Int64)) AS overlap_ms,
       {_PREMISES_NAMES.format(i="any(i)")}
FROM (
    SELECT person_id, premises_id, t, i,
           arrayFilter(c -> c >= t - %(window_ms)s AND c <= t + %(window_ms)s,
                       arrayConcat({near})) AS hits
    FROM (
        SELECT person_id, premises_id, t, i,
               toInt64(i) * {_KEY_STRIDE} + intDiv(t, %(bucket_ms)s) - %(first_bucket)s AS key
        FROM (
            SELECT person_id, premises_id, {_ms("scanned_at")} AS t, {_PREMISES_INDEX} AS i
            FROM {tables.q("scans")}
            WHERE premises_id IN %(k_set)s
              AND scanned_at >= {_at("%(c_lo)s - %(window_ms)s")}
              AND scanned_at <= {_at("%(c_hi)s + %(window_ms)s")}
              AND person_id NOT IN %(exclude)s{narrow}
        )
    )
    WHERE notEmpty(hits)
)
GROUP BY person_id, premises_id{_DEGREE1}"""
    return sql, params


def _degree1_overlap(
    rule: Rule,
    person_id: str,
    case: list[CaseVisit],
    exclude: list[str],
    tables: TraceTables,
    windows: list[Window] | None,
) -> Query:
    """Degree 1 under overlap without a join: the case's visits are bound as arrays per
    premises; the co-visitor scans at those premises (within the case's visits' reach)
    become visits as one sorted array per person and premises (`_array_visits`, without
    the event id: it only orders scans equal in time and kind), and each visit keeps the
    case's visits it overlaps by at least the minimum. The rows are exactly those within
    `overlap_reach` of a case visit at their premises (a row filter: with the window terms
    alone, a chain of repeats longer than the horizon would reach as far as the granules
    read happened to, an answer depending on the parts' layout); the window terms of
    `windows` guide the key analysis only. No join of bucketed visits: the same rows in
    less time, and the exact reach as the row filter reads fewer rows than the window
    terms would (bench/RESULTS.md "Trace latency")."""
    premises = sorted({v.premises_id for v in case})
    index = {p: i for i, p in enumerate(premises)}
    starts: list[list[int]] = [[] for _ in premises]
    ends: list[list[int]] = [[] for _ in premises]
    for v in case:
        starts[index[v.premises_id]].append(v.time_from)
        ends[index[v.premises_id]].append(v.time_to)
    params: dict[str, object] = {
        "case": person_id,
        "exclude": _exclude_set(exclude),
        **_rule_params(rule),
        **_premises_params(case, premises),
        "cv_from": starts,
        "cv_to": ends,
        "c_lo": min(v.time_from for v in case),
        "c_hi": max(v.time_to for v in case),
    }
    params["before_ms"], params["after_ms"] = overlap_reach(rule)
    narrow = _windows_filter(windows, params, hint_only=True)
    visits = f"""
        SELECT person_id, i, v.1 AS vs, v.2 AS ve
        FROM (
            SELECT person_id, i, arraySort(groupArray((t, k, dwell))) AS a,
                   {_array_visits("a")} AS visits
            FROM (
                SELECT person_id, {_PREMISES_INDEX} AS i, {_ms("scanned_at")} AS t,
                       toUInt8(kind) AS k, dwell_minutes AS dwell
                FROM {tables.q("scans")}
                WHERE premises_id IN %(k_set)s
                  AND scanned_at >= {_at("%(c_lo)s - %(before_ms)s")}
                  AND scanned_at <= {_at("%(c_hi)s + %(after_ms)s")}{narrow}
            )
            WHERE arrayExists((s, e) -> t >= s - %(before_ms)s AND t <= e + %(after_ms)s,
                              cv_from[i], cv_to[i])
            GROUP BY person_id, i
        )
        ARRAY JOIN visits AS v
        WHERE person_id NOT IN %(exclude)s AND person_id != %(case)s"""
    cte, settings = "", _DEGREE1
    if rule.capped:
        # the candidates start within the reach before the case's first visit and end by
        # a scan within the reach after its last plus the longest dwell time
        before, after = overlap_reach(rule)
        lo = min(v.time_from for v in case) - before
        hi = max(v.time_to for v in case) + after + MAX_DWELL_MIN * MINUTE_MS
        cte, visits, settings = _capped_degree1(visits, tables, params, lo, hi)
    sql = f"""
WITH CAST(%(cv_from)s AS Array(Array(Int64))) AS cv_from,
     CAST(%(cv_to)s AS Array(Array(Int64))) AS cv_to{cte}
SELECT person_id, CAST(%(k_premises)s AS Array(String))[i] AS premises_id, %(case)s AS via,
       min(arrayMin(c_from)) AS case_from, max(arrayMax(c_to)) AS case_to,
       min(vs) AS contact_from, max(ve) AS contact_to, toNullable(max(ov)) AS overlap_ms,
       {_PREMISES_NAMES.format(i="i")}
FROM (
    SELECT person_id, i, vs, ve,
           arrayMap((s, e) -> least(ve, e + %(buffer_ms)s) - greatest(vs, s - %(buffer_ms)s),
                    cv_from[i], cv_to[i]) AS ovs,
           arrayFilter((s, o) -> o >= %(min_overlap_ms)s, cv_from[i], ovs) AS c_from,
           arrayFilter((e, o) -> o >= %(min_overlap_ms)s, cv_to[i], ovs) AS c_to,
           arrayMax(ovs) AS ov
    FROM ({visits}
    )
)
WHERE notEmpty(c_from)
GROUP BY person_id, i{settings}"""
    return sql, params


# The candidates of a capped degree-1 query are computed once and kept for the places that
# read them (`_capped_degree1`: the join, and each week's person set); with the setting
# off ClickHouse inlines the CTE at each, the same rows at that many times the cost of the
# candidates (bench/RESULTS.md "The cap at the next scan elsewhere").
_MATERIALIZED: Final = "enable_materialized_cte = 1"
# The primary key analysis of an `IN` set costs tens of microseconds a value, on one thread
# before the read starts: for the persons of a degree-2 query's `near` (about everyone at
# the seeds' premises, a hundred thousand for one case of the 100 M set) it takes longer
# than reading the whole span (bench/RESULTS.md "places_by_person"). Smaller sets
# (premises, seeds) keep the index.
_BIG_SETS: Final = "use_index_for_in_with_subqueries_max_values = 50000"


def _capped_degree1(
    visits: str, tables: TraceTables, params: dict[str, object], lo: int, hi: int
) -> tuple[str, str, str]:
    """Degree 1 under overlap with the cap: (a WITH entry, the co-visitor visits, the
    SETTINGS). Capping only shortens a visit, so the uncapped visits that overlap a case's
    visit by the minimum (`cand`) hold every capped one that does. Only their persons'
    scans are read, from the narrow `places` path, over what those visits can span (a
    first scan within the reach, a last scan plus the longest dwell time), one read a week
    partition with the persons whose visits reach into it, and each candidate's end is
    capped (`_capped_end`; the premises as the query's index, 0 for any
    premises not the case's); the caller's overlap test then runs on the capped visits.
    On `scans_by_person` each person cost a granule of 1,024 wide rows; on `places`, a few
    KiB (bench/RESULTS.md "places_by_person")."""
    reads = []
    for n, (w_lo, w_hi) in enumerate(_weeks(lo, hi)):
        params[f"cw{n}_lo"], params[f"cw{n}_hi"] = w_lo, w_hi
        reads.append(f"""
                SELECT person_id, {_ms("scanned_at")} AS t, {_PREMISES_INDEX} AS j
                FROM {tables.q("places")}
                WHERE person_id GLOBAL IN (
                        SELECT person_id FROM cand
                        WHERE vs <= %(cw{n}_hi)s AND ue >= %(cw{n}_lo)s)
                  AND scanned_at >= {_at(f"%(cw{n}_lo)s")}
                  AND scanned_at <= {_at(f"%(cw{n}_hi)s")}""")
    cte = f""",
    cand AS MATERIALIZED (
        SELECT person_id, i, vs, ve AS ue
        FROM ({visits}
        )
        WHERE arrayExists(
            (s, e) -> least(ve, e + %(buffer_ms)s) - greatest(vs, s - %(buffer_ms)s)
                >= %(min_overlap_ms)s,
            cv_from[i], cv_to[i])
    )"""
    union = "\n                UNION ALL".join(reads)
    capped = f"""
        SELECT c.person_id AS person_id, c.i AS i, c.vs AS vs,
               {_capped_end("c.vs", "c.ue", "c.i", "p.everywhere")} AS ve
        FROM cand AS c
        LEFT JOIN (
            SELECT person_id, arraySort(groupArray((t, j))) AS everywhere
            FROM ({union}
            )
            GROUP BY person_id
        ) AS p ON c.person_id = p.person_id"""
    return cte, capped, f"{_DEGREE1}, {_MATERIALIZED}"


# The by-person path's partitions: weeks from Monday 00:00 UTC (`toMonday(scanned_at)`,
# sinks.schema); 1970-01-05 was a Monday.
_WEEK_MS: Final = 7 * 86_400_000
_MONDAY_MS: Final = 4 * 86_400_000


def _weeks(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi] cut at the by-person path's week partitions: one read a week, each with
    the persons whose visits reach into it, so a person costs the granules of the weeks
    their visits touch, not of every week of the span."""
    out = []
    start = lo
    while start <= hi:
        end = min(hi, (start - _MONDAY_MS) // _WEEK_MS * _WEEK_MS + _MONDAY_MS + _WEEK_MS - 1)
        out.append((start, end))
        start = end + 1
    return out


def case_visits(
    rule: Rule, person_id: str, from_ms: int, to_ms: int, tables: TraceTables | None = None
) -> Query:
    """The case's visits with at least one scan in [from, to]: its timeline, and per visit
    the times of its scans inside the period (what `CaseVisit` needs for degree 1). One
    read of the by-person path, the visits built per premises as arrays
    (`_array_visits`), cheaper than window functions over the scans (bench/RESULTS.md
    "Trace latency")."""
    tables = tables or TraceTables()
    t = _ms("scanned_at")
    in_period = "t >= %(from_ms)s AND t <= %(to_ms)s"
    # per visit: its distinct scans, and its distinct scan times inside the period
    extra = (
        ", length(arrayDistinct(x.4)),"
        f" arraySort(arrayDistinct(arrayFilter(t -> {in_period}, x.1)))"
    )
    scans = f"""
        SELECT premises_id, {t} AS t, toUInt8(kind) AS k, dwell_minutes AS dwell, event_id,
               premises_name, district, category
        FROM {tables.q("by_person")}
        WHERE person_id = %(person_id)s
          AND scanned_at >= {_at("%(from_ms)s - %(horizon_ms)s")}
          AND scanned_at <= {_at("%(to_ms)s + %(horizon_ms)s")}"""
    grouped = """premises_id, any(premises_name) AS premises_name, any(district) AS district,
           any(category) AS category, arraySort(groupArray((t, k, dwell, event_id))) AS a"""
    if rule.capped:
        # the case's scans everywhere: its per-premises arrays gathered over all groups
        # (one person, a few dozen groups), so the by-person path is read once
        inner = f"""
    SELECT premises_id, premises_name, district, category, a,
           {_array_visits("a", extra, cap=("everywhere", "premises_id"))} AS visits
    FROM (
        SELECT {grouped},
               arrayFlatten(groupArray(arrayMap(x -> (x.1, premises_id), a)) OVER ())
                   AS everywhere
        FROM ({scans}
        )
        GROUP BY premises_id
    )"""
    else:
        inner = f"""
    SELECT {grouped},
           {_array_visits("a", extra)} AS visits
    FROM ({scans}
    )
    GROUP BY premises_id"""
    sql = f"""
SELECT premises_id, v.1 AS time_from, v.2 AS time_to, v.3 AS scans, premises_name, district,
       category, v.4 AS period_times
FROM ({inner}
)
ARRAY JOIN visits AS v
WHERE notEmpty(v.4)
ORDER BY time_from, premises_id
SETTINGS {_NO_PREWHERE}"""
    params = {"person_id": person_id, "from_ms": int(from_ms), "to_ms": int(to_ms)}
    return sql, {**params, **_rule_params(rule)}


def case_scans(
    person_id: str, from_ms: int, to_ms: int, tables: TraceTables | None = None
) -> Query:
    """The case's scans in [from, to] per premises, with the premises' names: the seeds of
    a degree-1 query under scan-window (`CaseVisit`s of one premises each, the times
    sorted), in one plain read of the by-person path, without building visits."""
    tables = tables or TraceTables()
    t = _ms("scanned_at")
    sql = f"""
SELECT premises_id, min({t}) AS time_from, max({t}) AS time_to, any(premises_name),
       any(district), any(category), arraySort(groupUniqArray({t})) AS period_times
FROM {tables.q("by_person")}
WHERE person_id = %(person_id)s
  AND scanned_at >= {_at("%(from_ms)s")} AND scanned_at <= {_at("%(to_ms)s")}
GROUP BY premises_id
ORDER BY premises_id
SETTINGS {_NO_PREWHERE}"""
    return sql, {"person_id": person_id, "from_ms": int(from_ms), "to_ms": int(to_ms)}


def premises_visitors(
    premises_id: str, from_ms: int, to_ms: int, tables: TraceTables | None = None
) -> Query:
    """Everyone who scanned at a premises in [from, to]: first and last scan, scans."""
    tables = tables or TraceTables()
    sql = f"""
SELECT person_id, min({_ms("scanned_at")}) AS time_from, max({_ms("scanned_at")}) AS time_to,
       uniqExact(event_id) AS scans, any(premises_name) AS premises_name,
       any(district) AS district, any(category) AS category
FROM {tables.q("scans")}
WHERE premises_id = %(premises_id)s
  AND scanned_at >= {_at("%(from_ms)s")} AND scanned_at <= {_at("%(to_ms)s")}
GROUP BY person_id
ORDER BY time_from, person_id"""
    return sql, {"premises_id": premises_id, "from_ms": int(from_ms), "to_ms": int(to_ms)}
