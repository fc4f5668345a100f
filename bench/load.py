"""HTTP load: wrk with a Lua script from bench/, or Python threads (httpx) when wrk is
missing. Every generator returns the same summary: rps, p50/p90/p99/max in ms, errors."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def lat_stats(lat_s: list[float], elapsed: float, errors: int, client: str) -> dict:
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


# One request of each kind for the Python client: (client, rng, args) -> status ok?
def _read(c: httpx.Client, rng: random.Random, args: list[str]) -> bool:
    return c.get(f"/users/{rng.randint(1, int(args[0]))}").status_code == 200


def _lookup(c: httpx.Client, rng: random.Random, args: list[str]) -> bool:
    ids = [rng.randint(1, int(args[0])) for _ in range(int(args[1]))]
    return c.post("/users/lookup", json={"ids": ids}).status_code == 200


class _Writer:
    """The two modes of writes.lua: a PATCH/DELETE mix, or POST /users with new ids."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, c: httpx.Client, rng: random.Random, args: list[str]) -> bool:
        mode, n, segs = args[0], int(args[1]), args[2].split(",")
        if mode == "create":
            self.seq += 1
            return c.post("/users", json={"id": int(args[3]) + self.seq}).status_code < 400
        body = {"id": rng.randint(1, n), "segments": rng.sample(segs, 2)}
        method = "PATCH" if rng.random() < 0.5 else "DELETE"
        return c.request(method, "/users", json=body).status_code < 400


def python_load(url: str, conns: int, stop: threading.Event, one: Callable, args) -> dict:
    """``one`` request after another on ``conns`` threads until ``stop`` is set."""
    lat: list[list[float]] = [[] for _ in range(conns)]
    errors = [0] * conns

    def worker(i: int) -> None:
        rng = random.Random(i)
        shifted = [*args[:3], str(int(args[3]) + i * 1_000_000_000)] if len(args) > 3 else args
        auth = os.environ.get("BENCH_AUTHORIZATION")  # --key-scope: the run's key
        headers = {"Authorization": auth} if auth else {}
        with httpx.Client(base_url=url, timeout=10, headers=headers) as c:
            while not stop.is_set():
                t = time.perf_counter()
                ok = one(c, rng, shifted)
                lat[i].append(time.perf_counter() - t)
                errors[i] += not ok

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    flat = [x for part in lat for x in part]
    return lat_stats(flat, time.perf_counter() - t0, sum(errors), "python-httpx")


SCRIPTS = {"reads.lua": _read, "lookup.lua": _lookup, "writes.lua": None}


class Load:
    """``run`` for a fixed time, ``start`` for a load that runs until its finish()."""

    def __init__(self, use_wrk: bool) -> None:
        self.use_wrk = use_wrk

    def _cmd(self, url: str, conns: int, seconds: float, script: str, args: list[str]):
        return [
            "wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(BENCH / script), url, "--", *args,
        ]  # fmt: skip

    def run(self, url: str, conns: int, seconds: float, script: str, args: list[str]) -> dict:
        if self.use_wrk:
            cmd = self._cmd(url, conns, seconds, script, args)
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            return parse_wrk(out)
        stop = threading.Event()
        timer = threading.Timer(seconds, stop.set)
        timer.start()
        return python_load(url, conns, stop, SCRIPTS[script] or _Writer(), args)

    def start(self, url: str, conns: int, script: str, args: list[str]) -> Callable[[], dict]:
        """Load until the returned function is called; it returns the summary."""
        if self.use_wrk:
            cmd = self._cmd(url, conns, 3600, script, args)
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

            def finish() -> dict:
                p.send_signal(signal.SIGINT)
                out, _ = p.communicate(30)
                return parse_wrk(out)

            return finish
        stop = threading.Event()
        box: dict = {}
        one = SCRIPTS[script] or _Writer()
        th = threading.Thread(target=lambda: box.update(python_load(url, conns, stop, one, args)))
        th.start()

        def finish_py() -> dict:
            stop.set()
            th.join()
            return box

        return finish_py
