"""Broker overhead, Redis against RabbitMQ, in alternating rounds: what one job message
costs the sender (the web tier; confirmed on RabbitMQ) and how fast one worker process
(Dramatiq's Worker, 4 threads) drains them.

    python -m bench.broker [--messages 2000] [--rounds 3] [--database DSN]
                           [--redis URL] [--rabbitmq URL]

The messages are ``run_job`` for job ids that do not exist: the actor's one claim query
finds nothing, so the drain rate is the broker's round trip plus one small UPDATE.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import threading
import time

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.common import bench_dsn, progress
from models.infra.settings import load_settings
from scripts.procs import migrated_database
from workers.boot import bootstrap
from workers.broker import delete_queues

NAMESPACE = "bench_broker"
NO_SUCH_JOB = 10**15


class Countdown(dramatiq.Middleware):
    """Sets ``done`` once the worker has processed ``left`` messages."""

    def __init__(self, left: int) -> None:
        self.left = left
        self.lock = threading.Lock()
        self.done = threading.Event()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        with self.lock:
            self.left -= 1
            if self.left == 0:
                self.done.set()


def one_round(url: str, dsn: str, messages: int) -> dict[str, float]:
    settings = dataclasses.replace(
        load_settings({"DATABASE_DSN": dsn}), broker_url=url, queue_namespace=NAMESPACE
    )
    broker = bootstrap(settings).broker
    actor = broker.get_actor("run_job")
    broker.flush_all()
    seconds = []
    for i in range(messages):
        started = time.perf_counter()
        actor.send(NO_SUCH_JOB + i)
        seconds.append(time.perf_counter() - started)
    countdown = Countdown(messages)
    broker.add_middleware(countdown)
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    started = time.perf_counter()
    worker.start()
    if not countdown.done.wait(600):
        raise RuntimeError(f"{countdown.left} of {messages} messages not processed")
    drained = time.perf_counter() - started
    worker.stop()
    if isinstance(broker, RabbitmqBroker):
        delete_queues(broker)
    else:
        broker.flush_all()
    broker.close()
    seconds.sort()
    return {
        "send_p50_ms": 1000 * statistics.median(seconds),
        "send_p99_ms": 1000 * seconds[int(0.99 * (len(seconds) - 1))],
        "sends_per_s": messages / sum(seconds),
        "drain_per_s": messages / drained,
    }


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.broker")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--database", help="DSN (default: the bench database)")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--rabbitmq", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    args = ap.parse_args()
    dsn = bench_dsn(args.database)
    migrated_database(dsn)
    brokers = {"redis": args.redis, "rabbitmq": args.rabbitmq}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in brokers}
    for n in range(args.rounds):
        for name, url in brokers.items():
            progress(f"round {n + 1}: {name}")
            results[name].append(one_round(url, dsn, args.messages))
    print(f"{args.messages} messages, {args.rounds} alternating rounds; median of rounds")
    print("| broker | send p50 ms | send p99 ms | sends/s | drained/s (1 worker, 4 threads) |")
    print("|---|---|---|---|---|")
    for name, rounds in results.items():
        med = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        print(
            f"| {name} | {med['send_p50_ms']:.2f} | {med['send_p99_ms']:.2f} "
            f"| {med['sends_per_s']:.0f} | {med['drain_per_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
