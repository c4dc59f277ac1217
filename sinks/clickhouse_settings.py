"""ClickHouse connection settings: one URL, `clickhouse://[user[:password]@]host:port/db`."""

from __future__ import annotations

import hashlib
from typing import Final
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# A key shorter than this is refused: it could be guessed along with the candidate ids.
MIN_PERSON_HASH_KEY_CHARS: Final = 16


class ClickHouseSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str = Field(default="", description="clickhouse://host:port/db; empty = local services")
    password: SecretStr = SecretStr("")
    # A retention of the detail rows (DESIGN.md principle 5); used by the TTL migration.
    retention_days: int = Field(default=28, ge=1, le=3650)
    # `ON CLUSTER` name for the cluster variant of the schema; empty = single node.
    cluster: str = ""
    # The secret of the keyed hashes of person ids in the report's sets
    # (`premises_daily_sets`): without it nobody can test a candidate id against them.
    # Empty = the sink refuses to start; changing it makes the sets of the days still
    # refreshable mix two keys until they are recomputed (README "Security and privacy").
    person_hash_key: SecretStr = SecretStr("")
    # How long the audit log is kept (its TTL); longer than `retention_days`: an access
    # must stay answerable after the data it read has expired.
    audit_retention_days: int = Field(default=730, ge=1, le=36500)

    def parts(self) -> tuple[str, int, str, str, str]:
        """(host, port, database, user, password) from the URL."""
        if not self.url:
            raise RuntimeError(
                "no ClickHouse URL: run `scantrace services up` or set SCANTRACE_CLICKHOUSE__URL"
            )
        u = urlsplit(self.url)
        if u.scheme != "clickhouse":
            raise ValueError(
                f"SCANTRACE_CLICKHOUSE__URL must start with clickhouse://, got {u.scheme}"
            )
        database = u.path.lstrip("/") or "scantrace"
        password = unquote(u.password) if u.password else self.password.get_secret_value()
        return (
            u.hostname or "127.0.0.1",
            u.port or 9000,
            database,
            unquote(u.username or "default"),
            password,
        )

    def person_hash_key_pair(self) -> tuple[int, int]:
        """The (k0, k1) UInt64 pair of `sipHash64Keyed` from `person_hash_key`: the first
        16 bytes of its SHA-256, so that any string of enough characters is a full key."""
        key = self.person_hash_key.get_secret_value()
        if len(key) < MIN_PERSON_HASH_KEY_CHARS:
            raise ValueError(
                "SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY must be set to a secret of at least "
                f"{MIN_PERSON_HASH_KEY_CHARS} characters"
                + (" (it is empty)" if not key else f" (it has {len(key)})")
            )
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:16], "little")

    @property
    def database(self) -> str:
        return self.parts()[2]

    def with_database(self, database: str) -> ClickHouseSettings:
        host, port, _, user, _ = self.parts()
        return self.model_copy(update={"url": f"clickhouse://{user}@{host}:{port}/{database}"})
