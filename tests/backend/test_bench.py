"""``att3d bench --partial FILE``: a bench cut short (a lent GPU machine's time limit) still leaves the
keys it measured; a finished one says so."""
from __future__ import annotations

import json

import pytest

from backend.bench import run_bench


class Cut(Exception):
    pass


def test_a_bench_cut_short_keeps_what_it_measured(tiny_model_dir, tmp_path, monkeypatch):
    import backend.export

    def stop(*args, **kwargs):  # the first generate key: as if the time limit struck there
        raise Cut

    monkeypatch.setattr(backend.export, "export_mesh", stop)
    out = tmp_path / "bench.json"
    with pytest.raises(Cut):
        run_bench(str(tiny_model_dir), device="cpu", repeats=1, quiet=True, service=False, dense_512=False,
                  partial_out=out)
    got = json.loads(out.read_text())
    assert got["complete"] is False and got["next"] == "generate_glb_128"
    for key in ("mapping", "lattice_128", "marching_cubes_128", "surface_128", "colours_128"):
        assert got[key] > 0, key
    assert got["device"] == "cpu" and "generate_glb_128" not in got
