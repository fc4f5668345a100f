"""A PostgreSQL primary and a streaming replica of it, for the read replica's tests and
benchmark: ``pg_basebackup -R -X stream`` of a primary of its own, each server on a
free port under one temporary folder.

A primary of its own rather than the machine's: a Debian cluster's pg_hba.conf has no
``replication`` line (``all`` does not match replication connections) and adding one
means editing a server others share; a base backup of it would also copy every database
on it, and every other run's writes would stream into this replica as lag.

PostgreSQL refuses to run as root: as root the servers run as the ``postgres`` OS user,
else as ``pgserver``'s (scripts/devservices.py's embedded PostgreSQL does the same).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from scripts.procs import free_port

NEEDED = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 4
fsync = off
"""


def postgres_bin() -> Path | None:
    """A directory with initdb, pg_ctl, pg_basebackup and postgres: the one on PATH,
    else the newest Debian/Ubuntu install, else pgserver's; ``None`` if there is none."""
    on_path = shutil.which("pg_basebackup")
    candidates = [Path(on_path).parent] if on_path else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    candidates.append(_pgserver_bin())
    return next((p for p in candidates if all(os.access(p / n, os.X_OK) for n in NEEDED)), None)


def _pgserver_bin() -> Path:
    with warnings.catch_warnings():  # platformdirs warns at import without XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def server_user() -> str | None:
    """The OS user the servers run as; ``None``: this process's own."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        from pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")
        return "pgserver"
    return "postgres"


class StreamingPair:
    """``start()`` makes and starts both servers; ``stop()`` stops them and removes the
    folder. ``stop_replica``/``start_replica`` (and ``stop_primary``/``start_primary``) take
    a server away and bring it back."""

    def __init__(self, bindir: Path) -> None:
        self.bin = bindir
        self.user = server_user()
        self.root = Path(tempfile.mkdtemp(prefix="segments-pgpair-"))
        if self.user is not None:  # the servers write their data and sockets here
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.primary_port, self.replica_port = free_port(), free_port()
        self.primary_dir, self.replica_dir = self.root / "primary", self.root / "replica"

    def dsn(self, side: str, dbname: str = "postgres") -> str:
        port = self.primary_port if side == "primary" else self.replica_port
        return psycopg2.extensions.make_dsn(
            host="127.0.0.1", port=port, user="postgres", dbname=dbname, sslmode="disable"
        )

    def start(self) -> None:
        self._run("initdb", "-D", self.primary_dir, "-U", "postgres", "--auth=trust", "--no-sync")
        with open(self.primary_dir / "postgresql.conf", "a") as conf:
            conf.write(PRIMARY_CONF)
        self._pg_ctl(self.primary_dir, self.primary_port, "start")
        source = ("-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres")
        self._run("pg_basebackup", "-D", self.replica_dir, "-R", "-X", "stream", *source,
                  "-c", "fast", "--no-sync")  # fmt: skip
        self.start_replica()

    def start_replica(self) -> None:
        self._pg_ctl(self.replica_dir, self.replica_port, "start")

    def stop_replica(self) -> None:
        self._pg_ctl(self.replica_dir, self.replica_port, "stop")

    def stop_primary(self) -> None:
        self._pg_ctl(self.primary_dir, self.primary_port, "stop")

    def start_primary(self) -> None:
        self._pg_ctl(self.primary_dir, self.primary_port, "start")

    def stop(self) -> None:
        servers = ((self.replica_dir, self.replica_port), (self.primary_dir, self.primary_port))
        for data, port in servers:
            if (data / "postmaster.pid").exists():
                self._pg_ctl(data, port, "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create ``name`` on the primary (streamed to the replica); its primary DSN."""
        conn = psycopg2.connect(self.dsn("primary"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.close()
        return self.dsn("primary", name)

    def _pg_ctl(self, data: Path, port: int, action: str) -> None:
        log = data.parent / f"{data.name}.log"
        options = f"-p {port} -k {self.root}"
        self._run("pg_ctl", "-D", data, "-l", log, "-o", options, "-m", "fast", "-w", action)

    def _run(self, program: str, *args: str | Path) -> None:
        done = subprocess.run(
            [str(self.bin / program), *map(str, args)],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}")
