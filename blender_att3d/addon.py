"""Registration of everything bpy-bound (imported lazily from ``__init__.register``).

Order: the preferences, then the scene settings (``scene.att3d``), the operators, and the panels
that draw both; unregistering goes in reverse, then closes the shared backend client.
"""
from __future__ import annotations

from . import operators, panels, preferences, properties, session

_MODULES = (preferences, properties, operators, panels)


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
    session.close()
