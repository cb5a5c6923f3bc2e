"""``python -m backend.service.bench``: service figures as one JSON object on stdout.

* median latency of ``generate`` at 128³ embedded (in-process: the :class:`~.engine.Engine` on one
  worker thread, as the add-on's embedded client runs it) vs through HTTP (a local ``att3d serve``,
  started as the add-on's subprocess client starts it; the jobs API with long polls, as that client
  uses it, and the one-request ``POST /v1/generate``), and the difference = what the transport adds;
* throughput with 16 concurrent HTTP clients;
* peak RSS of the service process (VmHWM).

It speaks the protocol through :mod:`blender_att3d.wire` only, like the rest of the backend.

Without ``--model`` it benchmarks a randomly initialised paper-size model (``att3d init-model``
default preset) written to a temporary folder. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from blender_att3d.wire import payload, routes
from blender_att3d.wire.job_state import JobState
from blender_att3d.wire.ready import is_ready_line, parse_ready_line
from blender_att3d.wire.token import TOKEN_ENV

PROMPT = "a red cube wearing a party hat"
POLL_WAIT_S = 2.0  # the add-on's HTTP client's long poll
ROOT = Path(__file__).resolve().parents[2]  # holds the backend package


def _log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _status(pid: int, key: str) -> int:
    """A /proc/PID/status field in kB (0 where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _Service:
    """A local ``att3d serve`` (free loopback port, fresh token, as the add-on's subprocess client
    starts it) and the requests the benchmark sends it."""

    def __init__(self, model: str, device: str) -> None:
        token = secrets.token_urlsafe(32)
        env = {**os.environ, TOKEN_ENV: token, "ATT3D_DATA_DIR": tempfile.mkdtemp(), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--model", model, "--device",
                                      device, "--host", "127.0.0.1", "--port", "0"], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        ready = None
        for line in self.proc.stdout or ():
            if is_ready_line(line):
                ready = parse_ready_line(line)
                break
        if ready is None:
            raise RuntimeError(f"att3d serve exited with status {self.proc.wait()} before it was ready")
        self.host, self.port = ready["host"], ready["port"]
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "Accept": f"{payload.CONTENT_TYPE}, application/json"}

    def request(self, method: str, path: str, data: bytes | None = None) -> tuple[int, bytes, str]:
        """(status, body, Server-Timing header) of one request on a fresh connection."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=600)
        try:
            c.request(method, path, data, self.headers)
            r = c.getresponse()
            return r.status, r.read(), r.getheader("Server-Timing", "")
        finally:
            c.close()

    def _ok(self, method: str, path: str, data: bytes | None = None) -> bytes:
        status, content, _ = self.request(method, path, data)
        assert status < 400, content[:200]
        return content

    def generate_sync(self, body: bytes) -> tuple[bytes, float]:
        """``POST /v1/generate``: (the payload, the server's compute seconds from Server-Timing)."""
        status, data, timing = self.request("POST", routes.GENERATE, body)
        assert status == 200, data[:200]
        return data, float(timing.split("dur=")[1]) / 1000 if "dur=" in timing else float("nan")

    def generate_job(self, body: bytes) -> float:
        """Submit, long-poll, fetch and decode, forget (the add-on's HTTP client's requests); returns
        the server's compute seconds."""
        st = json.loads(self._ok("POST", routes.submit_job("generate"), body))
        job_id, version = st["id"], -1
        while st["status"] in (JobState.QUEUED, JobState.RUNNING):
            st = json.loads(self._ok("GET", f"{routes.job(job_id)}?wait={POLL_WAIT_S}&since={version}"))
            version = int(st.get("version", -1))
        assert st["status"] == JobState.DONE, st
        payload.decode(self._ok("GET", routes.job_result(job_id)))
        self._ok("DELETE", routes.job(job_id))
        return float(st.get("compute_s") or float("nan"))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(model: str | None = None, device: str = "cpu", resolution: int = 128, repeats: int = 7,
        clients: int = 16, per_client: int = 4, throughput_resolution: int = 128) -> dict[str, Any]:
    import torch

    from ..engine import Engine

    tmp = None
    if model is None:
        from ..model import ModelConfig, build_model, save_model

        tmp = tempfile.TemporaryDirectory(prefix="att3d-bench-")
        model = os.path.join(tmp.name, "paper")
        save_model(build_model(ModelConfig(), 0), model, {"name": "paper-random", "prompts": [PROMPT]})
        _log(f"wrote a paper-size random model to {model}")
    out: dict[str, Any] = {"model": model if tmp is None else "paper preset (random init)", "device": device,
                           "resolution": resolution, "repeats": repeats, "torch_threads": torch.get_num_threads(),
                           "cpu_count": os.cpu_count()}
    try:
        _log("embedded (warm-up)")
        engine = Engine.load(model, device=device)
        # one worker thread owns the model, as in the embedded client: torch runs off the caller's thread
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="att3d-embedded")
        out["parameters"] = sum(p.numel() for p in engine.pipeline.model.parameters())
        mesh = pool.submit(engine.generate, PROMPT, resolution).result()
        out["vertices"], out["faces"] = int(len(mesh.positions)), int(len(mesh.faces))

        _log("starting the service")
        t0 = time.perf_counter()
        service = _Service(model, device)
        out["service_start_s"] = round(time.perf_counter() - t0, 3)
        try:
            pid = service.proc.pid
            rss_idle = _status(pid, "VmRSS")
            body = json.dumps({"prompt": PROMPT, "resolution": resolution}).encode()
            server_compute: list[float] = []

            def sync_call() -> bytes:
                data, compute_s = service.generate_sync(body)
                server_compute.append(compute_s)
                return data

            def jobs_call() -> None:
                server_compute.append(service.generate_job(body))

            calls = {"embedded": lambda: pool.submit(engine.generate, PROMPT, resolution).result(),
                     "http_jobs": jobs_call, "http_sync": sync_call}
            for fn in calls.values():  # warm-up
                fn()
            # Interleaved rounds (the order rotates) so that load from elsewhere on the machine hits
            # every transport alike. The transport overhead of each HTTP call is its latency minus
            # the server's own compute time for that very request (Server-Timing / compute_s), which
            # is robust to the machine's load; the difference of medians is reported too.
            times: dict[str, list[float]] = {k: [] for k in calls}
            overhead: dict[str, list[float]] = {"http_jobs": [], "http_sync": []}
            names = list(calls)
            for i in range(repeats):
                _log(f"round {i + 1}/{repeats}")
                for name in names[i % 3:] + names[:i % 3]:
                    t = time.perf_counter()
                    calls[name]()
                    dt = time.perf_counter() - t
                    times[name].append(dt)
                    if name in overhead:
                        overhead[name].append(dt - server_compute[-1])
            med = {k: statistics.median(v) for k, v in times.items()}
            out["embedded_generate_s"] = med["embedded"]
            out["http_generate_s"] = med["http_jobs"]
            out["http_sync_generate_s"] = med["http_sync"]
            out["transport_overhead_ms"] = round(1000 * statistics.median(overhead["http_jobs"]), 2)
            out["transport_overhead_sync_ms"] = round(1000 * statistics.median(overhead["http_sync"]), 2)
            out["difference_of_medians_ms"] = round(1000 * (med["http_jobs"] - med["embedded"]), 1)
            out["payload_bytes"] = len(sync_call())
            out["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

            _log(f"throughput: {clients} clients x {per_client} requests at {throughput_resolution}")
            tb = json.dumps({"prompt": PROMPT, "resolution": throughput_resolution}).encode()
            errors: list[str] = []

            def client() -> None:
                for _ in range(per_client):
                    try:
                        status = service.request("POST", routes.GENERATE, tb)[0]
                        if status != 200:
                            errors.append(str(status))
                    except Exception as e:  # noqa: BLE001
                        errors.append(repr(e))

            threads = [threading.Thread(target=client) for _ in range(clients)]
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            dt = time.perf_counter() - t0
            n = clients * per_client
            out["throughput"] = {"clients": clients, "requests": n, "resolution": throughput_resolution,
                                 "seconds": round(dt, 3), "requests_per_s": round(n / dt, 3), "errors": len(errors)}
            out["service_rss_idle_mib"] = round(rss_idle / 1024, 1)
            out["service_rss_now_mib"] = round(_status(pid, "VmRSS") / 1024, 1)
            out["service_peak_rss_mib"] = round(_status(pid, "VmHWM") / 1024, 1)
        finally:
            service.stop()
        pool.shutdown()
    finally:
        if tmp is not None:
            tmp.cleanup()
    for k in ("embedded_generate_s", "http_generate_s", "http_sync_generate_s"):
        out[k] = round(out[k], 4)
    out["note"] = ("transport_overhead_*: median over calls of (HTTP latency − the server's compute time for "
                   "that call); difference_of_medians_ms is noisy on a loaded machine (see load_average)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend.service.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model folder (default: a random paper-size model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--per-client", type=int, default=4)
    p.add_argument("--throughput-resolution", type=int, default=128)
    a = p.parse_args(argv)
    res = run(a.model, a.device, a.resolution, a.repeats, a.clients, a.per_client, a.throughput_resolution)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
