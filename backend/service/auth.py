"""The service's bearer token: written, checked and reused here; its location is the wire's
(:mod:`blender_att3d.wire.token`), shared with the clients that read it.

``ATT3D_TOKEN`` (environment) wins; otherwise the token file (``--token-file``, default
``$ATT3D_DATA_DIR/token``, else ``$XDG_DATA_HOME/att3d/token``, else ``~/.local/share/att3d/token``)
is reused if it is private to the user, and a new random token is written there (mode 0600, in a
0700 folder) if it is missing, not private, or ``--rotate-token`` is given.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import stat
from pathlib import Path

from blender_att3d.wire.token import TOKEN_ENV, default_token_file

from ..fileio import atomic_write_text

MIN_TOKEN_CHARS = 16


def _private(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if os.name != "posix":
        return True
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not (st.st_mode & 0o077)


def read_token_file(path: Path) -> str | None:
    if not _private(path):
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token if len(token) >= MIN_TOKEN_CHARS else None


def write_token_file(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_text(path, token + "\n", mode=0o600)  # only the user may read it, from its first byte


def resolve_token(token_file: str | None = None, rotate: bool = False) -> tuple[str, Path | None]:
    """(token, the file it is in, or None when it came from ATT3D_TOKEN)."""
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        if len(env) < MIN_TOKEN_CHARS:
            raise ValueError(f"ATT3D_TOKEN is too short: use at least {MIN_TOKEN_CHARS} random characters")
        return env, None
    path = Path(token_file).expanduser() if token_file else default_token_file()
    token = None if rotate else read_token_file(path)
    if token is None:
        token = secrets.token_urlsafe(32)
        try:
            write_token_file(path, token)
        except OSError as e:
            raise ValueError(f"cannot write the token file {path}: {e.strerror or e} "
                             "(set ATT3D_TOKEN or pass --token-file)") from None
    return token, path


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
