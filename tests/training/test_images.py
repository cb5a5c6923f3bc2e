"""The contact sheet of previews (and of the teacher's samples)."""
from __future__ import annotations

import torch

from training.images import image_grid


def test_image_grid_is_row_major_and_white_where_short():
    images = torch.stack([torch.full((3, 2, 3), v) for v in (0.0, 0.5, 1.0)])  # 3 images of 2×3
    sheet = image_grid(images, cols=2)
    assert sheet.shape == (4, 6, 3) and sheet.dtype.name == "uint8"
    assert (sheet[:2, :3] == 0).all() and (sheet[:2, 3:] == 128).all()  # row 0: images 0, 1
    assert (sheet[2:, :3] == 255).all() and (sheet[2:, 3:] == 255).all()  # row 1: image 2, then white
    assert image_grid(torch.full((1, 3, 2, 2), 2.0), cols=1).max() == 255  # clamped
