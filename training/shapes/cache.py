"""The Shapes data folder: where GT renders and caption embeddings are cached between runs
(``$ATT3D_SHAPES_DATA``, else ``~/.cache/att3d/shapes``)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from backend.fileio import atomic_write_bytes

DEFAULT_DATA_DIR = Path(os.environ.get("ATT3D_SHAPES_DATA", Path.home() / ".cache" / "att3d" / "shapes"))


def save_npy_atomically(path: Path, array: np.ndarray) -> None:
    """``np.save`` through :func:`backend.fileio.atomic_write_bytes`: a reader never sees half an array."""
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())
