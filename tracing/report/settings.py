"""Settings of the compliance report, from SCANTRACE_* environment variables.

`SCANTRACE_CLICKHOUSE__URL` (as ClickHouse's `report` user), `SCANTRACE_REPORT__PROVINCE`
("Tỉnh Ninh Thuận"), `SCANTRACE_REPORT__AUTHORITY` ("Sở Thông tin và Truyền thông"),
`SCANTRACE_REPORT__CHROMIUM` (the browser that prints the PDF), and the mail server of
`scantrace report send`: `SCANTRACE_REPORT__SMTP__HOST`, `__PORT`, `__USER`,
`__PASSWORD` (masked whenever printed), `__STARTTLS`, `__SENDER`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from sinks.clickhouse_settings import ClickHouseSettings


class SmtpOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = ""
    port: int = Field(default=587, ge=1, le=65535)
    user: str = ""
    password: SecretStr = SecretStr("")
    # STARTTLS before logging in (port 587); False only for a relay on the same host.
    starttls: bool = True
    sender: str = ""
    timeout_s: float = Field(default=60.0, gt=0)


class ReportOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    province: str = ""
    authority: str = ""
    chromium: str = "/usr/bin/chromium"
    smtp: SmtpOptions = Field(default_factory=SmtpOptions)


class ReportSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCANTRACE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    report: ReportOptions = Field(default_factory=ReportOptions)
