"""Helpers for the deployment tests: paths, YAML, compose interpolation and ports, promtool.

Nothing here starts a container: compose files are parsed (no Docker engine on these
machines), Prometheus files are checked by the real `promtool`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = REPO / "docker-compose.yml"
PROMETHEUS_DIR = DEPLOY / "prometheus"
ALERTMANAGER_DIR = DEPLOY / "alertmanager"
RUNBOOKS_DIR = DEPLOY / "runbooks"
METRICS_FILE = DEPLOY / "metrics.txt"

# The components built from the Dockerfile, and the one-shot provisioning service.
LONG_RUNNING = ("gateway", "worker", "sink", "api")
PROJECT_SERVICES = (*LONG_RUNNING, "init")
INFRA_SERVICES = ("kafka", "clickhouse", "prometheus", "grafana")

METRIC_NAME = re.compile(r"\bscantrace_[a-z0-9_]+")


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_yaml_all(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


# -- compose -----------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `$$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        val = env.get(name)
        # With a colon an empty value counts as unset, without one only a missing one.
        unset = not val if op in (":-", ":?") else val is None
        if op in (":?", "?") and unset:
            raise KeyError(f"required variable {name} is not set: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return val or ""

    return _VAR.sub(sub, value)


def required_variables(text: str) -> set[str]:
    return {m.group(1) for m in _VAR.finditer(text) if m.group(2) in (":?", "?")}


@cache
def compose_raw() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def compose_env_for_tests() -> dict[str, str]:
    """Values for the variables the compose file requires (as an operator's .env would)."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    return {name: f"test-{name.lower()}" for name in required_variables(text)}


def service_env(service: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment as the container sees it (list or mapping syntax)."""
    env = compose_env_for_tests() if env is None else env
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = [item.split("=", 1) if "=" in item else [item, ""] for item in raw]
        raw = dict(pairs)
    return {str(k): interpolate(str(v), env) for k, v in raw.items()}


def container_ports(service: dict[str, Any]) -> set[int]:
    """Container-side ports a service publishes (`ports`) or exposes (`expose`)."""
    out: set[int] = set()
    for spec in service.get("ports") or []:
        if isinstance(spec, dict):
            out.add(int(spec["target"]))
            continue
        target = str(spec).split("/")[0].rsplit(":", 1)[-1]
        out.add(int(target))
    for spec in service.get("expose") or []:
        out.add(int(str(spec).split("/")[0]))
    return out


def flag_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def init_commands(script: str) -> list[list[str]]:
    """The commands of an init script (`sh -ec`), one per line, as the words after
    `scantrace`; a line that runs anything but the CLI fails the test."""
    out = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "scantrace", f"not a scantrace command: {line}"
            out.append(words[1:])
    return out


def cli_params(
    argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The parameters `scantrace ARGV` gets, parsed by the CLI itself, in an environment
    whose SCANTRACE_ variables are those of `env` alone."""
    import click

    from scantrace.cli import main

    for key in [k for k in os.environ if k.startswith("SCANTRACE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    command: click.Command = main
    words = list(argv)
    while isinstance(command, click.Group) and words:
        sub = command.get_command(click.Context(command), words[0])
        assert sub is not None, f"no command {words[0]!r} in `scantrace {' '.join(argv)}`"
        command = sub
        words.pop(0)
    return dict(command.make_context(command.name, words).params)


def split_volume(spec: str | dict[str, Any]) -> tuple[str, str, str]:
    """(kind, source, target) of a short or long volume entry; kind is bind or volume."""
    if isinstance(spec, dict):
        return str(spec.get("type", "volume")), str(spec.get("source", "")), str(spec["target"])
    parts = spec.split(":")
    if len(parts) == 1:
        return "volume", "", parts[0]  # anonymous volume
    source, target = parts[0], parts[1]
    kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    return kind, source, target


# -- prometheus ---------------------------------------------------------------------------


def scrape_targets(config: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
    """job -> [(host, port)] from static_configs and dns_sd_configs."""
    jobs: dict[str, list[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        targets: list[tuple[str, int]] = []
        for sc in job.get("static_configs") or []:
            for t in sc["targets"]:
                host, port = t.rsplit(":", 1)
                targets.append((host, int(port)))
        for dns in job.get("dns_sd_configs") or []:
            targets.extend((name, int(dns["port"])) for name in dns["names"])
        jobs[job["job_name"]] = targets
    return jobs


def promtool_or_skip() -> str:
    """The promtool binary; a skip where it is missing, a failure where CI is set."""
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("promtool is missing and CI is set: install Debian's `prometheus` package")
    pytest.skip("promtool is not installed (Debian package `prometheus`); CI installs it")


def amtool_or_skip() -> str:
    """amtool (Debian's `prometheus-alertmanager`), like `promtool_or_skip`."""
    path = shutil.which("amtool")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("amtool is missing and CI is set: install `prometheus-alertmanager`")
    pytest.skip("amtool is not installed (Debian package `prometheus-alertmanager`)")


def run_amtool(*args: str, cwd: Path = ALERTMANAGER_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [amtool_or_skip(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alert_rules() -> list[dict[str, Any]]:
    rules = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def run_promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool_or_skip(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def metrics_listed() -> list[str]:
    return METRICS_FILE.read_text(encoding="utf-8").splitlines()
