"""Clients of the ATT3D backend, one interface (:class:`~.base.Client`) over three transports.

Standard library + numpy only: no torch, no bpy, no third-party HTTP library at import time.

``make_client(mode, **settings)``:

* ``"embedded"`` — :class:`~.embedded.EmbeddedClient`: the backend in this process (needs torch and
  the ``backend`` package here); settings ``model``, ``device``.
* ``"subprocess"`` — :class:`~.http.SubprocessClient`: starts ``att3d serve`` with ``python`` (the
  interpreter that has torch and att3d) and talks to it over loopback HTTP; ``model``, ``device``.
* ``"remote"`` — :class:`~.http.HTTPClient`: a running service at ``url`` with ``token``.
* ``"auto"`` (default) — embedded if ``torch`` and ``backend`` import here, else subprocess.
"""
from __future__ import annotations

import importlib
from typing import Any, Optional

from .base import BackendError, BackendUnavailable, Cancelled, Client, InvalidRequest
from ..wire.types import MeshData, ProgressFn, SequenceData

MODES = ("auto", "embedded", "subprocess", "remote")

__all__ = ["make_client", "embedded_available", "Client", "MeshData", "SequenceData", "ProgressFn",
           "BackendError", "BackendUnavailable", "Cancelled", "InvalidRequest", "MODES"]


def embedded_available() -> bool:
    """True when torch and the att3d backend import in this Python."""
    for name in ("torch", "backend.inference"):
        try:
            importlib.import_module(name)
        except Exception:
            return False
    return True


def make_client(mode: str = "auto", *, model: str = "demo", device: str = "auto", python: str | None = None,
                url: str | None = None, token: str | None = None, **options: Any) -> Client:
    """A ready client for ``mode``; raises :class:`BackendUnavailable` with a message for the user."""
    mode = (mode or "auto").lower()
    if mode not in MODES:
        raise InvalidRequest(f"unknown backend mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "auto":
        mode = "embedded" if embedded_available() else "subprocess"
    if mode == "embedded":
        from .embedded import EmbeddedClient

        return EmbeddedClient(model=model or "demo", device=device or "auto", cache_dir=options.get("cache_dir"))
    from .http import HTTPClient, SubprocessClient

    if mode == "remote":
        if not url:
            raise BackendUnavailable("Remote backend: set the server URL in the add-on preferences")
        return HTTPClient(url, token=token, **options)
    return SubprocessClient(python=python, model=model or "demo", device=device or "auto", **options)
