"""Contact sheets: a batch of images laid out on a white grid (training previews, the teacher's report)."""
from __future__ import annotations

import math

import numpy as np
import torch


def image_grid(images: torch.Tensor, cols: int) -> np.ndarray:
    imgs = (images.detach().float().clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
    n, h, w, _ = imgs.shape
    rows = math.ceil(n / cols)
    sheet = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = imgs[i]
    return sheet
