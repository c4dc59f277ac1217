"""ClickHouse connection settings: one URL, `clickhouse[s]://[user[:password]@]host:port/db`.

`clickhouses://` is the native protocol over TLS (default port 9440): the server's
certificate is verified against `ca_file` (`SCANTRACE_CLICKHOUSE__CA_FILE`, a PEM bundle),
or when it is empty against clickhouse-driver's default (certifi's bundle when installed,
else the system's), and must name the host.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

SCHEMES = {"clickhouse": 9000, "clickhouses": 9440}  # scheme -> default native port


class ClickHouseSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str = Field(
        default="", description="clickhouse[s]://user:password@host:port/db; empty = local services"
    )
    password: SecretStr = SecretStr("")
    # PEM file of the CA(s) that signed the server's certificate (clickhouses:// only).
    ca_file: str = ""
    # A retention of the detail rows (DESIGN.md principle 5); used by the TTL migration.
    retention_days: int = Field(default=28, ge=1, le=3650)
    # `ON CLUSTER` name for the cluster variant of the schema; empty = single node.
    cluster: str = ""

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
