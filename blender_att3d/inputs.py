"""Batch input files (no bpy, no torch: testable anywhere): a prompts file and a prompt-chain file.

See :func:`parse_prompts_file` and :func:`parse_chain_file`; every problem is an
:class:`InputFileError` with a one-line message (the batch prints it and exits with status 2).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .keyframes import sorted_keyframes
from .wire import check_prompt


class InputFileError(ValueError):
    """A batch input file is missing, unreadable, empty or malformed (message is one line)."""


def _read_text(path: str | Path, what: str) -> str:
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{what} file not found: {p}")
    if p.is_dir():
        raise InputFileError(f"{what} file is a folder, not a file: {p}")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{what} file is not UTF-8 text: {p}") from None
    except OSError as e:
        raise InputFileError(f"cannot read {what} file {p}: {e.strerror or e}") from None


def parse_prompts_file(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with '#' are ignored."""
    text = _read_text(path, "prompts")
    prompts = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            prompts.append(check_prompt(s))
        except ValueError as e:
            raise InputFileError(f"{path}:{n}: {e}") from None
    if not prompts:
        raise InputFileError(f"prompts file has no prompts: {path}")
    return prompts


def parse_chain_file(path: str | Path) -> dict:
    """Read a prompt-chain file; returns ``{"keyframes": [(frame, prompt), ...], "steps": int|None}``.

    Two formats:

    * text: one keyframe per line, ``FRAME<TAB>PROMPT`` (any whitespace after the frame number works);
      blank lines and ``#`` comments are ignored. Example::

          1	a red cube
          48	a blue sphere

    * JSON (the file starts with ``{`` or ``[``): ``[[1, "a red cube"], [48, "a blue sphere"]]`` or
      ``{"keyframes": [{"frame": 1, "prompt": "a red cube"}, ...], "steps": 4}``.

    At least two keyframes, on distinct frames; they are returned sorted by frame.
    """
    text = _read_text(path, "chain")
    stripped = text.lstrip()
    steps = None
    raw: list[tuple[object, object]] = []
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputFileError(f"chain file {path} is not valid JSON: {e.msg} (line {e.lineno})") from None
        items = data.get("keyframes") if isinstance(data, dict) else data
        if isinstance(data, dict) and data.get("steps") is not None:
            steps = data["steps"]
            if not isinstance(steps, int) or steps < 1:
                raise InputFileError(f"chain file {path}: 'steps' must be a positive integer")
        if not isinstance(items, list):
            raise InputFileError(f"chain file {path}: expected a list of keyframes")
        for it in items:
            if isinstance(it, dict) and "frame" in it and "prompt" in it:
                raw.append((it["frame"], it["prompt"]))
            elif isinstance(it, (list, tuple)) and len(it) == 2:
                raw.append((it[0], it[1]))
            else:
                raise InputFileError(f"chain file {path}: a keyframe must be [frame, prompt] or "
                                     f"{{\"frame\": ..., \"prompt\": ...}}, got {it!r}"[:200])
    else:
        for n, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.split(None, 1)
            if len(parts) != 2:
                raise InputFileError(f"{path}:{n}: expected 'FRAME<TAB>PROMPT', got {s!r}"[:200])
            raw.append((parts[0], parts[1]))
    keys = []
    for f, p in raw:
        try:
            frame = float(f)
            if not math.isfinite(frame):
                raise ValueError
        except (TypeError, ValueError):
            raise InputFileError(f"chain file {path}: {f!r} is not a frame number") from None
        if not isinstance(p, str):
            raise InputFileError(f"chain file {path}: prompt {p!r} is not text")
        keys.append((frame, p))
    try:
        keys = sorted_keyframes(keys)
    except ValueError as e:
        raise InputFileError(f"chain file {path}: {e}") from None
    return {"keyframes": keys, "steps": steps}
