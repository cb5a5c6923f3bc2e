"""The choices the UI offers (enum items), in one bpy-free place: the scene settings
(:mod:`.properties`) and the operators both use them, and neither imports the other.
"""
from __future__ import annotations

# The marching-cubes resolution Generate, chains, the live blend and the batch use unless told otherwise
# (the add-on preferences' default; the scene can override it): the wire's, the CLI's and the service's.
from .wire.limits import DEFAULT_RESOLUTION  # noqa: F401 (re-exported)

COLOR_MODES = [
    ("VERTEX", "Vertex Colours", "Colours stored per vertex (fast)"),
    ("TEXTURE", "Baked Texture", "Bake the colours into a UV texture (slower, finer detail)"),
]
CHAIN_MODES = [
    ("SHAPE_KEYS", "Shape Keys", "One object morphing through the steps (consistent topology)"),
    ("SEQUENCE", "Mesh Sequence", "One object per step, exactly one visible at each frame"),
]
MC_METHODS = [  # the wire's MC_METHODS, labelled
    # numbered: a .blend saved before "auto" and "torch" existed keeps its choice
    ("auto", "Automatic", "PyTorch marching cubes when the backend runs on a GPU, scikit-image on a CPU", 2),
    ("skimage", "scikit-image", "Lewiner marching cubes (the fastest on a CPU)", 0),
    ("pymcubes", "PyMCubes", "Classic marching cubes from PyMCubes (the backend needs it installed)", 1),
    ("torch", "PyTorch", "Marching cubes on the backend's device (the fastest on a GPU)", 3),
]
INTERPOLATIONS = [  # how new keys of a chain's position curve move between prompt keyframes
    ("LINEAR", "Linear", "Morph at an even pace from keyframe to keyframe"),
    ("EASE", "Ease", "Ease out of each keyframe and into the next (Bezier)"),
    ("CONSTANT", "Constant", "Hold each keyframe's object until the next keyframe"),
]
ORIGIN_CHOICES = [
    ("BASE", "Base", "Origin at the bottom centre: the object rests on the ground where it lands"),
    ("CENTER", "Centre", "Origin at the centre of the object's bounding box"),
]
