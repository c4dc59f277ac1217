"""`clickhouses://` against a real TLS endpoint. clickhouse-local cannot open a TLS
listener, so Debian's stunnel terminates TLS in front of the local server: a CA and a
server certificate (for `localhost`) are made here with the openssl command."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clickhouse_driver import errors

from ingest.contract import now_ms
from scantrace.services.manager import Endpoints
from scantrace.services.process import free_port, port_open, spawn, stop
from sinks.batch import SCAN_COLUMNS
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.writer import ClickHouseWriter, WriteError

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(
    (STUNNEL is None or OPENSSL is None) and not os.environ.get("CI"),
    reason="needs stunnel4 and openssl (apt-get install stunnel4 openssl)",
)


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None, "CI must install openssl"
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip


def _server_cert(folder: Path, ca: str) -> None:
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
        cwd=folder,
    )  # fmt: skip


@dataclass(frozen=True)
class Terminator:
    port: int
    ca: Path  # signed the server's certificate
    other_ca: Path  # a CA that did not


@pytest.fixture(scope="module")
def tls(services: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminator]:
    folder = tmp_path_factory.mktemp("tls")
    _ca(folder, "ca")
    _ca(folder, "other")
    _server_cert(folder, "ca")
    native = int(services.clickhouse_native.rsplit(":", 1)[1])
    port = free_port()
    conf = folder / "stunnel.conf"
    conf.write_text(
        "foreground = yes\npid =\n\n[clickhouse]\n"
        f"accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{native}\n"
        f"cert = {folder / 'server.pem'}\nkey = {folder / 'server.key'}\n"
    )
    assert STUNNEL is not None, "CI must install stunnel4"
    pid = spawn([STUNNEL, str(conf)], folder / "stunnel.log")
    try:
        deadline = time.monotonic() + 30
        while not port_open(port):
            assert time.monotonic() < deadline, (folder / "stunnel.log").read_text()
            time.sleep(0.1)
        yield Terminator(port, folder / "ca.pem", folder / "other.pem")
    finally:
        stop(pid, str(conf))


def _over_tls(
    tls: Terminator, clickhouse_settings: ClickHouseSettings, **kw: object
) -> ClickHouseSettings:
    host = kw.pop("host", "localhost")
    url = f"clickhouses://{host}:{tls.port}/{clickhouse_settings.database}"
    return ClickHouseSettings(url=url, **kw)  # type: ignore[arg-type]


def test_the_right_ca_connects_queries_and_the_sink_writes(
    tls: Terminator, clickhouse_settings: ClickHouseSettings
) -> None:
    settings = _over_tls(tls, clickhouse_settings, ca_file=str(tls.ca))
    client = connect(settings)
    try:
        assert client.execute("SELECT 42") == [(42,)]
        assert client.connection.secure_socket
        assert client.connection.socket.version().startswith("TLS")  # type: ignore[attr-defined]
    finally:
        client.disconnect()
    t = now_ms()
    row = {"event_id": "tls-1", "person_id": "p", "premises_id": "NT-1", "scanned_at": t,
           "kind": "checkin", "gateway_id": "g", "received_at": t, "processed_at": t,
           "premises_name": "n", "category": "market", "district": "d", "ward": "w",
           "agency": "a", "dwell_minutes": 30}  # fmt: skip
    writer = ClickHouseWriter(settings)
    try:
        writer.insert("scans", SCAN_COLUMNS, [[row[c]] for c in SCAN_COLUMNS], "tls-token")
    finally:
        writer.close()
    plain = connect(clickhouse_settings)  # the same server, without the terminator
    try:
        assert plain.execute("SELECT event_id FROM scans") == [("tls-1",)]
    finally:
        plain.disconnect()


def test_a_certificate_from_another_ca_is_refused_clearly(
    tls: Terminator, clickhouse_settings: ClickHouseSettings
) -> None:
    settings = _over_tls(tls, clickhouse_settings, ca_file=str(tls.other_ca))
    client = connect(settings)
    with pytest.raises(errors.NetworkError, match="CERTIFICATE_VERIFY_FAILED"):
        client.execute("SELECT 1")
    client.disconnect()
    # The sink stops on it (fatal) instead of retrying a configuration error forever.
    writer = ClickHouseWriter(settings)
    with pytest.raises(WriteError) as info:
        writer.ping()
    writer.close()
    assert info.value.kind == "fatal"
    assert "certificate verify failed" in str(info.value)


def test_a_certificate_for_another_host_name_is_refused(
    tls: Terminator, clickhouse_settings: ClickHouseSettings
) -> None:
    # The right CA, but the certificate names `localhost`, not 127.0.0.1.
    settings = _over_tls(tls, clickhouse_settings, ca_file=str(tls.ca), host="127.0.0.1")
    client = connect(settings)
    with pytest.raises(errors.NetworkError, match="CERTIFICATE_VERIFY_FAILED"):
        client.execute("SELECT 1")
    client.disconnect()


def test_plain_native_protocol_to_the_tls_port_does_not_answer(
    tls: Terminator, clickhouse_settings: ClickHouseSettings
) -> None:
    url = f"clickhouse://localhost:{tls.port}/{clickhouse_settings.database}"
    client = connect(ClickHouseSettings(url=url), connect_timeout=3, send_receive_timeout=3)
    with pytest.raises((errors.NetworkError, errors.SocketTimeoutError, EOFError, OSError)):
        client.execute("SELECT 1")
    client.disconnect()
