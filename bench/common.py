"""Shared bits of the benchmark harness: the DSN, the read SQL, progress lines, load notes."""

from __future__ import annotations

import os
import sys
import threading
import time

import psycopg2
import psycopg2.extensions

from models.reads import STATEMENTS

# A dedicated database, never the dev or test one unless asked for explicitly.
DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=segments_bench sslmode=disable"
# Segments a benchmark run creates start with this prefix; bench.generate.reset removes them.
RUN_PREFIX = "BENCHRUN_"

# The read of GET /users/{id} (models/reads.py) without the prepared statement, for the
# floor app, the bare psycopg2 loop and pgbench.
READ_SQL = STATEMENTS["read_user_segments(bigint)"].replace("$1", "%s")


def bench_dsn(arg: str | None) -> str:
    """--database, else BENCH_DATABASE_DSN, else the dedicated segments_bench database."""
    return arg or os.environ.get("BENCH_DATABASE_DSN") or DEFAULT_DSN


def dsn_params(dsn: str) -> dict[str, str]:
    return psycopg2.extensions.parse_dsn(dsn)


def connect(dsn: str, autocommit: bool = True):
    conn = psycopg2.connect(dsn)
    conn.autocommit = autocommit
    return conn


def progress(msg: str, end: str = "\n") -> None:
    sys.stderr.write(f"\r[bench {time.strftime('%H:%M:%S')}] {msg}{end}")
    sys.stderr.flush()


def psql_args(dsn: str) -> list[str]:
    """psql/pgbench connection options for a libpq DSN."""
    p = dsn_params(dsn)
    args = []
    for key, flag in (("host", "-h"), ("port", "-p"), ("user", "-U")):
        if p.get(key):
            args += [flag, p[key]]
    return args


def dbname(dsn: str) -> str:
    return dsn_params(dsn).get("dbname", "postgres")


def load_note() -> dict:
    """How busy the machine is: load average and whether someone else's pytest runs."""
    others = []
    try:
        import psutil

        me = os.getpid()
        for p in psutil.process_iter(["pid", "cmdline", "ppid"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "pytest" in cmd and p.info["pid"] != me and "test_bench_smoke" not in cmd:
                others.append(p.info["pid"])
    except Exception:  # noqa: BLE001 - only a note
        pass
    la = os.getloadavg()
    return {"loadavg_1m": round(la[0], 2), "foreign_pytest_pids": others}


class RssSampler:
    """The peak resident memory of a process tree (the web server and its workers),
    sampled every 20 ms between ``start`` and ``stop``."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.base = self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        procs = [self.root, *self.root.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def stop(self) -> float:
        """Stop sampling; the growth over the start, in MB."""
        self._stop.set()
        self._thread.join()
        return round((self.peak - self.base) / 2**20, 1)
