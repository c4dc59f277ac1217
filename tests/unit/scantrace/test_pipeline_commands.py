"""`scantrace run`'s pipeline: the commands it starts."""

from __future__ import annotations

from pathlib import Path

from scantrace.pipeline import Pipeline


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
