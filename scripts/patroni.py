"""A PostgreSQL cluster under Patroni, for the failover tests and benchmark: one etcd
and two or three PostgreSQL 15 nodes, each run by a Patroni of its own, in synchronous
mode, every port free and every file under one temporary folder.

``PatroniCluster(nodes=2).start()`` returns once a leader serves and every standby
streams; ``kill``, ``freeze``/``thaw`` and ``switchover`` are the faults the tests
inject. As root the Patroni and PostgreSQL processes run as the ``postgres`` OS user
(PostgreSQL refuses root), as scripts/pgpair.py does.

Timing: ``ttl`` 10 s, ``loop_wait`` 1 s, ``retry_timeout`` 3 s, so a standby is promoted
within about 10 s of the leader's death (Patroni's defaults, 30/10/10, take ~30 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from scripts.pgpair import postgres_bin, server_user
from scripts.procs import descendants, free_port

NEEDED = ("patroni", "patronictl", "etcd")
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 1, 3


def missing() -> str | None:
    """Why a cluster cannot run here (a program not installed), or None."""
    absent = [name for name in NEEDED if shutil.which(name) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (apt-get install patroni etcd-server)"
    bindir = postgres_bin()
    if bindir is None or not (bindir / "pg_rewind").exists():
        return "no PostgreSQL server binaries (initdb, pg_ctl, pg_rewind) found"
    return None


@dataclass
class Node:
    name: str
    port: int
    api_port: int
    data: Path
    config: Path
    patroni: subprocess.Popen | None = None

    def postgres_pids(self) -> list[int]:
        """The postmaster and its children, from postmaster.pid and /proc."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [postmaster, *descendants(postmaster)]


class PatroniCluster:
    """``start()``, the faults, ``stop()``. ``synchronous=False`` runs the same cluster
    with asynchronous replication (the benchmark's comparison)."""

    def __init__(
        self,
        nodes: int = 2,
        synchronous: bool = True,
        scope: str = "segments",
        max_lag_on_failover: int = 1048576,  # Patroni's default, bytes
    ):
        self.max_lag_on_failover = max_lag_on_failover
        self.bin = postgres_bin()
        self.user = server_user()
        self.synchronous = synchronous
        self.scope = scope
        self.root = Path(tempfile.mkdtemp(prefix="segments-patroni-"))
        self._chown(self.root)
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.etcd: subprocess.Popen | None = None
        self.nodes = [
            Node(
                f"node{i}",
                free_port(),
                free_port(),
                self.root / f"node{i}",
                self.root / f"node{i}.yml",
            )
            for i in range(nodes)
        ]

    # ------------------------------------------------------------ addresses

    def dsn(self, dbname: str = "postgres", attrs: str = "read-write") -> str:
        """The multi-host DSN of every node, ``target_session_attrs=attrs``."""
        hosts = ",".join("127.0.0.1" for _ in self.nodes)
        ports = ",".join(str(n.port) for n in self.nodes)
        return (
            f"host={hosts} port={ports} user=postgres dbname={dbname} sslmode=disable "
            f"target_session_attrs={attrs}"
        )

    def node_dsn(self, node: Node, dbname: str = "postgres") -> str:
        return psycopg2.extensions.make_dsn(
            host="127.0.0.1", port=node.port, user="postgres", dbname=dbname, connect_timeout=2
        )

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # ------------------------------------------------------------ life cycle

    def start(self, timeout: float = 90) -> None:
        self._start_etcd()
        for node in self.nodes:
            node.config.write_text(json.dumps(self._config(node), indent=2))
            self._chown(node.config)
            self.start_node(node)
        self.wait_healthy(timeout)

    def start_node(self, node: Node) -> None:
        """Start (or restart, after ``kill``) the node's Patroni; it rejoins as it can."""
        log = open(self.root / f"{node.name}.log", "ab")  # noqa: SIM115 - the child's
        node.patroni = subprocess.Popen(
            ["patroni", str(node.config)],
            user=self.user,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def stop(self) -> None:
        for node in self.nodes:
            self.thaw(node.name)
            if node.patroni is not None and node.patroni.poll() is None:
                node.patroni.terminate()
        for node in self.nodes:
            if node.patroni is not None:
                try:
                    node.patroni.wait(30)
                except subprocess.TimeoutExpired:
                    self.kill(node.name)
            for pid in node.postgres_pids():  # a postmaster Patroni left behind
                _signal(pid, signal.SIGKILL)
        if self.etcd is not None and self.etcd.poll() is None:
            self.etcd.terminate()
            self.etcd.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ the faults

    def kill(self, name: str) -> None:
        """SIGKILL the node's Patroni and every PostgreSQL process of it."""
        node = self.node(name)
        pids = node.postgres_pids()
        if node.patroni is not None:
            _signal(node.patroni.pid, signal.SIGKILL)
            node.patroni.wait(10)
        for pid in pids:
            _signal(pid, signal.SIGKILL)

    def freeze(self, name: str) -> None:
        """SIGSTOP the node's Patroni and PostgreSQL: alive to TCP, silent to everyone."""
        node = self.node(name)
        for pid in [node.patroni.pid, *node.postgres_pids()]:
            _signal(pid, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        node = self.node(name)
        pids = node.postgres_pids()
        if node.patroni is not None and node.patroni.poll() is None:
            pids.append(node.patroni.pid)
        for pid in pids:
            _signal(pid, signal.SIGCONT)

    def stop_sender(self, name: str) -> list[int]:
        """SIGSTOP the node's WAL senders (its standbys fall behind: what they were sent
        is all they get); their pids, for ``resume``."""
        node = self.node(name)
        pids = [p for p in node.postgres_pids() if b"walsender" in _cmdline(p)]
        for pid in pids:
            _signal(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def resume(pids: list[int]) -> None:
        for pid in pids:
            _signal(pid, signal.SIGCONT)

    def switchover(self, candidate: str | None = None) -> str:
        """A planned switchover to ``candidate`` (else any standby); the new leader."""
        leader = self.leader()
        candidate = candidate or next(n.name for n in self.nodes if n.name != leader)
        args = ["--leader", leader, "--candidate", candidate, "--force"]
        self.patronictl("switchover", *args)
        return self.wait_leader(other_than=leader)

    def patronictl(self, *args: str) -> str:
        config = str(self.nodes[0].config)
        done = subprocess.run(
            ["patronictl", "-c", config, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"patronictl {args[0]} failed: {done.stderr or done.stdout}")
        return done.stdout

    # ------------------------------------------------------------ state

    def members(self) -> list[dict]:
        """Patroni's view of the cluster (``GET /cluster``) from the first node that
        answers; ``[]`` while none does."""
        for node in self.nodes:
            url = f"http://127.0.0.1:{node.api_port}/cluster"
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    return json.load(answer)["members"]
            except (OSError, urllib.error.URLError, ValueError):
                continue
        return []

    def leader(self) -> str | None:
        return next((m["name"] for m in self.members() if m["role"] == "leader"), None)

    def wait_healthy(self, timeout: float = 60, without: str | None = None) -> str:
        """Wait until a leader runs and every node but ``without`` streams from it (one
        of them as the synchronous standby, in synchronous mode); the leader's name."""
        deadline = time.monotonic() + timeout
        wanted = len(self.nodes) - 1 - (without is not None)
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and self._streaming(self.node(leader)) == wanted:
                return leader
            time.sleep(0.5)
        raise RuntimeError(f"cluster not healthy in {timeout}s: {self.members()}\n{self.logs()}")

    def wait_leader(self, other_than: str | None = None, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = next((m for m in self.members() if m["role"] == "leader"), None)
            if leader and leader["name"] != other_than and leader["state"] == "running":
                return leader["name"]
            time.sleep(0.2)
        raise RuntimeError(f"no new leader in {timeout}s: {self.members()}")

    def create_database(self, name: str) -> str:
        """Create ``name`` on the leader; the multi-host DSN of it."""
        conn = psycopg2.connect(self.dsn())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.close()
        return self.dsn(name)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
            for path in sorted(self.root.glob("*.log"))
        )

    # ------------------------------------------------------------ internals

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        log = open(self.root / "etcd.log", "ab")  # noqa: SIM115 - the child's
        self.etcd = subprocess.Popen(
            ["etcd", "--name", "etcd0", "--data-dir", str(self.root / "etcd"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"etcd0={peer}", "--unsafe-no-fsync", "--enable-v2"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

    def _config(self, node: Node) -> dict:
        parameters = {
            "wal_level": "replica",
            "hot_standby": "on",
            "wal_log_hints": "on",  # pg_rewind brings a failed leader back as a standby
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "unix_socket_directories": str(self.root),
            "fsync": "off",  # test data; replication, not the disk, is what is tested
        }
        trust = ["local all all trust", "host all all 127.0.0.1/32 trust",
                 "host replication all 127.0.0.1/32 trust"]  # fmt: skip
        superuser = {"username": "postgres", "password": "postgres"}
        return {
            "scope": self.scope,
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{node.api_port}",
                "connect_address": f"127.0.0.1:{node.api_port}",
            },
            # etcd's v2 API: Debian's Patroni 3.0.2 can steal the leader key back over
            # v3 after a freeze (patroni/patroni#2689, fixed in 3.0.3); v2 compares.
            "etcd": {"hosts": [f"127.0.0.1:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL,
                    "loop_wait": LOOP_WAIT,
                    "retry_timeout": RETRY_TIMEOUT,
                    "synchronous_mode": self.synchronous,
                    "maximum_lag_on_failover": self.max_lag_on_failover,
                    "postgresql": {"use_pg_rewind": True, "parameters": parameters},
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
                "pg_hba": trust,
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.port}",
                "connect_address": f"127.0.0.1:{node.port}",
                "data_dir": str(node.data),
                "bin_dir": str(self.bin),
                "pgpass": str(self.root / f"{node.name}.pgpass"),
                "pg_hba": trust,
                "authentication": {
                    "superuser": superuser,
                    "replication": {"username": "replicator", "password": "replicator"},
                    "rewind": superuser,
                },
                "parameters": {"unix_socket_directories": str(self.root)},
            },
        }

    def _streaming(self, leader: Node) -> int:
        """How many standbys stream from ``leader`` (in synchronous mode: 0 until one is
        the synchronous standby). A fresh standby shows as streaming only after the
        leader writes more WAL, so this writes some first."""
        try:
            conn = psycopg2.connect(self.node_dsn(leader))
        except psycopg2.OperationalError:
            return 0
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_logical_emit_message(false, 'segments', 'tick')")
                cur.execute(
                    """SELECT count(*) FILTER (WHERE state = 'streaming'),
                              count(*) FILTER (WHERE sync_state = 'sync')
                       FROM pg_stat_replication"""
                )
                streaming, sync = cur.fetchone()
        except psycopg2.Error:
            return 0
        finally:
            conn.close()
        return streaming if sync or not self.synchronous else 0

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
