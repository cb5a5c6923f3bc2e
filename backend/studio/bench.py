"""``python -m backend.studio.bench``: throughput (jobs/s) of ``att3d serve`` and of ``att3d studio`` with
1 and 2 replicas (and 2 replicas batching), in one run, as one JSON object on stdout.

The same load for each: ``--jobs`` generate jobs at ``--resolution`` from ``--users`` users at once
(each job submitted, long-polled and fetched through the jobs API as the add-on's HTTP client does).
Every configuration uses all ``--cpus`` cores: ``att3d serve`` and one replica with that many torch
threads, two replicas with half each. The studio runs on one local Ray instance started here (its
application deployed again for each configuration). Also measured: what a batch buys the mapping
network (one pass for ``--batch`` prompts against one pass each). Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from blender_att3d.wire.ready import is_ready_line, parse_ready_line

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["a red cube wearing a party hat", "a pig riding a bike", "a blue sphere", "a green cone",
           "a wooden chair", "a yellow duck", "a tall stone tower", "a small boat"]


def _log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _request(url: str, token: str, method: str, path: str, body: Any = None,
             timeout: float = 600) -> tuple[int, bytes]:
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=timeout)
    try:
        h = {"Authorization": f"Bearer {token}"}
        data = None if body is None else json.dumps(body).encode()
        if data:
            h["Content-Type"] = "application/json"
        c.request(method, path, data, h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _job(url: str, token: str, prompt: str, resolution: int) -> float:
    """One job through the jobs API; returns the server's compute seconds."""
    status, data = _request(url, token, "POST", "/v1/jobs/generate", {"prompt": prompt, "resolution": resolution})
    assert status == 202, data[:200]
    st, version = json.loads(data), -1
    while st["status"] in ("queued", "running"):
        status, data = _request(url, token, "GET", f"/v1/jobs/{st['id']}?wait=5&since={version}")
        st = json.loads(data)
        version = st["version"]
    assert st["status"] == "done", st
    status, data = _request(url, token, "GET", f"/v1/jobs/{st['id']}/result")
    assert status == 200 and data, status
    _request(url, token, "DELETE", f"/v1/jobs/{st['id']}")
    return float(st.get("compute_s") or 0.0)


def load(url: str, tokens: list[str], jobs: int, resolution: int, repeats: int = 3) -> dict[str, Any]:
    """``jobs`` jobs at once, spread over the users' tokens, ``repeats`` times: the median wall time
    and jobs/s (the machine is shared: one round alone is noisy)."""
    _job(url, tokens[0], "a warm-up prompt", resolution)
    walls: list[float] = []
    compute: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(jobs) as pool:
            compute += pool.map(lambda i: _job(url, tokens[i % len(tokens)], PROMPTS[i % len(PROMPTS)], resolution),
                                range(jobs))
        walls.append(time.perf_counter() - t0)
    wall = statistics.median(walls)
    return {"jobs": jobs, "repeats": repeats, "seconds": round(wall, 3), "jobs_per_s": round(jobs / wall, 4),
            "jobs_per_s_each": [round(jobs / w, 3) for w in walls],
            "median_compute_s": round(statistics.median(compute), 4)}


def bench_serve(model: str, threads: int, jobs: int, resolution: int, repeats: int) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    env = {**os.environ, "ATT3D_TOKEN": token, "ATT3D_DATA_DIR": tempfile.mkdtemp(), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--model", model, "--device", "cpu",
                             "--port", "0", "--threads", str(threads)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        ready = None
        for line in proc.stdout or ():
            if is_ready_line(line):
                ready = parse_ready_line(line)
                break
        if ready is None:
            raise RuntimeError(f"att3d serve exited with status {proc.wait()}")
        return {"threads": threads, **load(ready["url"], [token], jobs, resolution, repeats)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def bench_batching(model: str, threads: int, batch: int) -> dict[str, Any]:
    """The mapping network's time per prompt: one pass each against one pass for ``batch`` prompts."""
    import torch

    from ..engine import Engine, Generate

    torch.set_num_threads(threads)
    engine = Engine.load(model, device="cpu")
    prompts = (PROMPTS * batch)[:batch]
    requests = [Generate(p, 64) for p in prompts]
    embs = [engine.pipeline.embed(p) for p in prompts]
    engine.modulations(requests)
    single, batched = [], []
    for _ in range(7):
        t = time.perf_counter()
        for e in embs:
            engine.pipeline.modulate(e)
        single.append((time.perf_counter() - t) / batch)
        t = time.perf_counter()
        engine.modulations(requests)
        batched.append((time.perf_counter() - t) / batch)
    gen = []
    for p in prompts[:3]:
        t = time.perf_counter()
        engine.generate(p, 64)
        gen.append(time.perf_counter() - t)
    return {"batch": batch, "threads": threads,
            "mapping_ms_per_prompt_alone": round(1000 * statistics.median(single), 2),
            "mapping_ms_per_prompt_batched": round(1000 * statistics.median(batched), 2),
            "generate_64_ms": round(1000 * statistics.median(gen), 1)}


def run(model: str = "demo", cpus: int = 2, jobs: int = 24, users: int = 3, resolution: int = 64,
        batch: int = 4, repeats: int = 3) -> dict[str, Any]:
    from .server import free_port, init_ray

    out: dict[str, Any] = {"model": model, "cpus": cpus, "cpu_count": os.cpu_count(), "jobs": jobs, "users": users,
                           "resolution": resolution, "device": "cpu", "repeats": repeats}
    _log("mapping network: alone vs batched")
    out["mapping_batching"] = bench_batching(model, cpus, batch)
    _log(f"att3d serve, {cpus} threads")
    out["serve"] = bench_serve(model, cpus, jobs, resolution, repeats)
    _log("starting a local Ray instance")
    started = init_ray(None, cpus, 0, 200)
    try:
        from ray import serve

        from .deployments import Settings
        from .server import deploy
        from .users import digest

        tokens = [secrets.token_urlsafe(24) for _ in range(users)]
        port = free_port("127.0.0.1")
        half = {"replicas": 2, "threads": max(1, cpus // 2), "replica_cpus": cpus / 2}
        configs: dict[str, dict[str, Any]] = {
            "studio_1_replica": {"replicas": 1, "threads": cpus, "replica_cpus": cpus},
            "studio_2_replicas": half, f"studio_2_replicas_batch_{batch}": {**half, "batch_size": batch}}
        for name, cfg in configs.items():
            _log(name)
            settings = Settings(model=model, device="cpu", users={digest(t): f"user{i}" for i, t in enumerate(tokens)},
                                **cfg)
            t0 = time.perf_counter()
            url = deploy(settings, "127.0.0.1", port)
            deploy_s = round(time.perf_counter() - t0, 1)
            out[name] = {**cfg, "deploy_s": deploy_s, **load(url, tokens, jobs, resolution, repeats)}
            serve.delete("att3d")
    finally:
        if started:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()
    base = out["serve"]["jobs_per_s"]
    out["ratios_to_serve"] = {k: round(v["jobs_per_s"] / base, 3) for k, v in out.items()
                              if isinstance(v, dict) and "jobs_per_s" in v and k != "serve"}
    out["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend.studio.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--cpus", type=int, default=2, help="cores every configuration uses (default 2)")
    p.add_argument("--jobs", type=int, default=24)
    p.add_argument("--users", type=int, default=3)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=4, help="batch size of the batching configuration")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the load per configuration (median)")
    p.add_argument("--out", help="also write the JSON here")
    a = p.parse_args(argv)
    res = {"command": " ".join(["python -m backend.studio.bench", *(sys.argv[1:] if argv is None else argv)]),
           **run(a.model, a.cpus, a.jobs, a.users, a.resolution, a.batch, a.repeats)}
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        from ..fileio import atomic_write_text

        atomic_write_text(a.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
