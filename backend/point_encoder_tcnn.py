"""tiny-cuda-nn hash levels for the point encoder (``model.backend``: ``auto`` | ``torch`` | ``tcnn``).

Each hash level is a one-level tiny-cuda-nn ``HashGrid`` encoding whose parameters are not its own:
the hypernetwork gives every prompt its own tables, so each prompt's table is passed in as the
encoding's ``params`` for that call (``torch.func.functional_call``); tiny-cuda-nn's autograd function
takes the parameters as an input, so the gradient flows back through them to the mapping network.

The parameter layout is tiny-cuda-nn's, which ``backend/point_encoder.py`` follows in PyTorch (table
size per level, dense indexing when a level fits, the spatial hash, features innermost): the same
weights run either way, so a model trained with one backend loads in the other. tiny-cuda-nn places
the ``R`` nodes of a level at ``x·(R − 1) + 0.5`` for ``x`` in [0, 1]; the PyTorch levels put them at
``(u + 1)/2·(R − 1)`` for ``u`` in [−1, 1], so the input is shifted by ``0.5/(R − 1)`` per level, and
features outside the box are zeroed as in PyTorch.

Only the hash levels run through tiny-cuda-nn: the dense levels are a ``grid_sample`` already, and the
NeRF MLP has biases that tiny-cuda-nn's fully fused MLPs lack (its weights would not be interchangeable).
Nothing here was run on a GPU with the real tiny-cuda-nn; the tests run it against a stand-in that
implements the used part of its Python API in PyTorch (tests/tcnn_standin.py).
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence

import torch

BACKENDS = ("auto", "torch", "tcnn")


def tcnn_module():
    """The ``tinycudann`` module, or None when it does not import (no build, no CUDA)."""
    try:
        return importlib.import_module("tinycudann")
    except (ImportError, OSError):  # (no build; no CUDA: EnvironmentError)
        return None


def use_tcnn(backend: str, device: torch.device) -> bool:
    """Whether the hash levels run through tiny-cuda-nn: ``tcnn`` always (an error when it does not
    import), ``auto`` when it imports and the model is on a CUDA device, ``torch`` never."""
    if backend == "torch":
        return False
    if backend == "auto":
        return device.type == "cuda" and tcnn_module() is not None
    if tcnn_module() is None:
        raise RuntimeError("model.backend = \"tcnn\" but tinycudann does not import: build it on a CUDA machine "
                           "(pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch) "
                           "or set model.backend = \"auto\" / \"torch\"")
    return True


def encoding_config(resolution: int, table_log2: int, features: int) -> dict:
    """The tiny-cuda-nn encoding of one hash level of ``resolution`` grid nodes."""
    return {"otype": "HashGrid", "n_levels": 1, "n_features_per_level": features, "log2_hashmap_size": table_log2,
            "base_resolution": resolution, "per_level_scale": 1.0, "interpolation": "Linear"}


class TcnnHashLevels:
    """The hash levels of a point encoder through tiny-cuda-nn, with per-prompt tables as inputs.

    Not an ``nn.Module`` on purpose: the encodings' own parameters are never used (each call passes a
    prompt's table), so they must not join the model's parameters or its state dict.
    """

    def __init__(self, resolutions: Sequence[int], table_log2: int, features: int, device: torch.device) -> None:
        tcnn = tcnn_module()
        if tcnn is None:
            raise RuntimeError("tinycudann does not import")
        self.device = device
        self.resolutions = [int(r) for r in resolutions]
        self.encodings = []
        with torch.device(device):
            for r in self.resolutions:
                enc = tcnn.Encoding(3, encoding_config(r, table_log2, features), dtype=torch.float32)
                if enc.n_output_dims != features:
                    raise RuntimeError(f"tiny-cuda-nn HashGrid gives {enc.n_output_dims} features, expected {features}")
                self.encodings.append(enc)

    def __call__(self, tables: Sequence[torch.Tensor], u: torch.Tensor) -> list[torch.Tensor]:
        """``tables`` ``[B, T_l, C]`` per level, ``u`` ``[B, N, 3]`` in [−1, 1] → features ``[B, N, C]`` per level."""
        from torch.func import functional_call

        inside = (u.abs() <= 1).all(dim=-1, keepdim=True)
        x01 = (u.clamp(-1, 1) + 1) * 0.5
        out = []
        for enc, r, table in zip(self.encodings, self.resolutions, tables):
            if table.shape[1] * table.shape[2] != enc.params.numel():
                raise ValueError(f"hash level of resolution {r}: {table.shape[1]}×{table.shape[2]} parameters per "
                                 f"prompt, tiny-cuda-nn expects {enc.params.numel()}")
            x = (x01 - 0.5 / (r - 1)).float()
            per_prompt = [functional_call(enc, {"params": table[i].reshape(-1).float()}, (x[i],))
                          for i in range(table.shape[0])]
            out.append(torch.stack(per_prompt).to(table.dtype) * inside)
        return out
