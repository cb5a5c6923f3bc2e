"""Prompt sets (paper §4.1, App. B.1.12): plain text files, threestudio's ``prompt_library.json``,
and the compositional pig and animal sets with deterministic seen / unseen splits.

Every set is a :class:`PromptSet`: an ordered, de-duplicated list (first occurrence kept) with a
sha256 of its canonical form, so a run records exactly what it trained on.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

PIG_ACTIVITIES = ["riding a bicycle", "sitting on a chair", "playing the guitar", "holding a shovel",
                  "holding a blue balloon", "holding a book", "wielding a katana", "riding a bike"]
PIG_THEMES = ["made out of gold", "carved out of wood", "wearing a leather jacket", "wearing a tophat",
              "wearing a party hat", "wearing a sombrero", "wearing medieval armor"]

ANIMALS = ["a squirrel", "a raccoon", "a pig", "a monkey", "a robot", "a lion", "a rabbit", "a tiger",
           "an orangutan", "a bear"]
ANIMAL_ACTIVITIES = ["riding a motorcycle", "sitting on a chair", "playing the guitar", "holding a shovel",
                     "holding a blue balloon", "holding a book", "wielding a katana"]
ANIMAL_THEMES = ["wearing a leather jacket", "wearing a sweater", "wearing a cape", "wearing medieval armor",
                 "wearing a backpack", "wearing a suit"]
ANIMAL_HATS = ["wearing a party hat", "wearing a sombrero", "wearing a helmet", "wearing a tophat",
               "wearing a backpack", "wearing a baseball cap"]

#: the part of a set a run trains on
Split = Literal["all", "seen", "unseen"]
SPLITS: tuple[str, ...] = get_args(Split)


def normalize(prompt: str) -> str:
    return " ".join(str(prompt).split())


def dedupe(prompts: Iterable[str]) -> list[str]:
    """Whitespace-normalised, empty lines dropped, duplicates removed keeping first-occurrence order."""
    return list(dict.fromkeys(p for p in (normalize(p) for p in prompts) if p))


def slug(text: str, n: int = 40) -> str:
    """A prompt as a short folder-safe name (``"a red cube!"`` → ``"a-red-cube"``)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n] or "prompt"


def prompt_hash(prompts: Sequence[str]) -> str:
    """sha256 of the canonical list: the prompts joined by newlines, UTF-8."""
    return hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest()


@dataclass
class PromptSet:
    name: str
    prompts: list[str]
    held_out: list[str] = field(default_factory=list)  # the other part of a split (evaluated, never trained)
    split: Split = "all"  # which part `prompts` is

    def __post_init__(self) -> None:
        self.prompts = dedupe(self.prompts)
        self.held_out = dedupe(self.held_out)

    @property
    def sha256(self) -> str:
        return prompt_hash(self.prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def record(self) -> dict:
        """What a run stores in its provenance."""
        return {"name": self.name, "split": self.split, "count": len(self.prompts), "sha256": self.sha256,
                "held_out_count": len(self.held_out),
                "held_out_sha256": prompt_hash(self.held_out) if self.held_out else None}


# -- files ------------------------------------------------------------------------------------

def read_text_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with ``#`` are ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return dedupe(l for l in lines if l.strip() and not l.lstrip().startswith("#"))


def read_prompt_library(path: str | Path, key: str | None = None) -> list[str]:
    """threestudio's ``prompt_library.json``: ``{"dreamfusion": [...], ...}`` (one key, or all keys in order)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, list):
        return dedupe(data)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of prompt lists")
    if key:
        if key not in data:
            raise ValueError(f"{path}: no prompt list {key!r} (has: {', '.join(sorted(data))})")
        items = data[key]
    else:
        items = list(itertools.chain.from_iterable(v for v in data.values() if isinstance(v, list)))
    if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
        raise ValueError(f"{path}: prompt lists must be lists of strings")
    return dedupe(items)


def read_prompt_file(path: str | Path) -> list[str]:
    """A ``.json`` prompt library (all its lists) or a text file of prompts (distractor files, …)."""
    return read_prompt_library(path) if str(path).endswith(".json") else read_text_prompts(path)


# -- compositional sets ----------------------------------------------------------------------------

def pig_prompts() -> tuple[list[str], list[str]]:
    """"a pig {activity} {theme}": 8 × 7 = 56 prompts; the diagonal is unseen.

    The paper pairs the i-th activity with the i-th theme on an 8 × 8 grid (64 prompts, 8 unseen)
    but lists only 7 themes; we wrap the diagonal (activity i, theme i mod 7) so that, as in the
    paper, every activity has one unseen prompt: 8 unseen, 48 seen.
    """
    seen, unseen = [], []
    for i, act in enumerate(PIG_ACTIVITIES):
        for j, theme in enumerate(PIG_THEMES):
            (unseen if j == i % len(PIG_THEMES) else seen).append(f"a pig {act} {theme}")
    return seen, unseen


def animal_prompts() -> list[str]:
    """"{animal} {activity} {theme} {hat}": 10 × 7 × 6 × 6 = 2520 (the paper says 2400)."""
    return [f"{a} {b} {c} {d}" for a, b, c, d in
            itertools.product(ANIMALS, ANIMAL_ACTIVITIES, ANIMAL_THEMES, ANIMAL_HATS)]


def split_seen(prompts: Sequence[str], seen_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """A deterministic random split (homogeneous over the set): ``round(f·N)`` seen, the rest unseen.
    Both parts keep the original order."""
    if not 0 < seen_fraction <= 1:
        raise ValueError(f"seen_fraction must be in (0, 1], got {seen_fraction}")
    n_seen = round(seen_fraction * len(prompts))
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    chosen = set(order[:n_seen])
    return ([p for i, p in enumerate(prompts) if i in chosen], [p for i, p in enumerate(prompts) if i not in chosen])


def load_prompt_set(source: str | Sequence[str] | None = None, *, prompts: Sequence[str] = (),
                    split: Split = "all", seen_fraction: float = 0.5, seed: int = 0, key: str = "") -> PromptSet:
    """A prompt set from a name (``pig``, ``animals``), a ``.txt`` / ``.json`` file, or a list.

    ``split``: ``all`` trains on everything; ``seen`` / ``unseen`` pick a part (pig: the diagonal is
    unseen; animals and files: a deterministic split by ``seed`` with ``seen_fraction`` seen).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if source is not None and not isinstance(source, str):
        prompts, source = list(source), None
    if source in (None, "") and not prompts:
        raise ValueError("no prompts: give prompts.set (a file or pig/animals) or prompts.list")
    if source == "pig":
        seen, unseen = pig_prompts()
        name = "pig"
        if split == "all":
            return PromptSet(name, [f"a pig {a} {t}" for a in PIG_ACTIVITIES for t in PIG_THEMES], [], "all")
    else:
        if source == "animals":
            items, name = animal_prompts(), "animals"
        elif source:
            path = Path(source).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"prompt file {source} not found")
            items = read_prompt_library(path, key or None) if path.suffix == ".json" else read_text_prompts(path)
            name = path.stem + (f":{key}" if key else "")
        else:
            items, name = dedupe(prompts), "inline"
        if not items:
            raise ValueError(f"prompt set {name!r} is empty")
        if split == "all":
            return PromptSet(name, items, [], "all")
        seen, unseen = split_seen(items, seen_fraction, seed)
        name += f"@{seen_fraction:g}/seed{seed}"
    if split == "seen":
        return PromptSet(name, seen, unseen, "seen")
    return PromptSet(name, unseen, seen, "unseen")
