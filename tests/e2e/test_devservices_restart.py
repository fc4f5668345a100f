"""`make run` (scripts/devservices.py under honcho): a process that dies is started again
with a line saying so, the others keep running, and a stop still stops everything."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import httpx
import psutil
import pytest

from scripts.procs import BIN, ROOT, free_port
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e


def is_command(proc: psutil.Process, *args: str) -> bool:
    """A process whose arguments include ``args`` in a row (a shell or respawn loop
    holds them in one string, so it does not count)."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return False
    n = len(args)
    return any(cmdline[i : i + n] == list(args) for i in range(len(cmdline)))


def find(root: psutil.Process, *args: str) -> list[psutil.Process]:
    return [p for p in root.children(recursive=True) if is_command(p, *args)]


def health(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def make_run(tmp_path, clean_db):
    with run_with(tmp_path, {}) as run:
        yield run


@contextlib.contextmanager
def run_with(tmp_path, changes: dict[str, str | None]):
    """`make run` with the environment ``changes`` (None removes a variable): yields the
    process, its tree, its URL and a reader of its output; kills what is left after."""
    port = free_port()
    env = {
        **os.environ,
        "SERVER_HOST": f"127.0.0.1:{port}",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name, value in changes.items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    out = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.devservices", "run"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    tree = psutil.Process(proc.pid)
    try:
        yield proc, tree, url, lambda: (tmp_path / "run.log").read_text(errors="replace")
    finally:
        if proc.poll() is None:
            # Listed first: once their parent is gone they are no longer its children, and
            # honcho and the embedded servers run in sessions of their own.
            everyone = tree.children(recursive=True)
            os.killpg(proc.pid, signal.SIGKILL)
            for child in everyone:
                with contextlib.suppress(psutil.Error):
                    child.kill()
        proc.wait(10)
        out.close()


def test_a_dead_process_is_restarted_and_the_rest_keeps_running(make_run):
    proc, tree, url, output = make_run
    wait_for(lambda: health(url), 60, "make run's web to answer", interval=0.2)
    wait_for(lambda: find(tree, "-m", "workers.scheduler"), 30, "the scheduler")

    # The case: a killed worker. web keeps serving, the worker comes back.
    workers = wait_for(lambda: find(tree, "workers.boot:boot_worker"), 30, "the worker")
    old = {p.pid for p in workers}
    for p in workers:
        p.kill()
    wait_for(lambda: "respawn: worker exited with code" in output(), 20, "the restart line")
    assert health(url)
    new = lambda: {p.pid for p in find(tree, "workers.boot:boot_worker")} - old  # noqa: E731
    wait_for(new, 30, "a new worker")

    # A killed web process comes back on the same port.
    [web] = find(tree, "-m", "web")
    web.kill()
    wait_for(lambda: "respawn: web exited with code" in output(), 20, "web's line")
    wait_for(lambda: health(url), 30, "web to answer again", interval=0.2)
    assert find(tree, "-m", "workers.scheduler"), output()

    # Stopping make run still stops everything, and cleanly.
    everyone = tree.children(recursive=True)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(40) == 0, output()
    _, alive = psutil.wait_procs(everyone, timeout=10)
    assert not alive, output()
    assert "restarting" not in output().split("SIGTERM")[-1]  # no restart during the stop


def test_make_run_on_rabbitmq_starts_no_redis(tmp_path, clean_db, rabbitmq, sql):
    # REDIS_URL unset: on Redis, make run would start an embedded one.
    changes = {"BROKER_URL": rabbitmq, "REDIS_URL": None}
    with run_with(tmp_path, changes) as (proc, tree, url, output):
        wait_for(lambda: health(url), 60, "make run's web to answer", interval=0.2)
        assert "broker=rabbitmq" in output() and "redis=" not in output(), output()
        sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 500) g")
        created = httpx.post(f"{url}/segments", json={"segment": "R", "auto_percent": 40})
        job_id = created.json()["job_id"]

        def done() -> bool:
            return httpx.get(f"{url}/jobs/{job_id}").json()["state"] == "done"

        wait_for(done, 60, "the job to run on the worker", interval=0.2)
        ready = httpx.get(f"{url}/ready").json()
        assert ready == {
            "status": "ok",
            "checks": {"database": "ok", "broker": "ok"},
            "broker": "rabbitmq",
            "replica": {
                "configured": False,
                "serving": "primary",
                "reason": "no replica configured",
                "lag_ms": None,
            },
        }
        names = {p.name() for p in tree.children(recursive=True)}
        assert not any("redis" in name for name in names), names
        proc.send_signal(signal.SIGINT)
        assert proc.wait(40) == 0, output()
