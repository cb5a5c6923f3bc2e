"""The wire protocol between the add-on and the backend: the one bpy-free, torch-free home of the
result types (:mod:`.types`: meshes, chains, the info and nearest answers), the binary payload codec
(:mod:`.payload`), the API version and routes
(:mod:`.routes`), job states (:mod:`.job_state`), limits and the prompt check (:mod:`.limits`), the
ready line (:mod:`.ready`), the token's location (:mod:`.token`), what a ``nearest`` answer means to
the artist (:mod:`.closeness`) and the atomic file writer both sides use (:mod:`.fileio`). Standard
library + numpy only.
The backend imports nothing else from the add-on (``tests/test_boundaries.py``).
"""
from .job_state import FINISHED, JobState
from .limits import (
    DEFAULT_RESOLUTION,
    MAX_CHAIN_MESHES,
    MAX_KEYFRAMES,
    MAX_NEIGHBORS,
    MAX_PROMPT_CHARS,
    MAX_RESOLUTION,
    MAX_SIMPLIFY,
    MAX_TEXTURE_SIZE,
    MIN_RESOLUTION,
    MIN_SIMPLIFY,
    MIN_TEXTURE_SIZE,
    TEXTURE_SIZE,
    Limits,
    check_prompt,
    check_resolution,
    check_simplify,
    check_texture_size,
)
from .ready import READY_PREFIX, format_ready_line, parse_ready_line
from .routes import API_VERSION
from .types import MeshData, Neighbor, Neighbors, ProgressFn, SequenceData, SequencePiece, ServerInfo

__all__ = ["MeshData", "SequenceData", "SequencePiece", "ServerInfo", "Neighbors", "Neighbor", "ProgressFn",
           "check_prompt", "Limits", "MAX_PROMPT_CHARS",
           "MIN_RESOLUTION", "DEFAULT_RESOLUTION",
           "MAX_RESOLUTION", "MAX_KEYFRAMES", "MAX_CHAIN_MESHES", "MAX_NEIGHBORS", "MAX_SIMPLIFY", "TEXTURE_SIZE",
           "MIN_SIMPLIFY", "MIN_TEXTURE_SIZE", "MAX_TEXTURE_SIZE", "check_resolution", "check_simplify",
           "check_texture_size",
           "API_VERSION", "JobState", "FINISHED", "READY_PREFIX", "format_ready_line", "parse_ready_line"]
