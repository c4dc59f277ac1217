"""`scantrace topics describe`'s view of the brokers' metadata: what counts as
under-replicated or offline, and how it is shown."""

from __future__ import annotations

from scantrace.topics import Description, GroupLag, PartitionState, TopicState, render


def _description() -> Description:
    raw = TopicState(
        "scans.raw",
        [
            PartitionState(0, leader=1, replicas=[1, 2, 3], isr=[1, 2, 3]),
            PartitionState(1, leader=2, replicas=[1, 2, 3], isr=[2, 3]),
            PartitionState(2, leader=-1, replicas=[1, 2, 3], isr=[]),
        ],
    )
    premises = TopicState("premises", [PartitionState(0, 3, [1, 2, 3], [1, 2, 3])])
    lag = GroupLag("worker", "scantrace-worker", "scans.raw", 1234, 2)
    return Description([2, 3], [raw, premises], [lag])


def test_fewer_in_sync_replicas_than_replicas_is_under_replicated() -> None:
    d = _description()
    assert [p.under_replicated for p in d.topics[0].partitions] == [False, True, True]
    assert d.topics[0].under_replicated == 2 and d.under_replicated == 2
    data = d.as_json()
    assert data["under_replicated_partitions"] == 2
    assert data["topics"][0]["partitions"][1] == {
        "partition": 1,
        "leader": 2,
        "replicas": [1, 2, 3],
        "isr": [2, 3],
        "under_replicated": True,
    }
    assert data["consumer_lag"][0]["lag"] == 1234


def test_the_table_names_the_state_of_each_partition() -> None:
    lines = render(_description()).splitlines()
    assert lines[0] == "brokers: 2, 3; under-replicated partitions: 2"
    states = [line.split()[-1] for line in lines if line.startswith("scans.raw")]
    assert states == ["ok", "UNDER-REPLICATED", "OFFLINE"]
    assert any("1,234" in line and line.startswith("worker") for line in lines)
