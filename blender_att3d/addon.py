"""Registration of everything bpy-bound (imported lazily from ``__init__.register``).

Order: the preferences, then the scene settings (``scene.att3d``), the operators, the panels
that draw both, and the backend's start ahead of time (:mod:`.prestart`); unregistering goes in
reverse, then stops a set-up still running and closes the shared backend client.
"""
from __future__ import annotations

from . import operators, panels, preferences, prestart, properties, session, setup_job

_MODULES = (preferences, properties, operators, panels, prestart)


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
