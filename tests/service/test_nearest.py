"""backend.nearest: the word measure (known, unknown, ignored words), its suggestions, typo hints,
and honesty for models that do not list their training prompts."""
from __future__ import annotations

import numpy as np
import pytest

from backend.nearest import FUNCTION_WORDS, PromptIndex, fold, training_prompts, words

WORLD = ["a red sphere", "a blue cube wearing a red party hat", "a orange sphere on a blue plate",
         "a blue sphere with red ears", "a red cube", "a black cone with a blue ring around it"]


def test_words_and_folding():
    assert words("A dog's Party-Hat, 2 spheres!") == ["a", "dog", "party", "hat", "2", "spheres"]
    assert words("l’été’s café") == ["l", "été", "café"]
    assert [fold(w) for w in ("spheres", "boxes", "berries", "ears", "glass", "torus", "axis", "bus", "cube")] == \
        ["sphere", "box", "berry", "ear", "glass", "torus", "axis", "bus", "cube"]


def test_known_unknown_and_ignored_words():
    idx = PromptIndex(WORLD)
    r = idx.query("an orange sphere")  # the artist's article; the prompts write "a orange sphere"
    assert r["far"] is False and r["known_words"] == ["orange", "sphere"] and r["unknown_words"] == []
    assert idx.classify("an orange sphere") == (["orange", "sphere"], [], ["an"])
    r = idx.query("A Medieval CASTLE, on a red plate")
    assert r["far"] is True and r["unknown_words"] == ["medieval", "castle"] and r["known_words"] == ["red", "plate"]
    assert r["message"] == "'medieval', 'castle' are not in any of its 6 training prompts; expect a rough result"
    assert idx.query("two red spheres")["unknown_words"] == ["two"]  # plural folded, the number is new
    assert idx.query("Red Spheres!")["far"] is False
    assert idx.query("a sphere with ear")["far"] is False  # the prompts' "ears", singular
    nothing = idx.query("the one")  # no word that names anything it knows
    assert nothing["far"] is True and nothing["known_words"] == [] and nothing["unknown_words"] == ["one"]
    only_function_words = idx.query("a the of it")
    assert only_function_words["far"] is True and "no word of it" in only_function_words["message"]


def test_the_vocabulary_is_whatever_the_provenance_lists():
    """Nothing about any world is hand-listed: a model that also trained on trees knows them, and the
    function words it uses are known like any other."""
    before = PromptIndex(WORLD).query("a tree in the winter")
    assert before["far"] is True and before["unknown_words"] == ["tree", "winter"]
    after = PromptIndex(WORLD + ["a tree in the winter", "a tree in the summer"])
    assert after.query("a tree in the winter")["far"] is False
    assert after.query("a red tree in the summer")["far"] is False
    assert after.query("a tree in the autumn")["unknown_words"] == ["autumn"]
    assert "in" in FUNCTION_WORDS and "tree" not in FUNCTION_WORDS


def test_suggestions_rank_the_prompts_that_share_the_words_and_their_order():
    idx = PromptIndex(WORLD)
    r = idx.query("a blue sphere", k=3)
    assert [n["prompt"] for n in r["neighbors"]][0] == "a blue sphere with red ears"  # "blue sphere", in order
    assert idx.query("a red cube", k=1)["neighbors"] == [{"prompt": "a red cube", "score": 1.0}]
    scores = [n["score"] for n in idx.query("a red cube wearing a hat", k=6)["neighbors"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 6 and 0 <= scores[-1] <= scores[0] <= 1


def test_a_typo_is_named_and_ranked_as_the_word_it_misspells():
    idx = PromptIndex(WORLD)
    r = idx.query("a red cueb")
    assert r["far"] is True and r["did_you_mean"] == {"cueb": "cube"}
    assert r["neighbors"][0]["prompt"] == "a red cube"
    assert idx.did_you_mean("spere") == "sphere" and idx.did_you_mean("purpel") is None  # not a known word
    assert idx.did_you_mean("bread") is None and idx.did_you_mean("cat") is None  # other word, too short
    assert idx.query("a red castle")["did_you_mean"] == {}


def test_unknown_words_are_ranked_through_their_closest_known_word():
    """The word vectors only move suggestions: "orb" (near "sphere") brings the spheres first; the
    verdict is the words' alone."""
    basis = {"sphere": [1, 0, 0], "orb": [0.9, 0.1, 0], "cube": [0, 1, 0], "box": [0.1, 0.9, 0]}

    def vectors(ws):
        out = np.array([basis.get(w, [0, 0, 1]) for w in ws], np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    idx = PromptIndex(WORLD, vectors)
    orb = idx.query("a red orb", k=2)
    assert orb["far"] is True and orb["unknown_words"] == ["orb"]
    plain = {n["prompt"]: n["score"] for n in PromptIndex(WORLD).query("a red orb", k=6)["neighbors"]}
    assert orb["neighbors"][0]["prompt"] == "a red sphere"
    assert orb["neighbors"][0]["score"] > plain["a red sphere"] + 0.05  # "orb" counted as "sphere"
    assert idx.query("a box", k=1)["neighbors"][0]["prompt"] == "a red cube"
    assert idx.query("a box", k=1)["neighbors"][0]["score"] > 0.3
    box = PromptIndex(WORLD).query("a box", k=6)  # without vectors nothing ranks it: the shortest first
    assert box["far"] is True and {n["score"] for n in box["neighbors"]} == {0.0}
    assert [n["prompt"] for n in box["neighbors"]][:2] == ["a red cube", "a red sphere"]


def test_word_vectors_that_fail_only_cost_the_hints():
    def broken(ws):
        raise AttributeError("this encoder has no input embeddings")

    idx = PromptIndex(WORLD, broken)
    assert idx.word_vectors_error == "AttributeError: this encoder has no input embeddings"
    r = idx.query("a red orb", k=2)
    assert r["far"] is True and r["unknown_words"] == ["orb"] and len(r["neighbors"]) == 2


def test_unknown_training_prompts_are_said_so():
    for idx in (PromptIndex(None), PromptIndex([])):
        r = idx.query("anything")
        assert r["far"] is None and r["known_prompts"] == 0 and r["neighbors"] == []
        assert "does not list its training prompts" in r["message"]
    assert training_prompts({"provenance": {}}) is None
    assert training_prompts({"provenance": {"prompts": ["a  b", "a b", " "]}}) == ["a b"]


def test_real_encoder(engine):
    r = engine.nearest("a  red cube", k=2).as_dict()
    assert r["prompt"] == "a red cube" and r["neighbors"][0] == {"prompt": "a red cube", "score": 1.0}
    assert r["far"] is False and r["known_prompts"] == 6
    far = engine.nearest("a red box", k=3).as_dict()
    assert far["far"] is True and far["unknown_words"] == ["box"] and len(far["neighbors"]) == 3
    with pytest.raises(ValueError, match="k must be"):
        engine.nearest("a red cube", k=0)
