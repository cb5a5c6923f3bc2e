"""The ready line: the one line ``att3d serve`` writes on stdout once it accepts requests::

    ATT3D_READY {"host":"127.0.0.1","port":40123,"url":"http://127.0.0.1:40123","token_file":"...",...}

The client that started the server reads the URL from it. Before that, the server names what it is
doing on stderr with stage lines (``att3d serve: stage: loading the model``), so the client can
tell an artist what the wait is for.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

READY_PREFIX = "ATT3D_READY "
STAGE_PREFIX = "att3d serve: stage: "


def format_ready_line(info: Mapping[str, Any]) -> str:
    """``ATT3D_READY {json}`` (compact JSON, no newline)."""
    return READY_PREFIX + json.dumps(dict(info), separators=(",", ":"))


def is_ready_line(line: str) -> bool:
    return line.startswith(READY_PREFIX)


def parse_ready_line(line: str) -> dict[str, Any]:
    """The JSON object of a ready line; ValueError when ``line`` is not one or its JSON is unreadable."""
    if not is_ready_line(line):
        raise ValueError(f"not a ready line: {line[:40]!r}")
    info = json.loads(line[len(READY_PREFIX):])
    if not isinstance(info, dict):
        raise ValueError(f"the ready line holds {type(info).__name__}, not a JSON object")
    return info


def format_stage_line(stage: str) -> str:
    """``att3d serve: stage: STAGE`` (a stderr line while the server starts)."""
    return STAGE_PREFIX + stage


def parse_stage_line(line: str) -> str | None:
    """The stage a server's stderr line names, or None."""
    if not line.startswith(STAGE_PREFIX):
        return None
    return line[len(STAGE_PREFIX):].strip() or None
