"""A ClickHouse 26.9 server from the chdb-core wheel: `python -m scantrace.services.chserver`.

clickhouse-local (inside chdb) opens the native and HTTP listeners on `SYSTEM START
LISTEN` and keeps them while a query runs; the never-ending `sleepEachRow` query is
that lifetime. One server per process; stop it with SIGTERM.

A `users.xml` in the home folder (`clickhouse_local.render_users_xml`) defines the users
and their grants; clickhouse-local reads it once, at start (it has no writable access
storage: `CREATE USER` is refused). Without it there is only `default`, with every right.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from xml.sax.saxutils import escape

_KEEPALIVE = (
    "SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; "
    "SELECT sleepEachRow(1) FROM numbers(1000000000) "
    "SETTINGS function_sleep_max_microseconds_per_block=0, max_block_size=1 FORMAT Null"
)


def main(home: str, tcp_port: int, http_port: int) -> None:
    root = Path(home)
    root.mkdir(parents=True, exist_ok=True)
    users = root / "users.xml"
    directories = (
        f"<user_directories><users_xml><path>{escape(str(users.resolve()))}</path></users_xml>"
        "</user_directories>"
        if users.is_file()
        else ""
    )
    (root / "config.xml").write_text(
        "<clickhouse><listen_host>127.0.0.1</listen_host>"
        f"<tcp_port>{tcp_port}</tcp_port><http_port>{http_port}</http_port>"
        f"{directories}</clickhouse>"
    )
    os.chdir(root)  # clickhouse-local reads ./config.xml
    from chdb import _chdb  # imported late: the extension loads the whole engine

    # TabSeparated: another format becomes the HTTP default and breaks HTTP clients.
    _chdb.query(_KEEPALIVE, "TabSeparated", path=str(root / "data"))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
