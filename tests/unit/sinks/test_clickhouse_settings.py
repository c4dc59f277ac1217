"""ClickHouse URLs: plain and TLS (`clickhouses://`), the CA file, and the one client
constructor every component goes through."""

from __future__ import annotations

from pathlib import Path

import pytest
from clickhouse_driver import errors
from pydantic import ValidationError

from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.writer import classify


def test_plain_url_parts_and_defaults() -> None:
    s = ClickHouseSettings(url="clickhouse://ch-1/prov")
    assert s.parts() == ("ch-1", 9000, "prov", "default", "")
    assert not s.secure
    assert ClickHouseSettings(url="clickhouse://h:9001").parts()[2] == "scantrace"


def test_tls_url_defaults_to_the_secure_port() -> None:
    s = ClickHouseSettings(url="clickhouses://u:p%40ss@ch.example:9440/prov")
    assert s.secure
    assert s.parts() == ("ch.example", 9440, "prov", "u", "p@ss")
    assert ClickHouseSettings(url="clickhouses://ch.example/prov").parts()[1] == 9440


@pytest.mark.parametrize("url", ["http://h:8123/db", "clickhousess://h/db", "h:9000/db"])
def test_other_schemes_are_refused_with_the_variable_named(url: str) -> None:
    with pytest.raises(ValueError, match=r"SCANTRACE_CLICKHOUSE__URL.*clickhouses://"):
        ClickHouseSettings(url=url).parts()


def test_the_password_setting_fills_a_url_without_one() -> None:
    s = ClickHouseSettings(url="clickhouse://tracer@h/db", password="s3cret")  # type: ignore[arg-type]
    assert s.parts()[3:] == ("tracer", "s3cret")
    assert "s3cret" not in repr(s)


def test_ca_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        ClickHouseSettings(url="clickhouses://h/db", ca_file=str(tmp_path / "missing.pem"))
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert ClickHouseSettings(url="clickhouses://h/db", ca_file=str(ca)).ca_file == str(ca)


def test_ca_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sinks.settings import SinkSettings

    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("SCANTRACE_CLICKHOUSE__URL", "clickhouses://ch:9440/prov")
    monkeypatch.setenv("SCANTRACE_CLICKHOUSE__CA_FILE", str(ca))
    s = SinkSettings().clickhouse
    assert s.secure and s.ca_file == str(ca)


def test_with_database_keeps_scheme_credentials_and_port() -> None:
    s = ClickHouseSettings(url="clickhouses://sink:p%2Fw@h:9441/prov", ca_file="")
    other = s.with_database("prov_2")
    assert other.url == "clickhouses://sink:p%2Fw@h:9441/prov_2"
    assert other.parts() == ("h", 9441, "prov_2", "sink", "p/w")


def test_connect_passes_tls_and_the_ca_to_the_driver(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    client = connect(ClickHouseSettings(url="clickhouses://u:p@h:9440/db", ca_file=str(ca)))
    c = client.connection
    assert (c.secure_socket, c.verify_cert, c.ssl_options["ca_certs"]) == (True, True, str(ca))
    assert (c.hosts[0], c.database, c.user, c.password) == (("h", 9440), "db", "u", "p")
    plain = connect(ClickHouseSettings(url="clickhouse://h/db")).connection
    assert not plain.secure_socket


def test_a_refused_certificate_is_fatal_a_refused_connection_transient() -> None:
    refused_cert = errors.NetworkError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed (127.0.0.1:9440)"
    )
    assert classify(refused_cert) == "fatal"
    assert classify(errors.NetworkError("Connection refused (127.0.0.1:9440)")) == "transient"
