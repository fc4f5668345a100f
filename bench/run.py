"""The benchmark set: ``python -m bench.run [--users N] [--duration S] [--only reads,...]``.

Starts the Procfile's real ``web`` and ``worker`` processes on the benchmark database,
runs each step (bench/steps/: each measures its area next to its floor, in the same run,
and returns its result and its report rows), writes
``bench/results/<timestamp>-<N>.json`` and prints a markdown table. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import generate
from bench.common import bench_dsn, connect, dbname, load_note, progress, psql_args
from bench.load import Load
from bench.meta import git_revision, machine
from bench.steps import bulk, csv, imports, reads, uploads, webhooks, writes
from scripts.procs import Proc, free_port, procfile_entries

BENCH = Path(__file__).resolve().parent
STEPS = {
    "reads": reads.run,
    "writes": writes.run,
    "bulk": bulk.run,
    "csv": csv.run,
    "imports": imports.run,
    "uploads": uploads.run,
    "webhooks": webhooks.run,
}


class Bench:
    """What every step gets: the running processes, the load generator, the database."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dsn = bench_dsn(args.database)
        self.users = args.users
        self.seconds = args.duration
        self.load = Load(use_wrk=shutil.which("wrk") is not None and not args.python_client)
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_DSN": self.dsn,
            "SERVER_HOST": f"127.0.0.1:{self.port}",
            "QUEUE_NAMESPACE": args.namespace,
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("LOG_FILE_PATH", None)
        if args.key_scope:
            # Auth on: the steps' own calls go as root, the load with a key of that scope.
            self.env["API_TOKEN"] = secrets.token_urlsafe(24)
        self.procs: dict[str, Proc] = {}
        self.results: dict = {}
        self.rows: list[str] = []
        root = {"Authorization": f"Bearer {self.env['API_TOKEN']}"} if args.key_scope else {}
        self.http = httpx.Client(base_url=self.url, timeout=60, headers=root)
        self.meta: dict = {}

    def start(self, name: str, **env: str) -> Proc:
        """A Procfile line (web, worker) or, with COMMAND=..., any command."""
        cmd = procfile_entries()[name] if name in ("web", "worker") else env.pop("COMMAND")
        proc = Proc(name, {**self.env, **env}, self.tmp, command=["bash", "-c", cmd])
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc:
            proc.stop()

    def sql(self, statement: str, params=()) -> list[tuple]:
        conn = connect(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def psql_timed(self, statement: str) -> float:
        """Run one statement in psql; returns the server-reported time in seconds."""
        cmd = ["psql", *psql_args(self.dsn), "-d", dbname(self.dsn), "-X", "-q",
               "-v", "ON_ERROR_STOP=1", "-c", "\\timing on", "-c", statement]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return float(re.findall(r"Time: ([\d.]+) ms", out)[-1]) / 1000

    def wait_quiet(self) -> None:
        """With --wait-quiet S: wait up to S seconds for foreign pytest runs to finish."""
        deadline = time.monotonic() + self.args.wait_quiet
        while time.monotonic() < deadline and load_note()["foreign_pytest_pids"]:
            progress("waiting for foreign pytest processes to finish", end="")
            time.sleep(2)

    def clear_queue(self) -> None:
        """Drop what earlier runs left in this namespace, on the broker BROKER_URL names."""
        from models.infra.settings import BrokerKind, load_settings
        from workers.broker import build_broker, declare_actors, queue_prefix

        settings = load_settings(self.env)
        if settings.broker_kind is BrokerKind.RABBITMQ:
            broker = build_broker(settings)
            declare_actors(broker, queue_prefix(broker, settings))
            broker.flush_all()
            broker.close()
            return
        import redis

        client = redis.Redis.from_url(settings.broker_url)
        keys = list(client.scan_iter(f"{self.args.namespace}:*"))
        if keys:
            client.delete(*keys)

    def run(self) -> dict:
        only = self.args.only.split(",") if self.args.only else list(STEPS)
        started = time.time()
        self.git = git_revision()
        self.meta = generate.generate(self.dsn, self.users)
        self.clear_queue()
        progress(f"starting web ({self.url}) and worker; logs in {self.tmp}")
        self.start("web").wait_http(self.url)
        if self.args.key_scope:
            self.use_key(self.args.key_scope)
        self.start("worker")
        try:
            for step in STEPS:
                if step in only:
                    self.wait_quiet()
                    self.run_step(step)
        finally:
            for name in list(self.procs):
                self.stop(name)
            self.http.close()
            generate.reset(self.dsn)
        return self.report(started)

    def use_key(self, scope: str) -> None:
        """Make a key of ``scope``; wrk and the Python client send it (BENCH_AUTHORIZATION)."""
        name = f"bench-{scope}-{secrets.token_hex(4)}"
        made = self.http.post("/keys", json={"name": name, "scope": scope})
        made.raise_for_status()
        os.environ["BENCH_AUTHORIZATION"] = f"Bearer {made.json()['key']}"
        progress(f"load requests carry a {scope} key ({made.json()['prefix']}...)")

    def run_step(self, step: str) -> None:
        """Run a step; if web or worker died meanwhile (on a shared machine someone may
        kill processes by name), restart them, reset the data and retry the step once."""
        try:
            result, rows = STEPS[step](self)
        except Exception as exc:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if not dead:
                raise
            note = {"step": step, "exited": dead, "error": repr(exc)[:300]}
            self.results.setdefault("retries", []).append(note)
            progress(f"{step}: {', '.join(dead)} exited ({exc!r:.80}); retrying the step once")
            for name in dead:
                self.stop(name)
            for name in ("web", "worker"):
                if name in dead:
                    proc = self.start(name)
                    if name == "web":
                        proc.wait_http(self.url)
            generate.reset(self.dsn)
            result, rows = STEPS[step](self)
        result["load"] = load_note()
        self.results[step] = result
        self.rows += rows

    def report(self, started: float) -> dict:
        doc = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 1),
            "machine": machine(),
            "config": {
                "users": self.users,
                "duration_s": self.seconds,
                "database": dbname(self.dsn),
                "data": self.meta,
                "web": procfile_entries()["web"],
                "worker": procfile_entries()["worker"],
                "env": {
                    k: os.environ.get(k, "(default)")
                    for k in (
                        "WEB_WORKERS",
                        "DB_POOL_SIZE",
                        "BATCH_SIZE",
                        "JOB_CHUNK_TIME_MS",
                        "JOB_BATCH_PAUSE_MS",
                        "WORKER_PROCESSES",
                        "WORKER_THREADS",
                    )
                },
                "client": "wrk" if self.load.use_wrk else "python-httpx",
                "git": self.git,
                "argv": sys.argv[1:],
            },
            "results": self.results,
            "rows": self.rows,
        }
        outdir = Path(self.args.results_dir)
        outdir.mkdir(parents=True, exist_ok=True)
        path = outdir / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(started))}-{self.users}.json"
        path.write_text(json.dumps(doc, indent=2, default=str))
        print(markdown(doc))
        print(f"\nresults: {path}")
        doc["path"] = str(path)
        return doc


def markdown(doc: dict) -> str:
    cfg = doc["config"]
    lines = [
        f"users={cfg['users']:,}  duration={cfg['duration_s']}s  client={cfg['client']}  "
        f"machine={doc['machine']['cores']} cores  git={cfg['git']}",
        "",
        "| measurement | figure | floor | ratio | target |",
        "|---|---|---|---|---|",
        *doc["rows"],
    ]
    loads = {k: v.get("load") for k, v in doc["results"].items() if isinstance(v, dict)}
    lines += ["", f"load at the end of each step: {json.dumps(loads)}"]
    if doc["results"].get("retries"):
        lines.append(f"retried after a process exited: {json.dumps(doc['results']['retries'])}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--duration", type=float, default=10, help="seconds per load step")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--database", help="libpq DSN (default: BENCH_DATABASE_DSN or "
                    "dbname=segments_bench on the local server)")  # fmt: skip
    ap.add_argument("--namespace", default=os.environ.get("BENCH_QUEUE_NAMESPACE", "bench"),
                    help="QUEUE_NAMESPACE for the web and worker processes")  # fmt: skip
    ap.add_argument("--levels", default="1,8,32,128", help="read concurrency levels")
    ap.add_argument("--rounds", type=int, default=3, help="alternating read rounds")
    ap.add_argument("--write-levels", default="8,32", help="write concurrency levels")
    ap.add_argument("--chunk-times", default="", help="JOB_CHUNK_TIME_MS values for the bulk "
                    "step's curve (default: the worker's default only)")  # fmt: skip
    ap.add_argument("--csv-months", default="main,probe", help="the csv step's months: "
                    "main (5 events per user), probe (1M events at any N)")  # fmt: skip
    ap.add_argument("--python-client", action="store_true", help="use httpx threads, not wrk")
    ap.add_argument("--key-scope", choices=["read", "write", "admin"], help="set API_TOKEN "
                    "and send the load with a key of this scope")  # fmt: skip
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        help="before each step, wait up to S seconds while foreign pytest runs",
    )
    ap.add_argument("--results-dir", default=str(BENCH / "results"))
    args = ap.parse_args()
    # A kill (SIGTERM) unwinds like Ctrl-C, so the web and worker the run started stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    Bench(args).run()


if __name__ == "__main__":
    main()
