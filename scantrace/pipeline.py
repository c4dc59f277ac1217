"""Run gateway, worker and sink as child processes of one command (`scantrace run`).

Each component stays its own process (as in production), so a crash of one is visible
and the others are stopped with it rather than left half-running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


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
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def commands(self) -> dict[str, list[str]]:
        cli = [sys.executable, "-m", "scantrace.cli"]
        host = ["--metrics-host", self.metrics_host]
        return {
            "worker": [*cli, "worker", "--metrics-port", str(self.worker_metrics_port), *host],
            "sink": [*cli, "sink", "--metrics-port", str(self.sink_metrics_port), *host],
            "gateway": [
                *cli,
                "gateway",
                "--port",
                str(self.gateway_port),
                *self.extra_gateway_args,
            ],
        }

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, argv in self.commands().items():
            with (self.log_dir / f"{name}.log").open("ab") as log:
                self.procs[name] = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )

    def failed(self) -> str | None:
        """The name of a component that exited, if any."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return name
        return None

    def stop(self, timeout: float = 30.0) -> None:
        # Gateway first (stop taking scans, flush), then the worker, then the sink.
        for name in ("gateway", "worker", "sink"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self) -> int:
        """Block until a signal or a component exits; returns the exit code to use."""
        stopping = False

        def on_signal(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stopping:
            dead = self.failed()
            if dead:
                print(
                    f"{dead} exited; stopping the pipeline. Log tail:\n{self.log_tail(dead)}",
                    file=sys.stderr,
                )
                self.stop()
                return 1
            time.sleep(0.5)
        self.stop()
        return 0
