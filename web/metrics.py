"""Prometheus metrics at /metrics: HTTP requests by route and status with latency
histograms (web/middleware.py), and bulk jobs by kind and state with run time and queue
lag, read from the jobs table at scrape time."""

from __future__ import annotations

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from models import jobs


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


_registered: list[JobsCollector] = []


def register_job_metrics() -> None:
    """Idempotent: tests build several apps in one process."""
    if not _registered:
        _registered.append(JobsCollector())
        REGISTRY.register(_registered[0])


@get("/metrics", sync_to_thread=True, include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
