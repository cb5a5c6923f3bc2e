"""HTTP clients of ``att3d serve`` (standard library + numpy only).

* :class:`HTTPClient` talks to a running service: ``HTTPClient("http://host:port", token)``.
* :class:`SubprocessClient` starts the service itself with a given Python interpreter
  (``python -m backend.cli serve --port 0``, or an ``att3d`` command), reads its ready line, passes it
  a fresh token through ``ATT3D_TOKEN``, names the start-up stages as they happen, restarts it with
  backoff if it dies (quoting its own last error line when it gives up), and stops it on :meth:`close`.

Long operations go through the jobs API (``POST /v1/jobs/{kind}``, long polls of
``GET /v1/jobs/{id}?wait=``) so that progress callbacks work and :meth:`cancel` can stop them.

On connecting, the client reads ``GET /v1/info``: it refuses a server that speaks another API
version (:data:`~blender_att3d.wire.routes.API_VERSION`), and checks prompts and resolutions
against that server's limits (:attr:`HTTPClient.limits`) before sending them.
"""
from __future__ import annotations

import atexit
import collections
import http.client
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..wire import payload, routes
from ..wire.job_state import JobState
from ..wire.limits import DEFAULT_RESOLUTION, Limits, check_max_states
from ..wire.options import check_mc
from ..wire.ready import is_ready_line, parse_ready_line, parse_stage_line
from ..wire.routes import API_VERSION
from ..wire.token import TOKEN_ENV, read_default_token
from ..wire.types import MeshData, Neighbors, ProgressFn, SequenceData, ServerInfo
from .base import BackendError, BackendUnavailable, Cancelled, Client, InvalidRequest

POLL_WAIT_S = 2.0
#: after a cancel, a new job that waits in the queue is waiting for the server to stop the old one
CANCEL_NOTICE_S = 60.0


class _ConnectionLost(BackendUnavailable):
    """The connection failed (refused, reset): maybe the server died."""


class _NotAnATT3DServer(BackendUnavailable):
    """Something answers at the URL, but not in HTTP (a wrong port, say)."""


def _version_mismatch(url: str, server_api: Any) -> str:
    """What to tell an artist whose add-on and server speak different API versions."""
    if isinstance(server_api, int) and not isinstance(server_api, bool):
        if server_api > API_VERSION:
            todo = "update the ATT3D add-on to the release of that server"
        else:
            todo = "update att3d where the server runs (pip install -U att3d) and restart it"
        theirs = f"API version {server_api}"
    else:
        todo = "check the backend URL, or update both to the same release"
        theirs = f"an unknown API version ({server_api!r})"
    return f"The ATT3D backend at {url} speaks {theirs}; this add-on speaks API version {API_VERSION}: {todo}"


def _json_scalar(obj: Any) -> Any:
    """numpy scalars (a resolution from an array, an α from a slider ...) as the Python numbers the
    embedded client also accepts."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not a JSON value")


class HTTPClient(Client):
    """A client of a running ``att3d serve`` at ``url`` (``http://`` or ``https://``).

    ``check``: reach the server now (health, API version, limits); without it the first request
    finds out, and :attr:`limits` stay this version's until :meth:`info` is called.
    """

    #: seconds the server spent computing the last job's result (what the rest of the latency is not)
    last_compute_s: float | None = None

    def __init__(self, url: str, token: str | None = None, timeout: float = 600.0,
                 connect_timeout: float = 10.0, check: bool = True) -> None:
        self._set_url(url)
        self.token = (token or "").strip() or read_default_token()
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self._active: dict[str, threading.Event] = {}
        self._active_lock = threading.Lock()
        self._closed = False
        self._cancelled_at: float | None = None
        if check:
            self._check_server()

    def _set_url(self, url: str) -> None:
        u = urllib.parse.urlsplit((url or "").strip())
        if u.scheme not in ("http", "https") or not u.hostname:
            raise BackendUnavailable(f"Invalid backend URL {url!r}: use http://host:port (add-on preferences)")
        self.url = f"{u.scheme}://{u.netloc}"
        self._scheme, self._host, self._port = u.scheme, u.hostname, u.port
        self._prefix = u.path.rstrip("/")

    # -- transport ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
                 timeout: float | None = None, auth: bool = True) -> tuple[int, str, bytes]:
        if self._closed:
            raise BackendUnavailable("this ATT3D client was closed")
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.connect_timeout)
        target = self._prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": f"{payload.CONTENT_TYPE}, application/json"}
        data = None
        if body is not None:
            try:
                data = json.dumps(body, allow_nan=False, default=_json_scalar).encode()
            except (ValueError, TypeError) as e:  # NaN / infinity, or an object JSON cannot hold
                raise InvalidRequest(f"this request cannot be sent: {e} (numbers must be finite)") from None
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.connect()
            conn.sock.settimeout(timeout or self.timeout)
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            content = resp.read()
            return resp.status, resp.getheader("Content-Type", ""), content
        except (ConnectionError, http.client.RemoteDisconnected, http.client.IncompleteRead, BrokenPipeError) as e:
            raise _ConnectionLost(f"Lost the connection to the ATT3D backend at {self.url}: {e}") from None
        except TimeoutError:
            raise BackendUnavailable(f"The ATT3D backend at {self.url} did not answer in time") from None
        except http.client.HTTPException as e:  # something answered, but not in HTTP (wrong port?)
            raise _NotAnATT3DServer(f"{self.url} did not answer like an ATT3D backend ({type(e).__name__}: "
                                    f"{str(e).strip()[:100]!r}); check the backend URL in the add-on preferences") \
                from None
        except OSError as e:
            raise BackendUnavailable(f"Cannot reach the ATT3D backend at {self.url}: {e.strerror or e}") from None
        finally:
            conn.close()

    def _json(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
              timeout: float | None = None, auth: bool = True) -> Any:
        status, ctype, content = self._request(method, path, body, query, timeout, auth)
        if status >= 400:
            self._raise(status, content)
        try:
            return json.loads(content)
        except ValueError:
            raise BackendError(f"The ATT3D backend at {self.url} sent an unreadable answer") from None

    def _raise(self, status: int, content: bytes) -> None:
        try:
            msg = str(json.loads(content).get("error") or "")
        except (ValueError, AttributeError):
            msg = ""
        msg = msg or content[:200].decode("utf-8", "replace") or f"HTTP {status}"
        if status == 401:
            raise BackendUnavailable(f"The ATT3D backend at {self.url} rejected the token ({msg}); "
                                     "check the token in the add-on preferences")
        if status == 409 and "cancelled" in msg:
            raise Cancelled(msg)
        if status == 503:
            raise BackendError(f"The ATT3D backend is busy or stopping: {msg}")
        if 400 <= status < 500:
            raise InvalidRequest(msg)
        raise BackendError(f"The ATT3D backend failed: {msg}")

    def _check_server(self) -> dict[str, Any]:
        try:
            health = self._json("GET", routes.HEALTH, auth=False, timeout=self.connect_timeout)
        except _NotAnATT3DServer:
            raise
        except BackendUnavailable as e:
            raise BackendUnavailable(f"{e} — is `att3d serve` running there? (add-on preferences: backend URL)") \
                from None
        except BackendError as e:  # an HTTP server, but not ours (404, HTML ...)
            health = e
        if not (isinstance(health, dict) and health.get("ok") is True):
            raise BackendUnavailable(f"{self.url} is not an ATT3D backend (its /v1/health answered: "
                                     f"{str(health)[:100]}); check the backend URL in the add-on preferences")
        return self._adopt(self._json("GET", routes.INFO, timeout=self.connect_timeout))

    def _adopt(self, info: Any) -> dict[str, Any]:
        """``info`` of a server this client can talk to (its limits become :attr:`limits`), or
        BackendUnavailable saying which API version each side speaks and what to update."""
        api = info.get("api") if isinstance(info, dict) else None
        if api != API_VERSION or isinstance(api, bool):
            raise BackendUnavailable(_version_mismatch(self.url, api))
        server_limits = info.get("limits")
        self.limits = Limits.from_dict(server_limits if isinstance(server_limits, dict) else {})
        return info

    def _check_request(self, prompts: Sequence[Any], resolution: Any = None) -> None:
        """Refuse at once what this server's limits refuse anyway (the same messages, no round trip)."""
        try:
            for prompt in prompts:
                self.limits.check_prompt(prompt)
            if resolution is not None:
                self.limits.check_resolution(resolution)
        except ValueError as e:
            raise InvalidRequest(str(e)) from None

    # -- jobs ----------------------------------------------------------------------------------------
    def _job(self, kind: str, body: dict[str, Any], progress: ProgressFn | None) -> Any:
        st = self._json("POST", routes.submit_job(kind), body)
        job_id = st["id"]
        stop = threading.Event()
        with self._active_lock:
            self._active[job_id] = stop
        try:
            return self._follow(job_id, st, stop, progress)
        except _ConnectionLost as e:
            # The server took the job, then went away (killed, out of memory): this job failed. It
            # is not sent again behind the artist's back (an out-of-memory job would only kill the
            # server again); the next request starts the server anew (:meth:`SubprocessClient._run`).
            if stop.is_set():
                raise Cancelled("cancelled") from None
            raise self._lost_during_job(e) from None
        finally:
            with self._active_lock:
                self._active.pop(job_id, None)

    def _lost_during_job(self, e: _ConnectionLost) -> BackendUnavailable:
        return BackendUnavailable(f"{e} (while it worked on this job)")

    def _follow(self, job_id: str, st: dict[str, Any], stop: threading.Event, progress: ProgressFn | None) -> Any:
        """Long-poll a submitted job to its end and fetch its result."""
        version = -1
        while st["status"] in (JobState.QUEUED, JobState.RUNNING):
            if progress is not None and progress(float(st.get("progress", 0.0)), self._message(st)):
                self._delete(job_id)
                raise Cancelled("cancelled")
            if stop.is_set():
                raise Cancelled("cancelled")
            st = self._json("GET", routes.job(job_id), query={"wait": POLL_WAIT_S, "since": version},
                            timeout=POLL_WAIT_S + 60)
            version = int(st.get("version", -1))
        if stop.is_set() or st["status"] == JobState.CANCELLED:
            raise Cancelled("cancelled")
        if st["status"] == JobState.ERROR:
            self._raise(int(st.get("error_status") or 500),
                        json.dumps({"error": st.get("error") or "the job failed"}).encode())
        self.last_compute_s = st.get("compute_s")  # the server's own time on the job (for benchmarks)
        if progress is not None:
            progress(1.0, "receiving the result")
        status, ctype, content = self._request("GET", routes.job_result(job_id))
        if status >= 400:
            self._raise(status, content)
        self._delete(job_id)
        if progress is not None:
            progress(1.0, "done")
        if ctype.startswith("application/json"):
            return json.loads(content)
        try:
            return payload.decode(content)
        except payload.PayloadError as e:
            raise BackendError(f"The ATT3D backend sent a result this add-on cannot read: {e}") from None

    def _message(self, st: dict[str, Any]) -> str:
        """The job's progress message; a queued job says what it waits for."""
        msg = str(st.get("message", ""))
        if st.get("status") != JobState.QUEUED:
            self._cancelled_at = None  # ours runs: nothing cancelled is in the way any more
            return msg
        if self._cancelled_at is not None and time.monotonic() - self._cancelled_at < CANCEL_NOTICE_S:
            return "waiting for the backend to stop the cancelled job"
        ahead = st.get("queue_position")
        return f"queued behind {ahead} other job{'s' if ahead != 1 else ''}" if ahead else "queued"

    def _delete(self, job_id: str) -> None:
        try:
            self._request("DELETE", routes.job(job_id), timeout=10)
        except BackendError:
            pass

    def _run(self, fn: Callable[[], Any], progress: ProgressFn | None = None) -> Any:
        """Hook for :class:`SubprocessClient` (restart on a dead server, naming its stages in
        ``progress``)."""
        return fn()

    # -- the interface ---------------------------------------------------------------------------------
    def info(self) -> ServerInfo:
        info = self._adopt(self._run(lambda: self._json("GET", routes.INFO, timeout=30)))
        return ServerInfo.from_dict({**info, "transport": "http", "url": self.url})

    def generate(self, prompt: str, resolution: int = DEFAULT_RESOLUTION, simplify: int | None = None,
                 texture: bool = False, progress: ProgressFn | None = None, mc: str = "auto") -> MeshData:
        self._check_request([prompt], resolution)
        body = {"prompt": prompt, "resolution": resolution, "simplify": simplify or None, "texture": bool(texture)}
        if mc != "auto":  # sent only when chosen: servers before the option refuse unknown fields
            body["mc"] = check_mc(mc)
        return self._run(lambda: self._job("generate", body, progress), progress)

    def chain(self, keyframes: Sequence[tuple[float, str]], steps: int = 4, resolution: int = DEFAULT_RESOLUTION,
              consistent: bool = True, progress: ProgressFn | None = None,
              max_states: int | None = None) -> SequenceData:
        try:
            kf = [{"position": float(p), "prompt": q} for p, q in keyframes]
        except (TypeError, ValueError):
            raise InvalidRequest("keyframes must be (position, prompt) pairs") from None
        self._check_request([k["prompt"] for k in kf], resolution)
        body = {"keyframes": kf, "steps": steps, "resolution": resolution, "consistent": bool(consistent)}
        if max_states is not None:  # sent only when chosen: servers before the option refuse unknown fields
            try:
                body["max_states"] = check_max_states(max_states, steps, self.limits.max_chain_states)
            except ValueError as e:
                raise InvalidRequest(str(e)) from None
        return self._run(lambda: self._job("chain", body, progress), progress)

    def blend(self, prompt_a: str, prompt_b: str, alpha: float, resolution: int = DEFAULT_RESOLUTION,
              progress: ProgressFn | None = None) -> MeshData:
        self._check_request([prompt_a, prompt_b], resolution)
        body = {"prompt_a": prompt_a, "prompt_b": prompt_b, "alpha": alpha, "resolution": resolution}
        return self._run(lambda: self._job("blend", body, progress), progress)

    def nearest(self, prompt: str, k: int = 5) -> Neighbors:
        self._check_request([prompt])
        answer = self._run(lambda: self._json("POST", routes.NEAREST, {"prompt": prompt, "k": k}, timeout=120))
        return Neighbors.from_dict(answer)

    def cancel(self) -> None:
        with self._active_lock:
            active = list(self._active.items())
        if active:
            self._cancelled_at = time.monotonic()
        for job_id, stop in active:
            stop.set()
            self._delete(job_id)

    def close(self) -> None:
        if not self._closed:
            self.cancel()
        self._closed = True


# -- a server of our own -------------------------------------------------------------------------------

def _project_root() -> str | None:
    """The checkout holding ``backend/`` next to this package, for running from a source tree."""
    root = Path(__file__).resolve().parents[2]
    return str(root) if (root / "backend" / "cli.py").is_file() else None


_live: weakref.WeakSet[SubprocessClient] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for c in list(_live):
        try:
            c.close()
        except Exception:
            pass


#: seconds to wait before restarting a server that died: 1st, 2nd, 3rd time within RESTART_WINDOW_S
RESTART_DELAYS_S = (0.5, 2.0, 5.0)
RESTART_WINDOW_S = 300.0
_NOISE = ("Loading weights", "Loading checkpoint shards")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def last_words(lines: Sequence[str]) -> str:
    """The most telling of a server's last stderr lines, quoted: its ``att3d: error:`` line, else the
    last exception line of a traceback, else its last line."""
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith(_NOISE) and "%|" not in ln
             and not parse_stage_line(ln)]
    errors = [ln.removeprefix("att3d: error:").strip() for ln in lines if ln.startswith("att3d: error:")]
    exceptions = [ln for ln in lines if _EXCEPTION_LINE.match(ln)]
    pick = errors[-1] if errors else exceptions[-1] if exceptions else lines[-1] if lines else ""
    return f"'{pick[:300]}'" if pick else "no error message"


class SubprocessClient(HTTPClient):
    """Starts ``python -m backend.cli serve`` (or ``att3d serve``) and talks to it over loopback HTTP.

    ``python``: the interpreter that has torch and att3d (default: this one), or ``att3d``: the
    command. The server gets a fresh random token through its environment. ``on_stage(text)`` hears
    what the start is waiting for ("starting the backend", "loading the model" ...). If the server
    dies, the next request restarts it, after a short backoff; after ``restarts`` deaths within
    :data:`RESTART_WINDOW_S` it gives up with the server's own last error line.
    """

    def __init__(self, python: str | None = None, model: str = "demo", device: str = "auto",
                 start_timeout: float = 300.0, extra_args: Sequence[str] = (), env: dict[str, str] | None = None,
                 restarts: int = len(RESTART_DELAYS_S), timeout: float = 600.0, att3d: str | None = None,
                 on_stage: Callable[[str], Any] | None = None) -> None:
        self.att3d = (att3d or "").strip()
        self.python = (python or "").strip() or ("" if self.att3d else sys.executable)
        self.model, self.device = model or "demo", device or "auto"
        self.start_timeout = float(start_timeout)
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.max_restarts = int(restarts)
        self.restarts = 0
        self._deaths: list[float] = []
        self.on_stage = on_stage
        self._restart_progress: ProgressFn | None = None
        self.started_once = False
        self.proc: subprocess.Popen | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._lock = threading.Lock()
        self._generation = 0
        self.timeout = float(timeout)
        self.connect_timeout = 10.0
        self._active = {}
        self._active_lock = threading.Lock()
        self._closed = False
        self._cancelled_at = None
        self.token = secrets.token_urlsafe(32)
        self._start()
        _live.add(self)

    @property
    def command(self) -> str:
        return self.python or self.att3d

    @property
    def restarts_left(self) -> int:
        """Restarts still allowed before it gives up (deaths within the window count)."""
        now = time.monotonic()
        return max(0, self.max_restarts - sum(1 for t in self._deaths if now - t < RESTART_WINDOW_S))

    # -- process ---------------------------------------------------------------------------------------
    def _stage(self, text: str) -> None:
        targets: list[Callable[[str], Any]] = [self.on_stage] if self.on_stage is not None else []
        progress = self._restart_progress
        if progress is not None:  # a restart: the request waiting for it hears its stages too
            targets.append(lambda t: progress(0.0, t))
        for fn in targets:
            try:
                fn(text)
            except Exception:
                pass

    def _hint(self, detail: str = "") -> str:
        """What to do about a start that failed, from what the server said (empty: nothing to add)."""
        if "No module named" in detail and ("backend" in detail or "torch" in detail):
            what = "PyTorch" if "torch" in detail else "att3d"
            return (f"this Python has no {what}: use Set Up Local Backend, or pick the Python of an environment "
                    "with att3d and PyTorch in the add-on preferences")
        if "model" in detail:
            return "check the model in the add-on preferences"
        if self.started_once:  # it ran before with this interpreter: the interpreter is not the problem
            return ""
        return "check the Python interpreter in the add-on preferences"

    def _failure(self, what: str) -> BackendUnavailable:
        detail = last_words(list(self._stderr))
        hint = self._hint(detail)
        return BackendUnavailable(f"Could not start the ATT3D backend with {self.command}: {what}: {detail}"
                                  + (f" — {hint}" if hint else ""))

    def _command(self) -> list[str]:
        head = [self.att3d] if self.att3d and not self.python else [self.python, "-m", "backend.cli"]
        return head + ["serve", "--model", str(self.model), "--device", str(self.device), "--host", "127.0.0.1",
                       "--port", "0"]

    def _start(self) -> None:
        env = {**os.environ, **self.extra_env, TOKEN_ENV: self.token, "PYTHONUNBUFFERED": "1",
               "PYTHONIOENCODING": "utf-8"}
        root = _project_root()
        if root:
            env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        cmd = self._command()
        if os.name == "posix":  # the server stops by itself if this process dies without closing it
            cmd += ["--parent-pid", str(os.getpid())]
        cmd += self.extra_args
        self._stderr.clear()
        self._stage("starting the backend")
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=env, text=True, encoding="utf-8", errors="replace", bufsize=1,
                                    start_new_session=os.name == "posix")
        except OSError as e:
            hint = self._hint() or "check the Python interpreter in the add-on preferences"
            raise BackendUnavailable(f"Could not start the ATT3D backend with {self.command}: {e.strerror or e} — "
                                     f"{hint}") from None
        ready: queue.Queue[str | None] = queue.Queue()

        def pump_stdout() -> None:
            for line in proc.stdout:
                if is_ready_line(line):
                    ready.put(line)
            ready.put(None)

        def pump_stderr() -> None:
            for line in proc.stderr:
                line = line.rstrip("\n")
                stage = parse_stage_line(line)
                if stage:
                    self._stage(stage)
                self._stderr.append(line)

        threading.Thread(target=pump_stdout, daemon=True, name="att3d-server-stdout").start()
        threading.Thread(target=pump_stderr, daemon=True, name="att3d-server-stderr").start()
        deadline = time.monotonic() + self.start_timeout
        line, eof = None, False
        while time.monotonic() < deadline:
            try:
                line = ready.get(timeout=0.2)
                eof = line is None
                break
            except queue.Empty:
                if proc.poll() is not None:
                    break
        if line is None:
            if eof:  # stdout closed: the process is on its way out
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is None:
                self._kill(proc)
                hint = self._hint() or "check the Python interpreter in the add-on preferences"
                raise BackendUnavailable(f"The ATT3D backend started with {self.command} did not get ready within "
                                         f"{self.start_timeout:.0f} s — {hint}")
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.1)  # let the stderr pump catch up
            raise self._failure(f"it exited with status {proc.returncode}")
        try:
            ready_info = parse_ready_line(line)
            self._set_url(ready_info["url"])
        except (ValueError, KeyError, TypeError) as e:
            self._kill(proc)
            raise BackendUnavailable(f"The ATT3D backend started with {self.command} printed an unreadable ready "
                                     f"line ({e}) — {self._hint() or 'update att3d where it runs'}") from None
        self.proc = proc
        self.ready_info = ready_info
        self._generation += 1
        try:
            self._check_server()
        except BackendError:  # e.g. another API version: leave no server of ours running
            self._kill(proc)
            raise
        self.started_once = True

    @staticmethod
    def _kill(proc: subprocess.Popen, grace: float = 10.0) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            except OSError:
                pass
        for f in (proc.stdout, proc.stderr):
            try:
                f.close()
            except Exception:
                pass

    def _dead(self) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(1.0)  # a dying server: give it a moment to be reaped
        except subprocess.TimeoutExpired:
            return False
        return True

    def _restart_after_death(self, progress: ProgressFn | None = None) -> None:
        """The server died: start it again after a backoff (naming the stages in ``progress``: the
        request that waits for it), or give up quoting its last words."""
        self._restart_progress = progress
        try:
            self._restart()
        finally:
            self._restart_progress = None

    def _restart(self) -> None:
        now = time.monotonic()
        status = self.proc.returncode if self.proc is not None else None
        words = last_words(list(self._stderr))
        self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW_S] + [now]
        n = len(self._deaths)
        if n > self.max_restarts:
            times = "once" if n == 1 else f"{n} times within {RESTART_WINDOW_S / 60:.0f} minutes"
            raise BackendUnavailable(f"The ATT3D backend stopped {times} (exit status {status}); its last error: "
                                     f"{words}. Press Restart Backend once the cause is fixed")
        delay = RESTART_DELAYS_S[min(n, len(RESTART_DELAYS_S)) - 1]
        why = words if words != "no error message" else self._exit_text()
        self._stage(f"restarting the backend (it stopped: {why})")
        time.sleep(delay)
        old, self.proc = self.proc, None
        if old is not None:
            self._kill(old)
        self.restarts += 1
        self._start()

    def _exit_text(self) -> str:
        """How the server ended: "exit status 3", "killed by SIGKILL (...)"."""
        rc = self.proc.returncode if self.proc is not None else None
        if rc is None:
            return "it stopped"
        if rc >= 0:
            return f"exit status {rc}"
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        oom = " — the system does that when memory runs out" if name == "SIGKILL" else ""
        return f"killed by {name}{oom}"

    def _lost_during_job(self, e: _ConnectionLost) -> BackendUnavailable:
        if self._closed or not self._dead():
            return super()._lost_during_job(e)
        words = last_words(list(self._stderr))
        said = f"; its last error: {words}" if words != "no error message" else ""
        return BackendUnavailable(f"The ATT3D backend stopped while it worked on this job ({self._exit_text()}){said}. "
                                  "The job failed; the next one starts the backend again")

    def _run(self, fn: Callable[[], Any], progress: ProgressFn | None = None) -> Any:
        gen = self._generation
        try:
            return fn()
        except _ConnectionLost:
            if self._closed:
                raise
            with self._lock:
                if self._generation == gen:  # nobody restarted it meanwhile
                    if not self._dead():
                        raise
                    self._restart_after_death(progress)
            return fn()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.cancel()
        except Exception:
            pass
        self._closed = True
        if self.proc is not None:
            self._kill(self.proc)
        _live.discard(self)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None
