"""Prometheus metrics of the studio (``GET /v1/metrics``, the text exposition format).

The job store counts jobs (submitted, finished by status, replica failures), times them (waiting,
computing, in all) and, at each scrape, reports the queue length of every user, the jobs in flight
and the model replicas; each ingress replica counts the HTTP requests it answered (by method, route
template and status) and their latencies. ``/v1/metrics`` joins the two. Ray Serve's own metrics
(``ray_serve_*``) are on Ray's metrics port as well, where Ray exports them.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# a 64³ mesh takes a few seconds on a CPU, a 256³ one a minute; on a GPU a fraction of a second
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class StoreMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs_submitted = Counter("att3d_studio_jobs_submitted", "jobs accepted", ["user", "kind"], registry=r)
        self.jobs_finished = Counter("att3d_studio_jobs_finished", "jobs finished", ["user", "kind", "status"],
                                     registry=r)
        self.replica_failures = Counter("att3d_studio_replica_failures", "jobs whose model replica died", registry=r)
        self.wait = Histogram("att3d_studio_job_wait_seconds", "from submission to the start on a replica", ["kind"],
                              buckets=BUCKETS, registry=r)
        self.compute = Histogram("att3d_studio_job_compute_seconds", "on the replica", ["kind"], buckets=BUCKETS,
                                 registry=r)
        self.latency = Histogram("att3d_studio_job_latency_seconds", "from submission to the outcome", ["kind"],
                                 buckets=BUCKETS, registry=r)
        self.queue = Gauge("att3d_studio_queue_length", "jobs waiting, per user", ["user"], registry=r)
        self.in_flight = Gauge("att3d_studio_jobs_in_flight", "jobs sent to model replicas", registry=r)
        self.replicas = Gauge("att3d_studio_replicas", "model replicas running", registry=r)

    def submitted(self, user: str, kind: str) -> None:
        self.jobs_submitted.labels(user, kind).inc()

    def started(self, job: Any) -> None:
        if job.started_at is not None:
            self.wait.labels(job.kind).observe(job.started_at - job.created)

    def finished(self, job: Any) -> None:
        self.jobs_finished.labels(job.user, job.kind, str(job.status)).inc()
        if job.compute_s is not None:
            self.compute.labels(job.kind).observe(job.compute_s)
        if job.finished_at is not None:
            self.latency.labels(job.kind).observe(job.finished_at - job.created)

    def replica_failure(self) -> None:
        self.replica_failures.inc()

    def render(self, queue_lengths: dict[str, int], in_flight: int, replicas: int) -> str:
        self.queue.clear()  # users whose queue emptied drop out rather than stay at their last value
        for user, n in queue_lengths.items():
            self.queue.labels(user or "(express)").set(n)
        self.in_flight.set(in_flight)
        self.replicas.set(replicas)
        return generate_latest(self.registry).decode()


class HttpMetrics:
    """An ASGI middleware counting requests and timing them, by route template (a bounded label set:
    never the raw path, which holds job ids)."""

    def __init__(self, app: Callable, registry: CollectorRegistry | None = None) -> None:
        self.app = app
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("att3d_studio_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.seconds = Histogram("att3d_studio_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=BUCKETS, registry=self.registry)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def record(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            self.requests.labels(scope.get("method", "?"), route, str(status[0])).inc()
            self.seconds.labels(route).observe(time.perf_counter() - t0)

    def render(self) -> str:
        return generate_latest(self.registry).decode()
