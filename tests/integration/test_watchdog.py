"""models/infra/watchdog.py against a server that goes silent: a relay to the test PostgreSQL
that, frozen, keeps every socket open and its port listening but passes nothing on,
as a stopped postmaster does. A call waiting on it is cut within the watchdog's
silence plus its probe; a long statement on a live server is left alone."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import psycopg2
import psycopg2.extensions
import pytest

from models.infra import watchdog
from models.infra.settings import load_settings
from tests.brokers import TcpProxy

CUT_WITHIN = watchdog.SILENT_AFTER + watchdog.PROBE_TIMEOUT + 2 * watchdog.CHECK_EVERY + 1


class FreezableProxy(TcpProxy):
    """``freeze()``: nothing more is relayed and new connections are never served,
    though the kernel still completes their handshakes."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(upstream)
        self.frozen = threading.Event()

    def _accept(self, listener: socket.socket) -> None:
        listener.settimeout(0.1)
        while not self.frozen.is_set():  # frozen: the port listens, nobody accepts
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # stopped
            client.settimeout(None)
            server = socket.create_connection(self.upstream, timeout=5)
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)  # held, never delivered while frozen
                dst.sendall(data)


@pytest.fixture
def proxied():
    params = load_settings().connect_params()
    proxy = FreezableProxy((params.get("host", "127.0.0.1"), int(params.get("port", 5432))))
    proxy.start()
    yield proxy, {**params, "host": "127.0.0.1", "port": str(proxy.port)}
    proxy.frozen.set()
    proxy.stop()


def test_a_call_on_a_frozen_server_is_cut_and_fails_as_a_lost_connection(proxied):
    proxy, params = proxied
    conn = watchdog.connect(params)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    proxy.frozen.set()
    started = time.monotonic()
    with pytest.raises(psycopg2.OperationalError), conn.cursor() as cur:
        cur.execute("SELECT 1")
    assert time.monotonic() - started < CUT_WITHIN
    assert conn.closed  # what connection_lost() and the 503 mapping look at


def test_a_long_statement_on_a_live_server_is_not_cut(proxied):
    _, params = proxied
    conn = watchdog.connect(params)
    seconds = watchdog.SILENT_AFTER + watchdog.PROBE_TIMEOUT
    with conn.cursor() as cur:
        cur.execute("SELECT pg_sleep(%s), 1", (seconds,))
        assert cur.fetchone()[1] == 1
    conn.close()


def test_every_connection_gets_the_timeouts_unless_the_dsn_sets_them():
    params = load_settings({"DATABASE_DSN": "host=a,b port=1,2 connect_timeout=9"}).connect_params()
    assert params["connect_timeout"] == "9"
    assert params["tcp_user_timeout"] == "10000" and params["keepalives"] == "1"
    assert os.environ["DATABASE_DSN"]  # the fixtures above use the test database
