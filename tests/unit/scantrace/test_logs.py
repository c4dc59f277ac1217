"""`--log-format text|json` (scantrace.logs): JSON lines with timestamp, level, component,
message and the call's context; the option reaches the component through the variable."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scantrace.logs import LOG_FORMAT_ENV, JsonFormatter, formatter_config, setup_logging
from scantrace.services.process import free_port


def test_a_json_line_has_the_fields_and_the_context() -> None:
    record = logging.LogRecord("sinks.flow", logging.WARNING, "f.py", 1, "insert %s", ("x",), None)
    record.batch = "scans.enriched:0:100-103"
    line = json.loads(JsonFormatter("sink").format(record))
    assert line["level"] == "warning" and line["component"] == "sink"
    assert line["message"] == "insert x" and line["logger"] == "sinks.flow"
    assert line["batch"] == "scans.enriched:0:100-103"
    assert line["timestamp"].endswith("+00:00")


def test_an_exception_stays_inside_its_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, "f.py", 1, "failed", (), sys.exc_info())
    text = JsonFormatter("api").format(record)
    assert "\n" not in text and "RuntimeError: boom" in json.loads(text)["exception"]


def test_the_variable_chooses_the_format(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(LOG_FORMAT_ENV, "json")
    assert formatter_config("worker") == {"()": JsonFormatter, "component": "worker"}
    setup_logging("info", "gateway")
    logging.getLogger("ingest.gateway").info("listening", extra={"request_id": "r-1"})
    line = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert (line["component"], line["message"], line["request_id"]) == (
        "gateway",
        "listening",
        "r-1",
    )
    monkeypatch.setenv(LOG_FORMAT_ENV, "text")
    assert "format" in formatter_config("worker")
    logging.basicConfig(force=True)


def test_the_option_reaches_the_component(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANTRACE_")}
    env |= {
        "SCANTRACE_SERVICES__STATE_DIR": str(tmp_path),
        "SCANTRACE_CLICKHOUSE__URL": f"clickhouse://127.0.0.1:{free_port()}/x",
        "SCANTRACE_API__PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "scantrace.cli", "api", "--log-format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3
    *logs, error = done.stderr.splitlines()
    assert error.startswith("error: ClickHouse at 127.0.0.1:")
    first = json.loads(logs[0])  # "no API tokens configured"
    assert first["component"] == "api" and first["level"] == "warning"
