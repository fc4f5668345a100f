"""The brokers the worker tests run on: Redis and RabbitMQ, each reachable, cut off and
back again, and a tripwire that proves a RabbitMQ stack never touches Redis."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
from urllib.parse import urlsplit

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from tests.conftest import TEST_DB
from workers.broker import declare_actors, delete_queues, rabbitmq_url

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672/%2F"


@functools.cache
def rabbitmq_missing() -> str | None:
    """Why the RabbitMQ variants cannot run here, or None when RabbitMQ answers."""
    try:
        pika.BlockingConnection(pika.URLParameters(rabbitmq_url(RABBITMQ_URL))).close()
    except pika.exceptions.AMQPError as exc:
        where = urlsplit(RABBITMQ_URL).netloc.rpartition("@")[2]
        return f"RabbitMQ at {where} (TEST_RABBITMQ_URL) does not answer: {type(exc).__name__}"
    return None


def delete_test_queues() -> None:
    """Drop this run's queues (QUEUE_NAMESPACE is the test database's name), which would
    otherwise stay on the server for good."""
    broker = RabbitmqBroker(url=rabbitmq_url(RABBITMQ_URL))
    declare_actors(broker, f"{TEST_DB}.")
    delete_queues(broker)
    broker.close()


class Tripwire:
    """A port that listens and never answers: connections to it are counted, not served.
    REDIS_URL points here to prove that a process did not try Redis."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.setblocking(False)
        self.url = f"redis://127.0.0.1:{self._sock.getsockname()[1]}/0"

    def connections(self) -> int:
        """Connections made so far (the kernel completes them in the backlog)."""
        count = 0
        while True:
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self._sock.close()


class TcpProxy:
    """A TCP relay on a port of its own to ``upstream``. ``stop`` closes the port and
    cuts every relayed connection, as a broker going down would; ``start`` opens the
    same port again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
