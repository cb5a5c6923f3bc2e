"""``python -m blender_att3d.setup_backend``: the installer's documented command line, kept where it
was; the installer is :mod:`blender_att3d.lifecycle.setup_backend` (Set Up Local Backend runs that
file directly)."""
from __future__ import annotations

import sys

from .lifecycle.setup_backend import main

if __name__ == "__main__":
    sys.exit(main())
