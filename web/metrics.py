"""Prometheus metrics at /metrics: HTTP requests by route and status with latency
histograms (web/middleware.py), bulk jobs by kind and state with run time and queue
lag, read from the jobs table at scrape time, and the read replica's lag and use.

With several web processes (``python -m web`` sets PROMETHEUS_MULTIPROC_DIR), each writes
its samples to a file there and a scrape sums the files of all processes, so every
process answers the same totals.
"""

from __future__ import annotations

import os

from litestar import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from models import jobs
from models.infra.replica import ReplicaStatus, Side
from web.auth import READ, SCOPE
from web.methods import get_and_head

# Set by each process's replica lag check (models/infra/replica.py); a scrape sums the files
# of the live processes as each gauge's mode says.
REPLICA_LAG = Gauge(
    "segments_replica_lag_seconds",
    "Replay lag of the read replica, the largest any live web process measured",
    multiprocess_mode="livemax",
)
REPLICA_IN_USE = Gauge(
    "segments_replica_in_use",
    "Web processes whose reads go to the replica (0: the primary serves every read)",
    multiprocess_mode="livesum",
)


def forget_process() -> None:
    """On shutdown: drop this process's "live" gauges, so a respawned worker's
    predecessor is not counted."""
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shared:
        mark_process_dead(os.getpid(), shared)


def record_replica(status: ReplicaStatus) -> None:
    if status.lag_ms is not None and status.lag_ms != float("inf"):
        REPLICA_LAG.set(status.lag_ms / 1000)
    REPLICA_IN_USE.set(1 if status.serving is Side.REPLICA else 0)


class JobsCollector(Collector):
    def describe(self):
        # Lets the registry learn the metric names without querying the database.
        return []

    def collect(self):
        stats = jobs.job_stats()
        count = GaugeMetricFamily(
            "segments_jobs", "Bulk jobs by kind and state", labels=["kind", "state"]
        )
        seconds = CounterMetricFamily(
            "segments_job_run_seconds", "Total run time of finished jobs", labels=["kind", "state"]
        )
        for kind, state, n, total in stats.by_kind_state:
            count.add_metric([kind, state], n)
            seconds.add_metric([kind, state], total)
        yield count
        yield seconds
        yield GaugeMetricFamily(
            "segments_queue_lag_seconds",
            "Age of the oldest job still queued",
            value=stats.queue_lag_seconds,
        )


_registered: list[CollectorRegistry] = []


def register_job_metrics() -> None:
    """Idempotent: tests build several apps in one process."""
    if _registered:
        return
    jobs_collector = JobsCollector()
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shared:
        # The process's own REGISTRY holds only its own samples: scrape the files instead.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)
    else:
        registry = REGISTRY
    registry.register(jobs_collector)
    _registered.append(registry)


@get_and_head("/metrics", sync_to_thread=True, include_in_schema=False, opt={SCOPE: READ})
def metrics() -> Response:
    return Response(generate_latest(_registered[0]), media_type=CONTENT_TYPE_LATEST)
