"""Real processes, started as the Procfile starts them, spoken to over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from scripts.procs import Proc, free_port, redis_server_binary


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


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path)
    r.start()
    yield r
    r.stop()
