"""Registration of everything bpy-bound (imported lazily from ``__init__.register``).

Order: the preferences, then the scene settings (``scene.att3d``), the operators (the backend's own
in :mod:`.lifecycle.operators`), the panels that draw them, and the backend's start ahead of time
(:mod:`.lifecycle.prestart`); unregistering goes in
reverse, then stops a set-up still running and closes the shared backend client.
"""
from __future__ import annotations

from . import operators, panels, preferences, properties
from .lifecycle import operators as lifecycle_operators
from .lifecycle import prestart, session, setup_job

_MODULES = (preferences, properties, operators, lifecycle_operators, panels, prestart)


def register() -> None:
    done = []
    try:
        for m in _MODULES:
            m.register()
            done.append(m)
    except Exception:
        for m in reversed(done):
            try:
                m.unregister()
            except Exception:
                pass
        raise


def unregister() -> None:
    for m in reversed(_MODULES):
        m.unregister()
    if setup_job.running():  # leaves nothing half-installed
        setup_job.current.cancel()
    session.close()
