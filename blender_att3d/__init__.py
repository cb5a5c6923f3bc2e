"""ATT3D for Blender: text -> textured mesh in about a second (amortized text-to-3D).

This package is both the Blender extension (``register``/``unregister`` below) and a plain Python
package: ``blender_att3d.client`` and ``blender_att3d.logic`` import without bpy, so the backend
service can use them. Everything bpy-bound is imported lazily inside ``register()``.
"""


def register() -> None:
    from . import addon

    addon.register()


def unregister() -> None:
    from . import addon

    addon.unregister()
