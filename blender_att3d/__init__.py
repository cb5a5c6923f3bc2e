"""ATT3D for Blender: text -> textured mesh in about a second (amortized text-to-3D).

This package is both the Blender extension (``register``/``unregister`` below) and a plain Python
package: ``blender_att3d.wire`` (the protocol, the one part the backend imports), ``blender_att3d.client``
and the helpers ``naming``, ``keyframes``, ``inputs``, ``colors``, ``choices`` and ``lifecycle.session`` import
without bpy (tests/blender/test_imports.py).
Everything bpy-bound is imported lazily inside ``register()``.
"""


def register() -> None:
    from . import addon

    addon.register()


def unregister() -> None:
    from . import addon

    addon.unregister()
