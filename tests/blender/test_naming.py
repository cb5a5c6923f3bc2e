"""Object names from prompts, and the prompt check they rely on (no bpy)."""
import pytest

from blender_att3d import naming, wire


def test_name_from_prompt():
    assert naming.name_from_prompt("a red sports car!") == "Red sports car"
    assert naming.name_from_prompt("  the   BLUE vase ") == "BLUE vase"
    assert naming.name_from_prompt("!!!") == "ATT3D"
    long = naming.name_from_prompt("é" * 200)
    assert len(long.encode()) <= 60 and long


def test_check_prompt():
    assert wire.check_prompt("  a   cat ") == "a cat"
    for bad in ("", "   ", None, "x" * (wire.MAX_PROMPT_CHARS + 1)):
        with pytest.raises(ValueError):
            wire.check_prompt(bad)
