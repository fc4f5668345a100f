"""Real processes, started as the Procfile starts them, spoken to over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from scripts.procs import Proc, free_port, redis_server_binary
from tests import services
from tests.brokers import (
    RABBITMQ_URL,
    TcpProxy,
    Tripwire,
    delete_test_queues,
    rabbitmq_missing,
)


def pytest_configure(config: pytest.Config) -> None:
    # Before this directory's test modules are imported: they may read the settings.
    services.start(config)


class Stack:
    """web, worker and scheduler processes on the test database and Redis."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SERVER_HOST": f"127.0.0.1:{self.port}",
            "SWEEP_INTERVAL": "0.5",
            "REQUEUE_INTERVAL": "1",
            "JOB_LEASE_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.tmp = tmp
        self.procs: dict[str, Proc] = {}
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def start(self, name: str, **env: str) -> Proc:
        proc = Proc(name, {**self.env, **env}, self.tmp)
        self.procs[name] = proc
        if name == "web":
            self.wait_http()
        return proc

    def wait_http(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.http.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"web did not start; log:\n{self.log('web')}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        proc = self.procs.pop(name, None)
        return None if proc is None else proc.stop(sig, timeout)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_job(self, job_id: int, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"/jobs/{job_id}").json()
            if job["state"] in ("done", "failed"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not finished: {job}\n{self.log('worker')}")

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.http.close()


@pytest.fixture
def stack(tmp_path: Path, clean_db: None) -> Iterator[Stack]:
    """A fresh web + worker + scheduler on an emptied database."""
    s = Stack(tmp_path)
    s.start("web")
    s.start("worker")
    s.start("scheduler")
    yield s
    s.close()


@pytest.fixture
def web_only(tmp_path: Path, clean_db: None) -> Iterator[Stack]:
    """Just the web process: for tests of the synchronous API over real HTTP."""
    s = Stack(tmp_path)
    s.start("web")
    yield s
    s.close()


@pytest.fixture
def make_stack(tmp_path: Path, clean_db: None) -> Iterator:
    stacks: list[Stack] = []

    def make(*names: str, **env: str) -> Stack:
        s = Stack(tmp_path, **env)
        stacks.append(s)
        for name in names:
            s.start(name)
        return s

    yield make
    for s in stacks:
        s.close()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class PrivateRedis:
    """A redis-server of our own on a fixed port, so it can be stopped and restarted."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = f"--port {self.port} --bind 127.0.0.1 --appendonly no --dir {self.tmp}"
        self.proc = subprocess.Popen(
            [redis_server_binary(), *args.split(), "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(up, 10, "redis-server to start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", self.port)) != 0, "redis still listening"


# ------------------------------------------------------------ the two brokers

BROKERS = ["redis", "rabbitmq"]


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[str]:
    """The test RabbitMQ's URL; the run's queues are deleted at the end."""
    reason = rabbitmq_missing()
    if reason:
        services.missing(reason)
    yield RABBITMQ_URL
    delete_test_queues()


@contextlib.contextmanager
def no_redis() -> Iterator[str]:
    """A REDIS_URL for a stack on RabbitMQ; the test fails if anything connected to it."""
    tripwire = Tripwire()
    try:
        yield tripwire.url
        assert tripwire.connections() == 0, "a process connected to REDIS_URL on RabbitMQ"
    finally:
        tripwire.close()


@contextlib.contextmanager
def on_broker(request: pytest.FixtureRequest, kind: str) -> Iterator[dict[str, str]]:
    """The environment that puts a stack on ``kind`` ("redis" or "rabbitmq"); on
    RabbitMQ, REDIS_URL leads to a tripwire."""
    if kind == "redis":
        yield {"BROKER_URL": os.environ["REDIS_URL"]}
        return
    url = request.getfixturevalue("rabbitmq")
    with no_redis() as redis_url:
        yield {"BROKER_URL": url, "REDIS_URL": redis_url}


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """``make_stack(..., **broker)``: the stack on Redis, then on RabbitMQ."""
    with on_broker(request, request.param) as env:
        yield env


@dataclass
class BrokerOutage:
    """A broker of the test's own that it can take down and bring back."""

    env: dict[str, str]
    stop: Callable[[], None]
    start: Callable[[], None]


@pytest.fixture(params=BROKERS)
def broker_outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerOutage]:
    """Redis: a redis-server of our own. RabbitMQ: the machine's, behind a TCP relay
    whose port closes (the server itself keeps running for everyone else)."""
    if request.param == "redis":
        private = PrivateRedis(tmp_path)
        private.start()
        yield BrokerOutage({"BROKER_URL": private.url}, private.stop, private.start)
        private.stop()
        return
    url = urlsplit(request.getfixturevalue("rabbitmq"))
    proxy = TcpProxy((url.hostname or "127.0.0.1", url.port or 5672))
    proxy.start()
    userinfo, at, _ = url.netloc.rpartition("@")
    relayed = url._replace(netloc=f"{userinfo}{at}127.0.0.1:{proxy.port}")
    try:
        with no_redis() as redis_url:
            env = {"BROKER_URL": relayed.geturl(), "REDIS_URL": redis_url}
            yield BrokerOutage(env, proxy.stop, proxy.start)
    finally:
        proxy.stop()
