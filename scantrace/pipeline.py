"""Run gateways, workers and sinks as child processes of one command (`scantrace run`),
and keep them running.

Each component stays its own process (as in production). `workers` workers share one
consumer group (Faust's app id), `sinks` sinks another, so Kafka spreads the partitions
over them and moves them when one stops; `gateways` gateways listen on consecutive ports
from `gateway_port`, and the metrics ports of the workers and sinks count up the same way.

`supervise()` starts again a component that exited, after a backoff that doubles with
each exit (`RESTART_DELAY_S` up to `MAX_RESTART_DELAY_S`; one that ran `STABLE_S` starts
from the first step again), logs it on stderr and counts it (`RunMetrics` and the status
file `run.json` in the log folder). A component that exits with a configuration error
(status 2, or 3: ClickHouse refuses the sink's writes) on its first start is not retried:
the whole pipeline stops, as a restart could not help.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

KINDS: Final = ("gateway", "worker", "sink")
RESTART_DELAY_S: Final = 1.0
MAX_RESTART_DELAY_S: Final = 60.0
STABLE_S: Final = 60.0
# Exit statuses of a component that cannot start as configured (`error: ...`).
CONFIG_EXITS: Final = frozenset({2, 3})
STATUS_FILE: Final = "run.json"
PREFIX: Final = "scantrace_run_"


class RunMetrics:
    """The supervisor's metrics (`scantrace run --metrics-port`), on a registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter(
            f"{PREFIX}restarts_total",
            "Components the supervisor started again after they exited, by component kind",
            ["component"],
            registry=registry,
        )
        self.running = Gauge(
            f"{PREFIX}processes",
            "Component processes running now, by component kind",
            ["component"],
            registry=registry,
        )
        self.under_replicated = Gauge(
            f"{PREFIX}under_replicated_partitions",
            "Partitions of the pipeline's topics with fewer in-sync replicas than replicas "
            "(from the brokers' metadata), by topic",
            ["topic"],
            registry=registry,
        )
        for kind in KINDS:  # a series from the start: increase() sees the first restart
            self.restarts.labels(kind)
            self.running.labels(kind)


@dataclass
class Child:
    """One component process and its restart bookkeeping."""

    kind: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    restarts: int = 0
    delay: float = RESTART_DELAY_S
    restart_at: float | None = None  # set while waiting to start again
    last_exit: int | None = None


@dataclass
class Pipeline:
    gateway_port: int
    worker_metrics_port: int
    sink_metrics_port: int
    log_dir: Path
    extra_gateway_args: Sequence[str] = ()
    # Where worker and sink serve /metrics: loopback like the gateway by default (tests,
    # benchmarks, one machine); 0.0.0.0 for a Prometheus on another host.
    metrics_host: str = "127.0.0.1"
    workers: int = 1
    sinks: int = 1
    gateways: int = 1
    restart_delay: float = RESTART_DELAY_S
    metrics: RunMetrics | None = None
    # Ports another process of the run listens on (the supervisor's /metrics).
    reserved_ports: Sequence[int] = ()
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)

    @staticmethod
    def names(kind: str, count: int) -> list[str]:
        """`worker`, `worker-2`, `worker-3`...: the first keeps the plain name."""
        return [kind if i == 1 else f"{kind}-{i}" for i in range(1, count + 1)]

    def worker_data_dir(self, name: str) -> Path:
        """Each worker's own Faust folder, under the one configured (or the default)."""
        configured = os.environ.get("SCANTRACE_WORKER__DATA_DIR")
        if configured:
            base = Path(configured)
        else:
            from scantrace.settings import ServicesSettings

            base = ServicesSettings().state_dir / "worker-data"
        return base / name

    def commands(self) -> dict[str, list[str]]:
        cli = [sys.executable, "-m", "scantrace.cli"]
        host = ["--metrics-host", self.metrics_host]
        out: dict[str, list[str]] = {}
        layout = self.port_layout()
        for name, port in zip(self.names("worker", self.workers), layout["worker"], strict=True):
            argv = [*cli, "worker", "--metrics-port", str(port), *host]
            if self.workers > 1:
                argv += ["--data-dir", str(self.worker_data_dir(name))]
            out[name] = argv
        for name, port in zip(self.names("sink", self.sinks), layout["sink"], strict=True):
            out[name] = [*cli, "sink", "--metrics-port", str(port), *host]
        for name, port in zip(self.names("gateway", self.gateways), layout["gateway"], strict=True):
            out[name] = [*cli, "gateway", "--port", str(port), *self.extra_gateway_args]
        return out

    def port_layout(self) -> dict[str, list[int]]:
        """Each kind's ports, counted up from its first, skipping a port that an earlier
        kind (gateways, then workers, then sinks) or `reserved` holds: with the defaults,
        two workers take 9101-9102 and two sinks 9103-9104 (9104-9105 when the
        supervisor's own 9103 is reserved), never a port twice."""
        taken = set(self.reserved_ports)
        layout: dict[str, list[int]] = {}
        for kind, first, count in (
            ("gateway", self.gateway_port, self.gateways),
            ("worker", self.worker_metrics_port, self.workers),
            ("sink", self.sink_metrics_port, self.sinks),
        ):
            ports: list[int] = []
            port = first
            while len(ports) < count:
                if port not in taken:
                    ports.append(port)
                    taken.add(port)
                port += 1
            layout[kind] = ports
        return layout

    def ports(self, kind: str) -> list[int]:
        """The gateways' HTTP ports, or the workers' or sinks' metrics ports."""
        return self.port_layout()[kind]

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, argv in self.commands().items():
            self.children[name] = Child(name.split("-")[0], argv, delay=self.restart_delay)
            self._spawn(name)
        self._write_status()

    def _spawn(self, name: str) -> None:
        child = self.children[name]
        if child.kind == "worker" and self.workers > 1:
            self.worker_data_dir(name).mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            child.proc = subprocess.Popen(
                child.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        child.started_at = time.monotonic()
        child.starts += 1
        child.restart_at = None
        self.procs[name] = child.proc
        self._count_running()

    def failed(self) -> str | None:
        """The name of a component that exited, if any."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return name
        return None

    def supervise(self, now: float | None = None) -> str | None:
        """Start again what exited, once its backoff has passed. Returns the name of a
        component that cannot start as configured (the caller stops everything), else
        None."""
        now = time.monotonic() if now is None else now
        changed = False
        for name, child in self.children.items():
            proc = child.proc
            if proc is None or proc.poll() is None:
                continue
            if child.restart_at is None:
                code = proc.returncode
                child.last_exit = code
                if child.starts == 1 and code in CONFIG_EXITS:
                    return name
                ran = now - child.started_at
                if ran >= STABLE_S:
                    child.delay = self.restart_delay
                child.restart_at = now + child.delay
                print(
                    f"{name} exited with status {code} after {ran:.0f} s; starting it again "
                    f"in {child.delay:g} s (restart {child.restarts + 1})",
                    file=sys.stderr,
                    flush=True,
                )
                child.delay = min(MAX_RESTART_DELAY_S, child.delay * 2)
                changed = True
                self._count_running()
            elif now >= child.restart_at:
                child.restarts += 1
                if self.metrics is not None:
                    self.metrics.restarts.labels(child.kind).inc()
                self._spawn(name)
                changed = True
        if changed:
            self._write_status()
        return None

    def _count_running(self) -> None:
        if self.metrics is None:
            return
        for kind in KINDS:
            n = sum(
                1
                for c in self.children.values()
                if c.kind == kind and c.proc is not None and c.proc.poll() is None
            )
            self.metrics.running.labels(kind).set(n)

    def status(self) -> dict[str, dict[str, object]]:
        """Each component: its pid, port, starts and restarts, last exit status."""
        ports = {
            name: port
            for kind in KINDS
            for name, port in zip(
                self.names(kind, len(self.ports(kind))), self.ports(kind), strict=True
            )
        }
        return {
            name: {
                "kind": c.kind,
                "pid": c.proc.pid if c.proc is not None else None,
                "alive": c.proc is not None and c.proc.poll() is None,
                "port": ports.get(name),
                "restarts": c.restarts,
                "last_exit": c.last_exit,
            }
            for name, c in self.children.items()
        }

    def _write_status(self) -> None:
        path = self.log_dir / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=2))
        tmp.replace(path)

    def stop(self, timeout: float = 30.0) -> None:
        # Gateways first (stop taking scans, flush), then the workers, then the sinks.
        for kind in KINDS:
            for child in self.children.values():
                proc = child.proc
                child.restart_at = None
                if child.kind != kind or proc is None or proc.poll() is not None:
                    continue
                proc.send_signal(signal.SIGTERM)
            for child in self.children.values():
                proc = child.proc
                if child.kind != kind or proc is None:
                    continue
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        if self.children:
            self._write_status()

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self) -> int:
        """Supervise until a signal, or until a component cannot start as configured;
        returns the exit code to use."""
        stopping = False

        def on_signal(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stopping:
            dead = self.supervise()
            if dead:
                print(
                    f"{dead} cannot start (status {self.children[dead].last_exit}); stopping "
                    f"the pipeline. Log tail:\n{self.log_tail(dead)}",
                    file=sys.stderr,
                )
                self.stop()
                return 1
            time.sleep(0.5)
        self.stop()
        return 0
