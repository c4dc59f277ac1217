"""The cluster services of the fault matrix: three Apache Kafka nodes in one KRaft quorum
and two ClickHouse shards, started once for this folder in a state folder of their own
(`scantrace services up --brokers 3 --clickhouse-shards 2`) and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faultkit import RUNS, Cluster

from scantrace.services import manager
from scantrace.settings import ServicesSettings


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    settings = ServicesSettings(state_dir=tmp_path_factory.mktemp("cluster"), kafka="apache")
    try:
        manager.up(settings, brokers=3, clickhouse_shards=2)
        yield Cluster(settings)
    finally:
        manager.down(settings)


@pytest.fixture(autouse=True)
def _stop_runs_left() -> Iterator[None]:
    """A case that fails before it stops its run would leave the supervisor and its
    children running into the next case (and past the session): stop them by PID."""
    yield
    while RUNS:
        RUNS.pop().stop()
