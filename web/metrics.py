"""Prometheus metrics at /metrics: HTTP requests by route and status with latency
histograms (web/middleware.py), and bulk jobs by kind and state with run time and queue
lag, read from the jobs table at scrape time.

With several web processes (``python -m web`` sets PROMETHEUS_MULTIPROC_DIR), each writes
its samples to a file there and a scrape sums the files of all processes, so every
process answers the same totals.
"""

from __future__ import annotations

import os

from litestar import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from models import jobs
from web.methods import get_and_head


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


@get_and_head("/metrics", sync_to_thread=True, include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(_registered[0]), media_type=CONTENT_TYPE_LATEST)
