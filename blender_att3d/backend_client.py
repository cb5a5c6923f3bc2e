"""The one place the add-on gets its backend client from (tests inject one with ``set_override``).

``get_client()`` builds the client from the add-on preferences through
``blender_att3d.client.make_client(mode, **settings)`` and caches it while the settings stay the same.
"""
from __future__ import annotations

import inspect
import os
import threading
from typing import Any, Optional

from . import logic
from .client.base import BackendUnavailable, Client

_lock = threading.Lock()
_override: Optional[Client] = None
_cached: Optional[Client] = None
_cached_key: Optional[tuple] = None

DEFAULTS = {"mode": "auto", "model": "demo", "device": "auto", "python": "", "url": "", "token": ""}


def set_override(client: Optional[Client]) -> None:
    """Use ``client`` for every request (tests, scripts); ``None`` goes back to the preferences."""
    global _override
    _override = client


def addon_package() -> str:
    """The add-on's module name: ``bl_ext.<repo>.att3d`` when installed, ``blender_att3d`` in tests."""
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


def _filter_kwargs(fn, kw: dict[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return kw
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kw
    return {k: v for k, v in kw.items() if k in params}


def check_online_access(mode: str, url: str) -> None:
    """Blender's "Allow Online Access" switch applies to a non-loopback remote backend only."""
    if mode != "remote":
        return
    if not url:
        raise BackendUnavailable("Remote backend: set the server URL in the add-on preferences")
    if logic.is_loopback_url(url):
        return
    try:
        import bpy
    except ImportError:
        return
    if not bpy.app.online_access:
        raise BackendUnavailable("Online access is off (Preferences > System > Network); "
                                 "allow it to use a remote backend, or use a local one")


def user_dir() -> Optional[str]:
    """The add-on's writable folder (``extension_path_user``), or None outside an installed extension."""
    try:
        import bpy

        return bpy.utils.extension_path_user(addon_package(), create=True)
    except Exception:
        return None


def get_client(prefs=None, **overrides: Any) -> Client:
    """The configured client (cached); raises BackendUnavailable with a readable message."""
    global _cached, _cached_key
    if _override is not None:
        return _override
    s = settings_from_prefs(prefs if prefs is not None else get_prefs())
    s.update({k: v for k, v in overrides.items() if v is not None})
    mode = s["mode"]
    check_online_access(mode, s["url"])
    key = tuple(sorted(s.items()))
    with _lock:
        if _cached is not None and _cached_key == key:
            return _cached
        try:
            from .client import make_client
        except ImportError as e:
            raise BackendUnavailable(f"The backend client is not installed ({e})") from None
        folder = user_dir()
        kw = _kwargs_for(mode, s)
        if folder:  # the embedded model's caches go under the extension's own folder
            if "ATT3D_CACHE" not in os.environ:
                os.environ["ATT3D_CACHE"] = os.path.join(folder, "cache")
            if mode == "embedded":
                kw["cache_dir"] = os.path.join(folder, "cache")
        old = _cached
        _cached = _cached_key = None
        if old is not None:
            try:
                old.close()
            except Exception:
                pass
        try:
            client = make_client(mode, **_filter_kwargs(make_client, kw))
        except BackendUnavailable:
            raise
        except Exception as e:  # a transport that fails to start: say what and where
            raise BackendUnavailable(f"Could not start the {mode} backend: {e}") from e
        _cached, _cached_key = client, key
        return client


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
