"""Error classification at the writer seam, and the writer against a closed port."""

from __future__ import annotations

import struct

import pytest
from clickhouse_driver import errors

from scantrace.services.process import free_port
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.writer import ClickHouseWriter, WriteError, classify


def server_error(code: int) -> errors.ServerException:
    return errors.ServerException("boom", code)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (server_error(252), "transient"),  # TOO_MANY_PARTS
        (server_error(241), "transient"),  # MEMORY_LIMIT_EXCEEDED
        (server_error(319), "transient"),  # UNKNOWN_STATUS_OF_INSERT
        (server_error(999), "transient"),  # KEEPER_EXCEPTION
        (server_error(123456), "transient"),  # unknown: keep the data, retry, alert
        (server_error(53), "terminal"),  # TYPE_MISMATCH
        (server_error(321), "terminal"),  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        (server_error(60), "fatal"),  # UNKNOWN_TABLE
        (server_error(16), "fatal"),  # NO_SUCH_COLUMN_IN_TABLE
        (server_error(516), "fatal"),  # AUTHENTICATION_FAILED
        (errors.NetworkError("refused"), "transient"),
        (errors.SocketTimeoutError("slow"), "transient"),
        (ConnectionResetError(), "transient"),
        (EOFError(), "transient"),
        (struct.error("required argument is not an integer"), "terminal"),
        (TypeError("bad"), "terminal"),
        (AttributeError("'int' object has no attribute 'encode'"), "terminal"),
        (errors.LogicalError("Unknown element 'x' for type Enum8"), "terminal"),
        (RuntimeError("who knows"), "transient"),
    ],
)
def test_classify(exc: BaseException, kind: str) -> None:
    assert classify(exc) == kind
    assert classify(WriteError("fatal", exc)) == "fatal"


def test_clickhouse_unreachable_is_transient_and_never_terminal() -> None:
    writer = ClickHouseWriter(ClickHouseSettings(url=f"clickhouse://127.0.0.1:{free_port()}/x"))
    with pytest.raises(WriteError) as info:
        writer.insert("scans", ["event_id"], [["e1"]], "tok")
    assert info.value.kind == "transient"
    writer.refresh_rollup([])  # nothing to do: no query, no error
    with pytest.raises(WriteError) as info:
        writer.dirty_days()
    assert info.value.kind == "transient"
    writer.close()
