"""The exit code, message and hint of each kind of failure (scantrace.exits), without
processes: the project's branches, the client libraries' errors, files, settings."""

from __future__ import annotations

import socket

import click
import pytest
from clickhouse_driver import errors as ch
from kafka.errors import KafkaConnectionError, KafkaTimeoutError
from pydantic import ValidationError

from ingest.errors import InvalidInput, NotFound, ServiceUnavailable, TerminalError
from ingest.timeparse import TimeSettings
from scantrace.exits import describe
from tracing.trace import SchemaTooOld


@pytest.mark.parametrize(
    ("exc", "code", "words"),
    [
        (InvalidInput("bad"), 2, "bad"),
        (ServiceUnavailable("down", hint="start it"), 3, "hint: start it"),
        (NotFound("no topic"), 4, "no topic"),
        (SchemaTooOld("run `scantrace db migrate`"), 1, "db migrate"),
        (TerminalError("x"), 1, "x"),
        (ch.NetworkError("Code: 210. Connection refused (h:9000)"), 3, "ClickHouse not reachable"),
        (ch.SocketTimeoutError("Code: 209. timed out"), 3, "SCANTRACE_CLICKHOUSE__URL"),
        (ch.NetworkError("CERTIFICATE_VERIFY_FAILED"), 2, "CA_FILE"),
        (ch.ServerException("Authentication failed", 516), 2, "user and password"),
        (ch.ServerException("Not enough privileges", 497), 1, "grant"),
        (ch.ServerException("Unknown table scans", 60), 1, "db migrate"),
        (KafkaConnectionError("refused"), 3, "Kafka not reachable"),
        (KafkaTimeoutError("Unable to bootstrap from [x]"), 3, "SCANTRACE_KAFKA__BOOTSTRAP"),
        (FileNotFoundError(2, "No such file", "x.csv"), 4, "no such file or folder: x.csv"),
        (PermissionError(13, "Permission denied", "/etc/x"), 1, "permission denied: /etc/x"),
        (ConnectionRefusedError(111, "refused"), 3, "cannot connect"),
        (socket.gaierror(-2, "Name or service not known"), 2, "unknown host"),
        (KeyError("boom"), 1, "--debug"),
        (click.UsageError("No such option: --x"), 2, "--help"),
    ],
)
def test_each_failure_has_its_code_and_one_line(exc: BaseException, code: int, words: str) -> None:
    failure = describe(exc)
    assert failure.code == code, failure
    line = failure.line()
    assert line.startswith("error: ") and "\n" not in line
    assert words in line, line


def test_a_bad_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCANTRACE_TIMEZONE", "Nowhere/Town")
    with pytest.raises(ValidationError) as info:
        TimeSettings()
    failure = describe(info.value)
    assert failure.code == 2
    assert failure.line().startswith("error: bad setting: SCANTRACE_TIMEZONE: unknown time zone")


def test_a_server_stack_trace_is_cut() -> None:
    line = describe(ch.ServerException("Code: 62. Syntax error.\n\nStack trace:\n0. x", 62)).line()
    assert "Stack trace" not in line and "\n" not in line
