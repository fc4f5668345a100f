"""A write whose COMMIT reached the server but whose answer never came back (the
connection died on the way, as in a failover): the client gets a 503 with Retry-After,
the write did happen, and retrying it is safe: POST /users answers 409, an add 200 with
one history event (docs/failover.md, "Retrying")."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import psycopg2.extensions
import pytest

from tests.brokers import TcpProxy

pytestmark = pytest.mark.e2e

COMMIT = b"COMMIT\x00"  # the simple-protocol query peewee sends to end a transaction


class CommitCutter(TcpProxy):
    """A relay to PostgreSQL that, once ``arm``ed, passes the next COMMIT on and cuts
    that connection before the server's answer reaches the client."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(upstream)
        self.armed = threading.Event()
        self.cut = threading.Event()
        self._muted: set[socket.socket] = set()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        upstream = dst.getpeername()[1] == self.upstream[1]
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if src in self._muted:
                    continue  # the server's answer to the cut COMMIT: never delivered
                if upstream and COMMIT in data and self.armed.is_set():
                    self.armed.clear()
                    self._muted.add(dst)
                    dst.sendall(data)
                    time.sleep(0.5)  # the server commits
                    break
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if upstream and dst in self._muted:
            self.cut.set()


@pytest.fixture
def cutter():
    params = psycopg2.extensions.parse_dsn(os.environ["DATABASE_DSN"])
    proxy = CommitCutter((params.get("host", "127.0.0.1"), int(params.get("port", 5432))))
    proxy.start()
    yield proxy, psycopg2.extensions.make_dsn(**{**params, "port": proxy.port})
    proxy.stop()


def _lost_commit(proxy: CommitCutter, call):
    proxy.cut.clear()
    proxy.armed.set()
    answer = call()
    assert proxy.cut.is_set(), "no COMMIT was cut"
    return answer


def test_a_write_whose_commit_answer_is_lost_is_a_503_and_safe_to_retry(make_stack, cutter, sql):
    proxy, dsn = cutter
    stack = make_stack("web", DATABASE_DSN=dsn, WEB_WORKERS="1")
    http = stack.http
    assert http.post("/segments", json={"segment": "LC"}).status_code == 201

    lost = _lost_commit(proxy, lambda: http.post("/users", json={"id": 4242}))
    assert lost.status_code == 503 and lost.headers["Retry-After"] == "1", lost.text
    sql.execute("SELECT count(*) FROM users WHERE id = 4242")
    assert sql.fetchone()[0] == 1  # the COMMIT landed
    retried = http.post("/users", json={"id": 4242})
    assert retried.status_code == 409  # the retry says so

    body = {"id": 4242, "segments": ["LC"]}
    lost = _lost_commit(proxy, lambda: http.patch("/users", json=body))
    assert lost.status_code == 503 and lost.headers["Retry-After"] == "1", lost.text
    retried = http.patch("/users", json=body)
    assert retried.status_code == 200 and retried.json()["segments"] == ["LC"]
    sql.execute("SELECT operation FROM history WHERE user_id = 4242")
    assert sql.fetchall() == [("add",)]  # one add: the retry changed nothing
