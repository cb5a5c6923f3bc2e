"""The add-on's session with its backend: the one shared client, built from the add-on preferences
(tests inject one with ``set_override``).

``current_settings()`` reads the add-on preferences on the main thread (and refuses a remote backend
Blender may not reach); ``client_for(settings)`` builds the client through
``blender_att3d.client.make_client(mode, **settings)`` and caches it while the settings stay the same.
Building can take long (a local server starting), so interactive operators call ``client_for`` in
their worker thread; ``get_client()`` does both at once for headless paths. :class:`JobBackend`
carries the settings of one job from the main thread to its worker.
"""
from __future__ import annotations

import ipaddress
import os
import threading
from typing import Any
from urllib.parse import urlparse

from .client.base import BackendUnavailable, Cancelled, Client
from .wire import ProgressFn

_lock = threading.Lock()
_override: Client | None = None
_cached: Client | None = None
_cached_key: tuple | None = None

DEFAULTS = {"mode": "auto", "model": "demo", "device": "auto", "python": "", "url": "", "token": ""}


def set_override(client: Client | None) -> None:
    """Use ``client`` for every request (tests, scripts); ``None`` goes back to the preferences."""
    global _override
    _override = client


def addon_package() -> str:
    """The add-on's module name: ``bl_ext.<repo>.att3d`` when installed, ``blender_att3d`` in tests
    (this module's own package: it must stay at the top level of the add-on)."""
    return __package__


def get_prefs():
    """The AddonPreferences, or None (e.g. registered by hand in tests, or no bpy)."""
    try:
        import bpy
    except ImportError:
        return None
    addon = bpy.context.preferences.addons.get(addon_package())
    return addon.preferences if addon is not None else None


def settings_from_prefs(prefs) -> dict[str, Any]:
    s = dict(DEFAULTS)
    if prefs is not None:
        s.update(mode=prefs.mode.lower(), model=prefs.model.strip() or "demo", device=prefs.device.lower(),
                 python=prefs.python_path.strip(), url=prefs.url.strip(), token=prefs.token)
    return s


def _kwargs_for(mode: str, s: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {"model": s["model"], "device": s["device"]}
    if mode in ("subprocess", "auto") and s["python"]:
        kw["python"] = s["python"]
    if mode == "remote":
        kw = {"url": s["url"], "token": s["token"], "model": s["model"]}
    return kw


def is_loopback_url(url: str) -> bool:
    """True for http://localhost..., 127.x, ::1 (Blender's online-access switch does not apply)."""
    host = (urlparse(url if "//" in url else "//" + url).hostname or "").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_online_access(mode: str, url: str) -> None:
    """Blender's "Allow Online Access" switch applies to a non-loopback remote backend only."""
    if mode != "remote":
        return
    if not url:
        raise BackendUnavailable("Remote backend: set the server URL in the add-on preferences")
    if is_loopback_url(url):
        return
    try:
        import bpy
    except ImportError:
        return
    if not bpy.app.online_access:
        raise BackendUnavailable("Online access is off (Preferences > System > Network); "
                                 "allow it to use a remote backend, or use a local one")


def user_dir() -> str | None:
    """The add-on's cache folder under ``extension_path_user`` (the only place it writes to), or None
    outside an installed extension (e.g. registered by hand in tests)."""
    try:
        import bpy

        return bpy.utils.extension_path_user(addon_package(), path="cache", create=True)
    except Exception:
        return None


def current_settings(prefs=None, **overrides: Any) -> dict[str, Any]:
    """Main thread, fast: the settings a client is built from (preferences, then ``overrides``).

    Raises :class:`BackendUnavailable` at once where Blender may not reach the backend (a remote one
    without URL, or off loopback while online access is off). The result goes to :func:`client_for`,
    which may run in a worker thread: it reads no Blender data.
    """
    s = settings_from_prefs(prefs if prefs is not None else get_prefs())
    s.update({k: v for k, v in overrides.items() if v is not None})
    check_online_access(s["mode"], s["url"])
    s["cache_dir"] = user_dir() or ""
    return s


def client_for(settings: dict[str, Any]) -> Client:
    """The client for ``settings`` (cached while they stay the same); any thread.

    Building one can take long (a local server starting, a model loading): interactive callers run
    this in the job's worker thread, never on Blender's main thread. Raises BackendUnavailable.
    """
    global _cached, _cached_key
    if _override is not None:
        return _override
    s = {**DEFAULTS, "cache_dir": "", **settings}
    mode = s["mode"]
    key = tuple(sorted(s.items()))
    with _lock:
        if _cached is not None and _cached_key == key:
            return _cached
        try:
            from .client import make_client
        except ImportError as e:
            raise BackendUnavailable(f"The backend client is not installed ({e})") from None
        folder = s["cache_dir"]
        kw = _kwargs_for(mode, s)
        if folder:  # the model's caches go under the extension's own folder
            if "ATT3D_CACHE" not in os.environ:
                os.environ["ATT3D_CACHE"] = folder
            if mode == "embedded":
                kw["cache_dir"] = folder
        old = _cached
        _cached = _cached_key = None
        if old is not None:
            try:
                old.close()
            except Exception:
                pass
        try:
            client = make_client(mode, **kw)
        except BackendUnavailable:
            raise
        except Exception as e:  # a transport that fails to start: say what and where
            raise BackendUnavailable(f"Could not start the {mode} backend: {e}") from e
        _cached, _cached_key = client, key
        return client


def get_client(prefs=None, **overrides: Any) -> Client:
    """The configured client, synchronously (headless paths and scripts); raises BackendUnavailable."""
    if _override is not None:
        return _override
    return client_for(current_settings(prefs, **overrides))


def discard(client: Client) -> bool:
    """Forget ``client`` if it is the cached one (it failed): the next request builds a fresh one."""
    global _cached, _cached_key
    with _lock:
        if client is None or _cached is not client:
            return False
        _cached = _cached_key = None
    try:
        client.close()
    except Exception:
        pass
    return True


def close() -> None:
    """Close the cached client (on unregister)."""
    global _cached, _cached_key
    with _lock:
        if _cached is not None:
            try:
                _cached.close()
            except Exception:
                pass
        _cached = _cached_key = None


class JobBackend:
    """The backend of one job: settings read on the main thread, the client got in the worker.

    Getting the client can start a local server or load a model (seconds to minutes): that must
    not happen on Blender's main thread, so :meth:`get` runs inside the job's ``work``.
    """

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        self.client: Client | None = None

    def get(self, progress: ProgressFn | None = None) -> Client:
        if progress is not None:
            progress(0.0, "connecting to the backend")
        self.client = client_for(self.settings)
        if progress is not None and progress(0.0, "working"):  # cancelled while it started
            raise Cancelled("cancelled")
        return self.client

    def cancel(self) -> None:
        if self.client is not None:
            self.client.cancel()


def job_backend() -> JobBackend:
    """Main thread: the configured backend (raises BackendUnavailable at once for a remote one
    Blender may not reach)."""
    return JobBackend(current_settings())
