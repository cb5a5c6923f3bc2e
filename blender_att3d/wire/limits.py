"""The protocol's limits and the prompt check: one definition for the CLI, the service, the batch
tool and the add-on (which also reads a server's own limits from ``GET /v1/info``)."""
from __future__ import annotations

from typing import Any

MAX_PROMPT_CHARS = 500
MIN_RESOLUTION, MAX_RESOLUTION = 16, 512
MAX_KEYFRAMES = 64
MAX_CHAIN_MESHES = 256
MAX_NEIGHBORS = 50
MAX_SIMPLIFY = 10_000_000
TEXTURE_SIZE = 1024


def check_prompt(prompt: Any) -> str:
    """The prompt with its whitespace collapsed; ValueError with a readable reason when unusable."""
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt must be text, got {type(prompt).__name__}")
    p = " ".join(prompt.split())
    if not p:
        raise ValueError("the prompt is empty: type what to make, e.g. 'a red cube wearing a blue party hat'")
    if len(p) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt is {len(p)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return p
