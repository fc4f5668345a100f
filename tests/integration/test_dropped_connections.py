"""A connection the server dropped (a restart, a failover, ``pg_terminate_backend``) is
found out on its first use. A read then runs once more on a new connection; a statement
that fails on a live connection, and a write, are never run twice (models/infra/db.py)."""

from __future__ import annotations

import peewee
import pytest
from psycopg2.sql import SQL, Identifier

from models.infra.db import db, read_on, unit_of_work
from tests.conftest import TEST_DB


def terminate_app_connections(sql) -> None:
    sql.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )


def test_reads_on_dropped_connections_answer_first_time(client, sql):
    sql.execute("INSERT INTO users (id) VALUES (7)")
    assert client.post("/segments", json={"segment": "S"}).status_code == 201
    assert client.patch("/users", json={"id": 7, "segments": ["S"]}).status_code == 200
    # Every kind of read holds or pools a connection now: the loop's kept one, the pool's.
    reads = [
        ("GET", "/users/7", None),
        ("GET", "/users/7/memberships", None),
        ("POST", "/users/lookup", {"ids": [7]}),
        ("GET", "/segments", None),
    ]
    for method, path, body in reads:
        assert client.request(method, path, json=body).status_code == 200
    terminate_app_connections(sql)
    for method, path, body in reads:
        r = client.request(method, path, json=body)
        assert r.status_code == 200, (path, r.text)
    assert client.get("/users/7").json() == {"id": 7, "segments": ["S"]}


def counting(statement: str):
    calls = []

    def read():
        calls.append(1)
        return db.execute_sql(statement).fetchone()

    return read, calls


def test_a_read_whose_connection_dies_runs_once_more(clean_db):
    # The first run's connection is killed under it; the second gets a new one.
    killed, calls = counting("SELECT pg_terminate_backend(pg_backend_pid())")
    with pytest.raises(peewee.OperationalError):
        read_on(db, killed)  # it kills every connection it gets: twice, then it gives up
    assert len(calls) == 2


def test_a_read_that_fails_on_a_live_connection_is_not_run_again(clean_db):
    # A statement timeout is an OperationalError too, but the connection lives: re-running
    # it would double a stall.
    slow, calls = counting("SET statement_timeout = 50; SELECT pg_sleep(2)")
    with pytest.raises(peewee.OperationalError, match="statement timeout"):
        read_on(db, slow)
    assert len(calls) == 1
    db.close_idle()  # its connection keeps the 50 ms timeout: not for other tests


def test_a_read_nested_in_a_held_connection_is_not_run_again(clean_db):
    killed, calls = counting("SELECT pg_terminate_backend(pg_backend_pid())")
    with db.connection_context(), pytest.raises(peewee.OperationalError):
        read_on(db, killed)
    assert len(calls) == 1


def test_a_write_on_a_dropped_connection_is_not_run_again(clean_db):
    calls = []

    @unit_of_work
    def write():
        calls.append(1)
        db.execute_sql("INSERT INTO users (id) VALUES (8)")
        db.execute_sql("SELECT pg_terminate_backend(pg_backend_pid())")

    with pytest.raises((peewee.OperationalError, peewee.InterfaceError)):
        write()
    assert len(calls) == 1


def test_a_write_on_a_dropped_connection_answers_503_with_retry_after(client, sql):
    assert client.post("/users", json={"id": 9}).status_code == 201
    terminate_app_connections(sql)
    r = client.post("/users", json={"id": 10})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
    assert r.json()["error"] == "database unavailable, retry later"
    assert client.post("/users", json={"id": 10}).status_code == 201  # the retry


def test_a_write_a_standby_refuses_answers_503_not_500(client, sql):
    # As a pool connected to a server that has since become a standby sees it:
    # read_only_sql_transaction (25006), which is no bug of the request's.
    database = Identifier(TEST_DB)
    sql.execute(SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(database))
    try:
        terminate_app_connections(sql)  # pooled connections pick the setting up anew
        db.close_idle()
        r = client.post("/users", json={"id": 11})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
    finally:
        sql.execute(SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(database))
        terminate_app_connections(sql)
