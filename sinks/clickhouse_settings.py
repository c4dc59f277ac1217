"""ClickHouse connection settings: one URL, `clickhouse://[user[:password]@]host:port/db`."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ClickHouseSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str = Field(default="", description="clickhouse://host:port/db; empty = local services")
    password: SecretStr = SecretStr("")
    # A retention of the detail rows (DESIGN.md principle 5); used by the TTL migration.
    retention_days: int = Field(default=28, ge=1, le=3650)
    # `ON CLUSTER` name for the cluster variant of the schema; empty = single node.
    cluster: str = ""

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

    @property
    def database(self) -> str:
        return self.parts()[2]

    def with_database(self, database: str) -> ClickHouseSettings:
        host, port, _, user, _ = self.parts()
        return self.model_copy(update={"url": f"clickhouse://{user}@{host}:{port}/{database}"})
