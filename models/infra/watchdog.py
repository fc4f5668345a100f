"""Giving up on a database server that went silent.

A frozen server (a stopped process, a hung machine whose kernel still answers TCP)
acknowledges every byte and never replies: TCP keepalives and ``tcp_user_timeout`` see a
healthy peer, the server's own ``statement_timeout`` never fires, and libpq waits
forever. Every connection the service opens is a ``Connection``, whose calls (execute,
COPY, commit) register while they wait. A watchdog thread asks the server of a call
that has waited ``SILENT_AFTER`` seconds whether it is alive: a fresh TCP connection and
an SSLRequest, which the postmaster answers with one byte before any authentication.
No byte within ``PROBE_TIMEOUT``: the server is gone, and the waiting calls' sockets are
shut down, so each fails at once as a lost connection (503, or a read re-run elsewhere).
A long statement on a live server is never cut: its server answers the probe.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from typing import Any

import psycopg2
import psycopg2.extensions

log = logging.getLogger("models.infra.watchdog")

SILENT_AFTER = 3.0  # seconds a call waits before its server is asked whether it lives
PROBE_TIMEOUT = 2.0
CHECK_EVERY = 0.5
# PostgreSQL's SSLRequest: length 8, code 80877103. The postmaster answers 'S' or 'N'.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)

# connection -> when its current call started. Plain dict operations (atomic under the
# GIL) on the hot path; the watchdog thread iterates over a copy.
_waiting: dict[Connection, float] = {}


def _watched(conn: Connection, call: Any, *args: Any) -> Any:
    """``call(*args)``, registered as a wait on ``conn`` for the watchdog."""
    _waiting[conn] = time.monotonic()
    try:
        return call(*args)
    finally:
        _waiting.pop(conn, None)


class Cursor(psycopg2.extensions.cursor):
    def execute(self, query: Any, vars: Any = None) -> None:
        return _watched(self.connection, super().execute, query, vars)

    def copy_expert(self, sql: Any, file: Any, size: int = 8192) -> None:
        return _watched(self.connection, super().copy_expert, sql, file, size)


class Connection(psycopg2.extensions.connection):
    """A psycopg2 connection whose waits the watchdog bounds; ``endpoint`` is the
    server it reached (of a multi-host DSN, the one that took it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.endpoint = (self.info.host, self.info.port)
        self.cursor_factory = Cursor
        _watchdog.ensure_running()

    def commit(self) -> None:
        _watched(self, super().commit)

    def rollback(self) -> None:
        _watched(self, super().rollback)


def connect(params: dict[str, Any]) -> Connection:
    """``psycopg2.connect(**params)``, watched."""
    return psycopg2.connect(**params, connection_factory=Connection)


def server_answers(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the PostgreSQL server at ``host``:``port`` (a socket directory when
    ``host`` starts with ``/``) answers an SSLRequest within ``timeout``."""
    try:
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout)
            sock.connect(f"{host}/.s.PGSQL.{port}")
        else:
            sock = socket.create_connection((host, port), timeout)
        with sock:
            sock.settimeout(timeout)
            sock.sendall(SSL_REQUEST)
            return sock.recv(1) != b""
    except OSError:
        return False


def _cut(conn: Connection) -> None:
    """Shut the connection's socket down under libpq, whose wait then ends in EOF."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg2.InterfaceError):
        pass  # finished and closed meanwhile


class Watchdog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0  # the process the thread runs in: a fork leaves it behind

    def ensure_running(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                threading.Thread(target=self._run, name="db-watchdog", daemon=True).start()
                self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            time.sleep(CHECK_EVERY)
            try:
                self.check(time.monotonic())
            except Exception:  # keep watching
                log.exception("database watchdog check failed")

    def check(self, now: float) -> int:
        """Probe the servers of calls waiting past SILENT_AFTER; cut the calls of each
        that does not answer. How many were cut."""
        silent: dict[tuple[str, int], list[tuple[Connection, float]]] = {}
        for conn, since in list(_waiting.items()):
            if now - since > SILENT_AFTER:
                silent.setdefault(conn.endpoint, []).append((conn, since))
        cut = 0
        for (host, port), conns in silent.items():
            if server_answers(host, int(port)):
                continue
            log.warning(
                "database server %s:%s silent: giving up %d waiting call(s)", host, port, len(conns)
            )
            for conn, since in conns:
                if _waiting.get(conn) == since:  # still that call, not a later one
                    _cut(conn)
                    cut += 1
        return cut


_watchdog = Watchdog()
