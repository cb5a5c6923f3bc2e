"""Clients of the ATT3D backend, one interface (:class:`~.base.Client`) over three transports.

Standard library + numpy only: no torch, no bpy, no third-party HTTP library at import time.

``make_client(settings)`` builds the client a :class:`~.settings.BackendSettings` names (resolved by
:meth:`~.settings.BackendSettings.resolve`, the one place that decides ``auto``):

* ``embedded`` — :class:`~.embedded.EmbeddedClient`: the backend in this process (needs torch and the
  ``backend`` package here): ``model``, ``device``, ``cache_dir``;
* ``local`` — :class:`~.http.SubprocessClient`: starts ``att3d serve`` with ``python`` (the interpreter
  that has torch and att3d) or the ``att3d`` command and talks to it over loopback HTTP: ``model``,
  ``device``;
* ``remote`` — :class:`~.http.HTTPClient`: a running service at ``url`` with ``token``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..wire.limits import Limits
from ..wire.types import MeshData, Neighbors, ProgressFn, SequenceData, ServerInfo
from .base import BackendError, BackendUnavailable, Cancelled, Client, InvalidRequest
from .settings import MODES, BackendSettings, BadSetting, embedded_available

__all__ = ["make_client", "embedded_available", "BackendSettings", "BadSetting", "Client", "MeshData",
           "SequenceData", "ServerInfo", "Neighbors", "ProgressFn", "Limits", "BackendError", "BackendUnavailable",
           "Cancelled", "InvalidRequest", "MODES"]


def make_client(settings: BackendSettings, on_stage: Callable[[str], Any] | None = None) -> Client:
    """A ready client for ``settings`` (``auto`` is resolved here with this Python's own backend when
    the caller did not resolve it); raises :class:`BackendUnavailable` with a message for the user.
    ``on_stage(text)`` hears what a local server's start waits for."""
    s = settings.resolve() if settings.mode == "auto" else settings
    if s.mode == "embedded":
        from .embedded import EmbeddedClient

        return EmbeddedClient(model=s.model, device=s.device, cache_dir=s.cache_dir or None)
    from .http import HTTPClient, SubprocessClient

    if s.mode == "remote":
        if not s.url:
            raise BadSetting("url", "Remote backend: set the server URL in the add-on preferences")
        return HTTPClient(s.url, token=s.token or None)
    return SubprocessClient(python=s.python or None, att3d=s.att3d or None, model=s.model, device=s.device,
                            on_stage=on_stage)
