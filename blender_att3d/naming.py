"""Object names from prompts (no bpy, no torch: testable anywhere).

'a red sports car!' -> 'Red sports car'; a chain 'a red cube' ... 'a blue ball' -> 'Red cube to blue ball'.
"""
from __future__ import annotations

import re

MAX_NAME_BYTES = 60  # Blender names hold 63 bytes
_ARTICLES = ("a ", "an ", "the ")


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
