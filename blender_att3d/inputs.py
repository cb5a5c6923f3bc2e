"""Batch input files (no bpy, no torch: testable anywhere): a prompts file and a prompt-chain file.

See :func:`parse_prompts_file` (plain text, JSON or CSV) and :func:`parse_chain_file` (text or
JSON); both tell JSON the same way (``.json``, or a text that starts with ``[`` / ``{``) and read it
through one guarded loader. Every problem is an :class:`InputFileError` with a one-line message
(the batch prints it and exits with status 2, before any generation).
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .keyframes import sorted_keyframes
from .naming import MAX_NAME_BYTES
from .wire import check_prompt
from .wire.limits import MAX_KEYFRAMES, Limits, check_max_states

#: a chain file is at most ``{"keyframes": [{"frame": …}]}`` or ``[[frame, "prompt"]]`` deep
MAX_JSON_DEPTH = 8
DEFAULT_STEPS = 4


class InputFileError(ValueError):
    """A batch input file is missing, unreadable, empty or malformed (message is one line)."""


@dataclass(frozen=True)
class PromptItem:
    """One object the batch makes: its prompt, and optionally its object name and its location
    (metres, Blender's Z-up frame; None: a free cell of the grid)."""

    prompt: str
    name: str | None = None
    location: tuple[float, float, float] | None = None


def _read_text(path: str | Path, what: str) -> str:
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{what} file not found: {p}")
    if p.is_dir():
        raise InputFileError(f"{what} file is a folder, not a file: {p}")
    try:
        # utf-8-sig: spreadsheets (Excel's "CSV UTF-8") start the file with a byte-order mark
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(f"{what} file is not UTF-8 text: {p}") from None
    except OSError as e:
        raise InputFileError(f"cannot read {what} file {p}: {e.strerror or e}") from None


def _is_json(path: str | Path, text: str) -> bool:
    """Both input files: JSON when named ``.json`` or when the text starts with ``[`` or ``{``."""
    return Path(path).suffix.lower() == ".json" or text.lstrip().startswith(("{", "["))


def _load_json(path: str | Path, text: str, what: str) -> Any:
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:  # json.loads would recurse (100k levels: a RecursionError traceback)
        raise InputFileError(f"{what} file {path}: JSON nested {depth} levels deep; a {what} file needs at most "
                             f"{MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputFileError(f"{what} file {path} is not valid JSON: {e.msg} (line {e.lineno})") from None


# -- the prompts file ---------------------------------------------------------------------------------
PROMPT_FIELDS = ("prompt", "name", "location")
#: a CSV may give the location as one "location" column ("1, 2, 0") or as x, y, z columns
CSV_COLUMNS = (*PROMPT_FIELDS, "x", "y", "z")
_CSV_DELIMITERS = ",;\t"


def parse_prompts_file(path: str | Path) -> list[PromptItem]:
    """The batch's prompts, from any of the files an artist would write:

    * plain text: one prompt per line; blank lines and lines starting with ``#`` are ignored;
    * JSON (named ``.json``, or starting with ``[`` / ``{``): an array of prompts, each a string or an
      object ``{"prompt": …, "name": …, "location": [x, y, z]}`` (name and location optional; also
      ``{"prompts": [...]}``, as the chain file's ``{"keyframes": [...]}``);
    * CSV (named ``.csv`` / ``.tsv``, or whose first line is a header of these columns): a ``prompt``
      column, optional ``name`` and ``location`` (``"1, 2, 0"``) or ``x``, ``y``, ``z`` columns;
      comma, semicolon or tab separated, as spreadsheets save it.

    Anything else (a CSV without a prompt column, JSON of another shape, an unknown field or column,
    a location that is not 2–3 numbers) is an :class:`InputFileError` naming the file and the place.
    """
    text = _read_text(path, "prompts")
    if _is_json(path, text):
        items = _prompts_from_json(path, _load_json(path, text, "prompts"))
    elif Path(path).suffix.lower() in (".csv", ".tsv") or _csv_header(text) is not None:
        items = _prompts_from_csv(path, text)
    else:
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if s and not s.startswith("#"):
                items.append(PromptItem(_prompt(s, f"{path}:{n}")))
    if not items:
        raise InputFileError(f"prompts file has no prompts: {path}")
    return items


def _prompt(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputFileError(f"{where}: a prompt must be text, got {json.dumps(value)[:40]}")
    try:
        return check_prompt(value)
    except ValueError as e:
        raise InputFileError(f"{where}: {e}") from None


def _name(value: Any, where: str) -> str | None:
    """An object name as given (trimmed; at most Blender's 63 bytes, cut at a character); empty: none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputFileError(f"{where}: 'name' must be text, got {json.dumps(value)[:40]}")
    name = " ".join(value.split())
    while len(name.encode("utf-8")) > MAX_NAME_BYTES:
        name = name[:-1]
    return name.rstrip() or None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _location(value: Any, where: str, text: bool = False) -> tuple[float, float, float] | None:
    """[x, y] or [x, y, z] numbers (z = 0 when left out); with ``text`` (a CSV cell) "1, 2, 0", "1 2 0"
    or "(1, 2, 0)"; None or an empty cell: no location."""
    if value is None or (text and not value.strip()):
        return None
    nums: list[float | None]
    if text:
        nums = [_number(p) for p in value.strip().strip("()[]").replace(",", " ").replace(";", " ").split()]
    elif isinstance(value, list):
        nums = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None for v in value]
    else:
        nums = [None]
    if len(nums) not in (2, 3) or any(n is None or not math.isfinite(n) for n in nums):
        shown = value if isinstance(value, str) else json.dumps(value)
        raise InputFileError(f"{where}: 'location' must be 2 or 3 numbers (x, y, z in metres), got {shown[:40]!r}")
    x, y, z = [float(n) for n in nums if n is not None] + [0.0] * (3 - len(nums))
    return (x, y, z)


def _prompts_from_json(path: str | Path, data: Any) -> list[PromptItem]:
    if isinstance(data, dict) and set(data) == {"prompts"}:
        data = data["prompts"]
    if not isinstance(data, list):
        raise InputFileError(f"prompts file {path}: expected a JSON array of prompts (strings, or objects with a "
                             f"\"prompt\"), got {'an object' if isinstance(data, dict) else json.dumps(data)[:40]}")
    items = []
    for i, it in enumerate(data, 1):
        where = f"prompts file {path}: item {i}"
        if isinstance(it, str):
            items.append(PromptItem(_prompt(it, where)))
            continue
        if not isinstance(it, dict):
            raise InputFileError(f"{where}: expected a prompt or an object with a \"prompt\", got "
                                 f"{json.dumps(it)[:40]}")
        unknown = [k for k in it if k not in PROMPT_FIELDS]
        if unknown:
            raise InputFileError(f"{where}: unknown field {unknown[0]!r} (the fields are {', '.join(PROMPT_FIELDS)})")
        if "prompt" not in it:
            raise InputFileError(f"{where}: no \"prompt\"")
        items.append(PromptItem(_prompt(it["prompt"], where), _name(it.get("name"), where),
                                _location(it.get("location"), where)))
    return items


def _split_header(line: str, delimiter: str) -> list[str]:
    return [c.strip().strip('"').strip().lower() for c in line.split(delimiter)]


def _csv_header(text: str) -> str | None:
    """The delimiter of a CSV header made only of :data:`CSV_COLUMNS` with a prompt column, else None."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    for d in _CSV_DELIMITERS:
        cols = _split_header(first, d)
        if "prompt" in cols and all(c in CSV_COLUMNS for c in cols):
            return d
    return None


def _prompts_from_csv(path: str | Path, text: str) -> list[PromptItem]:
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delimiter = _csv_header(text) or max(_CSV_DELIMITERS, key=first.count)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as e:
        raise InputFileError(f"prompts file {path} is not valid CSV: {e}") from None
    body = [(n, r) for n, r in enumerate(rows, 1) if any(c.strip() for c in r)]
    if not body:
        raise InputFileError(f"prompts file has no prompts: {path}")
    (_, header), rows_ = body[0], body[1:]
    cols = [c.strip().lower() for c in header]
    if "prompt" not in cols:
        shown = ", ".join(repr(c) for c in header[:6] if c.strip()) or "nothing"
        raise InputFileError(f"prompts file {path}: a CSV needs a 'prompt' column in its first row (it has {shown})")
    unknown = [c for c in cols if c and c not in CSV_COLUMNS]
    if unknown:
        raise InputFileError(f"prompts file {path}: unknown column {unknown[0]!r} (the columns are prompt, name, "
                             "location or x, y, z)")
    if len(set(c for c in cols if c)) != len([c for c in cols if c]):
        raise InputFileError(f"prompts file {path}: a column is named twice in the first row")
    if "location" in cols and {"x", "y", "z"} & set(cols):
        raise InputFileError(f"prompts file {path}: give the location as one 'location' column or as x, y, z "
                             "columns, not both")
    items = []
    for n, row in rows_:
        where = f"{path}:{n}"
        if len(row) > len(cols) and any(c.strip() for c in row[len(cols):]):
            raise InputFileError(f"{where}: {len(row)} cells but the header names {len(cols)} columns (a prompt "
                                 f"with a {'comma' if delimiter == ',' else 'separator'} must be in double quotes)")
        cell = {c: (row[i].strip() if i < len(row) else "") for i, c in enumerate(cols) if c}
        if not cell["prompt"]:
            raise InputFileError(f"{where}: no prompt in this row")
        location: Any = cell.get("location")
        if {"x", "y", "z"} & set(cell):
            xyz = [cell.get(k, "") for k in ("x", "y", "z")]
            location = None if not any(xyz) else ", ".join(v or "?" for v in xyz)
        items.append(PromptItem(_prompt(cell["prompt"], where), _name(cell.get("name"), where),
                                _location(location, where, text=True)))
    return items


def parse_chain_file(path: str | Path) -> dict:
    """Read a prompt-chain file; returns ``{"keyframes": [(frame, prompt), ...], "steps": int|None}``.

    Two formats:

    * text: one keyframe per line, ``FRAME<TAB>PROMPT`` (any whitespace after the frame number works);
      blank lines and ``#`` comments are ignored. Example::

          1	a red cube
          48	a blue sphere

    * JSON (named ``.json``, or starting with ``{`` or ``[``, as the prompts file):
      ``[[1, "a red cube"], [48, "a blue sphere"]]`` or
      ``{"keyframes": [{"frame": 1, "prompt": "a red cube"}, ...], "steps": 4}``.

    At least two keyframes (at most the protocol's ``MAX_KEYFRAMES``), on distinct frames; they are
    returned sorted by frame. Frames and ``steps`` are numbers: JSON's ``true``/``false`` are neither.
    """
    text = _read_text(path, "chain")
    steps = None
    raw: list[tuple[object, object]] = []
    if _is_json(path, text):
        data = _load_json(path, text, "chain")
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


def check_batch(prompts: Sequence[PromptItem | str], chain: dict | None, steps: Any, resolution: Any,
                limits: Limits | None = None, max_states: Any = None) -> int | None:
    """Everything a batch will ask for, checked before it generates anything (so a bad chain is exit 2
    at once, not exit 1 after every prompt was generated): the resolution, the chain's steps and its
    length, against ``limits`` (this version's, or a server's). Returns the chain's steps per segment."""
    lim = limits or Limits()
    try:
        lim.check_resolution(resolution)
    except ValueError as e:
        raise InputFileError(f"--{e}") from None
    for item in prompts:
        p = item.prompt if isinstance(item, PromptItem) else item
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
    if max_states is not None:
        try:
            check_max_states(max_states, n_steps, lim.max_chain_states)
        except ValueError as e:
            raise InputFileError(f"--max-states: {e}") from None
    return n_steps
