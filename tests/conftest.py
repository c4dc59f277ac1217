"""Fixtures shared by every test: the real services, once per session, through the same
code as `scantrace services up`; a fresh topic prefix and database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from ingest.admin import ensure_topics
from ingest.kafka_settings import KafkaSettings
from scantrace.services import manager
from scantrace.services.manager import Endpoints
from scantrace.settings import ServicesSettings
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services_settings(tmp_path_factory: pytest.TempPathFactory) -> ServicesSettings:
    return ServicesSettings(state_dir=tmp_path_factory.mktemp("services"))


@pytest.fixture(scope="session")
def services(services_settings: ServicesSettings) -> Iterator[Endpoints]:
    """One set of real services per test session; stopped at the end, by PID."""
    external_kafka = os.environ.get("SCANTRACE_KAFKA__BOOTSTRAP")
    external_ch = os.environ.get("SCANTRACE_CLICKHOUSE__URL")
    manager.up(
        services_settings,
        "external" if external_kafka else None,
        "external" if external_ch else None,
    )
    ends = manager.endpoints(services_settings)
    assert ends is not None, "services did not come up"
    try:
        yield ends
    finally:
        manager.down(services_settings)


@pytest.fixture
def kafka_settings(services: Endpoints) -> KafkaSettings:
    """Topics of their own for each test: a uuid prefix, created with their partitions."""
    settings = KafkaSettings(
        bootstrap=services.kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.", partitions=4
    )
    ensure_topics(settings)
    return settings


# The secret of the keyed person hashes in the tests (SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY).
TEST_PERSON_HASH_KEY = "test-person-hash-key-not-secret"


@pytest.fixture
def clickhouse_settings(services: Endpoints) -> Iterator[ClickHouseSettings]:
    """A database of its own for each test, migrated, dropped afterwards."""
    settings = ClickHouseSettings(
        url=f"{services.clickhouse_native}/t_{uuid.uuid4().hex[:12]}",
        person_hash_key=SecretStr(TEST_PERSON_HASH_KEY),
    )
    migrate(settings)
    yield settings
    client = connect(settings, database="default")
    try:
        client.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")
    finally:
        client.disconnect()
