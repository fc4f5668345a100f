"""Failover under load: the service on a Patroni cluster (scripts/patroni.py), a fault
injected while writes, reads, an assignment job, an import, webhook deliveries and the
TTL sweep run, then every promise checked. tests/e2e/test_failover.py runs each fault
once; ``python -m bench.failover`` repeats them for docs/scaling.md:

    python -m bench.failover --faults kill,freeze,switchover --runs 1
    python -m bench.failover --faults kill --runs 10
    python -m bench.failover --faults kill --runs 10 --asynchronous
    python -m bench.failover --faults kill-lagging --runs 2 --max-lag-on-failover 67108864
    (and the same with --asynchronous)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psycopg2

from bench.common import load_note
from bench.failover_checks import IMPORTED, check
from bench.failover_load import SEEDED, Load
from scripts.patroni import PatroniCluster, missing
from scripts.procs import ROOT, Proc, descendants, free_port
from scripts.receiver import Receiver

FAULTS = ("kill", "freeze", "switchover", "kill-lagging")
LAG_SECONDS = 2.0  # kill-lagging: how long the leader sends no WAL before it is killed


@dataclass
class Outcome:
    fault: str
    synchronous: bool
    write_back_s: float = 0.0  # from the fault to the first write that succeeded after
    window: dict = field(default_factory=dict)  # answers by status during that time
    statuses: dict = field(default_factory=dict)  # answers by status, the whole run
    failed_s: list[float] = field(default_factory=list)  # first and last refusal, after the fault
    slowest_s: float = 0.0
    acknowledged: int = 0
    lost: int = 0  # acknowledged writes the new primary does not have
    problems: list[str] = field(default_factory=list)


class Service:
    """web, worker and scheduler as the Procfile runs them, on ``dsn``."""

    def __init__(
        self, dsn: str, replica_dsn: str, logdir: Path, redis_url: str, namespace: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_DSN": dsn,
            "DATABASE_REPLICA_DSN": replica_dsn,
            "REDIS_URL": redis_url,
            "BROKER_URL": redis_url,
            "QUEUE_NAMESPACE": namespace,
            "SERVER_HOST": f"127.0.0.1:{self.port}",
            "WEB_WORKERS": "1",
            "SWEEP_INTERVAL": "0.5",
            "REQUEUE_INTERVAL": "1",
            "JOB_LEASE_SECONDS": "3",
            "BATCH_SIZE": "1000",
            "JOB_BATCH_PAUSE_MS": "300",  # jobs still run when the fault comes
            "WEBHOOK_INTERVAL": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
        self.procs = [Proc(name, self.env, logdir) for name in ("web", "worker", "scheduler")]
        self.procs[0].wait_http(self.url)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def pids(self) -> dict[str, set[int]]:
        return {p.name: {p.pid, *descendants(p.pid)} for p in self.procs}

    def stop(self) -> None:
        self.http.close()
        for proc in self.procs:
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in self.procs)


def prepare(cluster: PatroniCluster, name: str) -> str:
    """A migrated database ``name`` with users 1..SEEDED; its multi-host DSN."""
    dsn = cluster.create_database(name)
    env = {**os.environ, "DATABASE_DSN": dsn}
    subprocess.run([sys.executable, "-m", "models.infra.migrate"], env=env, check=True, cwd=ROOT,
                   capture_output=True, timeout=120)  # fmt: skip
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO users (id) SELECT generate_series(1, %s)", (SEEDED,))
    conn.close()
    return dsn


def inject(cluster: PatroniCluster, fault: str) -> None:
    """The fault, and what an operator (or Patroni) does after it: a killed leader is
    started again, a frozen one thawed once a standby has been promoted. kill-lagging
    stops the leader's WAL senders LAG_SECONDS before the kill (bench only):
    asynchronous replication then acknowledges commits the standby never gets. (A
    stopped receiver would not do: its kernel still takes the WAL in.)"""
    leader = cluster.leader()
    if fault == "switchover":
        cluster.switchover()
        return
    if fault.startswith("kill"):
        paused = []
        if fault == "kill-lagging":  # the standby behind at the crash, as over a slow link
            paused = cluster.stop_sender(leader)
            time.sleep(LAG_SECONDS)
        cluster.kill(leader)
        cluster.resume(paused)
        cluster.wait_leader(other_than=leader)
        cluster.start_node(cluster.node(leader))
        return
    cluster.freeze(leader)
    try:
        cluster.wait_leader(other_than=leader)
    finally:
        cluster.thaw(leader)


def run(cluster: PatroniCluster, fault: str, name: str, redis_url: str, logdir: Path) -> Outcome:
    """One scenario on a fresh database ``name``; the outcome lists every broken promise."""
    dsn = prepare(cluster, name)
    replica_dsn = dsn.replace("target_session_attrs=read-write", "target_session_attrs=standby")
    service = Service(dsn, replica_dsn, logdir, redis_url, f"{name}-queues")
    receiver = Receiver()
    outcome = Outcome(fault, cluster.synchronous)
    try:
        http = service.http
        http.post("/webhooks", json={"url": receiver.url}).raise_for_status()
        for segment in ("FW", "FT", "FI"):
            http.post("/segments", json={"segment": segment}).raise_for_status()
        pids = service.pids()
        load = Load(service.url)
        load.start()
        jobs = _start_jobs(http)
        time.sleep(1.5)
        fault_at = time.monotonic()
        inject(cluster, fault)
        time.sleep(2)  # writes carry on after the failover
        load.stop()
        jobs["after"] = _post(http, "/segments", {"segment": "FB", "auto_percent": 10})
        _measure(outcome, load.record, fault_at)
        outcome.lost = check(outcome.problems, http, dsn, load.record, jobs, receiver)
        outcome.acknowledged = len(load.record.created) + len(load.record.added)
        _rejoined(outcome, cluster)
        if service.pids() != pids:
            outcome.problems.append(f"processes restarted: {pids} -> {service.pids()}")
        if outcome.problems:
            outcome.problems.append(service.logs())
    finally:
        receiver.close()
        service.stop()
    return outcome


def _rejoined(outcome: Outcome, cluster: PatroniCluster) -> None:
    """The old leader streams from the new one, as a standby (a killed one once started
    again, a frozen one once thawed)."""
    try:
        cluster.wait_healthy(120)
    except RuntimeError as exc:
        outcome.problems.append(f"the old leader did not rejoin: {exc}")


def _post(http: httpx.Client, path: str, body: dict | None = None, **kwargs) -> int:
    """POST that starts a job; the job's id."""
    answer = http.post(path, json=body, **kwargs)
    answer.raise_for_status()
    return answer.json()["job_id"]


def _start_jobs(http: httpx.Client) -> dict[str, int]:
    ids = "".join(f"{n}\n" for n in range(1, IMPORTED + 1))
    headers = {"Content-Type": "text/csv", "Idempotency-Key": "failover-import"}
    return {
        "assign": _post(http, "/segments", {"segment": "FA", "auto_percent": 50}),
        "import": _post(http, "/segments/FI/users", content=ids, headers=headers),
    }


def _measure(outcome: Outcome, record, fault_at: float) -> None:
    writes = [a for a in record.answers if a.kind == "write" and a.started >= fault_at]
    failed = [a.started for a in writes if not (200 <= a.status < 300 or a.status == 409)]
    last_failed = max(failed, default=fault_at)
    done = [a.ended for a in writes if a.started >= last_failed and 200 <= a.status < 300]
    back = min(done, default=time.monotonic())
    outcome.write_back_s = round(back - fault_at, 2)
    if failed:
        outcome.failed_s = [round(min(failed) - fault_at, 2), round(last_failed - fault_at, 2)]
    outcome.window = dict(record.statuses(fault_at, back))
    outcome.statuses = dict(record.statuses())
    outcome.slowest_s = round(max(a.ended - a.started for a in record.answers), 2)
    for answer in record.unexpected()[:5]:
        outcome.problems.append(f"answer outside the contract: {answer}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--runs", type=int, default=1, help="runs of each fault")
    parser.add_argument("--asynchronous", action="store_true", help="synchronous_mode: false")
    parser.add_argument("--max-lag-on-failover", type=int, default=1048576, help="bytes")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"))
    args = parser.parse_args()
    reason = missing()
    if reason:
        sys.exit(f"bench.failover: {reason}")
    cluster = PatroniCluster(
        nodes=2, synchronous=not args.asynchronous, max_lag_on_failover=args.max_lag_on_failover
    )
    outcomes = []
    try:
        cluster.start()
        with tempfile.TemporaryDirectory(prefix="segments-failover-") as logdir:
            for fault in args.faults.split(","):
                for n in range(args.runs):
                    outcome = run(cluster, fault, f"failover_{fault}_{n}", args.redis, Path(logdir))
                    outcomes.append(outcome)
                    print(json.dumps(asdict(outcome) | {"problems": outcome.problems[:3]}))
    finally:
        cluster.stop()
    print(summary(outcomes))
    print(f"machine: {load_note()}")


def summary(outcomes: list[Outcome]) -> str:
    """A markdown table per fault: seconds until writes succeed, the answers in that
    window (summed over the runs), the slowest answer, lost writes."""
    lines = [
        "| fault | synchronous | runs | writes back after, s: median [min-max] "
        "| answers in the window | slowest answer, s | acknowledged writes | lost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fault in dict.fromkeys(o.fault for o in outcomes):
        mine = [o for o in outcomes if o.fault == fault]
        backs = sorted(o.write_back_s for o in mine)
        window: Counter = Counter()
        for o in mine:
            window.update(o.window)
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(window.items()))
        lines.append(
            f"| {fault} | {mine[0].synchronous} | {len(mine)} "
            f"| {backs[len(backs) // 2]} [{backs[0]}-{backs[-1]}] | {answers} "
            f"| {max(o.slowest_s for o in mine)} | {sum(o.acknowledged for o in mine)} "
            f"| {sum(o.lost for o in mine)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
