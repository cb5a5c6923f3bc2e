"""The wire protocol between the add-on and the backend: the one bpy-free, torch-free home of the
mesh types, the binary payload codec, the API version and routes, job states, limits, the prompt
check, the ready line and the token's location. The backend imports nothing else from the add-on.
"""
from .limits import (
                     MAX_CHAIN_MESHES,
                     MAX_KEYFRAMES,
                     MAX_NEIGHBORS,
                     MAX_PROMPT_CHARS,
                     MAX_RESOLUTION,
                     MAX_SIMPLIFY,
                     MIN_RESOLUTION,
                     TEXTURE_SIZE,
                     check_prompt,
)
from .types import MeshData, ProgressFn, SequenceData

__all__ = ["MeshData", "SequenceData", "ProgressFn", "check_prompt", "MAX_PROMPT_CHARS", "MIN_RESOLUTION",
           "MAX_RESOLUTION", "MAX_KEYFRAMES", "MAX_CHAIN_MESHES", "MAX_NEIGHBORS", "MAX_SIMPLIFY", "TEXTURE_SIZE"]
