"""Named choices a request can make about how a mesh is made (one definition for the CLI, the service,
the embedded client and the add-on)."""
from __future__ import annotations

from typing import Any

#: how the density is sampled: only where the surface can be (sparse), or at every lattice node (dense,
#: the reference); the same mesh. auto (the default): sparse from 96³, dense below (cheaper there)
EXTRACT_METHODS = ("auto", "sparse", "dense")
#: marching cubes: scikit-image (Lewiner: 32 ms at 128³ on a CPU vs 61 ms), PyMCubes, or PyTorch (on the
#: device of the model: a few ms on a GPU); auto (the default): PyTorch on a GPU, scikit-image elsewhere
MC_METHODS = ("auto", "skimage", "pymcubes", "torch")
#: Taubin iterations the artist-facing paths apply to a generated object (``att3d generate`` without
#: ``--smooth``, ``make demo``, the service's and the add-on's objects): on the demo model's unseen
#: prompts it lowers the roughness (v2: 3.96° → 3.27°) with the volume unchanged and thin parts (ears)
#: kept, for ~0.05 s a mesh. The library's own default is 0 (raw); `att3d eval` reports the raw field.
DEFAULT_SMOOTH = 20


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_extract(value: Any) -> str:
    return _choice("extract", value, EXTRACT_METHODS)


def check_mc(value: Any) -> str:
    return _choice("mc", value, MC_METHODS)
