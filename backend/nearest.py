"""How close is a prompt to what the model was trained on? Judged word by word.

An amortized model maps its training prompts' words to shapes; what it generalises to is new
combinations of those words. The shipped demo trained on 992 prompts of the Shapes world and draws
the other 992 (every one a new combination of words it saw) with ground-truth R-precision 0.957.
A word it never saw has no such evidence: nothing in training tied "castle" or "winter" to
anything. So the measure asks one question per word:

- **known**: the word occurs in the training prompts (case, punctuation, possessive ’s and plural
  -s / -es / -ies folded: "Spheres" is "sphere");
- **ignored**: a closed-class English word (article, preposition, pronoun, conjunction, copula:
  :data:`FUNCTION_WORDS`) the training prompts do not use, as the artist's "an orange sphere" for
  the world's "a orange sphere";
- **unknown**: anything else.

A prompt is *far* when it has an unknown word, or no known word other than function words; the
result names the unknown words (and a known word one typo away: "cueb" → "cube"). Nothing is
hand-listed about any world: the vocabulary is whatever ``provenance.prompts`` lists, so a model
that also trained on "a tree in the winter" knows "tree" and "winter". The earlier measure (cosine
distance of pooled sentence embeddings, threshold from each training prompt's distance to its
nearest other one) flagged 29 of the world's 64 accessory-free prompts with an artist's article:
short prompts sit far from long training prompts in that space without being unknown.
``docs/closeness.md`` has the figures and the command that measures them.

The nearest known prompts (the add-on's clickable suggestions) are ranked by TF-IDF cosine over
content words and adjacent pairs of them, earlier words weighing more; an unknown word counts as
its closest known word in the text encoder's input (word-piece) embeddings, at half their cosine
("tree" → pyramid, "orb" → sphere): a table lookup, no transformer pass, so a query takes a
fraction of a millisecond.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: Closed-class English words: they name nothing, so a prompt is not "far" for using one the training
#: prompts lack. Grammar, not any world's content (a world's own words are known whatever this says).
FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every either neither another other such
of in on at to for with by from into onto upon over under above below beneath beside besides behind
between among around near next inside outside within without through across along against atop off
out up down about as than
and or but nor
it its itself they them their theirs he him his she her hers we us our you your my me i
is are was were be been being has have had
""".split())

#: how much less the prompt's last word weighs in the ranking than its first
POSITION_DECAY = 0.5

#: unknown words whose typo hint and closest known word are remembered
CACHE_WORDS = 10_000

#: how much an unknown word's closest known word counts in the ranking, times their cosine (≈ 0.1–0.4)
SOFT_WEIGHT = 0.5

#: words → L2-normalised vectors ``[len(words), D]`` (the text encoder's input embeddings)
WordVectorFn = Callable[[Sequence[str]], np.ndarray]

_WORD = re.compile(r"[^\W\d_]+|\d+")
_POSSESSIVE = re.compile(r"['’]s\b")

UNKNOWN_MESSAGE = ("this model does not list its training prompts, so how close a prompt is to what it "
                   "knows cannot be told")


def words(text: str) -> list[str]:
    """The prompt's words, lowercased, possessive ’s dropped ("A dog's hat!" → a, dog, hat)."""
    return _WORD.findall(_POSSESSIVE.sub("", text.lower()))


def fold(word: str) -> str:
    """One form for singular and plural ("spheres", "boxes", "berries" → sphere, box, berry); words
    ending in -ss / -us / -is keep their s (glass, torus, axis)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def training_prompts(config: dict[str, Any]) -> list[str] | None:
    """The training prompts recorded in a model folder's config, or None when unknown."""
    prompts = (config.get("provenance") or {}).get("prompts") if isinstance(config, dict) else None
    if not prompts or not isinstance(prompts, (list, tuple)):
        return None
    out = [" ".join(str(p).split()) for p in prompts]
    return list(dict.fromkeys(p for p in out if p)) or None


def _typo_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (edits and adjacent swaps), cut off above ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def encoder_word_vectors(encoder: Any) -> WordVectorFn:
    """A text encoder's input embeddings as word vectors: the mean of the word's word pieces' rows
    of ``get_input_embeddings()`` (every transformers model has one), L2-normalised. Loads the encoder.

    On the CPU in float32 (MiniLM, and any encoder loaded there) the rows are read through a numpy
    view of the table, no torch call at query time: through the service on the loaded 2-core CPU,
    prompts of first-seen words took 16 ms (median) with torch's indexing; with the view 7.3 ms, as
    prompts of known words in that run (6.7 ms)."""
    table: list[Any] = []

    def lookup() -> Any:
        if not table:
            import torch

            weight = encoder.model.get_input_embeddings().weight.detach()
            cpu32 = weight.device.type == "cpu" and weight.dtype == torch.float32
            table.append(weight.numpy() if cpu32 else weight)
        return table[0]

    def vectors(ws: Sequence[str]) -> np.ndarray:
        t = lookup()
        out = np.zeros((len(ws), t.shape[1]), np.float32)
        for i, w in enumerate(ws):
            ids = encoder.tokenizer(w, add_special_tokens=False)["input_ids"]
            if ids:  # (a word of characters the tokenizer drops stays a zero vector: no hint)
                v = t[ids].mean(0) if isinstance(t, np.ndarray) else t[ids].float().mean(0).cpu().numpy()
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out

    return vectors


def _weighted_features(content: Sequence[str], weight: Sequence[float]) -> dict[str, float]:
    """A prompt's ranking features and their weights (before IDF): its content words (folded) and
    each adjacent pair of them, so that "a black sphere" ranks "a black sphere with …" above "a pink
    sphere with black ears". ``weight``: 1 for the prompt's own words, less for an unknown word's
    stand-in. Earlier words weigh more (from 1 down to 1 − POSITION_DECAY): a prompt names its object
    first ("a purple cube wearing a red party hat" is nearer "a purple cube wearing a blue party hat"
    than "a red cube wearing a red party hat"). Pairs only of the prompt's own words: two stand-ins
    side by side say nothing about word order. Training prompts and queries are weighed alike, so a
    training prompt asked again scores 1."""
    out: dict[str, float] = {}
    decay = [1.0 - POSITION_DECAY * i / max(len(content) - 1, 1) for i in range(len(content))]
    for f, w, d in zip(content, weight, decay):
        out[f] = max(out.get(f, 0.0), w * d)
    for a, b, wa, wb, d in zip(content, content[1:], weight, weight[1:], decay):
        if wa == wb == 1.0:
            out[f"{a} {b}"] = max(out.get(f"{a} {b}", 0.0), d)
    return out


class PromptIndex:
    """The training prompts' vocabulary and TF-IDF vectors; :meth:`query` judges a prompt.

    ``word_vectors``: words → input-embedding vectors (:func:`encoder_word_vectors`), used only to
    rank suggestions for prompts with unknown words; None ranks those by known words alone."""

    def __init__(self, prompts: Sequence[str] | None, word_vectors: WordVectorFn | None = None) -> None:
        self.prompts = list(prompts) if prompts else []
        self._word_vectors = word_vectors
        # vocabulary: folded form → the surface form the prompts use most
        surface: dict[str, Counter[str]] = {}
        docs = []
        for p in self.prompts:
            folded = []
            for w in words(p):
                f = fold(w)
                surface.setdefault(f, Counter())[w] += 1
                if f not in FUNCTION_WORDS:
                    folded.append(f)
            docs.append(_weighted_features(folded, [1.0] * len(folded)))
        self.vocab = {f: c.most_common(1)[0][0] for f, c in surface.items()}
        keys = sorted({f for d in docs for f in d})
        self._col = {f: i for i, f in enumerate(keys)}
        df = np.zeros(len(keys), np.float32)
        for d in docs:
            for f in d:
                df[self._col[f]] += 1
        self._idf = (np.log((1 + len(docs)) / (1 + df)) + 1).astype(np.float32)
        m = np.zeros((len(docs), len(keys)), np.float32)
        for r, d in enumerate(docs):
            for f, wt in d.items():
                m[r, self._col[f]] = wt * self._idf[self._col[f]]
        # feature-major ([features, prompts]): a query sums the few rows of its own features
        self._by_feature = np.ascontiguousarray((m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)).T)
        self._lengths = np.array([len(p) for p in self.prompts], np.int64)
        # the known content words, for typo hints and for matching unknown words by embedding
        self._content = sorted(f for f in self.vocab if f not in FUNCTION_WORDS)
        self._content_vectors: np.ndarray | None = None
        self.word_vectors_error: str | None = None
        if word_vectors is not None and self._content:
            try:
                self._content_vectors = word_vectors([self.vocab[f] for f in self._content])
            except Exception as e:  # an encoder without input embeddings: suggestions by known words only
                self._word_vectors, self.word_vectors_error = None, f"{type(e).__name__}: {e}"
        # per unknown word, at most CACHE_WORDS of each (a long-running service meets many)
        self._soft_cache: dict[str, tuple[str, float] | None] = {}
        self._typo_cache: dict[str, str | None] = {}

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> PromptIndex:
        """The index of a loaded model's training prompts (loads its text encoder for the word vectors)."""
        prompts = training_prompts(pipeline.config)
        return cls(prompts, encoder_word_vectors(pipeline.encoder) if prompts else None)

    # -- judging -------------------------------------------------------------------------------
    def classify(self, prompt: str) -> tuple[list[str], list[str], list[str]]:
        """(known, unknown, ignored) words of ``prompt``, each in order and without repeats; known
        words are content words (a function word the prompts use is neither known nor ignored)."""
        known: dict[str, None] = {}
        unknown: dict[str, None] = {}
        ignored: dict[str, None] = {}
        for w in words(prompt):
            f = fold(w)
            if f in self.vocab:
                if f not in FUNCTION_WORDS:
                    known[w] = None
            elif w in FUNCTION_WORDS or f in FUNCTION_WORDS:
                ignored[w] = None
            else:
                unknown[w] = None
        return list(known), list(unknown), list(ignored)

    def did_you_mean(self, word: str) -> str | None:
        """The known content word one typo away (two for words of 7+ letters), same first letter."""
        if word not in self._typo_cache:
            if len(self._typo_cache) >= CACHE_WORDS:
                self._typo_cache.clear()
            self._typo_cache[word] = self._did_you_mean(word)
        return self._typo_cache[word]

    def _did_you_mean(self, word: str) -> str | None:
        if len(word) < 4:
            return None
        limit = 2 if len(word) >= 7 else 1
        best: tuple[int, str] | None = None
        for f in self._content:
            s = self.vocab[f]
            if s[0] == word[0] and len(s) >= 3:
                d = _typo_distance(word, s, limit)
                if d <= limit and (best is None or d < best[0]):
                    best = (d, s)
        return best[1] if best else None

    # -- suggestions ---------------------------------------------------------------------------
    def _soft(self, word: str) -> tuple[str, float] | None:
        """The known content word closest to an unknown ``word`` by input embedding, and the cosine."""
        if self._content_vectors is None or self._word_vectors is None:
            return None
        if word not in self._soft_cache:
            if len(self._soft_cache) >= CACHE_WORDS:
                self._soft_cache.clear()
            sims = (self._content_vectors * self._word_vectors([word])[0]).sum(1)  # (no BLAS call: see _ranked)
            i = int(np.argmax(sims))
            self._soft_cache[word] = (self._content[i], float(sims[i])) if sims[i] > 0 else None
        return self._soft_cache[word]

    def _ranked(self, prompt: str, k: int) -> list[dict[str, Any]]:
        content: list[str] = []  # the prompt's content words, known or an unknown one's stand-in
        weight: list[float] = []
        for w in words(prompt):
            f = fold(w)
            if f in FUNCTION_WORDS or w in FUNCTION_WORDS:  # (name nothing: no feature, known or not)
                continue
            if f in self.vocab:
                content.append(f)
                weight.append(1.0)
            elif (typo := self.did_you_mean(w)) is not None:  # "cueb": ranked as "cube"
                content.append(fold(typo))
                weight.append(1.0)
            elif (soft := self._soft(w)) is not None:  # a hint, weaker than any word the prompt has
                content.append(soft[0])
                weight.append(SOFT_WEIGHT * soft[1])
        q = np.zeros(len(self._col), np.float32)
        for feature, wt in _weighted_features(content, weight).items():
            c = self._col.get(feature)
            if c is not None:
                q[c] = wt * self._idf[c]
        # A weighted sum of a few rows, not a matrix product: BLAS's threads, waking on a loaded CPU
        # beside torch's, made each query's product take 1–10 ms; these rows take microseconds.
        nz = np.flatnonzero(q)
        norm = float(np.sqrt((q[nz] ** 2).sum()))
        scores = ((self._by_feature[nz] * (q[nz] / norm)[:, None]).sum(0) if norm > 0
                  else np.zeros(len(self.prompts), np.float32))
        # best score first; among equals the shorter prompt, then the training order
        order = np.lexsort((np.arange(len(self.prompts)), self._lengths, -np.round(scores, 6)))[:k]
        return [{"prompt": self.prompts[i], "score": round(float(scores[i]), 6)} for i in order]

    def query(self, prompt: str, k: int = 5) -> dict[str, Any]:
        """``{"far", "known_words", "unknown_words", "did_you_mean", "neighbors": [{"prompt", "score"}],
        "known_prompts", "measure", "message"}``; ``far`` is None when the training prompts are unknown."""
        k = max(1, int(k))
        if not self.prompts:
            return {"far": None, "known_words": [], "unknown_words": [], "did_you_mean": {}, "neighbors": [],
                    "known_prompts": 0, "measure": "words", "message": UNKNOWN_MESSAGE}
        known, unknown, _ = self.classify(prompt)
        far = bool(unknown) or not known
        typos = {w: m for w in unknown if (m := self.did_you_mean(w)) is not None}
        n = len(self.prompts)
        if unknown:
            names = ", ".join(f"'{w}'" for w in unknown[:4]) + (" …" if len(unknown) > 4 else "")
            msg = (f"{names} {'is' if len(unknown) == 1 else 'are'} not in any of its {n} training prompts; "
                   "expect a rough result")
        elif not known:
            msg = f"no word of it is in the model's {n} training prompts; expect a rough result"
        else:
            msg = f"every word is in its {n} training prompts"
        return {"far": far, "known_words": known, "unknown_words": unknown, "did_you_mean": typos,
                "neighbors": self._ranked(prompt, k), "known_prompts": n, "measure": "words",
                "message": msg}
