"""`att3d serve` with a stand-in engine whose generate runs native code (big matmuls on several
threads) for a minute without a progress point, like a 512³ mesh extraction: for the SIGTERM tests.

    python tests/service/slow_engine_server.py   (from the repository root)
"""
from __future__ import annotations

import sys
import time

import torch

from backend.engine import Nearest
from blender_att3d.wire.types import Neighbors, ServerInfo


class SlowEngine:
    def info(self) -> ServerInfo:
        return ServerInfo(model="slow-engine", api=1)

    def warm(self, on_stage=None) -> None:
        pass

    def run(self, request, progress=None, modulation=None):
        if isinstance(request, Nearest):
            return Neighbors(prompt=request.prompt)
        if progress is not None:
            progress(0.3, "extracting the mesh")  # then no cancel point for a minute
        a = torch.randn(1024, 1024)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            a = torch.tanh(a @ a)
        raise AssertionError("the server waited for the whole extraction")


if __name__ == "__main__":
    from backend.service.server import serve

    torch.set_num_threads(2)
    sys.exit(serve(port=0, engine=SlowEngine()))
