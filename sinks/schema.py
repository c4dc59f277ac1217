"""The ClickHouse schema as migrations, one source for the single node and the cluster.

Each table is declared once as a `Table`; `render` turns it into the DDL of either shape:
- single node: `CREATE TABLE db.t (...) ENGINE = ReplacingMergeTree ...`, with
  `non_replicated_deduplication_window` so that `insert_deduplication_token` works;
- cluster (`ClickHouseSettings.cluster`): `db.t_local ON CLUSTER c` with the Replicated
  engine (`'/clickhouse/tables/{shard}/{database}/t', '{replica}'` from the node macros)
  and `db.t ON CLUSTER c AS db.t_local ENGINE = Distributed(c, db, t_local, shard_key)`.
Every query names `t`, so it runs unchanged against either (docs/architecture.md, "Schema
and migrations").

The tables:
- `scans`: one row per scan, ReplacingMergeTree(processed_at) ordered by
  (premises_id, scanned_at, event_id): the tracer's main path, and a replayed scan collapses
  into one row at merge time. Until then a duplicate row can exist, so the query path never
  counts rows: answers are sets, min/max, `uniqExact(event_id)` or `LIMIT 1 BY event_id`
  (`tracing/sql.py`, `tracing/report/queries.py`). FINAL is avoided: it costs a merge per
  query. Partitioned by week at 2,048-row granules (`SCANS_WEEKLY`): by day, a trace
  would pay at least a granule for each premises and day it touches.
- By-person path: the table `scans_by_person` (migration 8), the same columns ordered by
  (person_id, scanned_at, event_id) at 1,024-row granules, partitioned by week, fed by a
  materialized view on the inserts into `scans`. A table rather than a projection: a
  projection is partitioned like its table, so with day partitions a person's 14 days
  open at least 14 parts; three week partitions cost less than half (bench/RESULTS.md
  "Trace latency"). A retried insert (same token) is deduplicated in it too (the sink's
  `deduplicate_blocks_in_dependent_materialized_views`); a replay cut differently leaves
  duplicates until a merge, as in `scans`: it is a ReplacingMergeTree too, and its
  readers obey the same dedup-proof rule.
  Its TTL deletes rows (not whole parts: a week partition would outlive the retention by
  up to 6 days) in TTL merges, within hours of the retention (`merge_with_ttl_timeout`).
- Idempotency: insert tokens (the sink) + ReplacingMergeTree + dedup-proof queries: two
  mechanisms at the store, on top of the stream's own event_id dedup.
- TTL `scanned_at + retention_days`, rows deleted by TTL merges within hours of the
  retention (`merge_with_ttl_timeout`), in `scans` as in `scans_by_person`: dropping
  only whole week partitions would keep rows up to 6 days past the retention.
- `premises`: the registry as a dimension, ReplacingMergeTree(version): latest version wins
  (read with FINAL or argMax; it is small).
- `premises_daily`: the report rollup per premises and local day (Asia/Ho_Chi_Minh), scans
  and distinct scanners as plain numbers, no person ids. It is not fed by a materialized
  view: an insert-time view counts a replayed insert twice unless the replay has the same
  token, which a replay with other batch boundaries has not. It is recomputed from `scans`
  with `uniqExact(event_id)` and `uniqExact(person_id)`, exact whatever duplicates `scans`
  holds (`sinks.rollup`); ReplacingMergeTree(computed_at) keeps the latest computation.
- `dead_letters`: everything not stored, with its raw bytes; raw bytes hold person ids, so
  the same TTL applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Final

from sinks.clickhouse_settings import ClickHouseSettings

# Reports count local days; storage stays in UTC (docs/architecture.md, "Time and privacy").
REPORT_TZ: Final = "Asia/Ho_Chi_Minh"
# Blocks remembered for insert deduplication (single node; Replicated tables default to
# 10,000 blocks or one hour). At one insert per partition per second, hours of retries.
DEDUP_WINDOW: Final = 10_000

_IDENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def ident(name: str) -> str:
    """A database, table or cluster name from the operator's settings, back-quoted."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f"`{name}`"


@dataclass(frozen=True, slots=True)
class Table:
    """A MergeTree-family table, rendered for one node or for a cluster."""

    name: str
    columns: tuple[str, ...]
    order_by: str
    engine: str = "MergeTree"  # the family without `Replicated`
    primary_key: str = ""  # a prefix of `order_by`; empty: the whole of it
    engine_args: str = ""  # e.g. the version column of a ReplacingMergeTree
    partition_by: str = ""
    ttl: str = ""  # may use {retention_days}
    projections: tuple[str, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()
    shard_key: str = "rand()"  # of the Distributed table on a cluster
    dedup_window: bool = True  # keep insert-dedup hashes on a single node too
    # Holds person ids or hashes of them: it must have a TTL (the retention, or the audit
    # retention for the audit log), checked by the tests on the live server.
    person_data: bool = False


@dataclass(frozen=True, slots=True)
class Once:
    """A statement that cannot be written to run twice harmlessly (`EXCHANGE TABLES` swaps
    back): `migrate` skips it when the query `done_if` (a template too) returns 1, so a
    migration that stopped half-way can be re-run."""

    statement: str | Table
    done_if: str


Statement = str | Table | Once


@dataclass(frozen=True, slots=True)
class Migration:
    """A version of the schema. A `str` statement is a template with {db}, {db_name} (the
    same, unquoted, for string literals), {on_cluster}, {local} (the `_local` suffix on a
    cluster, empty on one node), {retention_days} and {audit_retention_days}."""

    version: int
    name: str
    statements: tuple[Statement, ...] = field(default=())


SCANS = Table(
    name="scans",
    columns=(
        "event_id String",
        "person_id String",
        "premises_id String",
        "scanned_at DateTime64(3, 'UTC')",
        "kind Enum8('checkin' = 1, 'checkout' = 2)",
        "gateway_id LowCardinality(String)",
        "received_at Nullable(DateTime64(3, 'UTC'))",
        "processed_at DateTime64(3, 'UTC')",
        "stored_at DateTime64(3, 'UTC') DEFAULT now64(3)",
        "premises_name String",
        "category LowCardinality(String)",
        "district LowCardinality(String)",
        "ward LowCardinality(String)",
        "agency LowCardinality(String)",
        "dwell_minutes UInt16",
    ),
    engine="ReplacingMergeTree",
    engine_args="processed_at",
    partition_by="toDate(scanned_at)",
    order_by="(premises_id, scanned_at, event_id)",
    ttl="toDateTime(scanned_at) + INTERVAL {retention_days} DAY",
    projections=("by_person (SELECT * ORDER BY (person_id, scanned_at))",),
    settings=(("deduplicate_merge_projection_mode", "'rebuild'"), ("ttl_only_drop_parts", "1")),
    shard_key="cityHash64(premises_id)",
    person_data=True,
)

AUDIT_LOG = Table(
    name="audit_log",
    columns=(
        "audit_id UUID",
        "at DateTime64(3, 'UTC')",
        "actor String",
        "role LowCardinality(String)",
        "channel LowCardinality(String)",
        "action LowCardinality(String)",
        "subject_id String",
        "period_from DateTime64(3, 'UTC')",
        "period_to DateTime64(3, 'UTC')",
        "rule String",
        "rows UInt32",
        "ok UInt8",
        "error String",
        "duration_ms UInt32",
    ),
    partition_by="toYYYYMM(at)",
    order_by="(at, audit_id)",
    # subject_id is the person asked for: kept for the audit retention, not for ever.
    ttl="toDateTime(at) + INTERVAL {audit_retention_days} DAY",
    shard_key="cityHash64(audit_id)",
    dedup_window=False,  # every tracer query is one row of its own, duplicates included
    person_data=True,
)

PREMISES = Table(
    name="premises",
    columns=(
        "premises_id String",
        "name String",
        "category LowCardinality(String)",
        "district LowCardinality(String)",
        "ward LowCardinality(String)",
        "agency LowCardinality(String)",
        "address String",
        "lat Nullable(Float64)",
        "lon Nullable(Float64)",
        "dwell_minutes UInt16",
        "version UInt64",  # epoch ms of the registry import; the latest wins
        "stored_at DateTime64(3, 'UTC') DEFAULT now64(3)",
    ),
    engine="ReplacingMergeTree",
    engine_args="version",
    order_by="premises_id",
    shard_key="cityHash64(premises_id)",
)

DEAD_LETTERS = Table(
    name="dead_letters",
    columns=(
        "stage LowCardinality(String)",
        "reason LowCardinality(String)",
        "detail String",
        "raw String",
        "topic LowCardinality(String)",
        "partition Int32",
        "offset Int64",
        "at DateTime64(3, 'UTC')",
        "event_id String",
        "stored_at DateTime64(3, 'UTC') DEFAULT now64(3)",
    ),
    engine="ReplacingMergeTree",
    partition_by="toYYYYMM(at)",
    # One dead letter is one (stage, source position, time, bytes): a replay collapses.
    order_by="(stage, reason, topic, partition, offset, at, event_id, cityHash64(raw))",
    ttl="toDateTime(at) + INTERVAL {retention_days} DAY",
    shard_key="cityHash64(raw)",
    person_data=True,
)

PREMISES_DAILY = Table(
    name="premises_daily",
    columns=(
        "day Date",  # local day in REPORT_TZ
        "premises_id String",
        "category LowCardinality(String)",
        "district LowCardinality(String)",
        "ward LowCardinality(String)",
        "agency LowCardinality(String)",
        "scans UInt64",  # distinct event ids
        "scanners UInt64",  # distinct person ids; the ids themselves are not kept
        "computed_at DateTime64(3, 'UTC')",
    ),
    engine="ReplacingMergeTree",
    engine_args="computed_at",
    partition_by="toYYYYMM(day)",
    order_by="(day, premises_id)",
    shard_key="cityHash64(premises_id)",
    dedup_window=False,  # a recomputation must land even when its numbers are unchanged
)

# The report's exact distinct counts. `premises_daily` holds plain numbers per premises and
# day, which cannot be added up into the distinct scanners of a week and a district, agency
# or category: a person scanning on two days or at two premises would count twice. This
# table keeps, per local day and premises, the sets of keyed hashes of the event ids and
# person ids as uniqExact states; `uniqExactMerge` over any days and premises is the exact
# size of the union (`tracing.report.queries`). A 64-bit collision among 10^7 persons is
# about 3e-6 likely.
#
# Keyed hashes (`sipHash64Keyed`, the key from `ClickHouseSettings.person_hash_key`): a
# plain hash of a person id is recomputed by anyone holding a list of candidate ids, who
# could then test who was where. The key must not enter DDL (a view's SELECT is readable
# in SHOW CREATE and system.tables), so no materialized view fills this table: the sink's
# rollup refresh recomputes the sets of the days its inserts touched from `scans`
# (`sinks.rollup.sets_sql`), the key travelling as a server-side query parameter, not in
# the query text. A set union is idempotent: a recomputation, a retried or a replayed
# insert adds nothing. (A view reading the key from a custom setting of the inserting
# query, `getSetting('custom_...')`, would have kept it out of DDL too; the chdb-core
# 26.9 server knows no custom setting whatever `custom_settings_prefixes` says, so that
# design could not be tested here.) Event ids are keyed too: the scanning device sets them,
# and nothing forbids one derived from the person and the time.
#
# TTL: a day's sets go when that day's first scans expire (local midnight + retention),
# never after any scan they were computed from. Before that the refresh has written the
# counts of the complete days and weeks to `report_counts`, which outlive them.
PREMISES_DAILY_SETS = Table(
    name="premises_daily_sets",
    columns=(
        "day Date",  # local day in REPORT_TZ
        "premises_id String",
        "scans AggregateFunction(uniqExact, UInt64)",  # sipHash64Keyed(key, event_id)
        "scanners AggregateFunction(uniqExact, UInt64)",  # sipHash64Keyed(key, person_id)
    ),
    engine="AggregatingMergeTree",
    partition_by="toYYYYMM(day)",
    order_by="(day, premises_id)",
    ttl=f"toDateTime(day, '{REPORT_TZ}') + INTERVAL {{retention_days}} DAY",
    shard_key="cityHash64(premises_id)",
    dedup_window=False,  # a set union needs no insert dedup
    person_data=True,
)

# What the report shows of a complete local day or ISO week, per group, as plain numbers:
# the sets expire with the retention, the report of a past week must not. Written by the
# sink's rollup refresh once the day or week is over (`sinks.rollup`), recomputed while a
# late upload can still change it (while every day of it still has its sets), and by
# migration 10 for the periods complete before it. The groups are those of the registry
# when the period was counted. ReplacingMergeTree(computed_at): the latest count wins.
REPORT_COUNTS = Table(
    name="report_counts",
    columns=(
        "period Enum8('day' = 1, 'week' = 2)",
        "first_day Date",  # the day, or the Monday of the week (local, REPORT_TZ)
        "dimension LowCardinality(String)",  # agency, district, category or total
        "key String",  # the agency, district or category; '' for the total
        "active UInt64",  # premises with a scan
        "scans UInt64",  # distinct scans
        "scanners UInt64",  # distinct persons: a number, no id or hash of one
        "computed_at DateTime64(3, 'UTC')",
    ),
    engine="ReplacingMergeTree",
    engine_args="computed_at",
    partition_by="toYear(first_day)",
    order_by="(period, first_day, dimension, key)",
    shard_key="cityHash64(first_day)",
    dedup_window=False,  # a recount must land even when its numbers are unchanged
)

# The report's groups: every premises in one agency, one district, one ward, one category,
# and the province; and two cross groups: agency by district (the cross table) and agency
# by category (an agency's own `office` premises: its staff). `grouping()` names the set a
# row belongs to; a cross group's key is its two keys joined by GROUP_SEP. Shared with
# `tracing.report`.
GROUPINGS: Final = (
    ("agency", "district"),
    ("agency", "category"),
    ("agency",),
    ("district",),
    ("ward",),
    ("category",),
)
GROUP_SEP: Final = "\x1f"  # never in a registry's names (a control character)


def group_sets(prefix: str = "") -> str:
    """GROUPING SETS over `p` (the registry), each set led by `prefix` ("f, ") if any."""
    sets = [f"({prefix}{', '.join(f'p.{c}' for c in cols)})" for cols in GROUPINGS]
    return f"GROUPING SETS ({', '.join(sets)}, ({prefix.rstrip(', ')}))"


def _in_set(cols: tuple[str, ...]) -> str:
    return " AND ".join(f"grouping(p.{c}) = 0" for c in cols)


GROUP_DIMENSION: Final = (
    "multiIf("
    + ", ".join(f"{_in_set(cols)}, '{'_'.join(cols)}'" for cols in GROUPINGS)
    + ", 'total')"
)
GROUP_KEY: Final = (
    "multiIf("
    + ", ".join(
        f"{_in_set(cols)}, "
        + (f"concat(p.{cols[0]}, '\\x1f', p.{cols[1]})" if len(cols) == 2 else f"p.{cols[0]}")
        for cols in GROUPINGS
    )
    + ", '')"
)


def counts_insert(period: str, where: str, db: str = "") -> str:
    """INSERT of `report_counts` rows of `period` ('day' or 'week') for the sets' rows
    matching `where` (over `d`, the sets): every group of the registry as it stands.
    `db` prefixes the table names ("{db}." in a migration template)."""
    first = {"day": "d.day", "week": "toMonday(d.day)"}[period]
    # Constants and the caller's own SQL only, never a value.
    return (
        f"INSERT INTO {db}report_counts\n"  # noqa: S608
        "    (period, first_day, dimension, key, active, scans, scanners, computed_at)\n"
        f"SELECT '{period}', {first} AS f, {GROUP_DIMENSION}, {GROUP_KEY},\n"
        "       uniqExact(d.premises_id), uniqExactMerge(d.scans), uniqExactMerge(d.scanners),"
        " now64(3)\n"
        f"FROM {db}premises_daily_sets AS d\n"
        "GLOBAL INNER JOIN (SELECT premises_id, category, district, ward, agency"
        f" FROM {db}premises FINAL) AS p ON d.premises_id = p.premises_id\n"
        f"WHERE {where}\n"
        f"GROUP BY {group_sets('f, ')}"
    )


# The by-person path at a finer granularity (bench/RESULTS.md "Trace latency"): a
# person's scans of one day are a few rows of one granule of the projection, so 1,024-row
# granules read an eighth of the rows of 8,192-row ones (and the F2 query's thousands of
# persons touch fewer granules). The projection is added and built before the old one is
# dropped, so the by-person path never disappears; `mutations_sync = 2` waits for every
# replica. Old day partitions are merged into one part each once their last insert is an
# hour old (late uploads merge in again): the tracer's queries pay per part read.
# On a large table the MATERIALIZE takes minutes (100 M rows on 2 busy cores: about 10);
# `migrate` waits for it (its client timeout is hours, not the usual 300 s).
BY_PERSON_FINE: Final = (
    "ALTER TABLE {db}.scans{local} {on_cluster} ADD PROJECTION IF NOT EXISTS by_person_1k"
    " (SELECT * ORDER BY (person_id, scanned_at)) WITH SETTINGS (index_granularity = 1024)",
    "ALTER TABLE {db}.scans{local} {on_cluster} MATERIALIZE PROJECTION by_person_1k"
    " SETTINGS mutations_sync = 2",
    "ALTER TABLE {db}.scans{local} {on_cluster} DROP PROJECTION IF EXISTS by_person"
    " SETTINGS mutations_sync = 2",
    "ALTER TABLE {db}.scans{local} {on_cluster} MODIFY SETTING"
    " min_age_to_force_merge_seconds = 3600, min_age_to_force_merge_on_partition_only = 1",
)

# The by-person path as a table of its own (see the module docstring). The view first, then
# the copy of what `scans` already holds: a row inserted in between is in both, which the
# ReplacingMergeTree collapses and the readers never count. Then the projection goes, and
# with it its cost on every insert and merge of `scans`. On a large table the copy takes
# minutes (10 M rows: about one on 2 busy cores); `migrate` waits for it.
SCANS_BY_PERSON = Table(
    name="scans_by_person",
    columns=SCANS.columns,
    engine="ReplacingMergeTree",
    engine_args="processed_at",
    partition_by="toMonday(scanned_at)",
    order_by="(person_id, scanned_at, event_id)",
    ttl="toDateTime(scanned_at) + INTERVAL {retention_days} DAY",
    settings=(
        ("index_granularity", "1024"),
        ("min_age_to_force_merge_seconds", "3600"),
        ("min_age_to_force_merge_on_partition_only", "1"),
    ),
    # Writes come from the view on each shard's own inserts; reads go to every shard.
    shard_key="cityHash64(premises_id)",
    person_data=True,
)
# The cap at the next scan elsewhere (`tracing.rules`) reads, for a few thousand persons,
# their scans between two times. `scans_by_person` holds about 47 persons' week in one
# 1,024-row granule of wide rows, so each person cost a granule of reading. Here only what
# the cap needs (and a visit's kind), at 256-row granules (about 12 persons' week) and
# compressed blocks of 4-16 KiB: about 8 bytes a scan (bench/RESULTS.md "places_by_person").
# What is left is mostly the primary key analysis of the set of persons, tens of
# microseconds a person, which grows with the marks: 64-row granules read a third of the
# rows and cost as much, with a primary index four times the size. (Keyed by an integer
# hash of the id it took 5 % less; the schema holds no unkeyed hash of a person id.)
# Exact duplicates (a replay) collapse at merges; two scans equal in person, time,
# premises and kind are one place to every reader.
PLACES_BY_PERSON = Table(
    name="places_by_person",
    columns=(
        "person_id String",
        "scanned_at DateTime64(3, 'UTC')",
        "premises_id String",
        "kind Enum8('checkin' = 1, 'checkout' = 2)",
    ),
    engine="ReplacingMergeTree",
    partition_by="toMonday(scanned_at)",
    order_by="(person_id, scanned_at, premises_id, kind)",
    primary_key="(person_id, scanned_at)",
    ttl="toDateTime(scanned_at) + INTERVAL {retention_days} DAY",
    settings=(
        ("index_granularity", "256"),
        ("min_compress_block_size", "4096"),
        ("max_compress_block_size", "16384"),
        ("min_age_to_force_merge_seconds", "3600"),
        ("min_age_to_force_merge_on_partition_only", "1"),
    ),
    # Written by the view on each shard's own inserts, like `scans_by_person`.
    shard_key="cityHash64(premises_id)",
    person_data=True,
)
# The tracers' follow-up (`tracing.workbench`): case records and each contact's status,
# as versioned rows (ReplacingMergeTree by the change time: the latest version is the
# current state, read with FINAL; the tables are small). They hold person ids: the scans'
# retention. Every version of a case expires with its first (`created_at`), so an older
# version never outlives a newer one; a status expires its retention after its change.
CASES = Table(
    name="cases",
    columns=(
        "case_id String",
        "person_id String",
        "confirmed_on Date",
        "notes String",
        "created_by String",
        "created_at DateTime64(3, 'UTC')",
        "changed_by String",
        "changed_at DateTime64(3, 'UTC')",
    ),
    engine="ReplacingMergeTree",
    engine_args="changed_at",
    order_by="case_id",
    ttl="toDateTime(created_at) + INTERVAL {retention_days} DAY",
    shard_key="cityHash64(case_id)",
    dedup_window=False,  # every change is a row of its own
    person_data=True,
)
FOLLOWUP_STATUSES: Final = ("to_call", "called", "not_reachable", "quarantined", "tested_positive")
FOLLOWUPS = Table(
    name="followups",
    columns=(
        "case_id String",
        "person_id String",  # the contact
        "status Enum8("
        + ", ".join(f"'{s}' = {i}" for i, s in enumerate(FOLLOWUP_STATUSES, start=1))
        + ")",
        "changed_by String",
        "changed_at DateTime64(3, 'UTC')",
    ),
    engine="ReplacingMergeTree",
    engine_args="changed_at",
    order_by="(case_id, person_id)",
    ttl="toDateTime(changed_at) + INTERVAL {retention_days} DAY",
    shard_key="cityHash64(case_id)",
    dedup_window=False,
    person_data=True,
)
# Public exposure sites: a proposal (`proposal_id`) of one or more premises and windows,
# one row a site, its state changed as a whole by new versions of its rows. No person id:
# who proposed and who approved are staff names, kept as long as the audit log (the record
# of who published what), then gone. Which case a proposal came from is kept apart, in
# `exposure_site_cases` (person data: the scans' retention), read by tracers only.
EXPOSURE_SITES = Table(
    name="exposure_sites",
    columns=(
        "proposal_id String",
        "site_no UInt16",
        "premises_id String",
        "window_from DateTime64(3, 'UTC')",
        "window_to DateTime64(3, 'UTC')",
        "state Enum8('proposed' = 1, 'approved' = 2, 'rejected' = 3, 'withdrawn' = 4)",
        "proposed_by String",
        "proposed_at DateTime64(3, 'UTC')",
        "decided_by String",
        "decided_at Nullable(DateTime64(3, 'UTC'))",
        "approved_at Nullable(DateTime64(3, 'UTC'))",
        "changed_at DateTime64(3, 'UTC')",
    ),
    engine="ReplacingMergeTree",
    engine_args="changed_at",
    order_by="(proposal_id, site_no)",
    ttl="toDateTime(proposed_at) + INTERVAL {audit_retention_days} DAY",
    shard_key="cityHash64(proposal_id)",
    dedup_window=False,
)
EXPOSURE_SITE_CASES = Table(
    name="exposure_site_cases",
    columns=(
        "proposal_id String",
        "person_id String",  # the case whose visits were proposed
        "proposed_at DateTime64(3, 'UTC')",
    ),
    order_by="proposal_id",
    ttl="toDateTime(proposed_at) + INTERVAL {retention_days} DAY",
    shard_key="cityHash64(proposal_id)",
    dedup_window=False,
    person_data=True,
)
WORKBENCH_TABLES: Final = (CASES, FOLLOWUPS, EXPOSURE_SITES, EXPOSURE_SITE_CASES)

TABLES: Final = (
    SCANS,
    AUDIT_LOG,
    PREMISES,
    DEAD_LETTERS,
    PREMISES_DAILY,
    PREMISES_DAILY_SETS,
    SCANS_BY_PERSON,
    REPORT_COUNTS,
    *WORKBENCH_TABLES,
    PLACES_BY_PERSON,
)

BY_PERSON_TABLE: Final = (
    SCANS_BY_PERSON,
    "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.scans_by_person_mv{local} {on_cluster}"
    " TO {db}.scans_by_person{local} AS SELECT * FROM {db}.scans{local}",
    "INSERT INTO {db}.scans_by_person SELECT * FROM {db}.scans"
    " SETTINGS distributed_foreground_insert = 1",
    # An insert already running when the view was made reaches neither the view nor, if it
    # commits after the copy's snapshot, the copy: copy again what was stored since a
    # margin before the view (duplicates collapse). One still running after this is
    # missed: stop the sinks while migration 8 runs (README).
    "INSERT INTO {db}.scans_by_person SELECT * FROM {db}.scans WHERE stored_at >= ("
    "SELECT toDateTime64(min(metadata_modification_time), 3, 'UTC') - INTERVAL 10 MINUTE"
    " FROM system.tables WHERE database = '{db_name}'"
    " AND name IN ('scans_by_person_mv', 'scans_by_person_mv_local'))"
    " SETTINGS distributed_foreground_insert = 1",
    "ALTER TABLE {db}.scans{local} {on_cluster} DROP PROJECTION IF EXISTS by_person_1k"
    " SETTINGS mutations_sync = 2",
)

# `scans` by week, at 2,048-row granules (bench/RESULTS.md "Trace latency"). A
# premises holds about 115 scans a day at 100 M rows over 4 weeks, a sixtieth of an
# 8,192-row granule: by day, every premises-day a trace touches cost at least one granule
# and every day one more part for the key analysis. By week, a premises' rows of several
# days are adjacent in one part, and a trace reads several times fewer rows. A partition
# key cannot be altered, so the rows are copied into a new table that
# then takes the name `scans`; the materialized views on `scans` follow the name (checked
# on 26.9), so they feed from the new table. The copy's snapshot misses an insert that
# commits after it: the catch-up copies the rows stored since a margin before the copy's
# latest row that the copy lacks. Stop the sinks while it runs all the same (README).
# Rows are deleted by TTL merges, as in `scans_by_person`: dropping only whole week parts
# would keep rows up to 6 days past the retention.
SCANS_WEEKLY = replace(
    SCANS,
    name="scans_weekly",
    partition_by="toMonday(scanned_at)",
    projections=(),
    settings=(
        ("index_granularity", "2048"),
        ("min_age_to_force_merge_seconds", "3600"),
        ("min_age_to_force_merge_on_partition_only", "1"),
    ),
)
_SCANS_IS_WEEKLY: Final = (
    "SELECT partition_key = 'toMonday(scanned_at)' FROM system.tables"
    " WHERE database = '{db_name}' AND name = 'scans{local}'"
)
# On a re-run after the exchange the copy must not be made again: on a cluster its
# Replicated path is the one the new `scans` uses now.
_NO_OLD_SCANS: Final = (
    "SELECT count() = 0 FROM system.tables"
    " WHERE database = '{db_name}' AND name = 'scans_weekly{local}'"
)
# The catch-up looks at what was stored since 10 minutes before the latest row copied, and
# copies only the event ids the copy lacks: a table loaded in bulk has most of its rows in
# those 10 minutes (100 M rows: the whole copy again, through the views).
_COPIED_SINCE: Final = "(SELECT max(stored_at) - INTERVAL 10 MINUTE FROM {db}.scans)"
SCANS_BY_WEEK: Final = (
    Once(SCANS_WEEKLY, _SCANS_IS_WEEKLY),
    Once(
        "INSERT INTO {db}.scans_weekly SELECT * FROM {db}.scans"
        " SETTINGS distributed_foreground_insert = 1",
        _SCANS_IS_WEEKLY,
    ),
    Once(
        "EXCHANGE TABLES {db}.scans{local} AND {db}.scans_weekly{local} {on_cluster}",
        _SCANS_IS_WEEKLY,
    ),
    Once(
        "INSERT INTO {db}.scans SELECT * FROM {db}.scans_weekly WHERE stored_at >= {since}"
        " AND cityHash64(event_id) GLOBAL NOT IN (SELECT cityHash64(event_id) FROM {db}.scans"
        " WHERE stored_at >= {since}) SETTINGS distributed_foreground_insert = 1".replace(
            "{since}", _COPIED_SINCE
        ),
        _NO_OLD_SCANS,
    ),
    "DROP TABLE IF EXISTS {db}.scans_weekly {on_cluster} SYNC",
    "DROP TABLE IF EXISTS {db}.scans_weekly{local} {on_cluster} SYNC",
)

# Keyed sets, counts that outlive them, and the audit log's retention (see
# PREMISES_DAILY_SETS and REPORT_COUNTS). A deployment that ran migration 6 in its first
# form holds `premises_daily_sets` with plain cityHash64 hashes of the person ids, fed by
# a view, without TTL: the complete days and weeks are counted from it, then the view and
# the table go and the keyed table takes the name. The sink refills the keyed sets of every
# day still within the retention at its start (`sinks.rollup.dirty_days_sql`: days of
# `scans` without sets): the migration has no key, and needs none. Until then the report of
# the current week shows no scan. The old table is told apart by its lack of a TTL, so a
# re-run after the swap neither counts from nor drops the keyed table.
_OLD_SETS_GONE: Final = (
    "SELECT count() = 0 FROM system.tables WHERE database = '{db_name}'"
    " AND name = 'premises_daily_sets{local}' AND position(create_table_query, ' TTL ') = 0"
)
_LOCAL_TODAY: Final = f"toDate(now(), '{REPORT_TZ}')"
KEYED_SETS: Final = (
    REPORT_COUNTS,
    Once(
        counts_insert("day", f"d.day < {_LOCAL_TODAY}", "{db}.")
        + "\nSETTINGS distributed_foreground_insert = 1",
        _OLD_SETS_GONE,
    ),
    Once(
        counts_insert("week", f"toMonday(d.day) < toMonday({_LOCAL_TODAY})", "{db}.")
        + "\nSETTINGS distributed_foreground_insert = 1",
        _OLD_SETS_GONE,
    ),
    "DROP VIEW IF EXISTS {db}.premises_daily_sets_mv{local} {on_cluster} SYNC",
    Once("DROP TABLE IF EXISTS {db}.premises_daily_sets {on_cluster} SYNC", _OLD_SETS_GONE),
    Once("DROP TABLE IF EXISTS {db}.premises_daily_sets{local} {on_cluster} SYNC", _OLD_SETS_GONE),
    PREMISES_DAILY_SETS,
    "ALTER TABLE {db}.audit_log{local} {on_cluster}"
    " MODIFY TTL toDateTime(at) + INTERVAL {audit_retention_days} DAY",
)

# The groups added to the counts (ward, agency by district, agency by category), counted
# for the complete days and weeks whose sets are all still there (the sink counts the
# later ones): a period counted before had only agency, district and category.
_SETS_WHOLE: Final = f"{_LOCAL_TODAY} - {{retention_days}}"
REPORT_GROUPS: Final = (
    counts_insert("day", f"d.day < {_LOCAL_TODAY} AND d.day > {_SETS_WHOLE}", "{db}.")
    + "\nSETTINGS distributed_foreground_insert = 1",
    counts_insert(
        "week",
        f"toMonday(d.day) < toMonday({_LOCAL_TODAY}) AND toMonday(d.day) > {_SETS_WHOLE}",
        "{db}.",
    )
    + "\nSETTINGS distributed_foreground_insert = 1",
)

# What the report may know of a dead letter without its raw bytes or ids: the premises id
# and gateway of the scan, and its time, read from the raw bytes by the sink when it
# stores the dead letter (`sinks.batch.scan_fields`); empty when the bytes are no scan.
# The `report` role reads these columns only (`sinks.grants`): the unregistered QR codes
# and the rejected scans per reason and gateway. The Distributed table takes them too.
DEAD_LETTER_SCAN_COLUMNS: Final = (
    "premises_id String DEFAULT ''",
    "gateway_id LowCardinality(String) DEFAULT ''",
    "scanned_at Nullable(DateTime64(3, 'UTC'))",
)
DEAD_LETTER_FIELDS: Final = tuple(
    f"ALTER TABLE {{db}}.dead_letters{suffix} {{on_cluster}} "
    + ", ".join(f"ADD COLUMN IF NOT EXISTS {c}" for c in DEAD_LETTER_SCAN_COLUMNS)
    for suffix in ("{local}", "")
)

# The narrow by-person path (PLACES_BY_PERSON), filled like `scans_by_person` in migration 8:
# the view first, then the copy of what is stored (from `scans_by_person`, already in
# person order), then again what was stored since a margin before the view; rows copied
# twice collapse. Stop the sinks while it runs (README); the tracer refuses a database
# without it. 100 M rows: about 2 minutes on 2 cores.
PLACES_TABLE: Final = (
    PLACES_BY_PERSON,
    "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.places_by_person_mv{local} {on_cluster}"
    " TO {db}.places_by_person{local}"
    " AS SELECT person_id, scanned_at, premises_id, kind FROM {db}.scans{local}",
    "INSERT INTO {db}.places_by_person"
    " SELECT person_id, scanned_at, premises_id, kind FROM {db}.scans_by_person"
    " SETTINGS distributed_foreground_insert = 1",
    "INSERT INTO {db}.places_by_person"
    " SELECT person_id, scanned_at, premises_id, kind FROM {db}.scans_by_person"
    " WHERE stored_at >= ("
    "SELECT toDateTime64(min(metadata_modification_time), 3, 'UTC') - INTERVAL 10 MINUTE"
    " FROM system.tables WHERE database = '{db_name}'"
    " AND name IN ('places_by_person_mv', 'places_by_person_mv_local'))"
    " SETTINGS distributed_foreground_insert = 1",
)

MIGRATIONS: list[Migration] = [
    Migration(1, "scans", (SCANS,)),
    # tracing: one row per tracer query (CLI or API), kept beyond the scans' TTL.
    Migration(2, "audit_log", (AUDIT_LOG,)),
    Migration(3, "premises", (PREMISES,)),
    Migration(4, "dead_letters", (DEAD_LETTERS,)),
    Migration(5, "premises_daily", (PREMISES_DAILY,)),
    # Its first form made sets of plain person-id hashes; migration 10 replaces them and
    # makes the keyed table, so that no installation creates the plain form again.
    Migration(6, "premises_daily_sets", ()),
    Migration(7, "scans_by_person_1k", BY_PERSON_FINE),
    Migration(8, "scans_by_person", BY_PERSON_TABLE),
    Migration(9, "scans_by_week", SCANS_BY_WEEK),
    Migration(10, "keyed_sets_and_retention", KEYED_SETS),
    Migration(11, "report_groups", REPORT_GROUPS),
    Migration(12, "dead_letter_scan_fields", DEAD_LETTER_FIELDS),
    # The tracers' workbench: case follow-up and public exposure sites.
    Migration(13, "workbench", WORKBENCH_TABLES),
    Migration(14, "places_by_person", PLACES_TABLE),
]


def _engine(t: Table, cluster: str) -> str:
    if not cluster:
        return f"{t.engine}({t.engine_args})" if t.engine_args else t.engine
    args = [f"'/clickhouse/tables/{{shard}}/{{database}}/{t.name}'", "'{replica}'"]
    if t.engine_args:
        args.append(t.engine_args)
    return f"Replicated{t.engine}({', '.join(args)})"


def render_table(t: Table, settings: ClickHouseSettings) -> list[str]:
    db = ident(settings.database)
    cluster = settings.cluster
    on_cluster = f" ON CLUSTER {ident(cluster)}" if cluster else ""
    local = f"{t.name}_local" if cluster else t.name
    body = [*t.columns, *(f"PROJECTION {p}" for p in t.projections)]
    lines = [
        f"CREATE TABLE IF NOT EXISTS {db}.{ident(local)}{on_cluster} (",
        ",\n".join(f"    {line}" for line in body),
        ")",
        f"ENGINE = {_engine(t, cluster)}",
    ]
    if t.partition_by:
        lines.append(f"PARTITION BY {t.partition_by}")
    lines.append(f"ORDER BY {t.order_by}")
    if t.primary_key:
        lines.append(f"PRIMARY KEY {t.primary_key}")
    if t.ttl:
        ttl = t.ttl.format(
            retention_days=settings.retention_days,
            audit_retention_days=settings.audit_retention_days,
        )
        lines.append(f"TTL {ttl}")
    table_settings = list(t.settings)
    if t.dedup_window and not cluster:
        table_settings.insert(0, ("non_replicated_deduplication_window", str(DEDUP_WINDOW)))
    if table_settings:
        lines.append("SETTINGS " + ", ".join(f"{k} = {v}" for k, v in table_settings))
    statements = ["\n".join(lines)]
    if cluster:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {db}.{ident(t.name)}{on_cluster} "
            f"AS {db}.{ident(local)}\n"
            f"ENGINE = Distributed('{cluster}', '{settings.database}', '{local}', {t.shard_key})"
        )
    return statements


def render_steps(m: Migration, settings: ClickHouseSettings) -> list[tuple[str, str]]:
    """(statement, done_if) pairs of one migration, for one node or for `settings.cluster`:
    `done_if` is a query that returns 1 when the statement must be skipped (`Once`), else
    empty."""

    def fill(template: str) -> str:
        return template.format(
            db=ident(settings.database),
            db_name=ident(settings.database)[1:-1],  # checked, unquoted
            on_cluster=f"ON CLUSTER {ident(settings.cluster)}" if settings.cluster else "",
            local="_local" if settings.cluster else "",
            retention_days=settings.retention_days,
            audit_retention_days=settings.audit_retention_days,
        )

    def sql_of(s: str | Table) -> list[str]:
        return render_table(s, settings) if isinstance(s, Table) else [fill(s)]

    out: list[tuple[str, str]] = []
    for s in m.statements:
        if isinstance(s, Once):
            out.extend((sql, fill(s.done_if)) for sql in sql_of(s.statement))
        else:
            out.extend((sql, "") for sql in sql_of(s))
    return out


def without_keeper(sql: str, cluster: str) -> str:
    """A statement of `cluster`'s schema for one node of a cluster that has no Keeper
    (no `ON CLUSTER`, no Replicated engine; the Distributed tables stay): each node gets
    it on its own (`sinks.migrations.migrate_nodes`). The chdb server has no ZooKeeper
    client, so the local cluster services run this shape, without replicas."""
    sql = sql.replace(f" ON CLUSTER {ident(cluster)}", "")
    return re.sub(r"Replicated(\w+)\('[^']*', '\{replica\}'(?:, )?", r"\1(", sql)


def render(m: Migration, settings: ClickHouseSettings) -> list[str]:
    """The SQL statements of one migration, for one node or for `settings.cluster`."""
    return [sql for sql, _ in render_steps(m, settings)]


def render_script(settings: ClickHouseSettings, migrations: list[Migration] | None = None) -> str:
    """Every migration as one SQL script (`scantrace db schema`), for deploy/clickhouse/."""
    db = ident(settings.database)
    on_cluster = f" ON CLUSTER {ident(settings.cluster)}" if settings.cluster else ""
    shape = f"cluster {settings.cluster}" if settings.cluster else "single node"
    header = (
        f"-- scantrace ClickHouse schema, {shape}, database {settings.database}, "
        f"retention {settings.retention_days} days, audit log {settings.audit_retention_days}"
        " days.\n"
        "-- Generated by `scantrace db schema` from sinks/schema.py; do not edit.\n"
        "-- `scantrace db migrate` applies the same statements and records each version.\n\n"
    )
    parts = [f"CREATE DATABASE IF NOT EXISTS {db}{on_cluster}"]
    # A migration with no statement left (superseded) is named above the next statement.
    heading = ""
    for m in sorted(migrations if migrations is not None else MIGRATIONS, key=lambda m: m.version):
        statements = [
            f"-- once: `migrate` skips it when this returns 1: {done_if}\n{sql}" if done_if else sql
            for sql, done_if in render_steps(m, settings)
        ]
        heading += f"-- {m.version:03d} {m.name}" + ("" if statements else ": nothing") + "\n"
        if statements:
            parts.append(f"{heading}{statements[0]}")
            parts.extend(statements[1:])
            heading = ""
    return header + ";\n\n".join(parts) + ";\n"
