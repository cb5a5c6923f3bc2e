"""Training modes (``run.mode``), one module each, owning its batch construction and its paper
equations; ``training/loop.py`` drives any of the single-model ones:

- ``amortized.py``: Alg. 1, one model for all prompts (and the :class:`Batch` every mode returns);
- ``interpolation.py``: §3.2.2, one model for the prompts between the two of each pair (Eq. 8–11);
- ``finetune.py``: App. B.1.13, an offset on one prompt's grid parameters, folded into a model folder.

The per-prompt baseline runs the loop once per prompt: a driver, ``training/per_prompt.py``, not a mode.
"""
from __future__ import annotations

from .amortized import Amortized, Batch
from .finetune import Finetune
from .interpolation import Interpolation

#: run.mode → the mode the loop drives (per_prompt runs one amortized loop per prompt)
MODES: dict[str, type[Amortized]] = {"amortized": Amortized, "interpolation": Interpolation, "finetune": Finetune}

__all__ = ["MODES", "Amortized", "Batch", "Finetune", "Interpolation"]
