"""One order of segment names everywhere, on a database whose default collation is not
byte order (docker's postgres:16 defaults to en_US.utf8; here ICU en-US)."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from scripts.procs import migrated_database
from tests.e2e.conftest import Stack

NAMES = ["-x", ".dot", "A2", "B", "_z", "a1"]


@pytest.fixture
def icu_dsn(server_sql):
    name = f"segments_icu_{os.getpid()}"
    server_sql.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    try:
        server_sql.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 '
            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    except psycopg2.Error as exc:  # a server built without ICU
        pytest.skip(f"no ICU collation here: {exc}")
    params = psycopg2.extensions.parse_dsn(os.environ["DATABASE_DSN"])
    dsn = psycopg2.extensions.make_dsn(**{**params, "dbname": name})
    migrated_database(dsn)
    yield dsn
    from models.infra.settings import load_settings

    # migrated_database pointed this process's pool at the ICU database: point it back.
    from tests.conftest import STUB_BROKER
    from workers.boot import bootstrap

    bootstrap(load_settings(), STUB_BROKER)
    server_sql.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_names_sort_in_byte_order_on_every_endpoint(icu_dsn, tmp_path: Path, server_sql):
    with psycopg2.connect(icu_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT array_agg(n ORDER BY n) FROM unnest(%s::text[]) n", (NAMES,))
        assert cur.fetchone()[0] != sorted(NAMES), "the database's own order is not bytes"
    stack = Stack(tmp_path, DATABASE_DSN=icu_dsn)
    try:
        stack.start("web")
        http = stack.http
        for name in reversed(NAMES):
            assert http.post("/segments", json={"segment": name}).status_code == 201
        assert http.post("/users", json={"id": 1}).status_code == 201
        added = http.patch("/users", json={"id": 1, "segments": NAMES[::-1]}).json()
        read = http.get("/users/1").json()
        listed = [s["segment"] for s in http.get("/segments").json()["segments"]]
        changed = http.post("/users/1/segments", json={"add": [], "remove": NAMES[::-1]}).json()
    finally:
        stack.close()
    assert added["segments"] == read["segments"] == listed == changed["removed"] == sorted(NAMES)
