"""Run the service: bind, load the model once, print the ready line, serve until SIGTERM/SIGINT.

The ready line is the one line the service writes on stdout (flushed)::

    ATT3D_READY {"host": "127.0.0.1", "port": 40123, "url": "http://127.0.0.1:40123",
                 "token_file": "/home/me/.local/share/att3d/token", "pid": 1234, "api": 1, "model": "..."}

(one line, :func:`blender_att3d.wire.ready.format_ready_line`; ``token_file`` is null when the token
came from ``ATT3D_TOKEN``). Logs go to stderr; ``--log-level info`` shows how long each startup stage took.

Startup does only what the first request needs: importing torch and the web stack, loading the model
(the text encoder reads its config, nothing more: a warm embedding cache needs no transformers). The
encoder's tokenizer and model and the training-prompt index load on a background thread after the
ready line; a request that needs them first waits for them.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from blender_att3d.wire.ready import format_ready_line, format_stage_line
from blender_att3d.wire.routes import API_VERSION

from .auth import HostPolicy, is_loopback, resolve_token

log = logging.getLogger("att3d.service")

GRACEFUL_S = 3  # after SIGTERM, how long open connections may take to finish (all are answered first)
WORKER_GRACE_S = 1.0  # and how long the running job may take to reach its next cancel point


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, not ours (PermissionError), or no signals on this platform
        return True
    return True


def _watch_parent(pid: int, server) -> None:
    """Stop the server when the process that started it (e.g. Blender) is gone, even after a crash."""
    while True:
        time.sleep(1.0)
        if not _alive(pid) or (os.name == "posix" and os.getppid() == 1):
            log.warning("parent process %d is gone: stopping", pid)
            server.handle_exit(signal.SIGTERM, None)
            return


class _Stages:
    """Startup stage timings for the log, from the process start (Python's own import included)."""

    def __init__(self) -> None:
        self.start = _process_start()
        self.last = self.start
        self.times: list[tuple[str, float]] = [("start Python", time.monotonic() - self.start)]
        self.last = time.monotonic()

    def done(self, stage: str) -> None:
        now = time.monotonic()
        self.times.append((stage, now - self.last))
        log.info("%s: %.2f s", stage, now - self.last)
        self.last = now

    def total(self) -> float:
        return time.monotonic() - self.start

    def summary(self) -> str:
        return ", ".join(f"{name} {t:.2f} s" for name, t in self.times)


def _process_start() -> float:
    """When this process started, on the monotonic clock (Linux: /proc; elsewhere: now)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        started_ago = uptime - ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - max(0.0, started_ago)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()


def check_host(host: str, allow_remote: bool) -> None:
    if not is_loopback(host) and not allow_remote:
        raise ValueError(f"refusing to listen on {host!r}: that is reachable from other computers. "
                         "Pass --allow-remote to do it on purpose; clients then need the token "
                         "(ATT3D_TOKEN or the token file), and the traffic is plain HTTP, so put it behind "
                         "TLS (a reverse proxy or an SSH tunnel) on untrusted networks")


def bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ValueError(f"cannot listen on {host!r}: {e.strerror or e}") from None
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(model: str = "demo", host: str = "127.0.0.1", port: int = 0, device: str = "auto",
          allow_remote: bool = False, token_file: str | None = None, rotate_token: bool = False,
          max_queue: int = 64, threads: int | None = None, log_level: str = "warning",
          parent_pid: int | None = None, allow_hosts: list[str] | tuple[str, ...] = (),
          engine: Any = None) -> int:
    """Serve until SIGTERM/SIGINT, then exit 0 within a few seconds (see :func:`_stop`).
    ``engine``: an already loaded :class:`~backend.engine.Engine` (or a stand-in with its
    operations, for tests) instead of loading ``model``."""
    check_host(host, allow_remote)
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be in 0–65535, got {port}")
    if max_queue < 1:
        raise ValueError("--max-queue must be at least 1")
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING), stream=sys.stderr,
                        format="att3d serve: %(levelname)s %(message)s")
    token, path = resolve_token(token_file, rotate_token)
    sock = bind(host, port)
    stages = _Stages()

    import torch

    stages.done("import torch")
    import uvicorn

    from ..engine import Engine
    from ..model import ModelFolderError
    from .app import OPERATIONS, create_app
    from .connections import KEEP_ALIVE_S, GuardedH11Protocol, accept_batch
    from .worker import Worker

    stages.done("import the web stack")
    if threads:
        torch.set_num_threads(int(threads))
    if engine is None:
        print(format_stage_line("loading the model"), file=sys.stderr, flush=True)  # the client tells the artist
        try:
            engine = Engine.load(model, device=device)
        except ModelFolderError as e:
            sock.close()
            raise ModelFolderError(f"{e}; pass --model with a model folder (e.g. one made by "
                                   "`att3d init-model DIR`)") from None
    stages.done("load the model")
    # before the ready line, each stage named to the client: the first Generate then finds the text
    # encoder and the prompt index loaded, and the artist saw what the start waited for
    engine.warm(lambda stage: print(format_stage_line(stage), file=sys.stderr, flush=True))
    stages.done("warm the text encoder and prompt index")
    info: dict[str, Any] = dataclasses.replace(engine.info(), max_queue=max_queue).as_dict()
    worker = Worker(engine, OPERATIONS, max_queue=max_queue).start()
    app = create_app(worker, token, info, token_hint=str(path) if path else "ATT3D_TOKEN",
                     host_allowed=HostPolicy(allow_hosts, remote=allow_remote))
    bound_host, bound_port = sock.getsockname()[:2]
    ready = {"host": bound_host, "port": bound_port,
             "url": f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}",
             "token_file": str(path) if path else None, "pid": os.getpid(), "api": API_VERSION,
             "model": info.get("model")}

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                stages.done("start the server")
                sys.stdout.write(format_ready_line(ready) + "\n")
                sys.stdout.flush()
                log.info("ready in %.2f s (%s)", stages.total(), stages.summary())

        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            worker.shutdown(timeout=0)  # cancel queued and running jobs so waiting requests end now

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", http=GuardedH11Protocol,
                            timeout_graceful_shutdown=GRACEFUL_S, timeout_keep_alive=KEEP_ALIVE_S,
                            backlog=accept_batch(), server_header=False)
    server = Server(config)
    if parent_pid:
        threading.Thread(target=_watch_parent, args=(parent_pid, server), daemon=True,
                         name="att3d-parent-watch").start()
    # uvicorn re-raises the captured signal once it has shut down; with these handlers in place
    # that re-raise is harmless and a SIGTERM ends in a clean exit (status 0).
    stopped: list[int] = []
    previous = {s: signal.signal(s, lambda sig, frame: stopped.append(sig)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        sock.close()
        worker.shutdown(timeout=0)
    _stop(worker)
    print("att3d serve: stopped", file=sys.stderr)
    return 0


def _stop(worker) -> None:
    """After the HTTP server stopped: every waiting client has had its answer (503 JSON for jobs cut
    short: :meth:`Worker.shutdown` finished them as cancelled when the signal came). Give the worker
    a moment to reach a cancel point; if it is still inside an operation (native code: marching
    cubes, a big matmul), leave at once with status 0. Finalising the interpreter under a thread
    that runs native code is what aborted the process ("terminate called without an active
    exception", status 134) and a running extraction can take a minute to notice a cancel."""
    worker.shutdown(timeout=WORKER_GRACE_S)
    if worker.busy:
        log.warning("the running job is still in native code: exiting without waiting for it")
        print("att3d serve: stopped", file=sys.stderr)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(0)
