"""ClickHouse connection settings: one URL, `clickhouse[s]://[user[:password]@]host:port/db`.

`clickhouses://` is the native protocol over TLS (default port 9440): the server's
certificate is verified against `ca_file` (`SCANTRACE_CLICKHOUSE__CA_FILE`, a PEM bundle),
or when it is empty against clickhouse-driver's default (certifi's bundle when installed,
else the system's), and must name the host.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

SCHEMES = {"clickhouse": 9000, "clickhouses": 9440}  # scheme -> default native port

# A key shorter than this is refused: it could be guessed along with the candidate ids.
MIN_PERSON_HASH_KEY_CHARS: Final = 16


class ClickHouseSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str = Field(
        default="", description="clickhouse[s]://user:password@host:port/db; empty = local services"
    )
    password: SecretStr = SecretStr("")
    # PEM file of the CA(s) that signed the server's certificate (clickhouses:// only).
    ca_file: str = ""
    # How long detail rows (person ids) are kept (docs/architecture.md, "Time and privacy");
    # the TTL of the tables that hold them.
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

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: str) -> str:
        if value and not Path(value).is_file():
            raise ValueError(f"SCANTRACE_CLICKHOUSE__CA_FILE: no such file: {value}")
        return value

    def parts(self) -> tuple[str, int, str, str, str]:
        """(host, port, database, user, password) from the URL."""
        if not self.url:
            raise RuntimeError(
                "no ClickHouse URL: run `scantrace services up` or set SCANTRACE_CLICKHOUSE__URL"
            )
        u = urlsplit(self.url)
        if u.scheme not in SCHEMES:
            raise ValueError(
                "SCANTRACE_CLICKHOUSE__URL must start with clickhouse:// or clickhouses:// (TLS),"
                f" got {u.scheme or self.url!r}"
            )
        database = u.path.lstrip("/") or "scantrace"
        password = unquote(u.password) if u.password else self.password.get_secret_value()
        return (
            u.hostname or "127.0.0.1",
            u.port or SCHEMES[u.scheme],
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
    def secure(self) -> bool:
        """True for `clickhouses://`: TLS, the server's certificate verified."""
        return urlsplit(self.url).scheme == "clickhouses"

    @property
    def database(self) -> str:
        return self.parts()[2]

    def with_database(self, database: str) -> ClickHouseSettings:
        """The same server, scheme and credentials, another database."""
        self.parts()  # the URL is checked first
        url = urlsplit(self.url)._replace(path=f"/{database}", query="", fragment="").geturl()
        return self.model_copy(update={"url": url})
