"""Who may do what in ClickHouse: one user per role, each with only the grants its job needs.

One source for every place that defines the users: the local server's `users.xml`
(`scantrace.services.clickhouse_local`) and the `CREATE ROLE` / `CREATE USER` / `GRANT`
SQL of a real server or cluster (`scantrace db users`, `render_users_sql`). A new table is
one line of `TABLE_ACCESS`; a test fails while a table of the schema has none.

- `sink` writes what it consumes (scans, premises, dead letters) and recomputes
  `premises_daily`, the keyed sets `premises_daily_sets` and the counts `report_counts`
  from `scans` (`sinks.rollup`: it reads them and the registry).
  It may also insert into the tables the materialized views on `scans` feed: a view
  made with `SQL SECURITY DEFINER` (ClickHouse 26.9's default) writes as its creator, the
  migrator, but one made with `SQL SECURITY INVOKER` writes as the inserting user.
- `tracer` reads the detail rows and the registry, writes `audit_log` and reads
  `schema_migrations` (the API refuses an old schema): it cannot read, alter or delete
  the audit log. It appends to and reads the workbench's tables (cases, follow-ups,
  exposure sites): their changes are new versions of rows, never updates.
- `auditor` reads `audit_log` and nothing else.
- `report` reads the rollups and the registry, never the detail rows; of the dead letters
  only the columns that hold no person data (a column-level grant).
- `migrator` owns the database: creates, alters, fills (backfills copy rows) and drops
  its tables and views, and records versions in `schema_migrations`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sinks.schema import TABLES, ident

ROLES: Final = ("sink", "tracer", "auditor", "report", "migrator")
ROLE_JOBS: Final = {
    "sink": "writes scans, premises and dead letters; refreshes the report rollups",
    "tracer": "answers trace questions (CLI and API) and writes each to the audit log",
    "auditor": "reads the audit log (API /v1/audit, `scantrace audit`)",
    "report": "reads the rollups and the registry for the compliance reports",
    "migrator": "applies the schema migrations (`scantrace db migrate`)",
}

# table -> {role: privileges}. One line a table; the migrator's grants are database-wide.
TABLE_ACCESS: Final[Mapping[str, Mapping[str, str]]] = {
    "scans": {"sink": "INSERT, SELECT", "tracer": "SELECT"},
    "scans_by_person": {"sink": "INSERT", "tracer": "SELECT"},
    "places_by_person": {"sink": "INSERT", "tracer": "SELECT"},
    "premises": {"sink": "INSERT, SELECT", "tracer": "SELECT", "report": "SELECT"},
    # the report reads the scan fields of dead letters (unregistered QR codes, rejected
    # scans by reason and gateway), never their raw bytes, detail or event id
    "dead_letters": {
        "sink": "INSERT",
        "report": "SELECT(stage, reason, premises_id, gateway_id, scanned_at, at)",
    },
    "premises_daily": {"sink": "INSERT, SELECT", "report": "SELECT"},
    # the sink computes the keyed sets from `scans` and counts the complete periods from
    # them into `report_counts` (`sinks.rollup`)
    "premises_daily_sets": {"sink": "INSERT, SELECT", "report": "SELECT"},
    "report_counts": {"sink": "INSERT, SELECT", "report": "SELECT"},
    "audit_log": {"tracer": "INSERT", "auditor": "SELECT"},
    "schema_migrations": {"tracer": "SELECT"},
    # the workbench's follow-up and exposure sites: versioned rows, appended and read
    "cases": {"tracer": "INSERT, SELECT"},
    "followups": {"tracer": "INSERT, SELECT"},
    "exposure_sites": {"tracer": "INSERT, SELECT"},
    "exposure_site_cases": {"tracer": "INSERT, SELECT"},
}

# What migrations do to their database: CREATE TABLE / MATERIALIZED VIEW, ALTER (TTL,
# projections, settings), INSERT ... SELECT (backfills, copies), EXCHANGE and DROP TABLE.
MIGRATOR_DATABASE: Final = (
    "CREATE DATABASE, CREATE TABLE, CREATE VIEW, ALTER TABLE, ALTER VIEW, DROP TABLE, "
    "DROP VIEW, TRUNCATE, OPTIMIZE, INSERT, SELECT, SHOW"
)
# ON CLUSTER DDL needs the global CLUSTER grant (not tried here: ON CLUSTER needs Keeper).
# Creating the Distributed tables needs no REMOTE grant (tried on 26.9), which would open
# the remote() table function to any host.
MIGRATOR_CLUSTER: Final = ("CLUSTER",)


@dataclass(frozen=True, slots=True)
class Grant:
    """`privileges ON target` (no GRANT, no TO): a clause of a GRANT statement."""

    privileges: str
    target: str

    def clause(self) -> str:
        return f"{self.privileges} ON {self.target}"


def _engines(cluster: str) -> list[str]:
    """The table engines the schema creates (ClickHouse asks for a TABLE ENGINE grant)."""
    family = sorted({t.engine for t in TABLES} | {"ReplacingMergeTree"})  # + schema_migrations
    if not cluster:
        return family
    return [*family, *(f"Replicated{e}" for e in family), "Distributed"]


def grants(role: str, database: str, cluster: str = "") -> list[Grant]:
    """The grants of `role` on `database`. On a cluster a table of the schema is a
    Distributed `t` over each shard's `t_local`, and both are granted alike: the shards
    run the reads and writes of the Distributed table under the caller's rights."""
    if role not in ROLES:
        raise ValueError(f"unknown ClickHouse role {role!r}; roles: {', '.join(ROLES)}")
    db = ident(database)
    if role == "migrator":
        out = [Grant(MIGRATOR_DATABASE, f"{db}.*")]
        out += [Grant("TABLE ENGINE", engine) for engine in _engines(cluster)]
        if cluster:
            out += [Grant(p, "*.*") for p in MIGRATOR_CLUSTER]
        return out
    sharded = {t.name for t in TABLES}
    out = []
    for table, roles in TABLE_ACCESS.items():
        if role in roles:
            names = [table, f"{table}_local"] if cluster and table in sharded else [table]
            out += [Grant(roles[role], f"{db}.{ident(n)}") for n in names]
    return out


def username(role: str) -> str:
    """The ClickHouse user of a role (also the local server's)."""
    return f"scantrace_{role}"


def role_name(role: str) -> str:
    """The ClickHouse role object a real server grants to the user (`render_users_sql`)."""
    return f"scantrace_{role}_role"


def password_placeholder(role: str) -> str:
    """An `envsubst` placeholder for the password of `role`'s user."""
    return f"${{SCANTRACE_CH_{role.upper()}_PASSWORD}}"


def render_users_sql(
    database: str, cluster: str = "", password_sha256: Mapping[str, str] | None = None
) -> str:
    """`CREATE ROLE`, `GRANT` and `CREATE USER` statements for a real server or cluster.
    A user's password is its SHA-256 hex from `password_sha256` when given (the password
    itself never appears), else a placeholder for `envsubst`."""
    hashes = password_sha256 or {}
    on = f" ON CLUSTER {ident(cluster)}" if cluster else ""
    shape = f"cluster {cluster}" if cluster else "single node"
    lines = [
        f"-- scantrace ClickHouse users and grants, {shape}, database {database}.",
        "-- Generated by `scantrace db users` from sinks/grants.py; do not edit.",
        "-- Passwords: ${SCANTRACE_CH_<ROLE>_PASSWORD} placeholders (fill them with envsubst),",
        "-- or SHA-256 hashes from `--password ROLE=SECRET`. Roles let a second user (a new",
        "-- password) be granted the same rights while the first is retired.",
        "",
    ]
    for role in ROLES:
        r, u = ident(role_name(role)), ident(username(role))
        lines.append(f"-- {role}: {ROLE_JOBS[role]}")
        lines.append(f"CREATE ROLE IF NOT EXISTS {r}{on};")
        lines += [f"GRANT{on} {g.clause()} TO {r};" for g in grants(role, database, cluster)]
        if role in hashes:
            auth = f"IDENTIFIED WITH sha256_hash BY '{_hex(hashes[role])}'"
        else:
            auth = f"IDENTIFIED WITH sha256_password BY '{password_placeholder(role)}'"
        lines.append(
            f"CREATE USER IF NOT EXISTS {u}{on} {auth} DEFAULT DATABASE {ident(database)};"
        )
        lines.append(f"GRANT{on} {r} TO {u};")
        lines.append("")
    return "\n".join(lines)


def _hex(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError("a SHA-256 password hash is 64 lowercase hex digits")
    return value
