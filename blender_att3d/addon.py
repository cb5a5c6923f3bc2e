"""Registration of everything bpy-bound (imported lazily from ``__init__.register``)."""
from __future__ import annotations

from . import backend_client, operators, panels, preferences, properties

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
    backend_client.close()
