"""The studio's users: a tokens file with one ``name token`` pair a line (``#`` comments), private to
the user who runs the server (mode 0600, not a symbolic link), as ``att3d serve``'s token file is.

Only SHA-256 digests of the tokens leave this module: they are what the ingress replicas get (a
Ray cluster keeps deployment arguments in its state), and a request's token is hashed and compared
with every digest in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from ..fileio import atomic_write_text
from ..service.auth import MIN_TOKEN_CHARS, _private, _refuse_links

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def digest(token: str | bytes) -> str:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).hexdigest()


def read_tokens_file(path: str | Path) -> dict[str, str]:
    """{token digest: user name} of a tokens file, or ValueError naming the file, line and problem."""
    path = Path(path).expanduser()
    _refuse_links(path)
    if not path.is_file():
        raise ValueError(f"the tokens file {path} does not exist (make one with `att3d studio --tokens {path} "
                         "--add-user NAME`)")
    if not _private(path):
        raise ValueError(f"the tokens file {path} can be read by other users: chmod 600 {path}")
    users: dict[str, str] = {}
    names: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}, line {n}: expected 'name token', got {len(parts)} fields")
        name, token = parts
        if not NAME.match(name):
            raise ValueError(f"{path}, line {n}: {name[:70]!r} is not a user name (letters, digits, _ . @ -; "
                             "at most 64 characters)")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"{path}, line {n}: the token of {name!r} is too short (at least {MIN_TOKEN_CHARS} "
                             "random characters)")
        if name in names:
            raise ValueError(f"{path}, line {n}: user {name!r} appears twice")
        if digest(token) in users:
            raise ValueError(f"{path}, line {n}: {name!r} has the same token as {users[digest(token)]!r}")
        names.add(name)
        users[digest(token)] = name
    if not users:
        raise ValueError(f"the tokens file {path} names no users")
    return users


def add_user(path: str | Path, name: str) -> str:
    """Append ``name`` with a new random token to the tokens file (made 0600 if new); the token."""
    path = Path(path).expanduser()
    _refuse_links(path)
    if not NAME.match(name):
        raise ValueError(f"{name[:70]!r} is not a user name (letters, digits, _ . @ -; at most 64 characters)")
    old = ""
    if path.exists():
        read_tokens_file(path)  # refuse to extend a file that is broken or readable by others
        old = path.read_text(encoding="utf-8")
        if any(line.split()[:1] == [name] for line in old.splitlines()):
            raise ValueError(f"user {name!r} is already in {path}")
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_text(path, old + ("" if not old or old.endswith("\n") else "\n") + f"{name} {token}\n", mode=0o600)
    return token


def authenticator(users: dict[str, str]) -> Callable[[bytes], str | None]:
    """The user a bearer token belongs to (every digest is compared, in constant time each)."""
    items = [(d.encode(), name) for d, name in users.items()]

    def who(given: bytes) -> str | None:
        d = digest(given).encode()
        found = None
        for known, name in items:
            if hmac.compare_digest(d, known):
                found = name
        return found

    return who
