"""deploy/clickhouse: the single node and the 2 shards x 2 replicas cluster with Keeper.

The XML parses; remote_servers, the macros of each node, the Keeper ensemble and the
cluster's compose file name the same hosts, shards and ports.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from deploy_testkit import DEPLOY, load_yaml, split_volume

CH = DEPLOY / "clickhouse"
CLUSTER = CH / "cluster"
XML_FILES = sorted(CH.rglob("*.xml"))


def root(path: Path) -> ET.Element:
    node = ET.parse(path).getroot()
    assert node.tag == "clickhouse", path
    return node


def cluster_layout() -> list[list[tuple[str, int]]]:
    """[[(host, port) per replica] per shard] of the cluster `scantrace`."""
    cluster = root(CLUSTER / "config.d/remote_servers.xml").find("remote_servers/scantrace")
    assert cluster is not None
    return [
        [(r.findtext("host", ""), int(r.findtext("port", "0"))) for r in shard.findall("replica")]
        for shard in cluster.findall("shard")
    ]


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: str(p.relative_to(CH)))
def test_xml_parses(path: Path) -> None:
    root(path)


def test_cluster_is_two_shards_of_two_replicas() -> None:
    layout = cluster_layout()
    assert [len(s) for s in layout] == [2, 2]
    hosts = [h for s in layout for h, _ in s]
    assert len(set(hosts)) == 4
    server = root(CLUSTER / "config.d/server.xml")
    assert {p for s in layout for _, p in s} == {int(server.findtext("tcp_port", ""))}
    shards = root(CLUSTER / "config.d/remote_servers.xml").findall("remote_servers/scantrace/shard")
    assert all(s.findtext("internal_replication") == "true" for s in shards)


def test_each_node_has_macros_matching_its_shard_and_replica() -> None:
    layout = cluster_layout()
    macro_files = {p.stem for p in (CLUSTER / "macros").glob("*.xml")}
    assert macro_files == {h for s in layout for h, _ in s}
    for shard_no, shard in enumerate(layout, start=1):
        for host, _ in shard:
            node = root(CLUSTER / "macros" / f"{host}.xml")
            assert node.findtext("macros/shard") == str(shard_no), host
            assert node.findtext("macros/replica") == host
            assert node.findtext("macros/cluster") == "scantrace"
            assert node.findtext("interserver_http_host") == host


def test_keeper_ensemble_is_consistent() -> None:
    client = root(CLUSTER / "config.d/keeper.xml")
    client_nodes = {(n.findtext("host"), int(n.findtext("port", "0"))) for n in client.iter("node")}
    keeper_files = sorted((CLUSTER / "keeper").glob("*.xml"))
    assert len(keeper_files) == 3, "a Raft quorum of three"
    ids = set()
    for path in keeper_files:
        ks = root(path).find("keeper_server")
        assert ks is not None
        server_id = int(ks.findtext("server_id", "0"))
        ids.add(server_id)
        peers = {
            (int(s.findtext("id", "0")), s.findtext("hostname"))
            for s in ks.findall("raft_configuration/server")
        }
        assert (server_id, path.stem) in peers, path.name
        assert {(h, int(ks.findtext("tcp_port", "0"))) for _, h in peers} == client_nodes
    assert ids == {1, 2, 3}


def test_cluster_compose_mounts_the_right_files_on_each_node() -> None:
    compose = load_yaml(CLUSTER / "docker-compose.yml")
    services = compose["services"]
    hosts = [h for s in cluster_layout() for h, _ in s]
    keepers = [p.stem for p in sorted((CLUSTER / "keeper").glob("*.xml"))]
    assert set(services) == {*hosts, *keepers}
    declared = set(compose["volumes"])
    for name, svc in services.items():
        assert svc["hostname"] == name
        mounts = {}
        for spec in svc["volumes"]:
            kind, source, target = split_volume(spec)
            if kind == "bind":
                assert (CLUSTER / source).is_file(), source
                mounts[target] = (CLUSTER / source).resolve()
            else:
                assert source in declared
        if name in keepers:
            assert mounts == {
                "/etc/clickhouse-keeper/keeper_config.xml": CLUSTER / "keeper" / f"{name}.xml"
            }
        else:
            config_d = "/etc/clickhouse-server/config.d/"
            assert mounts[config_d + "macros.xml"] == CLUSTER / "macros" / f"{name}.xml"
            for f in (CLUSTER / "config.d").glob("*.xml"):
                assert mounts[config_d + f.name] == f, (name, f.name)
        assert svc["healthcheck"]["test"]


def test_single_node_ports() -> None:
    node = root(CH / "single/config.d/scantrace.xml")
    assert node.findtext("tcp_port") == "9000"
    assert node.findtext("http_port") == "8123"
    assert node.findtext("timezone") == "UTC"
