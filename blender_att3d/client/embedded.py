"""The embedded client: the backend runs in this process (Blender's Python needs torch and the
``backend`` package). The one place where the add-on calls the backend in-process: ``backend`` is
imported in the constructor (the engine) and when a call fails, never at module import.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..wire.limits import DEFAULT_RESOLUTION
from ..wire.types import MeshData, Neighbors, ProgressFn, SequenceData, ServerInfo
from .base import BackendError, BackendUnavailable, Cancelled, Client, InvalidRequest


class EmbeddedClient(Client):
    """``EmbeddedClient(model="demo", device="auto")``: loads the model once, in-process.

    Calls are serialised (one model, one device); ``cancel()`` stops the running call at its next
    checkpoint (between stages of a mesh, between steps of a chain) with :class:`Cancelled`.
    """

    def __init__(self, model: str = "demo", device: str = "auto", cache_dir: str | None = None,
                 engine: Any = None) -> None:
        if engine is None:
            try:
                from backend.engine import Engine
            except ImportError as e:
                raise BackendUnavailable(
                    f"The embedded ATT3D backend cannot run in this Python ({e}); it needs torch and the att3d "
                    "package here. Use a local server instead (the add-on's Local backend, or "
                    "--backend local in a batch)") from None
            try:
                engine = Engine.load(model, device=device, cache_dir=cache_dir)
            except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
                raise BackendUnavailable(f"Could not load the ATT3D model {model!r}: {e} — check the model "
                                         "in the add-on preferences") from None
        self._engine = engine
        # One worker thread owns the model, as in the service: calls are serialised, and torch runs
        # off the caller's thread (on a loaded CPU, OpenMP work from the main thread can be many
        # times slower than from a secondary thread).
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="att3d-embedded")
        self._active: set[threading.Event] = set()
        self._active_lock = threading.Lock()
        self._closed = False

    @property
    def engine(self) -> Any:
        """The :class:`backend.engine.Engine` (typed loosely: this module must import without torch)."""
        return self._engine

    def _call(self, fn: Callable[..., Any], progress: ProgressFn | None, with_progress: bool = True) -> Any:
        if self._closed:
            raise BackendUnavailable("this ATT3D client was closed")
        stop = threading.Event()
        with self._active_lock:
            self._active.add(stop)

        def prog(frac: float, msg: str) -> bool:
            asked = bool(progress(frac, msg)) if progress is not None else False
            return asked or stop.is_set()

        def run() -> Any:
            if stop.is_set():
                raise Cancelled("cancelled")
            return fn(prog) if with_progress else fn(None)

        try:
            try:
                fut = self._pool.submit(run)
            except RuntimeError:  # shut down meanwhile
                raise BackendUnavailable("this ATT3D client was closed") from None
            return fut.result()
        except (Cancelled, BackendUnavailable):
            raise
        except Exception as e:
            from backend.inference import CancelledError

            if isinstance(e, (CancelledError, concurrent.futures.CancelledError)):
                raise Cancelled("cancelled") from None
            if isinstance(e, (ValueError, TypeError)):
                raise InvalidRequest(str(e)) from None
            raise BackendError(f"the ATT3D backend failed: {type(e).__name__}: {e}") from e
        finally:
            with self._active_lock:
                self._active.discard(stop)

    # -- the interface ----------------------------------------------------------------------------
    def info(self) -> ServerInfo:
        return dataclasses.replace(self._call(lambda p: self._engine.info(), None, False), transport="embedded")

    def generate(self, prompt: str, resolution: int = DEFAULT_RESOLUTION, simplify: int | None = None,
                 texture: bool = False, progress: ProgressFn | None = None, mc: str = "auto") -> MeshData:
        return self._call(lambda p: self._engine.generate(prompt, resolution, simplify, texture, mc=mc, progress=p),
                          progress)

    def chain(self, keyframes: Sequence[tuple[float, str]], steps: int = 4, resolution: int = DEFAULT_RESOLUTION,
              consistent: bool = True, progress: ProgressFn | None = None,
              max_states: int | None = None) -> SequenceData:
        kf = [tuple(k) for k in keyframes]
        return self._call(lambda p: self._engine.chain(kf, steps, resolution, consistent, progress=p,
                                                       max_states=max_states), progress)

    def blend(self, prompt_a: str, prompt_b: str, alpha: float, resolution: int = DEFAULT_RESOLUTION,
              progress: ProgressFn | None = None) -> MeshData:
        return self._call(lambda p: self._engine.blend(prompt_a, prompt_b, alpha, resolution, progress=p), progress)

    def nearest(self, prompt: str, k: int = 5) -> Neighbors:
        return self._call(lambda p: self._engine.nearest(prompt, k), None, False)

    def cancel(self) -> None:
        with self._active_lock:
            for ev in self._active:
                ev.set()

    def close(self) -> None:
        self.cancel()
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
