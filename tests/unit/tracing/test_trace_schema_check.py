"""The tracer refuses a database without the by-person table's migration."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest

from tracing.runner import Row
from tracing.trace import SCHEMA_VERSION, SchemaTooOld, check_schema


class Versions:
    """A runner whose `schema_migrations` holds `version`, or that has none (None)."""

    def __init__(self, version: int | None) -> None:
        self.version = version

    def query(self, sql: str, params: Mapping[str, object]) -> list[Row]:
        assert "schema_migrations" in sql
        if self.version is None:
            raise RuntimeError("Code: 60. Unknown table expression identifier 'schema_migrations'")
        return [(self.version,)]

    def iter_query(self, sql: str, params: Mapping[str, object]) -> Iterator[Row]:
        return iter(self.query(sql, params))

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        raise AssertionError("no inserts")

    def close(self) -> None:
        pass

    def sibling(self) -> None:
        return None


def test_a_migrated_database_passes() -> None:
    check_schema(Versions(SCHEMA_VERSION))
    check_schema(Versions(SCHEMA_VERSION + 1))


@pytest.mark.parametrize("version", [0, SCHEMA_VERSION - 1])
def test_an_older_schema_is_refused_with_the_remedy(version: int) -> None:
    with pytest.raises(SchemaTooOld, match=f"at schema version {version}.*scantrace db migrate"):
        check_schema(Versions(version))


def test_no_schema_at_all_is_refused() -> None:
    with pytest.raises(SchemaTooOld, match=r"no schema to read.*Unknown table"):
        check_schema(Versions(None))
