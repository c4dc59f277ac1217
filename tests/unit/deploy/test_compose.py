"""docker-compose.yml, parsed: every service, one Dockerfile, ports that agree everywhere.

No Docker engine runs here, so the file is checked the way compose would read it: the
env the components get, the listeners Kafka advertises, the port ClickHouse listens on,
health checks, volumes, start order, and the scrape targets of deploy/prometheus.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from deploy_testkit import (
    COMPOSE_FILE,
    INFRA_SERVICES,
    LONG_RUNNING,
    PROJECT_SERVICES,
    PROMETHEUS_DIR,
    REPO,
    cli_params,
    compose_env_for_tests,
    compose_raw,
    container_ports,
    flag_value,
    init_commands,
    interpolate,
    load_yaml,
    scrape_targets,
    service_env,
    split_volume,
)

from sinks.clickhouse_settings import ClickHouseSettings
from sinks.settings import SinkSettings


def services() -> dict[str, Any]:
    svc = compose_raw()["services"]
    assert isinstance(svc, dict)
    return svc


def argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def kafka_listeners(env: dict[str, str], var: str) -> dict[str, tuple[str, int]]:
    """`NAME://host:port,...` -> {NAME: (host, port)}; an empty host means all interfaces."""
    out: dict[str, tuple[str, int]] = {}
    for item in env[var].split(","):
        name, rest = item.strip().split("://", 1)
        host, port = rest.rsplit(":", 1)
        out[name] = (host, int(port))
    return out


def kafka_client_port() -> tuple[str, int, str]:
    """(host, port, listener name) that clients on the compose network bootstrap from:
    the advertised listener whose host is the kafka service itself."""
    env = service_env(services()["kafka"])
    advertised = kafka_listeners(env, "KAFKA_ADVERTISED_LISTENERS")
    internal = [(n, h, p) for n, (h, p) in advertised.items() if h == "kafka"]
    assert len(internal) == 1, f"one listener advertised as kafka:PORT expected: {advertised}"
    name, host, port = internal[0]
    return host, port, name


def clickhouse_native_port() -> int:
    """The tcp_port of the ClickHouse config files mounted into the service (9000 if none)."""
    port = 9000
    for spec in services()["clickhouse"].get("volumes") or []:
        kind, source, target = split_volume(spec)
        if (
            kind == "bind"
            and target.startswith("/etc/clickhouse-server/")
            and source.endswith(".xml")
        ):
            node = ET.parse(REPO / source).getroot().find("tcp_port")
            if node is not None and node.text:
                port = int(node.text)
    return port


def metrics_port(name: str) -> int:
    """Where a project service serves /metrics, from its own configuration."""
    svc = services()[name]
    env = service_env(svc)
    if name == "gateway":
        return int(env["SCANTRACE_GATEWAY__PORT"])
    if name == "api":
        return int(env["SCANTRACE_API__PORT"])
    value = flag_value(argv(svc), "--metrics-port")
    assert value is not None, f"{name}: no --metrics-port in its command"
    return int(value)


# -- the services ---------------------------------------------------------------------------


def test_every_service_the_project_needs_is_there() -> None:
    assert set(services()) >= {*INFRA_SERVICES, *PROJECT_SERVICES}


def test_infrastructure_images_are_the_intended_pinned_versions() -> None:
    svc = services()
    expected = {
        "kafka": r"apache/kafka:4\.\d+\.\d+",
        "clickhouse": r"clickhouse/clickhouse-server:26\.\d+",
        "prometheus": r"prom/prometheus:v\d+\.\d+\.\d+",
        "grafana": r"grafana/grafana:\d+\.\d+\.\d+",
    }
    for name, pattern in expected.items():
        assert re.fullmatch(pattern, svc[name]["image"]), (name, svc[name]["image"])
        assert "build" not in svc[name]


def test_project_services_build_from_the_one_dockerfile() -> None:
    svc = services()
    images = set()
    for name in PROJECT_SERVICES:
        build = svc[name]["build"]
        assert isinstance(build, dict), f"{name}: build must name the context and Dockerfile"
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        assert context == REPO, name
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", name
        images.add(interpolate(svc[name]["image"], compose_env_for_tests()))
    assert (REPO / "Dockerfile").is_file()
    assert len(images) == 1, f"one image for every component, got {images}"


def test_project_services_run_their_own_subcommand() -> None:
    svc = services()
    for name in LONG_RUNNING:
        assert argv(svc[name])[0] == name, name
        assert "entrypoint" not in svc[name], f"{name} must run through `scantrace`"


# -- the env points at the services, on the ports they listen on ----------------------------


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_kafka_bootstrap_is_the_kafka_service_listener(name: str) -> None:
    env = service_env(services()[name])
    host, port = env["SCANTRACE_KAFKA__BOOTSTRAP"].rsplit(":", 1)
    adv_host, adv_port, listener = kafka_client_port()
    assert (host, int(port)) == (adv_host, adv_port)

    kafka_env = service_env(services()["kafka"])
    bound = kafka_listeners(kafka_env, "KAFKA_LISTENERS")
    assert bound[listener][1] == adv_port, "advertised and bound ports of the listener differ"
    assert bound[listener][0] in ("", "0.0.0.0", "kafka"), "must listen on the compose network"
    protocols = dict(
        item.split(":", 1) for item in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert protocols[listener] == "PLAINTEXT", "the components are configured without TLS"


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_clickhouse_url_is_the_clickhouse_service_native_port(name: str) -> None:
    env = service_env(services()[name])
    assert env["SCANTRACE_CLICKHOUSE__URL"] == "clickhouse://clickhouse:9000/scantrace"
    host, port, database, _, _ = ClickHouseSettings(url=env["SCANTRACE_CLICKHOUSE__URL"]).parts()
    assert (host, database) == ("clickhouse", "scantrace")
    assert port == clickhouse_native_port()
    assert port in container_ports(services()["clickhouse"])
    # The password the components send is the one the server was given.
    server_env = service_env(services()["clickhouse"])
    assert env["SCANTRACE_CLICKHOUSE__PASSWORD"] == server_env["CLICKHOUSE_PASSWORD"]


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_the_components_read_that_env(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The env names are the settings' real names: parsed values, not silently ignored."""
    env = service_env(services()[name])
    for key in [k for k in os.environ if k.startswith("SCANTRACE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sink = SinkSettings()
    assert sink.kafka.servers() == ["kafka:9092"]
    assert sink.clickhouse.parts()[:3] == ("clickhouse", 9000, "scantrace")
    assert sink.kafka.partitions == int(env["SCANTRACE_KAFKA__PARTITIONS"])
    if name == "gateway":
        settings = pytest.importorskip("ingest.gateway.settings")
        gw = settings.GatewaySettings()
        assert gw.gateway.host == "0.0.0.0"
        assert gw.gateway.port == 8080
        assert gw.gateway.tokens.get_secret_value(), "the gateway gets its tokens"


def test_kafka_partitions_agree_between_broker_default_and_components() -> None:
    kafka_env = service_env(services()["kafka"])
    for name in PROJECT_SERVICES:
        env = service_env(services()[name])
        assert env["SCANTRACE_KAFKA__PARTITIONS"] == kafka_env["KAFKA_NUM_PARTITIONS"], name
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_listen_ports_are_published_or_exposed() -> None:
    svc = services()
    for name in LONG_RUNNING:
        assert metrics_port(name) in container_ports(svc[name]), name
    assert metrics_port("gateway") == 8080
    assert metrics_port("api") == 8090
    assert metrics_port("worker") == 9101
    assert metrics_port("sink") == 9102
    env = service_env(svc["gateway"])
    assert env["SCANTRACE_GATEWAY__HOST"] == "0.0.0.0", "reachable from other containers"
    assert service_env(svc["api"])["SCANTRACE_API__HOST"] == "0.0.0.0"


def test_published_ports_other_than_the_gateway_bind_to_loopback() -> None:
    for name, svc in services().items():
        for spec in svc.get("ports") or []:
            text = str(spec if not isinstance(spec, dict) else spec.get("host_ip", ""))
            if name == "gateway":
                continue
            assert text.startswith("127.0.0.1"), f"{name} publishes {spec} on every interface"


# -- health, start order, volumes -----------------------------------------------------------


def test_every_long_running_service_has_a_health_check() -> None:
    for name, svc in services().items():
        if name == "init":
            continue  # one-shot: its dependents wait for it to complete, not to be healthy
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_project_health_checks_probe_the_service_port(name: str) -> None:
    test = " ".join(services()[name]["healthcheck"]["test"])
    urls = re.findall(r"http://127\.0\.0\.1:(\d+)/", test)
    assert urls == [str(metrics_port(name))], test


def test_init_is_one_shot_and_runs_topics_and_migrations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    init = services()["init"]
    assert init["restart"] == "no"
    assert init["entrypoint"] == ["sh", "-ec"]
    (script,) = init["command"]
    # The CLI's own commands, topics before the schema, no inline program.
    assert init_commands(script) == [["topics", "create"], ["db", "migrate"]]
    # They take the partitions from the same variable as the components.
    env = service_env(init)
    params = cli_params(["topics", "create"], env, monkeypatch)
    assert params["partitions"] == int(env["SCANTRACE_KAFKA__PARTITIONS"]) == 4
    assert params["replication_factor"] is None  # the settings' default: one broker
    assert init["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "clickhouse": {"condition": "service_healthy"},
    }


def test_start_order() -> None:
    svc = services()
    for name in LONG_RUNNING:
        deps = svc[name]["depends_on"]
        assert deps["init"] == {"condition": "service_completed_successfully"}, name
    assert svc["gateway"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert svc["worker"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert svc["sink"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    # Every dependency exists and can satisfy its condition.
    for name, s in svc.items():
        for dep, cond in (s.get("depends_on") or {}).items():
            assert dep in svc, (name, dep)
            if cond["condition"] == "service_healthy":
                assert svc[dep].get("healthcheck"), (name, dep)


def test_volumes_are_named_and_declared_and_bind_sources_exist() -> None:
    declared = set(compose_raw().get("volumes") or {})
    used = set()
    for name, svc in services().items():
        for spec in svc.get("volumes") or []:
            kind, source, target = split_volume(spec)
            assert target.startswith("/"), (name, spec)
            if kind == "bind":
                path = (COMPOSE_FILE.parent / source).resolve()
                assert path.exists(), f"{name} mounts {source}, which does not exist"
                assert REPO in path.parents, f"{name} mounts {source} from outside the repo"
            else:
                assert source, f"{name}: anonymous volume {spec}; name it"
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"
    for name in ("kafka", "clickhouse", "prometheus", "grafana", "worker"):
        kinds = [split_volume(v)[0] for v in services()[name].get("volumes") or []]
        assert "volume" in kinds, f"{name} keeps its data in a named volume"


def test_required_secrets_fail_loudly_when_unset() -> None:
    env = compose_env_for_tests()
    assert {"CLICKHOUSE_PASSWORD", "SCANTRACE_GATEWAY_TOKENS"} <= set(env)
    with pytest.raises(KeyError, match="CLICKHOUSE_PASSWORD"):
        service_env(services()["clickhouse"], env={})
    example = (REPO / "deploy" / "compose.env.example").read_text(encoding="utf-8")
    for name in env:
        assert re.search(rf"^{name}=", example, re.M), f"{name} missing in compose.env.example"


# -- prometheus and grafana ------------------------------------------------------------------


def test_prometheus_scrapes_every_component_on_its_metrics_port() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = scrape_targets(config)
    svc = services()
    for name in LONG_RUNNING:
        assert jobs[name] == [(name, metrics_port(name))], name
    assert "prometheus" in jobs
    for job, targets in jobs.items():
        for host, port in targets:
            if host in ("localhost", "127.0.0.1"):
                assert job == "prometheus"
                flags = [a for a in svc["prometheus"]["command"] if "listen-address" in a]
                assert flags and flags[0].endswith(f":{port}")
                continue
            assert host in svc, f"job {job} scrapes {host}, not a compose service"
            assert port in container_ports(svc[host]), f"{host} does not expose {port}"


def test_prometheus_and_grafana_mount_the_deploy_files() -> None:
    svc = services()
    prom_mounts = {split_volume(v)[2]: split_volume(v)[1] for v in svc["prometheus"]["volumes"]}
    config_flag = next(a for a in svc["prometheus"]["command"] if a.startswith("--config.file="))
    config_path = Path(config_flag.split("=", 1)[1])
    source = prom_mounts[str(config_path.parent)]
    assert (REPO / source / config_path.name).resolve() == PROMETHEUS_DIR / "prometheus.yml"

    graf_mounts = {split_volume(v)[2]: split_volume(v)[1] for v in svc["grafana"]["volumes"]}
    provisioning = REPO / graf_mounts["/etc/grafana/provisioning"]
    provider = load_yaml(provisioning / "dashboards" / "scantrace.yml")["providers"][0]
    dash_dir = provider["options"]["path"]
    assert (REPO / graf_mounts[dash_dir] / "scantrace.json").is_file()
    datasource = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert 9090 in container_ports(svc["prometheus"])


def test_clickhouse_metrics_endpoint_matches_its_config() -> None:
    jobs = scrape_targets(load_yaml(PROMETHEUS_DIR / "prometheus.yml"))
    ((host, port),) = jobs["clickhouse"]
    root = ET.parse(REPO / "deploy/clickhouse/single/config.d/scantrace.xml").getroot()
    assert int(root.findtext("prometheus/port", "")) == port
    assert host == "clickhouse"


def test_the_report_profile_sends_last_weeks_report_every_monday_at_seven() -> None:
    import subprocess
    import sys

    report = services()["report"]
    assert report["profiles"] == ["report"]
    assert report["build"]["args"]["APT_PACKAGES"].split()[0] == "chromium"
    script = report["command"][0]
    assert "scantrace report send --week last" in script
    # the sleep: until the next Monday 07:00 in Asia/Ho_Chi_Minh, from the script itself
    code = script.split("python -c '")[1].split("')")[0]
    probe = code.replace("datetime.now(ZoneInfo(", "FIXED.astimezone(ZoneInfo(").replace(
        "from datetime import", "from datetime import timezone,"
    )
    for now, expected in (
        ("2021-11-22T06:59:00+07:00", 60),  # Monday before seven
        ("2021-11-22T07:00:00+07:00", 7 * 86_400),  # just sent: next week
        ("2021-11-21T23:00:00+00:00", 3600),  # Monday 06:00 local is 23:00 UTC Sunday
    ):
        fixed = f"from datetime import datetime; FIXED = datetime.fromisoformat('{now}')"
        done = subprocess.run(
            [sys.executable, "-c", f"{fixed}\n{probe.replace('$$', '$')}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds = int(done.stdout)
        assert seconds == expected, (now, seconds)
