"""Clients of the ATT3D backend, one interface (:class:`~.base.Client`) over three transports.

Standard library + numpy only: no torch, no bpy, no third-party HTTP library at import time.

``make_client(mode, **settings)``:

* ``"embedded"`` — :class:`~.embedded.EmbeddedClient`: the backend in this process (needs torch and
  the ``backend`` package here); settings ``model``, ``device``, ``cache_dir``.
* ``"subprocess"`` — :class:`~.http.SubprocessClient`: starts ``att3d serve`` with ``python`` (the
  interpreter that has torch and att3d) and talks to it over loopback HTTP; ``model``, ``device``.
* ``"remote"`` — :class:`~.http.HTTPClient`: a running service at ``url`` with ``token``.
* ``"auto"`` (default) — embedded if ``torch`` and ``backend`` import here, else subprocess.

``model``, ``device``, ``python``, ``url`` and ``token`` (the add-on preferences) are accepted in
every mode and used where they apply; any other setting goes to the transport's constructor, and
one it does not take is an :class:`InvalidRequest` naming it.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..wire.limits import Limits
from ..wire.types import MeshData, ProgressFn, SequenceData
from .base import BackendError, BackendUnavailable, Cancelled, Client, InvalidRequest

MODES = ("auto", "embedded", "subprocess", "remote")

__all__ = ["make_client", "embedded_available", "Client", "MeshData", "SequenceData", "ProgressFn", "Limits",
           "BackendError", "BackendUnavailable", "Cancelled", "InvalidRequest", "MODES"]


def embedded_available() -> bool:
    """True when torch and the att3d backend import in this Python."""
    for name in ("torch", "backend.inference"):
        try:
            importlib.import_module(name)
        except Exception:
            return False
    return True


PREFERENCES = ("model", "device", "python", "url", "token")


def _check_options(cls: type[Client], mode: str, options: dict[str, Any]) -> None:
    """A misspelled setting is an error naming it, not a silently ignored one."""
    own = [n for n in inspect.signature(cls).parameters if n not in PREFERENCES]
    unknown = [k for k in options if k not in own]
    if unknown:
        raise InvalidRequest(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                             f"for the {mode} backend (its settings: {', '.join([*PREFERENCES, *own])})")


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

        _check_options(EmbeddedClient, mode, options)
        return EmbeddedClient(model=model or "demo", device=device or "auto", **options)
    from .http import HTTPClient, SubprocessClient

    if mode == "remote":
        _check_options(HTTPClient, mode, options)
        if not url:
            raise BackendUnavailable("Remote backend: set the server URL in the add-on preferences")
        return HTTPClient(url, token=token, **options)
    _check_options(SubprocessClient, mode, options)
    return SubprocessClient(python=python, model=model or "demo", device=device or "auto", **options)
