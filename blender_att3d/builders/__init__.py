"""numpy -> Blender data, split like glTF-Blender-IO's ``blender/imp/``: :mod:`.geometry` (meshes),
:mod:`.material`, :mod:`.animation` (F-curves on 4.2 and 5.x), :mod:`.objects` (objects and their
provenance) and :mod:`.chain` (mesh sequences and shape-key chains).

The only place that turns client results (:mod:`blender_att3d.wire.types`) into Blender data; the UI
operators and the headless batch both reach it through :mod:`blender_att3d.placement`.
"""
