"""The shipped demo through the service (issue 14): ``/v1/nearest`` flags a prompt from outside its
world as far and one of its world as close, and ``/v1/info`` says how many prompts it was trained
on with a few examples. Slow: it starts a server."""
import sys

import pytest

from blender_att3d.client.http import SubprocessClient


@pytest.mark.slow
def test_demo_far_and_close_through_v1_nearest():
    c = SubprocessClient(python=sys.executable, model="demo", device="cpu")
    try:
        far = c.nearest("a medieval castle").as_dict()
        close = c.nearest("a purple cube wearing a red party hat").as_dict()
        assert far["far"] is True and far["unknown_words"] == ["medieval", "castle"] and far["known_prompts"] == 1056
        assert len(far["neighbors"]) == 5 and all(n["prompt"].startswith("a ") for n in far["neighbors"])
        assert close["far"] is False and close["unknown_words"] == []
        assert close["neighbors"][0]["prompt"].startswith("a purple cube wearing a ")
        artist = c.nearest("an orange sphere").as_dict()  # the artist's article (the world writes it since v3)
        assert artist["far"] is False and artist["neighbors"][0]["prompt"].startswith("an orange sphere")
        for other in ("a cute corgi", "a purple dragon"):  # the false all-clears
            assert c.nearest(other).far is True, other
        info = c.info()
        assert info.training_prompts == 1056 and info.training_prompts_known is True
        ex = info.training_prompt_examples
        assert len(ex) == 5 and len(set(ex)) == 5 and all(p.startswith("a ") for p in ex)
    finally:
        c.close()
