"""The add-on's session with its backend: the one shared client, built from the add-on preferences
(tests inject one with ``set_override``).

``current_settings()`` reads the add-on preferences on the main thread into a
:class:`~blender_att3d.client.BackendSettings` and resolves it (:meth:`BackendSettings.resolve`: the
local backend found by :mod:`.local_backend` — the *Python* field, the one *Set Up Local Backend*
made, ``att3d`` on PATH —, ``auto`` decided, online access checked), refusing at once what cannot
work; ``client_for(settings)`` builds the client through ``blender_att3d.client.make_client`` and
caches it while the settings stay the same. Building can take long (a local server starting), so
interactive operators call ``client_for`` in their worker thread, and it names what it waits for
("starting the backend", "loading the model" ...); ``get_client()`` does both at once for headless
paths. :class:`JobBackend` carries the settings of one job from the main thread to its worker.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ..client.base import BackendUnavailable, Cancelled, Client
from ..client.settings import BackendSettings, BadSetting
from ..wire import ProgressFn
from . import local_backend

_lock = threading.Lock()  # guards the cache
_build_lock = threading.Lock()  # one client is built at a time; others wait and hear its stage
_override: Client | None = None
_cached: Client | None = None
_cached_key: BackendSettings | None = None
#: bumped by close(): a client whose start began before a close() is stopped when it is ready,
#: never cached (Restart, Remove and Set Up Backend close while a start may be under way)
_epoch = 0
#: what the client being built is waiting for right now (read by jobs that wait for it)
building_stage: str | None = None

STARTING = "starting the backend"

StageFn = Callable[[str], Any]  # returns True to give up waiting (the job was cancelled)


def set_override(client: Client | None) -> None:
    """Use ``client`` for every request (tests, scripts); ``None`` goes back to the preferences."""
    global _override
    _override = client


def addon_package() -> str:
    """The add-on's module name: ``bl_ext.<repo>.att3d`` when installed, ``blender_att3d`` in tests
    (the package above this one: this module must stay in ``lifecycle/`` directly under the add-on)."""
    return __package__.rpartition(".")[0]


def get_prefs():
    """The AddonPreferences, or None (e.g. registered by hand in tests, or no bpy)."""
    try:
        import bpy
    except ImportError:
        return None
    addon = bpy.context.preferences.addons.get(addon_package())
    return addon.preferences if addon is not None else None


def settings_from_prefs(prefs) -> BackendSettings:
    """The preferences as settings (their mode enum's identifiers are the modes' names in capitals)."""
    if prefs is None:
        return BackendSettings()
    return BackendSettings(mode=prefs.mode, model=prefs.model, device=prefs.device, python=prefs.python_path,
                           url=prefs.url, token=prefs.token)


def online_access_message(what: str) -> str | None:
    """None when Blender may go online, else the sentence saying how to allow it for ``what``."""
    try:
        import bpy
    except ImportError:
        return None
    if bpy.app.online_access:
        return None
    forced = getattr(bpy.app, "online_access_override", getattr(bpy.app, "online_access_overriden", False))
    if forced:
        return f"Blender was started with --offline-mode: restart it without that option to {what}"
    return f"Online access is off: allow it in Preferences > System > Network to {what}"


def online_access(url: str) -> str | None:
    """:meth:`BackendSettings.resolve`'s online check for a remote backend at ``url`` (off loopback)."""
    return online_access_message("use a remote backend (or use a local one)")


def user_root() -> str | None:
    """The add-on's own folder under ``extension_path_user`` (the only place it writes to), or None
    outside an installed extension (e.g. registered by hand in tests)."""
    try:
        import bpy

        return bpy.utils.extension_path_user(addon_package(), create=True)
    except Exception:
        return None


def user_dir() -> str | None:
    """The add-on's cache folder (the backend's caches go there), or None outside an extension."""
    try:
        import bpy

        return bpy.utils.extension_path_user(addon_package(), path="cache", create=True)
    except Exception:
        return None


#: how the add-on words a setting that cannot work (the rest are whole sentences already)
_IN_PREFERENCES = {"python": "The Python field: {}",
                   "url": "Remote backend: set the server URL in the add-on preferences"}


def current_settings(prefs=None, **overrides: Any) -> BackendSettings:
    """Main thread, fast: the resolved settings a client is built from (preferences, then ``overrides``).

    Raises :class:`BackendUnavailable` at once where no backend can work (a wrong *Python* field, no
    local backend and no torch here, a remote one without URL or off loopback while online access is
    off). The result goes to :func:`client_for`, which may run in a worker thread: it reads no
    Blender data.
    """
    s = settings_from_prefs(prefs if prefs is not None else get_prefs())
    s = s.replace(**{k: v for k, v in overrides.items() if v is not None}, cache_dir=user_dir() or "")
    try:
        return s.resolve(find_local=lambda field: local_backend.find(field, user_root()), online=online_access)
    except BadSetting as e:
        raise BackendUnavailable(_IN_PREFERENCES.get(e.setting, "{}").format(e)) from None


def _set_stage(text: str | None, on_stage: StageFn | None) -> None:
    global building_stage
    building_stage = text
    if text and on_stage is not None:
        on_stage(text)


def cached_client(settings: BackendSettings | None = None) -> Client | None:
    """The client already built (for ``settings``, when given), without building one."""
    if _override is not None:
        return _override
    with _lock:
        if _cached is None:
            return None
        if settings is not None and _cached_key != settings:
            return None
        return _cached


def client_for(settings: BackendSettings, on_stage: StageFn | None = None) -> Client:
    """The client for ``settings`` (cached while they stay the same); any thread.

    Building one can take long (a local server starting, a model loading): interactive callers run
    this in the job's worker thread, never on Blender's main thread. ``on_stage(text)`` hears what
    it is waiting for; while another thread builds the client, it hears that thread's stages, and
    a True answer stops waiting (:class:`Cancelled`). Raises BackendUnavailable.
    """
    global _cached, _cached_key
    if _override is not None:
        return _override
    s = key = settings
    with _lock:
        if _cached is not None and _cached_key == key:
            return _cached
    while not _build_lock.acquire(timeout=0.2):  # someone else is starting it: say what it waits for
        if on_stage is not None and on_stage(building_stage or STARTING):
            raise Cancelled("cancelled")
    try:
        with _lock:
            if _cached is not None and _cached_key == key:
                return _cached
            old = _cached
            _cached = _cached_key = None
            epoch = _epoch
        if old is not None:
            try:
                old.close()
            except Exception:
                pass
        client = _build(s, on_stage)
        with _lock:
            if _epoch == epoch:
                _cached, _cached_key = client, key
                return client
        try:  # closed while it started: whoever closed it wants it gone
            client.close()
        except Exception:
            pass
        raise BackendUnavailable("the backend was stopped while it was starting (Restart, Remove or Set Up "
                                 "Backend): click again to start it")
    finally:
        _set_stage(None, None)
        _build_lock.release()


def _build(s: BackendSettings, on_stage: StageFn | None) -> Client:
    try:
        from ..client import make_client
    except ImportError as e:
        raise BackendUnavailable(f"The backend client is not installed ({e})") from None
    _set_stage(STARTING, on_stage)
    if s.cache_dir and "ATT3D_CACHE" not in os.environ:  # the model's caches go under the extension's folder
        os.environ["ATT3D_CACHE"] = s.cache_dir
    if s.mode == "embedded":
        _set_stage("loading the model", on_stage)
    try:
        client = make_client(s, on_stage=(lambda text: _set_stage(text, on_stage)) if s.mode == "local" else None)
    except BackendUnavailable:
        raise
    except Exception as e:  # a transport that fails to start: say what and where
        raise BackendUnavailable(f"Could not start the {s.mode} backend: {e}") from e
    if s.mode == "local" and hasattr(client, "on_stage"):
        # this build's listener is done; a later restart names its stages to the request waiting for it
        client.on_stage = None
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


def restart(settings: BackendSettings, on_stage: StageFn | None = None) -> Client:
    """Stop the current backend (whatever state it is in) and start a fresh one; any thread."""
    close()
    return client_for(settings, on_stage)


def close() -> None:
    """Close the cached client (on unregister, Restart Backend, Remove Backend), and the one being
    started, once it is ready."""
    global _cached, _cached_key, _epoch
    with _lock:
        old = _cached
        _cached = _cached_key = None
        _epoch += 1
    if old is not None:
        try:
            old.close()
        except Exception:
            pass


class JobBackend:
    """The backend of one job: settings read on the main thread, the client got in the worker.

    Getting the client can start a local server or load a model (seconds to minutes): that must
    not happen on Blender's main thread, so :meth:`get` runs inside the job's ``work``, naming
    each stage of the start in the job's progress.
    """

    def __init__(self, settings: BackendSettings):
        self.settings = settings
        self.client: Client | None = None
        self.started_s: float | None = None  # how long getting the client took (0 when it was ready)

    def get(self, progress: ProgressFn | None = None) -> Client:
        t0 = time.monotonic()
        ready = cached_client(self.settings)
        if ready is not None:
            self.client, self.started_s = ready, 0.0
            return ready

        def stage(text: str) -> bool:
            return bool(progress(0.0, text)) if progress is not None else False

        self.client = client_for(self.settings, stage)
        self.started_s = time.monotonic() - t0
        if progress is not None and progress(0.0, "backend ready"):  # cancelled while it started
            raise Cancelled("cancelled")
        return self.client

    def cancel(self) -> None:
        if self.client is not None:
            self.client.cancel()


def job_backend() -> JobBackend:
    """Main thread: the configured backend (raises BackendUnavailable at once where none can work)."""
    return JobBackend(current_settings())
