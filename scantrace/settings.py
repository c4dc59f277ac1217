"""Settings of the shell: where the local services live and which ones to start.

`SCANTRACE_SERVICES__KAFKA=apache|noida|external|auto`, `SCANTRACE_SERVICES__CLICKHOUSE`,
`SCANTRACE_SERVICES__SECURE`, `SCANTRACE_SERVICES__BROKERS`,
`SCANTRACE_SERVICES__CLICKHOUSE_SHARDS`, `SCANTRACE_SERVICES__STATE_DIR`,
`SCANTRACE_SERVICES__CACHE_DIR`. (The Makefile maps the short `SCANTRACE_KAFKA=apache` of
the README onto the first.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return Path(base) if base else Path.home() / fallback


class ServicesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCANTRACE_SERVICES__", frozen=True)

    kafka: Literal["auto", "apache", "noida", "external"] = "auto"
    clickhouse: Literal["local", "external"] = "local"
    # The local Apache Kafka with TLS, SCRAM users and ACLs (`services up --secure`).
    secure: bool = False
    # A local cluster (`services up --brokers 3 --clickhouse-shards 2`): Apache Kafka nodes
    # in one KRaft quorum, and ClickHouse servers behind Distributed tables.
    brokers: int = Field(default=1, ge=1, le=9)
    clickhouse_shards: int = Field(default=1, ge=1, le=8)
    state_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state") / "scantrace"
    )
    # Downloads (Kafka jars) outlive any state folder: a second start needs no network.
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "scantrace")
    database: str = "scantrace"
