"""The webhook feed's horizon and dispatch, on the real database: what holds the feed
back (a transaction of this database that may write history) and what does not (other
databases, a transaction that promised to write none), and which webhooks are due."""

from __future__ import annotations

import os

import psycopg2
import pytest

from models import webhooks
from models.events import promise_no_history
from tests.conftest import SERVER_DSN


def _hook(client, **body) -> int:
    r = client.post("/webhooks", json={"url": "https://hooks.example.com/", **body})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _change(client, uid: int) -> None:
    client.post("/segments", json={"segment": "A"})
    client.post("/users", json={"id": uid})
    assert client.patch("/users", json={"id": uid, "segments": ["A"]}).status_code == 200


def _delivered(hook: int) -> list[int]:
    delivery = webhooks.claim_delivery(hook)
    if delivery is None:
        return []
    webhooks.acknowledge(delivery)
    return [e["user_id"] for e in delivery.events]


@pytest.fixture
def open_transaction():
    """``open_transaction(dsn)``: a transaction holding an xid, open until the test ends."""
    conns = []

    def begin(dsn: str):
        conn = psycopg2.connect(dsn)
        conns.append(conn)
        return conn.cursor()

    yield begin
    for conn in conns:
        conn.close()


def test_a_transaction_of_another_database_does_not_hold_the_feed_back(
    client, open_transaction, pytestconfig
):
    hook = _hook(client)
    elsewhere = open_transaction(pytestconfig.stash[SERVER_DSN])
    elsewhere.execute("SELECT pg_current_xact_id()")
    _change(client, 1)
    assert _delivered(hook) == [1]


def test_a_transaction_that_promised_no_history_does_not_hold_the_feed_back(
    client, open_transaction
):
    hook = _hook(client)
    staging = open_transaction(os.environ["DATABASE_DSN"])
    promise_no_history(staging)
    staging.execute("SELECT pg_current_xact_id()")
    _change(client, 1)
    assert _delivered(hook) == [1]


def test_a_transaction_here_that_may_write_history_holds_the_feed_back(client, open_transaction):
    hook = _hook(client)
    _change(client, 1)
    writer = open_transaction(os.environ["DATABASE_DSN"])
    writer.execute("SELECT pg_current_xact_id()")
    writer.execute(
        "INSERT INTO history (user_id, segment_id, operation, reason, at) "
        "SELECT 1, id, 'remove', 'manual', now() FROM segments WHERE name = 'A'"
    )
    client.post("/users", json={"id": 2})
    client.patch("/users", json={"id": 2, "segments": ["A"]})
    assert _delivered(hook) == [1]  # the later event waits for the open writer
    writer.connection.commit()
    assert _delivered(hook) == [1, 2]  # the open one's event first: its xid is older


def test_history_from_a_transaction_that_promised_none_is_refused(client, open_transaction):
    _change(client, 1)
    staging = open_transaction(os.environ["DATABASE_DSN"])
    promise_no_history(staging)
    with pytest.raises(psycopg2.errors.RaiseException, match="promised not to write history"):
        staging.execute(
            "INSERT INTO history (user_id, segment_id, operation, reason, at) "
            "SELECT 1, id, 'remove', 'manual', now() FROM segments WHERE name = 'A'"
        )
    late = open_transaction(os.environ["DATABASE_DSN"])
    late.execute("SELECT pg_current_xact_id()")
    with pytest.raises(RuntimeError, match="after the transaction wrote"):
        promise_no_history(late)


def test_only_webhooks_with_events_waiting_are_due(client):
    hooks = [_hook(client) for _ in range(3)]
    assert webhooks.due_webhooks() == []  # idle: no delivery sent at all
    _change(client, 1)
    assert webhooks.due_webhooks() == hooks
    assert _delivered(hooks[0]) == [1]
    assert webhooks.due_webhooks() == hooks[1:]
    filtered = _hook(client, segments=["B"])
    client.post("/users", json={"id": 2})
    client.patch("/users", json={"id": 2, "segments": ["A"]})
    # Events of other segments still move a filtered webhook's cursor: it is due once.
    assert filtered in webhooks.due_webhooks()
    assert _delivered(filtered) == []
    assert filtered not in webhooks.due_webhooks()
