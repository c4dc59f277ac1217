"""No person id in a log line at INFO or above.

Static: no logging call at INFO or above in the packages passes a value whose name says
it is a person's (person, subject, case, contact, visitor), nor the message of an
exception a server or a parser raised about data (only `ingest.errors.loggable(exc)`:
type and code). Dynamic: a failed tracer query whose error quotes a person id logs no person id (a
refused row: `tests/unit/sinks/test_sink_loop.py`)."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import pytest

from ingest.errors import loggable

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "processors", "sinks", "tracing", "scantrace")
LEVELS = {"info", "warning", "error", "exception", "critical"}
PERSONAL = re.compile(r"person|subject|case|contact|visitor|actor", re.I)
# The exception texts that may quote data: a call's message argument built from one
# of these is refused at INFO or above (use `loggable`).
RAW_TEXT = {"error_text", "describe", "str", "repr"}
PERSON = "P-7f3a-private"


def _logging_calls() -> list[tuple[str, int, ast.Call]]:
    calls = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("log", "logger", "logging")
                ):
                    calls.append((path.relative_to(ROOT).as_posix(), node.lineno, node))
    return calls


def _names(node: ast.AST) -> set[str]:
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.add(sub.attr)
    return out


def test_no_logging_call_passes_a_person_id_or_a_raw_error_text() -> None:
    calls = _logging_calls()
    assert len(calls) > 30  # the walk found the packages' logging
    wrong = []
    for where, line, call in calls:
        for arg in call.args[1:]:
            names = _names(arg)
            personal = sorted(n for n in names if PERSONAL.search(n))
            if personal:
                wrong.append(f"{where}:{line}: {personal}")
            raw = names & RAW_TEXT
            if raw:
                wrong.append(f"{where}:{line}: raw error text via {sorted(raw)}")
    assert not wrong, "\n".join(wrong)


def test_loggable_keeps_the_type_and_code_not_the_message() -> None:
    class ServerException(Exception):
        code = 27

    text = loggable(ServerException(f"Cannot parse input: before: '{PERSON}'"))
    assert text == "ServerException (code 27)"
    assert loggable(ValueError(PERSON)) == "ValueError"


def test_a_failed_tracer_query_is_logged_without_the_person(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tracing.api.app import _failure

    with caplog.at_level(logging.INFO):
        error, reason = _failure(RuntimeError(f"Syntax error at ('{PERSON}')"))
    assert error.status == 503
    assert PERSON in reason  # the audit row keeps it
    assert caplog.records and all(PERSON not in r.getMessage() for r in caplog.records)
