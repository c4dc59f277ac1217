"""`scantrace run`'s pipeline: the commands it starts, and its supervision."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from scantrace.pipeline import STATUS_FILE, Pipeline, RunMetrics


def test_worker_and_sink_serve_metrics_on_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    pipeline = Pipeline(1, 2, 3, tmp_path)
    commands = pipeline.commands()
    for name, port in (("worker", "2"), ("sink", "3")):
        argv = commands[name]
        assert argv[argv.index("--metrics-port") + 1] == port
        assert argv[argv.index("--metrics-host") + 1] == "127.0.0.1"
    assert "--metrics-host" not in commands["gateway"]  # its own host setting: 127.0.0.1
    wide = Pipeline(1, 2, 3, tmp_path, metrics_host="0.0.0.0").commands()
    assert wide["sink"][wide["sink"].index("--metrics-host") + 1] == "0.0.0.0"


def test_several_of_each_get_consecutive_ports_and_their_own_worker_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCANTRACE_WORKER__DATA_DIR", str(tmp_path / "w"))
    p = Pipeline(8080, 9101, 9201, tmp_path, workers=2, sinks=3, gateways=2)
    commands = p.commands()
    assert sorted(commands) == sorted(
        ["worker", "worker-2", "sink", "sink-2", "sink-3", "gateway", "gateway-2"]
    )

    def flag(name: str, option: str) -> str:
        return commands[name][commands[name].index(option) + 1]

    assert [flag(n, "--port") for n in ("gateway", "gateway-2")] == ["8080", "8081"]
    assert [flag(n, "--metrics-port") for n in ("sink", "sink-2", "sink-3")] == [
        "9201",
        "9202",
        "9203",
    ]
    assert flag("worker", "--data-dir") == str(tmp_path / "w" / "worker")
    assert flag("worker-2", "--data-dir") == str(tmp_path / "w" / "worker-2")
    # one worker keeps the folder it is given, as before
    assert "--data-dir" not in Pipeline(1, 2, 3, tmp_path).commands()["worker"]


class Scripted(Pipeline):
    """The supervisor around small Python processes instead of the components."""

    scripts: dict[str, str] = {}  # noqa: RUF012 - set per test before start()

    def commands(self) -> dict[str, list[str]]:
        return {name: [sys.executable, "-c", code] for name, code in self.scripts.items()}


def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_default_ports_of_several_of_each_never_collide(tmp_path: Path) -> None:
    """`run --workers 2 --sinks 2` with the default ports: the second worker would take
    the first sink's 9102 and the second sink the supervisor's 9103; each port is given
    once, counted up past those already held."""
    p = Pipeline(8080, 9101, 9102, tmp_path, workers=2, sinks=2, reserved_ports=(9103,))
    assert p.port_layout() == {"gateway": [8080], "worker": [9101, 9102], "sink": [9104, 9105]}
    ports = [
        int(argv[argv.index("--metrics-port") + 1])
        for name, argv in p.commands().items()
        if name.startswith(("worker", "sink"))
    ]
    assert sorted(ports) == [9101, 9102, 9104, 9105]
    # One of each keeps the documented ports.
    one = Pipeline(8080, 9101, 9102, tmp_path, reserved_ports=(9103,))
    assert one.port_layout() == {"gateway": [8080], "worker": [9101], "sink": [9102]}


def test_a_component_that_dies_is_started_again_with_backoff_and_counted(
    tmp_path: Path,
) -> None:
    registry = CollectorRegistry()
    p = Scripted(1, 2, 3, tmp_path, metrics=RunMetrics(registry), restart_delay=0.1)
    p.scripts = {"worker": "import time; time.sleep(60)", "sink": "raise SystemExit(1)"}
    p.start()
    try:
        sink = p.children["sink"]
        delays = []
        for restarts in (1, 2, 3):
            _until(lambda: sink.proc is not None and sink.proc.poll() is not None)
            p.supervise()  # sees the exit: schedules the start
            assert sink.restart_at is not None
            delays.append(round(sink.restart_at - time.monotonic(), 1))
            _until(lambda: time.monotonic() >= (sink.restart_at or 0))
            p.supervise()
            assert sink.restarts == restarts
        assert delays == [0.1, 0.2, 0.4]  # doubles at each exit
        assert sink.last_exit == 1
        assert registry.get_sample_value("scantrace_run_restarts_total", {"component": "sink"}) == 3
        assert (
            registry.get_sample_value("scantrace_run_restarts_total", {"component": "worker"}) == 0
        )
        status = json.loads((tmp_path / STATUS_FILE).read_text())
        assert status["sink"]["restarts"] == 3 and status["worker"]["alive"] is True
        assert status["worker"]["pid"] == p.children["worker"].proc.pid  # type: ignore[union-attr]
    finally:
        p.stop(timeout=5)
    assert p.failed() is not None  # everything stopped


def test_a_configuration_error_at_the_first_start_stops_the_pipeline(tmp_path: Path) -> None:
    p = Scripted(1, 2, 3, tmp_path, restart_delay=0.1)
    p.scripts = {"worker": "import time; time.sleep(60)", "sink": "raise SystemExit(2)"}
    p.start()
    try:
        _until(lambda: p.procs["sink"].poll() is not None)
        assert p.supervise() == "sink"
    finally:
        p.stop(timeout=5)
