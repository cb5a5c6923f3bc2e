"""Pure logic of the Blender add-on: no bpy, no torch (stdlib + numpy), so it is testable anywhere.

* prompts: validation and object names;
* chains: keyframe (frame, prompt) lists, mapping chain positions to frames, which step shows at a
  frame, and the keyframes that animate mesh sequences and shape keys;
* batch input files (see :func:`parse_prompts_file` and :func:`parse_chain_file`);
* colour conversion (sRGB display values -> Blender's scene-linear colour attributes).
"""
from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from .wire import MAX_PROMPT_CHARS, check_prompt  # noqa: F401 (re-exported)

MAX_NAME_BYTES = 60  # Blender names hold 63 bytes
_ARTICLES = ("a ", "an ", "the ")


class InputFileError(ValueError):
    """A batch input file is missing, unreadable, empty or malformed (message is one line)."""


# -- prompts ---------------------------------------------------------------------------------------


def _strip_article(p: str) -> str:
    low = p.lower()
    for art in _ARTICLES:
        if low.startswith(art) and len(p) > len(art):
            return p[len(art):]
    return p


def name_from_prompt(prompt: str, fallback: str = "ATT3D") -> str:
    """A readable object name: 'a red sports car!' -> 'Red sports car' (at most 60 bytes)."""
    p = _strip_article(" ".join(str(prompt).split()))
    p = re.sub(r"[^\w\s\-',]", "", p).strip(" -,'")
    p = " ".join(p.split())
    if not p:
        return fallback
    p = p[0].upper() + p[1:]
    while len(p.encode("utf-8")) > MAX_NAME_BYTES:
        p = p[:-1]
    return p.rstrip() or fallback


def chain_name(first: str, last: str) -> str:
    """'a red cube', 'a blue ball' -> 'Red cube to blue ball'."""
    return name_from_prompt(f"{_strip_article(' '.join(first.split()))} to {_strip_article(' '.join(last.split()))}")


# -- chains ----------------------------------------------------------------------------------------
def sorted_keyframes(keyframes: Iterable[tuple[float, str]]) -> list[tuple[float, str]]:
    """Keyframes sorted by frame, prompts checked; ValueError for < 2 keys or duplicate frames."""
    keys = sorted(((float(f), check_prompt(p)) for f, p in keyframes), key=lambda k: k[0])
    if len(keys) < 2:
        raise ValueError("A prompt chain needs at least two keyframes")
    for (fa, _), (fb, _) in zip(keys, keys[1:]):
        if fb <= fa:
            raise ValueError(f"Two keyframes are on frame {fa:g}: each keyframe needs its own frame")
    return keys


def position_to_frame(position: float, key_frames: Sequence[float]) -> float:
    """Chain position (keyframe k at integer k, steps between fractional) -> scene frame.

    Keyframe k lands on ``key_frames[k]``; positions between keyframes are placed linearly.
    """
    n = len(key_frames)
    if n == 0:
        raise ValueError("no keyframes")
    if n == 1:
        return float(key_frames[0])
    k = int(math.floor(position))
    k = min(max(k, 0), n - 2)
    t = position - k
    return float(key_frames[k] + t * (key_frames[k + 1] - key_frames[k]))


def step_frames(positions: Sequence[float], key_frames: Sequence[float]) -> list[float]:
    """The frame of every chain step (strictly increasing for a valid chain)."""
    frames = [position_to_frame(p, key_frames) for p in positions]
    for a, b in zip(frames, frames[1:]):
        if b <= a:
            raise ValueError("chain steps must map to strictly increasing frames")
    return frames


def visible_step(frame: float, frames: Sequence[float]) -> int:
    """Index of the step a mesh sequence shows at ``frame`` (first before the start, last after)."""
    i = int(np.searchsorted(np.asarray(frames, dtype=np.float64), frame, side="right")) - 1
    return min(max(i, 0), len(frames) - 1)


def sequence_visibility_keys(frames: Sequence[float]) -> list[list[tuple[float, bool]]]:
    """Per step, (frame, hidden) keyframes (CONSTANT) so exactly one step shows at any frame."""
    n = len(frames)
    out = []
    for i in range(n):
        keys: list[tuple[float, bool]] = []
        if i > 0:
            keys.append((frames[0], True))
        keys.append((frames[i], False))
        if i + 1 < n:
            keys.append((frames[i + 1], True))
        out.append(keys)
    return out


def shape_key_weight_keys(frames: Sequence[float], interpolation: str = "LINEAR") -> list[list[tuple[float, float]]]:
    """Keyframes (frame, value) of shape key i for steps 1..N-1 (step 0 is the basis).

    LINEAR: a tent 0 -> 1 -> 0 over (frame[i-1], frame[i], frame[i+1]): the weights are a partition of
    unity, so the mesh is exactly step i at its frame and the straight blend of neighbours between.
    CONSTANT: key i is 1 on [frame[i], frame[i+1]) and 0 elsewhere.
    """
    if interpolation not in ("LINEAR", "CONSTANT"):
        raise ValueError(f"unknown interpolation {interpolation!r}")
    n = len(frames)
    out = []
    for i in range(1, n):
        keys = [(frames[i - 1], 0.0), (frames[i], 1.0)]
        if i + 1 < n:
            keys.append((frames[i + 1], 0.0))
        out.append(keys)
    return out


def expected_weights(frame: float, frames: Sequence[float], interpolation: str = "LINEAR") -> np.ndarray:
    """Weights of steps 0..N-1 at ``frame`` (index 0 is the implicit basis weight); sums to 1."""
    n = len(frames)
    w = np.zeros(n)
    i = visible_step(frame, frames)
    if interpolation == "CONSTANT" or i == n - 1 or frame <= frames[0]:
        w[i] = 1.0
        return w
    t = (frame - frames[i]) / (frames[i + 1] - frames[i])
    w[i], w[i + 1] = 1.0 - t, t
    return w


def mix_factor_of_step(weights: np.ndarray, i: int) -> float:
    """Factor of colour-mix node i (i >= 1) = sum of the weights of steps i..N-1.

    A chain of Mix nodes ``acc = mix(acc, colour_i, factor_i)`` with these factors gives exactly
    ``sum_i w_i colour_i`` whenever at most two neighbouring weights are non-zero.
    """
    return float(np.sum(weights[i:]))


# -- batch input files -----------------------------------------------------------------------------
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


# -- networking ------------------------------------------------------------------------------------
def is_loopback_url(url: str) -> bool:
    """True for http://localhost..., 127.x, ::1 (Blender's online-access switch does not apply)."""
    host = (urlparse(url if "//" in url else "//" + url).hostname or "").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- colour ----------------------------------------------------------------------------------------
def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055).astype(np.float32)
