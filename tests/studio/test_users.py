"""The studio's tokens file: names and tokens, its checks, and the authenticator built from it."""
from __future__ import annotations

import os

import pytest

from backend.studio.users import add_user, authenticator, digest, read_tokens_file


def write(path, text: str, mode: int = 0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_add_user_then_authenticate(tmp_path):
    f = tmp_path / "sub" / "tokens"
    ta, tb = add_user(f, "alice"), add_user(f, "bob.smith@studio")
    assert oct(f.stat().st_mode & 0o777) == "0o600"
    users = read_tokens_file(f)
    assert set(users.values()) == {"alice", "bob.smith@studio"} and ta not in str(users)  # digests only
    who = authenticator(users)
    assert who(ta.encode()) == "alice" and who(tb.encode()) == "bob.smith@studio" and who(b"x" * 40) is None
    with pytest.raises(ValueError, match="'alice' is already in"):
        add_user(f, "alice")


@pytest.mark.parametrize("text, message", [
    ("alice\n", "line 1: expected 'name token', got 1 fields"),
    ("alice short\n", "line 1: the token of 'alice' is too short"),
    ("al ice " + "t" * 20 + "\n", "expected 'name token', got 3 fields"),
    ("-x " + "t" * 20 + "\n", "'-x' is not a user name"),
    (f"a {'t' * 20}\nb {'t' * 20}\n", "line 2: 'b' has the same token as 'a'"),
    (f"a {'t' * 20}\n# c\na {'u' * 20}\n", "line 3: user 'a' appears twice"),
    ("# nobody\n\n", "names no users"),
])
def test_bad_tokens_files_are_named_with_line_and_problem(tmp_path, text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        read_tokens_file(write(tmp_path / "tokens", text))


def test_a_tokens_file_others_can_read_or_a_link_is_refused(tmp_path):
    f = write(tmp_path / "tokens", f"a {'t' * 20}  # comment\n", 0o644)
    with pytest.raises(ValueError, match="can be read by other users: chmod 600"):
        read_tokens_file(f)
    os.chmod(f, 0o600)
    assert read_tokens_file(f) == {digest("t" * 20): "a"}
    (tmp_path / "link").symlink_to(f)
    with pytest.raises(ValueError, match="symbolic link"):
        read_tokens_file(tmp_path / "link")
    with pytest.raises(ValueError, match="does not exist"):
        read_tokens_file(tmp_path / "missing")
