"""The service's bearer token: written, checked and reused here; its location is the wire's
(:mod:`blender_att3d.wire.token`), shared with the clients that read it.

``ATT3D_TOKEN`` (environment) wins; otherwise the token file (``--token-file``, default
``$ATT3D_DATA_DIR/token``, else ``$XDG_DATA_HOME/att3d/token``, else ``~/.local/share/att3d/token``)
is reused if it is private to the user, and a new random token is written there (mode 0600, in a
0700 folder) if it is missing, not private, or ``--rotate-token`` is given. Its folder is made 0700
on every start; a token file that is a symbolic link is refused.
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


def _refuse_links(path: Path) -> None:
    """A token file that is a symbolic link could point anywhere (another user's file, a file that
    a link swap makes us overwrite): refuse it rather than follow it."""
    if path.is_symlink():
        raise ValueError(f"the token file {path} is a symbolic link: refusing to follow it "
                         "(remove it, or pass --token-file with a plain file, or set ATT3D_TOKEN)")


def _tighten_folder(folder: Path) -> None:
    """The folder that holds the token: 0700 when it is ours (an existing 0755 one included)."""
    if os.name != "posix":
        return
    try:
        st = folder.stat()
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            folder.chmod(stat.S_IMODE(st.st_mode) & 0o700)
    except OSError:
        pass  # not ours or gone: the token file's own 0600 still holds


def read_token_file(path: Path) -> str | None:
    _refuse_links(path)
    if not _private(path):
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token if len(token) >= MIN_TOKEN_CHARS else None


def write_token_file(path: Path, token: str) -> None:
    _refuse_links(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _tighten_folder(path.parent)
    atomic_write_text(path, token + "\n", mode=0o600)  # only the user may read it, from its first byte


def resolve_token(token_file: str | None = None, rotate: bool = False) -> tuple[str, Path | None]:
    """(token, the file it is in, or None when it came from ATT3D_TOKEN)."""
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        if len(env) < MIN_TOKEN_CHARS:
            raise ValueError(f"ATT3D_TOKEN is too short: use at least {MIN_TOKEN_CHARS} random characters")
        return env, None
    path = Path(token_file).expanduser() if token_file else default_token_file()
    if path.parent.is_dir():
        _tighten_folder(path.parent)
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


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port, brackets or trailing dot, lower case."""
    h = header.strip().lower()
    if h.startswith("["):
        h = h[1:h.find("]")] if "]" in h else h[1:]
    elif h.count(":") == 1:
        h = h.partition(":")[0]
    return h.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` headers the service answers (against DNS rebinding).

    Bound to loopback: loopback addresses and ``localhost``, plus ``extra`` names. With
    ``--allow-remote``: also any IP address (rebinding needs a host *name* the attacker controls),
    and the names in ``extra`` (``--allow-host``; ``*`` allows every name, e.g. behind a proxy).
    """

    def __init__(self, extra: list[str] | tuple[str, ...] = (), remote: bool = False) -> None:
        self.extra = {host_name(n) for n in extra if n.strip()}
        self.remote = remote

    def __call__(self, header: str) -> bool:
        name = host_name(header)
        if "*" in self.extra or name in self.extra or is_loopback(name):
            return True
        return self.remote and _is_ip(name)
