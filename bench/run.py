"""The benchmark set: ``python -m bench.run [--users N] [--duration S] [--only reads,...]``.

Starts the Procfile's real ``web`` and ``worker`` processes on the benchmark database,
measures each step next to its floor (measured in the same run), writes
``bench/results/<timestamp>-<N>.json`` and prints a markdown table. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from bench import generate
from bench.common import (
    READ_SQL,
    RUN_PREFIX,
    bench_dsn,
    connect,
    dbname,
    load_note,
    progress,
    psql_args,
)

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
STEPS = ("reads", "writes", "bulk", "csv")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise KeyError(name)


class Proc:
    """One process started by a shell, as honcho starts a Procfile line."""

    def __init__(self, name: str, command: str, env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.command = command
        self.logpath = logdir / f"{name}.log"
        self.log = open(self.logpath, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.logpath.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


# ---------------------------------------------------------------- load generators


class Load:
    """HTTP load with wrk (and a Lua script), or Python threads when wrk is missing."""

    def __init__(self, use_wrk: bool) -> None:
        self.use_wrk = use_wrk

    def wrk_cmd(self, url: str, conns: int, seconds: float, script: str, args: list[str]):
        return [
            "wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(BENCH / script), url, "--", *args,
        ]  # fmt: skip

    @staticmethod
    def parse_wrk(out: str) -> dict:
        for line in out.splitlines():
            if line.startswith("BENCH_JSON "):
                r = json.loads(line[len("BENCH_JSON ") :])
                return {
                    "rps": round(r["rps"], 1),
                    "p50_ms": r["p50_us"] / 1000,
                    "p90_ms": r["p90_us"] / 1000,
                    "p99_ms": r["p99_us"] / 1000,
                    "max_ms": r["max_us"] / 1000,
                    "requests": r["requests"],
                    "errors": r["errors_status"] + r["errors_socket"],
                    "client": "wrk",
                }
        raise RuntimeError(f"wrk printed no result:\n{out[-2000:]}")

    def reads(self, url: str, users: int, conns: int, seconds: float) -> dict:
        if self.use_wrk:
            cmd = self.wrk_cmd(url, conns, seconds, "reads.lua", [str(users)])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            return self.parse_wrk(out)
        stop = threading.Event()
        t = threading.Timer(seconds, stop.set)
        t.start()
        return python_reads(url, users, conns, stop)

    def start_background_reads(self, url: str, users: int, conns: int):
        """Reads until stopped; returns a function that stops them and returns the stats."""
        if self.use_wrk:
            cmd = self.wrk_cmd(url, conns, 3600, "reads.lua", [str(users)])
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

            def finish() -> dict:
                p.send_signal(signal.SIGINT)
                out, _ = p.communicate(30)
                return self.parse_wrk(out)

            return finish
        stop = threading.Event()
        box: dict = {}
        th = threading.Thread(target=lambda: box.update(python_reads(url, users, conns, stop)))
        th.start()

        def finish_py() -> dict:
            stop.set()
            th.join()
            return box

        return finish_py

    def writes(self, url: str, conns: int, seconds: float, args: list[str]) -> dict:
        if self.use_wrk:
            cmd = self.wrk_cmd(url, conns, seconds, "writes.lua", args)
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            return self.parse_wrk(out)
        return python_writes(url, conns, seconds, args)


def python_reads(url: str, users: int, conns: int, stop: threading.Event) -> dict:
    import random

    lat: list[list[float]] = [[] for _ in range(conns)]
    errors = [0] * conns

    def worker(i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=url, timeout=10) as c:
            while not stop.is_set():
                t = time.perf_counter()
                r = c.get(f"/users/{rng.randint(1, users)}")
                lat[i].append(time.perf_counter() - t)
                errors[i] += r.status_code != 200

    return _run_clients(worker, conns, lat, errors)


def python_writes(url: str, conns: int, seconds: float, args: list[str]) -> dict:
    import random

    mode, n, segs, base = args[0], int(args[1]), args[2].split(","), int(args[3])
    deadline = time.perf_counter() + seconds
    lat: list[list[float]] = [[] for _ in range(conns)]
    errors = [0] * conns

    def worker(i: int) -> None:
        rng = random.Random(i)
        seq = base + i * 1_000_000_000
        with httpx.Client(base_url=url, timeout=10) as c:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                if mode == "create":
                    seq += 1
                    r = c.post("/users", json={"id": seq})
                else:
                    body = {"id": rng.randint(1, n), "segments": rng.sample(segs, 2)}
                    method = "PATCH" if rng.random() < 0.5 else "DELETE"
                    r = c.request(method, "/users", json=body)
                lat[i].append(time.perf_counter() - t)
                errors[i] += r.status_code >= 400

    return _run_clients(worker, conns, lat, errors)


def _run_clients(worker, conns: int, lat: list[list[float]], errors: list[int]) -> dict:
    """Run ``worker(i)`` on ``conns`` threads and summarise their latencies."""
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    flat = [x for part in lat for x in part]
    return _lat_stats(flat, time.perf_counter() - t0, sum(errors), "python-httpx")


def _lat_stats(lat_s: list[float], elapsed: float, errors: int, client: str) -> dict:
    return {
        "rps": round(len(lat_s) / elapsed, 1),
        "p50_ms": round(pct(lat_s, 50) * 1000, 3),
        "p90_ms": round(pct(lat_s, 90) * 1000, 3),
        "p99_ms": round(pct(lat_s, 99) * 1000, 3),
        "max_ms": round(max(lat_s, default=0) * 1000, 3),
        "requests": len(lat_s),
        "errors": errors,
        "client": client,
    }


# ---------------------------------------------------------------- the run


class Bench:
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
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.env.pop("LOG_FILE_PATH", None)
        self.procs: dict[str, Proc] = {}
        self.results: dict = {}
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self.meta: dict = {}

    # -- processes
    def start(self, name: str, **env: str) -> Proc:
        cmd = procfile_command(name) if name in ("web", "worker") else env.pop("COMMAND")
        proc = Proc(name, cmd, {**self.env, **env}, self.tmp)
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
        m = re.findall(r"Time: ([\d.]+) ms", out)
        return float(m[-1]) / 1000

    def wait_quiet(self) -> None:
        """With --wait-quiet S: wait up to S seconds for foreign pytest runs to finish."""
        deadline = time.monotonic() + self.args.wait_quiet
        while time.monotonic() < deadline and load_note()["foreign_pytest_pids"]:
            progress("waiting for foreign pytest processes to finish", end="")
            time.sleep(2)

    def note(self, name: str, result: dict) -> dict:
        result["load"] = load_note()
        self.results[name] = result
        return result

    def clear_queue(self) -> None:
        import redis

        client = redis.Redis.from_url(self.env.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
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

    def run_step(self, step: str) -> None:
        """Run a step; if web or worker died meanwhile (on a shared machine someone may
        kill processes by name), restart them, reset the data and retry the step once."""
        try:
            getattr(self, f"step_{step}")()
            return
        except Exception as exc:
            dead = [n for n, p in self.procs.items() if p.proc.poll() is not None]
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
        getattr(self, f"step_{step}")()

    # -- reads
    def step_reads(self) -> None:
        n, s = self.users, self.seconds
        levels = [int(x) for x in self.args.levels.split(",")]
        out: dict = {"levels": {}}
        progress("reads: warm-up")
        self.load.reads(self.url, n, 8, min(3, s))
        for c in levels:
            progress(f"reads: service, {c} connections, {s}s")
            out["levels"][str(c)] = {"service": self.load.reads(self.url, n, c, s)}
            out["levels"][str(c)]["service"]["load"] = load_note()
        floor_port = free_port()
        floor_url = f"http://127.0.0.1:{floor_port}"
        self.start(
            "floor_app",
            COMMAND="python -m bench.floor_app",
            SERVER_HOST=f"127.0.0.1:{floor_port}",
        ).wait_http(floor_url)
        try:
            self.load.reads(floor_url, n, 8, min(3, s))
            for c in levels:
                progress(f"reads: floor app, {c} connections, {s}s")
                level = out["levels"][str(c)]
                level["floor_app"] = self.load.reads(floor_url, n, c, s)
                level["floor_app"]["load"] = load_note()
                level["ratio_rps"] = round(level["service"]["rps"] / level["floor_app"]["rps"], 3)
                level["ratio_p99"] = round(
                    level["service"]["p99_ms"] / max(level["floor_app"]["p99_ms"], 1e-3), 3
                )
        finally:
            self.stop("floor_app")
        progress(f"reads: bare psycopg2 loop, 1 connection, {s}s")
        out["psycopg2_1conn"] = self.psycopg2_loop(s)
        if shutil.which("pgbench"):
            c = max(levels)
            c = 32 if 32 in levels else c
            progress(f"reads: pgbench, {c} clients, {s}s")
            out[f"pgbench_{c}"] = self.pgbench(c, s)
        c1 = out["levels"].get("1", {}).get("service")
        if c1:
            out["ratio_c1_p50_vs_psycopg2"] = round(
                c1["p50_ms"] / out["psycopg2_1conn"]["p50_ms"], 2
            )
        self.note("reads", out)

    def psycopg2_loop(self, seconds: float) -> dict:
        import random

        conn = connect(self.dsn)
        rng = random.Random(1)
        lat = []
        deadline = time.perf_counter() + seconds
        with conn.cursor() as cur:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                cur.execute(READ_SQL, (rng.randint(1, self.users),))
                cur.fetchone()
                lat.append(time.perf_counter() - t)
        conn.close()
        r = _lat_stats(lat, seconds, 0, "psycopg2")
        r["qps"] = r.pop("rps")
        return r

    def pgbench(self, clients: int, seconds: float) -> dict:
        script = self.tmp / "read.sql"
        body = " ".join(READ_SQL.replace("%s", ":uid").split())
        script.write_text(f"\\set uid random(1, {self.users})\n{body};\n")
        logdir = self.tmp / "pgbench"
        logdir.mkdir(exist_ok=True)
        cmd = ["pgbench", *psql_args(self.dsn), "-n", "-f", str(script), "-c", str(clients),
               "-j", "2", "-T", str(max(1, round(seconds))), "-l",
               "--log-prefix", str(logdir / "pgb"), dbname(self.dsn)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=self.tmp).stdout
        tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
        lat = []
        for f in logdir.glob("pgb*"):
            for line in f.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]) / 1e6)
            f.unlink()
        return {
            "tps": round(tps, 1),
            "p50_ms": round(pct(lat, 50) * 1000, 3),
            "p99_ms": round(pct(lat, 99) * 1000, 3),
            "clients": clients,
        }

    # -- writes
    def step_writes(self) -> None:
        s, n = self.seconds, self.users
        names = [f"{RUN_PREFIX}W{i}" for i in range(10)]
        for name in names:
            self.http.post("/segments", json={"segment": name}).raise_for_status()
        # 3 live auto segments, inserted directly (their assignment jobs would only add
        # background load; POST /users computes the new user's buckets itself).
        for i, p in enumerate((10, 30, 50)):
            self.sql(
                "INSERT INTO segments (name, salt, auto_percent) "
                "VALUES (%s, md5(random()::text), %s)",
                (f"{RUN_PREFIX}AUTO{i}_{p}", p),
            )
        out: dict = {}
        for c in [int(x) for x in self.args.write_levels.split(",")]:
            progress(f"writes: PATCH+DELETE mix, {c} connections, {s}s")
            out[f"mix_c{c}"] = self.load.writes(
                self.url, c, s, ["mix", str(n), ",".join(names), "0"]
            )
            progress(f"writes: POST /users (new ids, 3 auto segments), {c} connections, {s}s")
            base = str(n + 10_000_000 + c * 100_000_000)
            out[f"create_c{c}"] = self.load.writes(self.url, c, s, ["create", str(n), "", base])
        self.note("writes", out)
        # Back to the generated data (no extra users for the bulk job to assign).
        progress("writes: removing what the write step added")
        generate.reset(self.dsn)

    # -- bulk
    def step_bulk(self) -> None:
        n, s = self.users, self.seconds
        out: dict = {}
        progress(f"bulk: idle read latency, 8 connections, {s}s")
        out["reads_idle_c8"] = self.load.reads(self.url, n, 8, s)

        # Floor: the whole assignment as one statement, on a fresh segment.
        (seg,) = self.sql(
            "INSERT INTO segments (name, salt, auto_percent) "
            "VALUES (%s, md5(random()::text), 10) RETURNING id",
            (f"{RUN_PREFIX}FLOOR_AUTO10",),
        )[0]
        progress("bulk: auto_percent=10 floor (one INSERT ... SELECT in psql)")
        out["assign_floor_s"] = self.psql_timed(
            f"""WITH seg AS (SELECT id, salt FROM segments WHERE id = {seg}),
                added AS (
                    INSERT INTO memberships (user_id, segment_id, source)
                    SELECT u.id, seg.id, 'auto' FROM users u CROSS JOIN seg
                    WHERE segment_bucket(seg.salt, u.id) < 1000
                      AND NOT EXISTS (SELECT 1 FROM segment_opt_outs o
                                      WHERE o.segment_id = seg.id AND o.user_id = u.id)
                    ON CONFLICT DO NOTHING
                    RETURNING user_id, segment_id)
                INSERT INTO history (user_id, segment_id, operation, reason, at)
                SELECT user_id, segment_id, 'add', 'auto', now() FROM added"""
        )
        out["assign_floor_members"] = self.sql(
            "SELECT count(*) FROM memberships WHERE segment_id = %s", (seg,)
        )[0][0]

        # The job twice, on fresh segments: alone (its time against the floor), then with
        # reads at 8 connections (their p99 against the idle p99 above).
        progress("bulk: auto_percent=10 job on the worker, idle")
        job = self.assign_job(f"{RUN_PREFIX}AUTO10")
        out.update({f"assign_job_{k}": v for k, v in job.items()})
        out["assign_ratio"] = round(out["assign_job_s"] / out["assign_floor_s"], 2)
        progress("bulk: auto_percent=10 job again, reads at 8 connections meanwhile")
        finish = self.load.start_background_reads(self.url, n, 8)
        time.sleep(1)
        job = self.assign_job(f"{RUN_PREFIX}AUTO10_UNDER_READS")
        out["reads_during_job_c8"] = finish()
        out["assign_under_reads_s"] = job["s"]
        out["read_p99_ratio_during_job"] = round(
            out["reads_during_job_c8"]["p99_ms"] / out["reads_idle_c8"]["p99_ms"], 2
        )

        # TTL sweep: 100k expired memberships, the floor first, then the worker's sweep.
        k = min(100_000, n)
        out["ttl_rows"] = k
        self.expired_rows(f"{RUN_PREFIX}TTL_FLOOR", k)
        progress(f"bulk: TTL floor (one DELETE ... RETURNING -> INSERT history) on {k:,} rows")
        out["ttl_floor_s"] = self.psql_timed(
            """WITH gone AS (
                   DELETE FROM memberships WHERE expires_at <= now()
                   RETURNING user_id, segment_id, expires_at)
               INSERT INTO history (user_id, segment_id, operation, reason, at)
               SELECT user_id, segment_id, 'remove', 'ttl', expires_at FROM gone"""
        )
        ttl_seg = self.expired_rows(f"{RUN_PREFIX}TTL", k)
        progress(f"bulk: TTL sweep of {k:,} rows by the worker (sweep_expired message)")
        out.update(self.sweep(ttl_seg, k))
        out["ttl_ratio"] = round(out["ttl_sweep_s"] / out["ttl_floor_s"], 2)
        self.note("bulk", out)

    def assign_job(self, name: str) -> dict:
        """POST an auto_percent=10 segment; poll its job until done. Time from POST."""
        t0 = time.perf_counter()
        r = self.http.post("/segments", json={"segment": name, "auto_percent": 10})
        r.raise_for_status()
        job_id = r.json()["job_id"]
        while True:
            job = self.http.get(f"/jobs/{job_id}").json()
            if job["state"] in ("done", "failed"):
                break
            msg = f"bulk: job {job_id} {job['state']} {job['done']:,}/{job['total'] or 0:,}"
            progress(msg, end="")
            time.sleep(0.2)
        took = round(time.perf_counter() - t0, 3)
        progress(f"bulk: job {job_id} {job['state']} in {took}s")
        started, finished, created, members = self.sql(
            """SELECT extract(epoch FROM j.started_at), extract(epoch FROM j.finished_at),
                      extract(epoch FROM j.created_at),
                      (SELECT count(*) FROM memberships m WHERE m.segment_id = j.segment_id)
               FROM jobs j WHERE j.id = %s""",
            (job_id,),
        )[0]
        return {
            "s": took,
            "state": job["state"],
            "run_s": round(float(finished - started), 3) if finished else None,
            "queue_s": round(float(started - created), 3) if started else None,
            "members": members,
        }

    def expired_rows(self, name: str, k: int) -> int:
        (seg,) = self.sql(
            "INSERT INTO segments (name, salt) VALUES (%s, md5(random()::text)) RETURNING id",
            (name,),
        )[0]
        self.sql(
            """INSERT INTO memberships (user_id, segment_id, source, added_at, expires_at)
               SELECT id, %s, 'manual', now() - interval '2 days',
                      now() - interval '1 day' + id * interval '1 millisecond'
               FROM users WHERE id <= (SELECT id FROM users ORDER BY id OFFSET %s LIMIT 1)
               ORDER BY id""",
            (seg, k - 1),
        )
        self.sql("ANALYZE memberships")
        return seg

    def sweep(self, seg: int, k: int) -> dict:
        from models.settings import load_settings
        from workers.actors import send
        from workers.boot import bootstrap

        bootstrap(load_settings({**os.environ, **self.env}))

        conn = connect(self.dsn)
        first = None
        with conn.cursor() as cur:
            t0 = time.perf_counter()
            send("sweep_expired")
            while True:
                cur.execute("SELECT count(*) FROM memberships WHERE segment_id = %s", (seg,))
                left = cur.fetchone()[0]
                if first is None and left < k:
                    first = time.perf_counter() - t0
                if left == 0:
                    break
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError(f"sweep did not finish: {left} rows left")
                time.sleep(0.05)
            total = time.perf_counter() - t0
        conn.close()
        return {"ttl_sweep_s": round(total, 3), "ttl_first_delete_after_s": round(first or 0, 3)}

    # -- csv
    def step_csv(self) -> None:
        year, month = (int(x) for x in self.meta["month"].split("-"))
        start = f"{year:04d}-{month:02d}-01"
        end = f"{year + month // 12:04d}-{month % 12 + 1:02d}-01"
        (rows,) = self.sql(
            "SELECT count(*) FROM history WHERE at >= %s::timestamptz AND at < %s::timestamptz",
            (start + " UTC", end + " UTC"),
        )[0]
        out: dict = {"month": self.meta["month"], "rows": rows}
        web = psutil.Process(self.procs["web"].pid)

        def rss() -> int:
            procs = [web, *web.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs if p.is_running())

        peak = [0]
        stop = threading.Event()

        def sampler() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.02)

        base = rss()
        th = threading.Thread(target=sampler)
        th.start()
        progress(f"csv: GET /history?year={year}&month={month} ({rows:,} rows)")
        t0 = time.perf_counter()
        url = f"{self.url}/history?year={year}&month={month}"
        if shutil.which("curl"):
            res = subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            code, size = res.stdout.split()
            nbytes = int(size)
        else:
            nbytes = 0
            with httpx.stream("GET", url, timeout=600) as r:
                code = str(r.status_code)
                for chunk in r.iter_raw():
                    nbytes += len(chunk)
        elapsed = time.perf_counter() - t0
        stop.set()
        th.join()
        out["service"] = {
            "http_status": int(code),
            "seconds": round(elapsed, 3),
            "bytes": nbytes,
            "rows_per_s": round(rows / elapsed),
            "mb_per_s": round(nbytes / elapsed / 1e6, 1),
            "rss_base_mb": round(base / 2**20, 1),
            "rss_peak_mb": round(peak[0] / 2**20, 1),
            "rss_growth_mb": round((peak[0] - base) / 2**20, 1),
        }
        progress("csv: floor (COPY (same SELECT) TO STDOUT through psql)")
        select = f"""SELECT h.user_id || ';' || s.name || ';' || h.operation || ';'
                  || to_char(h.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                  || ';' || h.reason
           FROM history h JOIN segments s ON s.id = h.segment_id
           WHERE h.at >= '{start} UTC' AND h.at < '{end} UTC'
           ORDER BY h.at, h.id"""
        cmd = ["psql", *psql_args(self.dsn), "-d", dbname(self.dsn), "-X", "-q",
               "-c", f"COPY ({select}) TO STDOUT"]  # fmt: skip
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        fbytes = 0
        while chunk := p.stdout.read(1 << 20):
            fbytes += len(chunk)
        p.wait()
        felapsed = time.perf_counter() - t0
        out["floor_copy"] = {
            "seconds": round(felapsed, 3),
            "bytes": fbytes,
            "rows_per_s": round(rows / felapsed),
            "mb_per_s": round(fbytes / felapsed / 1e6, 1),
        }
        out["ratio_throughput"] = round(felapsed / elapsed, 3)
        self.note("csv", out)

    # -- report
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
                "web": procfile_command("web"),
                "worker": procfile_command("worker"),
                "env": {
                    k: os.environ.get(k, "(default)")
                    for k in (
                        "WEB_WORKERS",
                        "DB_POOL_SIZE",
                        "BATCH_SIZE",
                        "WORKER_PROCESSES",
                        "WORKER_THREADS",
                    )
                },
                "client": "wrk" if self.load.use_wrk else "python-httpx",
                "git": self.git,
                "argv": sys.argv[1:],
            },
            "results": self.results,
        }
        outdir = Path(self.args.results_dir)
        outdir.mkdir(parents=True, exist_ok=True)
        path = outdir / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(started))}-{self.users}.json"
        path.write_text(json.dumps(doc, indent=2, default=str))
        print(markdown(doc))
        print(f"\nresults: {path}")
        doc["path"] = str(path)
        return doc


def git_revision() -> str:
    """The commit the processes ran, with '+dirty' when the tree has local changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "?"
    return rev + ("+dirty" if dirty else "")


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pg = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "psql": pg,
    }


def markdown(doc: dict) -> str:
    r = doc["results"]
    lines = [
        f"users={doc['config']['users']:,}  duration={doc['config']['duration_s']}s  "
        f"client={doc['config']['client']}  machine={doc['machine']['cores']} cores  "
        f"git={doc['config']['git']}",
        "",
        "| measurement | figure | floor | ratio | target |",
        "|---|---|---|---|---|",
    ]
    if "reads" in r:
        for c, lv in r["reads"]["levels"].items():
            sv, fl = lv["service"], lv.get("floor_app", {})
            lines.append(
                f"| GET /users/{{id}} c={c} | {sv['rps']:,.0f} req/s, p50 {sv['p50_ms']:.2f} ms, "
                f"p99 {sv['p99_ms']:.2f} ms | floor app {fl.get('rps', 0):,.0f} req/s, "
                f"p99 {fl.get('p99_ms', 0):.2f} ms | {lv.get('ratio_rps', '-')} (req/s) | "
                + ("≥ 0.9 and p99 ≤ 30 ms |" if c == "32" else "- |")
            )
        pg = r["reads"]["psycopg2_1conn"]
        lines.append(
            f"| read SQL, bare psycopg2, 1 conn | {pg['qps']:,.0f} q/s, p50 {pg['p50_ms']:.3f} ms, "
            f"p99 {pg['p99_ms']:.3f} ms | - | c=1 p50 service/psycopg2: "
            f"{r['reads'].get('ratio_c1_p50_vs_psycopg2', '-')} | - |"
        )
        for k, v in r["reads"].items():
            if k.startswith("pgbench"):
                lines.append(
                    f"| read SQL, {k} (-c {v['clients']} -j 2) | {v['tps']:,.0f} tps, "
                    f"p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms | - | - | - |"
                )
    if "writes" in r:
        for k, v in r["writes"].items():
            if isinstance(v, dict) and "rps" in v:
                lines.append(
                    f"| writes {k} | {v['rps']:,.0f} req/s, p50 {v['p50_ms']:.2f} ms, "
                    f"p99 {v['p99_ms']:.2f} ms, errors {v['errors']} | - | - | - |"
                )
    if "bulk" in r:
        b = r["bulk"]
        lines.append(
            f"| auto_percent=10 job (POST → done) | {b['assign_job_s']:.2f} s "
            f"({b['assign_job_members']:,} members; {b['assign_under_reads_s']:.2f} s under "
            f"reads) | {b['assign_floor_s']:.2f} s "
            f"({b['assign_floor_members']:,}) | {b['assign_ratio']} | ≤ 1.5 |"
        )
        lines.append(
            f"| read p99 c=8 during job vs idle | {b['reads_during_job_c8']['p99_ms']:.2f} ms | "
            f"{b['reads_idle_c8']['p99_ms']:.2f} ms | {b['read_p99_ratio_during_job']} | ≤ 2 |"
        )
        lines.append(
            f"| TTL sweep of {b['ttl_rows']:,} (send → all gone) | {b['ttl_sweep_s']:.2f} s | "
            f"{b['ttl_floor_s']:.2f} s | {b['ttl_ratio']} | ≤ 1.5 |"
        )
    if "csv" in r:
        c = r["csv"]
        sv, fl = c["service"], c["floor_copy"]
        lines.append(
            f"| GET /history {c['month']} ({c['rows']:,} rows) | {sv['rows_per_s']:,} rows/s, "
            f"{sv['mb_per_s']} MB/s, RSS +{sv['rss_growth_mb']} MB | {fl['rows_per_s']:,} rows/s, "
            f"{fl['mb_per_s']} MB/s | {c['ratio_throughput']} | ≥ 0.5, RSS < +50 MB |"
        )
    loads = {k: v.get("load") for k, v in r.items() if isinstance(v, dict)}
    lines += ["", f"load at the end of each step: {json.dumps(loads)}"]
    if r.get("retries"):
        lines.append(f"retried after a process exited: {json.dumps(r['retries'])}")
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
    ap.add_argument("--write-levels", default="8,32", help="write concurrency levels")
    ap.add_argument("--python-client", action="store_true", help="use httpx threads, not wrk")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        help="before each step, wait up to S seconds while foreign pytest runs",
    )
    ap.add_argument("--results-dir", default=str(BENCH / "results"))
    args = ap.parse_args()
    Bench(args).run()


if __name__ == "__main__":
    main()
