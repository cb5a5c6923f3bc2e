"""Where the service's bearer token lives, for the service that writes it and the clients that read it.

``ATT3D_TOKEN`` (environment) wins; otherwise the token file: ``$ATT3D_DATA_DIR/token``, else
``$XDG_DATA_HOME/att3d/token``, else ``~/.local/share/att3d/token``. The service writes and checks
the file (``backend/service/auth.py``); this module only knows where it is.
"""
from __future__ import annotations

import os
from pathlib import Path

TOKEN_ENV = "ATT3D_TOKEN"


def data_dir() -> Path:
    """The user's att3d data folder."""
    if os.environ.get("ATT3D_DATA_DIR"):
        return Path(os.environ["ATT3D_DATA_DIR"])
    root = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(root) / "att3d"


def default_token_file() -> Path:
    return data_dir() / "token"


def read_default_token() -> str | None:
    """``ATT3D_TOKEN``, else the default token file's content, else None (also when that file is a
    symbolic link, which the service refuses to use)."""
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env
    path = default_token_file()
    if path.is_symlink():  # the service refuses such a file; so does its client
        return None
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None
