"""Named choices a request can make about how a mesh is made (one definition for the CLI, the service,
the embedded client and the add-on)."""
from __future__ import annotations

from typing import Any

#: how the density is sampled: only where the surface can be (sparse), or at every lattice node (dense,
#: the reference); the same mesh. auto (the default): sparse from 96³, dense below (cheaper there)
EXTRACT_METHODS = ("auto", "sparse", "dense")
#: marching cubes: scikit-image (Lewiner, the default: 32 ms at 128³ vs 61 ms) or PyMCubes
MC_METHODS = ("skimage", "pymcubes")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_extract(value: Any) -> str:
    return _choice("extract", value, EXTRACT_METHODS)


def check_mc(value: Any) -> str:
    return _choice("mc", value, MC_METHODS)
