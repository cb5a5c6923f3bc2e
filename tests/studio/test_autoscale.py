"""Autoscaling bounds: with ``--min-replicas 1 --max-replicas 2`` a queue of waiting jobs makes Serve
start the second replica (the store keeps every replica full, above the target of 0.8 jobs each)."""
from __future__ import annotations

import time

import pytest
from studio_harness import Http

pytestmark = pytest.mark.slow


def test_a_waiting_queue_adds_a_replica_up_to_the_bound(studio_cluster):
    studio = studio_cluster.deploy("demo", ("alice",), min_replicas=1, max_replicas=2, threads=1, replica_cpus=1.0)
    api = Http(studio.url, studio.tokens["alice"])
    assert api.json("GET", "/v1/info")["replicas"] == 1
    jobs = [api.submit("a pig riding a bike", 512) for _ in range(30)]
    t0, seen = time.monotonic(), []
    try:
        while time.monotonic() - t0 < 150:
            info = api.json("GET", "/v1/info")
            seen.append((round(time.monotonic() - t0), info["replicas"], info["queue"]["queued"]))
            if info["replicas"] == 2 or not info["queue"]["queued"]:
                break
            time.sleep(2)
        assert seen[-1][1] == 2, f"no second replica while jobs waited: {seen}"
        print(f"second replica after {seen[-1][0]} s")
    finally:
        for j in jobs:
            api.request("DELETE", f"/v1/jobs/{j['id']}")
