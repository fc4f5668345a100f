"""``GET /users/{id}`` runs in the event loop on a kept connection (models/reads.py). A
read stuck in the database would stall every request of the process, so that connection
carries a statement timeout: a stuck read becomes a 503 after about 2 s, and the next
request is served on the same path."""

from __future__ import annotations

import os
import threading
import time

import psycopg2

from models.reads import LOOP_STATEMENT_TIMEOUT_MS


def test_a_stuck_read_in_the_loop_is_cut_off_by_its_statement_timeout(client, sql):
    sql.execute("INSERT INTO users (id) VALUES (7)")
    # Warm the loop's connection first: it connects and PREPAREs on its first read, and
    # a PREPARE behind the lock below would wait with no timeout set yet.
    assert client.get("/users/7").json() == {"id": 7, "segments": []}

    holder = psycopg2.connect(os.environ["DATABASE_DSN"])
    # Without the timeout the read would wait for the lock: let it go after 8 s, so
    # such a failure is a wrong answer, not a hung test.
    release = threading.Timer(8, holder.rollback)
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        release.start()
        started = time.monotonic()
        stuck = client.get("/users/7")
        waited = time.monotonic() - started
    finally:
        release.cancel()
        release.join()
        holder.rollback()
        holder.close()

    assert stuck.status_code == 503, stuck.text
    assert stuck.json()["error"] == "database unavailable, retry later"
    # Cut off by the timeout, not by the lock going away (it was held throughout).
    assert LOOP_STATEMENT_TIMEOUT_MS / 1000 - 0.2 <= waited < LOOP_STATEMENT_TIMEOUT_MS / 1000 + 3
    # The same kept connection serves the next read.
    assert client.get("/users/7").json() == {"id": 7, "segments": []}
