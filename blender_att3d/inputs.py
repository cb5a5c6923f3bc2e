"""Batch input files (no bpy, no torch: testable anywhere): a prompts file and a prompt-chain file.

See :func:`parse_prompts_file` and :func:`parse_chain_file`; every problem is an
:class:`InputFileError` with a one-line message (the batch prints it and exits with status 2).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .keyframes import sorted_keyframes
from .wire import check_prompt
from .wire.limits import MAX_KEYFRAMES, Limits

#: a chain file is at most ``{"keyframes": [{"frame": …}]}`` or ``[[frame, "prompt"]]`` deep
MAX_JSON_DEPTH = 8
DEFAULT_STEPS = 4


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

    At least two keyframes (at most the protocol's ``MAX_KEYFRAMES``), on distinct frames; they are
    returned sorted by frame. Frames and ``steps`` are numbers: JSON's ``true``/``false`` are neither.
    """
    text = _read_text(path, "chain")
    stripped = text.lstrip()
    steps = None
    raw: list[tuple[object, object]] = []
    if stripped.startswith(("{", "[")):
        depth = json_depth(text)
        if depth > MAX_JSON_DEPTH:  # json.loads would recurse (100k levels: a RecursionError traceback)
            raise InputFileError(f"chain file {path}: JSON nested {depth} levels deep; a chain needs at most "
                                 f"{MAX_JSON_DEPTH}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputFileError(f"chain file {path} is not valid JSON: {e.msg} (line {e.lineno})") from None
        items = data.get("keyframes") if isinstance(data, dict) else data
        if isinstance(data, dict) and data.get("steps") is not None:
            steps = data["steps"]
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise InputFileError(f"chain file {path}: 'steps' must be a positive integer, got "
                                     f"{json.dumps(steps)[:40]}")
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
    if len(raw) > MAX_KEYFRAMES:
        raise InputFileError(f"chain file {path}: {len(raw)} keyframes; the limit is {MAX_KEYFRAMES}")
    keys = []
    for f, p in raw:
        if isinstance(f, bool):
            raise InputFileError(f"chain file {path}: {json.dumps(f)} is not a frame number")
        try:
            frame = float(f)  # type: ignore[arg-type]
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


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of a JSON text nest (brackets inside strings do not count);
    a linear scan, so a 100 000-level file is measured, not parsed."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def check_batch(prompts: list[str], chain: dict | None, steps: Any, resolution: Any,
                limits: Limits | None = None) -> int | None:
    """Everything a batch will ask for, checked before it generates anything (so a bad chain is exit 2
    at once, not exit 1 after every prompt was generated): the resolution, the chain's steps and its
    length, against ``limits`` (this version's, or a server's). Returns the chain's steps per segment."""
    lim = limits or Limits()
    try:
        lim.check_resolution(resolution)
    except ValueError as e:
        raise InputFileError(f"--{e}") from None
    for p in prompts:
        try:
            lim.check_prompt(p)
        except ValueError as e:
            raise InputFileError(f"prompt {p[:40]!r}: {e}") from None
    if chain is None:
        return None
    n_steps = steps if steps is not None else chain.get("steps") or DEFAULT_STEPS
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise InputFileError(f"--steps must be a positive integer, got {n_steps!r}")
    keys = chain["keyframes"]
    if len(keys) > lim.max_keyframes:
        raise InputFileError(f"the chain has {len(keys)} keyframes; the limit is {lim.max_keyframes}")
    meshes = (len(keys) - 1) * n_steps + 1
    if meshes > lim.max_chain_meshes:
        raise InputFileError(f"the chain would have {meshes} meshes ({len(keys)} keyframes, {n_steps} steps "
                             f"between each); the limit is {lim.max_chain_meshes}: use fewer steps or keyframes")
    for _, p in keys:
        try:
            lim.check_prompt(p)
        except ValueError as e:
            raise InputFileError(f"chain prompt {p[:40]!r}: {e}") from None
    return n_steps
