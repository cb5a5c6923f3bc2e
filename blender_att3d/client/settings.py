"""Which backend to use: one frozen :class:`BackendSettings`, made from the add-on preferences (the
panel's session) or the batch's options, and :meth:`~BackendSettings.resolve`, the one place where
``auto`` is decided, online access is checked and a local backend is found. Fast (nothing starts,
torch is not imported): the add-on resolves on Blender's main thread, so a setting that cannot work
is said at once; :func:`blender_att3d.client.make_client` then builds the client, in a worker thread.

Modes, one name each (the preferences' enum items are the same names in capitals):

* ``embedded``: the backend in this Python (needs torch and the ``backend`` package here);
* ``local``: ``att3d serve`` started on this computer (the *Python* field's interpreter, the one *Set
  Up Local Backend* made, ``att3d`` on PATH, or this checkout: who finds it is the caller's);
* ``remote``: a running server at ``url`` with ``token``;
* ``auto``: embedded when torch and att3d are here, else local.

Standard library only.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from .base import BackendUnavailable, InvalidRequest

MODES = ("auto", "embedded", "local", "remote")
#: earlier names of a mode, still read (a script's ``mode="subprocess"``; the preferences keep numbers)
OLD_NAMES = {"subprocess": "local"}


class BadSetting(BackendUnavailable):
    """A setting that cannot work; ``setting`` names it (``python``, ``url``, ``online``, ``local``),
    so each caller can word it in its own terms (the add-on's field, the batch's option)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def embedded_available() -> bool:
    """True when torch and the att3d backend are installed in this Python. Looked up, not imported
    (milliseconds on Blender's main thread); the embedded client imports them when it is built."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("torch", "backend.inference"))
    except (ImportError, ValueError):
        return False


def is_loopback_url(url: str) -> bool:
    """True for http://localhost..., 127.x, ::1 (Blender's online-access switch does not apply)."""
    host = (urlparse(url if "//" in url else "//" + url).hostname or "").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Found:
    """A local backend a finder found: an interpreter with att3d, or an ``att3d`` command."""

    python: str = ""
    att3d: str = ""
    source: str = ""  # where it was found, for the panel ("set up by the add-on", "att3d on PATH" ...)


#: ``find_local(python_setting)`` → the local backend; ValueError: the setting is set but wrong;
#: LookupError: none found (the message says what to do)
LocalFinder = Callable[[str], Any]
#: ``online(url)`` → None when this program may reach ``url``, else the sentence saying how to allow it
OnlineCheck = Callable[[str], str | None]


@dataclass(frozen=True)
class BackendSettings:
    """Everything that decides which backend answers. ``python``: the local backend's interpreter as
    typed (a venv folder, ``~`` ... are fine: the finder reads it) or found; ``att3d``: an ``att3d``
    command instead; ``cache_dir``: where the backend keeps its caches (the add-on's own folder);
    ``source``: where the local backend was found (set by :meth:`resolve`)."""

    mode: str = "auto"
    model: str = "demo"
    device: str = "auto"
    python: str = ""
    att3d: str = ""
    url: str = ""
    token: str = ""
    cache_dir: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        mode = (self.mode or "auto").strip().lower()
        mode = OLD_NAMES.get(mode, mode)
        if mode not in MODES:
            raise InvalidRequest(f"unknown backend mode {self.mode!r}; use one of {', '.join(MODES)}")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "model", (self.model or "").strip() or "demo")
        object.__setattr__(self, "device", (self.device or "").strip().lower() or "auto")
        object.__setattr__(self, "url", (self.url or "").strip())

    def replace(self, **changes: Any) -> BackendSettings:
        return dataclasses.replace(self, **changes)

    def resolve(self, find_local: LocalFinder | None = None, online: OnlineCheck | None = None,
                embedded: Callable[[], bool] = embedded_available) -> BackendSettings:
        """These settings with the mode decided (never ``auto``) and the local backend found, or a
        :class:`BadSetting` saying what cannot work. ``find_local``: how this caller finds a local
        backend (none: ``python``/``att3d`` as given, else this Python); ``online``: Blender's online
        access switch, which applies to a remote server off loopback only."""
        if self.mode == "remote":
            if not self.url:
                raise BadSetting("url", "Remote backend: set the server URL")
            msg = None if is_loopback_url(self.url) or online is None else online(self.url)
            if msg:
                raise BadSetting("online", msg)
            return self
        if self.mode == "embedded":
            return self
        found: Any = None
        missing = ""
        try:  # the Python setting is checked in auto mode too: a wrong one is said, not silently passed over
            found = find_local(self.python) if find_local is not None else Found(python=self.python)
        except ValueError as e:
            raise BadSetting("python", str(e)) from None
        except LookupError as e:
            missing = str(e)
        if self.mode == "auto" and embedded():
            return self.replace(mode="embedded")
        if found is None:
            raise BadSetting("local", missing)
        return self.replace(mode="local", python=found.python or "", att3d=found.att3d or "",
                            source=found.source or self.source)
