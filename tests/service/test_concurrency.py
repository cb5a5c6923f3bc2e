"""16 concurrent clients × 50 requests against one server: all succeed, memory stays bounded."""
from __future__ import annotations

import threading

import pytest

from blender_att3d.wire import payload


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs /proc")
def test_16_clients_x_50_requests(server):
    api = server.api
    prompts = ["a red cube", "a blue sphere", "a green cone", "a yellow torus"]
    for p in prompts:  # warm the embedding cache
        assert api.post("/v1/generate", {"prompt": p, "resolution": 16}).status == 200
    before = rss_kb(server.proc.pid)
    failures: list[str] = []
    counts = [0] * 16

    def client(i: int) -> None:
        for j in range(50):
            body = {"prompt": prompts[(i + j) % 4], "resolution": 16 + (i + j) % 9}
            try:
                r = api.post("/v1/generate", body, timeout=120)
                if r.status != 200:
                    failures.append(f"{i}/{j}: {r.status} {r.body[:200]!r}")
                    continue
                m = payload.decode(r.body)
                if m.meta.get("resolution") != body["resolution"]:
                    failures.append(f"{i}/{j}: wrong result")
                counts[i] += 1
            except Exception as e:  # noqa: BLE001
                failures.append(f"{i}/{j}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not failures, failures[:5]
    assert sum(counts) == 800
    after = rss_kb(server.proc.pid)
    assert after - before < 200_000, f"RSS grew by {(after - before) / 1024:.0f} MiB"
    stats = api.get("/v1/info").json()["queue"]
    assert stats["queued"] == 0 and stats["jobs_kept"] <= 64
