"""Colour conversion (no bpy)."""
import numpy as np
import pytest

from blender_att3d import colors


def test_srgb_roundtrip():
    c = np.linspace(0, 1, 101, dtype=np.float32)
    assert colors.linear_to_srgb(colors.srgb_to_linear(c)) == pytest.approx(c, abs=1e-5)
