"""Settings of the tracer (CLI and HTTP API), from SCANTRACE_* environment variables.

`SCANTRACE_CLICKHOUSE__URL` like every component (as ClickHouse's `tracer` user: it may
read the scans and write the audit log, not read it); `SCANTRACE_AUDIT_CLICKHOUSE__URL`
(and `__CA_FILE`) for reading the audit log (`/v1/audit`, `scantrace audit`) as the
`auditor` user, the tracer's connection when empty; `SCANTRACE_API__TOKENS='{"TOKEN":
{"name": "Nguyen Van A", "role": "tracer"}}'` (or `--tokens-file`), `SCANTRACE_API__PORT`,
`SCANTRACE_API__PAGE_SIZE`, ...; the workbench's `SCANTRACE_WORKBENCH__SESSION_IDLE_S`,
... Every tracer query runs under a time and a memory limit: `SCANTRACE_API__MAX_EXECUTION_S`
and `SCANTRACE_API__MAX_MEMORY_BYTES` for the API, `SCANTRACE_CLI__MAX_EXECUTION_S` and
`SCANTRACE_CLI__MAX_MEMORY_BYTES` for `scantrace trace` (larger: a depth-2 trace of a large
case from a shell may take minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.auth import TokensError, parse_token_table
from sinks.clickhouse_settings import ClickHouseSettings
from tracing.runner import QueryLimits

ROLES: Final = frozenset({"tracer", "supervisor", "auditor"})
# Who may trace and follow cases up: a supervisor does everything a tracer does and also
# approves public exposure sites (someone other than the proposer: four eyes).
TRACING_ROLES: Final = frozenset({"tracer", "supervisor"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who holds a token: a named person with a role. `tracer` and `supervisor` may query
    (`TRACING_ROLES`), only `supervisor` approves exposure sites and only `auditor` reads
    the audit log; any other role is refused (403)."""

    name: str
    role: str


GIB: Final = 2**30


class Limits(BaseModel):
    """The limits of every tracer query (ClickHouse `max_execution_time`,
    `max_memory_usage`; 0: none). A query that hits one fails with the limit named."""

    model_config = ConfigDict(frozen=True)

    max_execution_s: float = Field(default=120.0, ge=0)
    max_memory_bytes: int = Field(default=4 * GIB, ge=0)

    def limits(self) -> QueryLimits:
        return QueryLimits(self.max_execution_s, self.max_memory_bytes)


class CliOptions(Limits):
    """`scantrace trace`: one question at a time, so larger limits than the API's (the
    slowest depth-2 traces measured took a few minutes)."""

    max_execution_s: float = Field(default=900.0, ge=0)
    max_memory_bytes: int = Field(default=8 * GIB, ge=0)


class ApiOptions(Limits):
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # JSON {"TOKEN": {"name": "...", "role": "tracer"}}; masked whenever printed.
    tokens: SecretStr = SecretStr("")
    # Contacts per page of an answer (`?limit=` up to max_page_size).
    page_size: int = Field(default=1000, ge=1)
    max_page_size: int = Field(default=10_000, ge=1)
    # ClickHouse connections, i.e. queries running at once.
    pool_size: int = Field(default=4, ge=1, le=64)
    shutdown_timeout_s: float = Field(default=30.0, ge=0)
    # Whole answers kept for paging (JSON), by question: at most this many rows in all
    # (a contact row costs about 1 KiB of memory), each for at most `answer_ttl_s`.
    answer_cache_rows: int = Field(default=200_000, ge=0)
    answer_ttl_s: float = Field(default=300.0, ge=0)
    # The largest answer served as JSON pages; a larger one is refused (422) with a
    # pointer to `format=csv`, which streams any size.
    max_json_rows: int = Field(default=100_000, ge=1)

    def token_map(self) -> dict[str, Principal]:
        """`{token: Principal}`, checked. Raises `TokensError` (never quoting a token)."""
        return parse_tokens(self.tokens.get_secret_value())


def parse_tokens(text: str) -> dict[str, Principal]:
    shape = '{"TOKEN": {"name": ..., "role": ...}}'
    return parse_token_table(text, "API", shape, _principal)


def _principal(n: int, who: object) -> Principal:
    if not isinstance(who, dict) or not isinstance(who.get("name"), str) or not who["name"]:
        raise TokensError(f'API token #{n}: expected {{"name": "...", "role": "..."}}')
    role = who.get("role")
    if not isinstance(role, str):
        raise TokensError(f"API token #{n}: role must be a string")
    # Unknown roles are kept: their holders are authenticated but get 403 everywhere.
    return Principal(name=str(who["name"])[:128], role=role)


class WorkbenchOptions(BaseModel):
    """The tracers' web pages served beside the API (`tracing.workbench`)."""

    model_config = ConfigDict(frozen=True)

    # A session ends after this long without a request (and its depth-2 answers with it).
    session_idle_s: float = Field(default=1800.0, gt=0)
    max_sessions: int = Field(default=1000, ge=1)
    # Addresses of reverse proxies whose `X-Forwarded-Proto` is believed (comma-separated
    # IPs); the session cookie is `Secure` when the request came over TLS.
    trusted_proxies: str = ""
    # Contacts a page of a trace shows.
    page_rows: int = Field(default=500, ge=1, le=10_000)
    # Depth-2 jobs running at once (each holds a ClickHouse connection), their limits
    # (larger than an API request's: nobody waits on a job), and the most contacts one
    # may keep in memory for its session.
    max_jobs: int = Field(default=2, ge=1, le=16)
    job_max_execution_s: float = Field(default=900.0, ge=0)
    job_max_memory_bytes: int = Field(default=8 * GIB, ge=0)
    job_max_rows: int = Field(default=200_000, ge=1)
    # The public exposure sites: answers kept this long (also their Cache-Control), and
    # how far back an approved site stays listed after its window ended.
    public_cache_s: float = Field(default=60.0, ge=0)
    public_days: int = Field(default=28, ge=1, le=366)
    # A tile server for the premises maps (`{z}/{x}/{y}` in the URL); empty: the maps
    # are drawn from the registry's coordinates alone.
    map_tile_url: str = ""

    def proxies(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.trusted_proxies.split(",") if p.strip())

    def job_limits(self) -> QueryLimits:
        return QueryLimits(self.job_max_execution_s, self.job_max_memory_bytes)


class TracerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCANTRACE_", env_nested_delimiter="__", frozen=True
    )

    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    # The audit log's readers connect as another ClickHouse user (role auditor).
    audit_clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    api: ApiOptions = Field(default_factory=ApiOptions)
    cli: CliOptions = Field(default_factory=CliOptions)
    workbench: WorkbenchOptions = Field(default_factory=WorkbenchOptions)

    def auditor_clickhouse(self) -> ClickHouseSettings:
        """Where the audit log is read: `audit_clickhouse` when it has a URL (its CA file
        defaulting to the main one's), else the main connection."""
        audit = self.audit_clickhouse
        if not audit.url:
            return self.clickhouse
        if not audit.ca_file and self.clickhouse.ca_file:
            return audit.model_copy(update={"ca_file": self.clickhouse.ca_file})
        return audit

    def with_api(self, **changes: object) -> TracerSettings:
        options = ApiOptions.model_validate({**self.api.model_dump(), **changes})
        return self.model_copy(update={"api": options})
