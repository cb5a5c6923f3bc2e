"""Run ``att3d studio``: start (or join) Ray, deploy the application, print the ready line, serve until
SIGTERM/SIGINT, then stop cleanly.

The ready line is ``att3d serve``'s (:func:`blender_att3d.wire.ready.format_ready_line`) with
``"studio": true``, the replica count and, with a tokens file, ``tokens_file`` instead of
``token_file``. On a local Ray instance it starts, the studio stops Ray too; on an existing cluster
(``--address``) it deletes its own application and leaves the cluster running.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from blender_att3d.wire import limits
from blender_att3d.wire.ready import format_ready_line, format_stage_line
from blender_att3d.wire.routes import API_VERSION

from ..service.auth import resolve_token
from ..service.server import check_host
from .users import digest, read_tokens_file

log = logging.getLogger("att3d.studio")

INSTALL_HINT = "`att3d studio` needs Ray Serve: pip install 'att3d[studio]'"
STOP_GRACE_S = 1.5  # after the jobs were cut short: time for waiting clients to hear it


def require_ray() -> None:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None


def free_port(host: str) -> int:
    """A port free now on ``host`` (Serve's proxy binds by number, it cannot take 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def init_ray(address: str | None, num_cpus: int | None, num_gpus: int | None, object_store_mb: int) -> bool:
    """Join the cluster at ``address``, or start a local Ray instance (dashboard off, a small object
    store); True when this process started it (and so must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "configure_logging": True, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, namespace="att3d", **quiet)
        return False
    # the local workers (replicas) inherit this environment: let them import this very checkout of the
    # backend, also when it runs from a source tree rather than an installed package
    root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, namespace="att3d",
             object_store_memory=object_store_mb * 1024 * 1024, **quiet)
    return True


def deploy(settings: Any, host: str, port: int, wait_s: float = 600.0) -> str:
    """Start Serve's HTTP proxy on ``host:port`` and run the application; its URL."""
    from ray import serve

    from .deployments import APP, build

    info = {"studio": True, "limits": {**limits.as_dict(), "max_queue": settings.max_queue}}
    serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
    serve.run(build(settings, info), name=APP, route_prefix="/", blocking=False)
    deadline = time.monotonic() + wait_s
    while True:  # serve.run returns once the app is deployed; wait until the model replicas run too
        status = serve.status().applications.get(APP)
        if status is not None and str(status.status).endswith("RUNNING"):
            break
        if status is not None and str(status.status).endswith(("DEPLOY_FAILED", "UNHEALTHY")):
            raise RuntimeError(f"the studio application failed to start: {status.message[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the studio application did not start within {wait_s:.0f} s")
        time.sleep(0.5)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def stop(started_ray: bool) -> None:
    """Cut short every job (their clients are answered), then remove the application, and stop Ray
    if this process started it."""
    import ray
    from ray import serve

    from .deployments import APP, JOBS

    if not ray.is_initialized():  # Ray never started: nothing to stop (and serve.* would start it)
        return
    try:
        jobs: Any = serve.get_deployment_handle(JOBS, app_name=APP)
        cut = jobs.stop_jobs.remote().result(timeout_s=10)
        if cut:
            log.warning("cancelled %d unfinished jobs", cut)
        time.sleep(STOP_GRACE_S)  # long polls answer within their next DISCONNECT_POLL_S
    except Exception as e:  # noqa: BLE001 - the app is gone already: nothing to cut short
        log.warning("could not cancel the jobs: %s", e)
    try:
        if started_ray:
            serve.shutdown()
        else:
            serve.delete(APP)
    finally:
        if started_ray:
            ray.shutdown()


def studio(settings: Any, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False,
           token_file: str | None = None, rotate_token: bool = False, tokens_file: str | None = None,
           address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
           object_store_mb: int = 200, log_level: str = "warning") -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean stop."""
    require_ray()
    check_host(host, allow_remote)
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be in 0–65535, got {port}")
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING), stream=sys.stderr,
                        format="att3d studio: %(levelname)s %(message)s")
    ready: dict[str, Any] = {}
    if tokens_file:
        settings.users = read_tokens_file(tokens_file)
        settings.token_hint = str(Path(tokens_file).expanduser())
        ready["tokens_file"], ready["token_file"] = settings.token_hint, None
    else:  # one token, as `att3d serve` keeps it
        token, path = resolve_token(token_file, rotate_token)
        settings.users = {digest(token): "default"}
        settings.token_hint = str(path) if path else "ATT3D_TOKEN"
        ready["token_file"] = str(path) if path else None
    settings.allow_remote = allow_remote
    port = port or free_port(host)

    stopping = threading.Event()
    previous = {s: signal.signal(s, lambda sig, frame: stopping.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    started_ray = False
    try:
        print(format_stage_line("starting Ray"), file=sys.stderr, flush=True)
        started_ray = init_ray(address, num_cpus, num_gpus, object_store_mb)
        # Ray installs its own SIGTERM handler, which ends the process at once: ours again, so that a
        # SIGTERM stops the studio (and the Ray instance it started) cleanly
        for s in previous:
            signal.signal(s, lambda sig, frame: stopping.set())
        print(format_stage_line("loading the model on the replicas"), file=sys.stderr, flush=True)
        url = deploy(settings, host, port)
        ready.update(host=host, port=port, url=url, pid=os.getpid(), api=API_VERSION, model=settings.model,
                     studio=True, replicas=settings.replicas if settings.min_replicas is None else
                     [settings.min_replicas, settings.max_replicas])
        if not stopping.is_set():
            sys.stdout.write(format_ready_line(ready) + "\n")
            sys.stdout.flush()
        while not stopping.wait(1.0):
            pass
        log.info("stopping")
    finally:
        try:
            stop(started_ray)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    print("att3d studio: stopped", file=sys.stderr, flush=True)
    return 0
