"""What a ``/v1/nearest`` answer means to the artist: the lines the add-on's panel shows under the
prompt (bpy-free, so ``att3d bench-closeness`` reports exactly what the panel says).

The answer (:class:`.types.Neighbors`, measured by ``backend/nearest.py``): ``far`` (None when the
model lists no training prompts), the prompt's ``unknown_words`` and ``known_words``, typo hints in
``did_you_mean`` and the nearest known prompts in ``neighbors``. Servers from before the word measure
(add-on 0.1, API 2 all the same) sent only ``far`` and ``neighbors``: that still reads as a plain far
or close line.
"""
from __future__ import annotations

from typing import NamedTuple

from .types import Neighbors

UNKNOWN = "Closeness unknown: this model does not list its training prompts"
FAR = "Far from what the model was trained on"
CLOSE = "Close to what the model was trained on"
#: how many of the nearest known prompts the panel offers as buttons under a far prompt
SUGGESTIONS = 3
#: unknown words named in the detail line (the panel is narrow)
NAMED_WORDS = 4


class Closeness(NamedTuple):
    icon: str  # ERROR (far), CHECKMARK (close), QUESTION (unknown: never a check mark)
    headline: str
    detail: str | None  # the words new to the model, or why it is close
    suggestions: list[str]  # nearest known prompts to offer instead (far only)

    def line(self) -> str:
        """Headline and detail as one line (status bars, reports)."""
        return self.headline + (f" ({self.detail})" if self.detail else "")


def describe_closeness(res: Neighbors) -> Closeness:
    """The panel's lines for a ``nearest`` answer."""
    if res.far is None:
        return Closeness("QUESTION", UNKNOWN, None, [])
    words_known = res.words_measured
    if not res.far:
        return Closeness("CHECKMARK", CLOSE, "every word is one it knows" if words_known else None, [])
    new, typos = res.unknown_words, res.did_you_mean
    detail: str | None = None  # (a server from before the word measure)
    if new:
        named = [f"'{w}'" + (f" (did you mean '{typos[w]}'?)" if w in typos else "") for w in new[:NAMED_WORDS]]
        detail = "new to it: " + ", ".join(named) + (" …" if len(new) > NAMED_WORDS else "")
    elif words_known:
        detail = "no word in it that it knows"
    suggestions = [n.prompt for n in res.neighbors]
    return Closeness("ERROR", FAR, detail, suggestions[:SUGGESTIONS])
