"""Checkpoints: a model folder plus optimizer and RNG state beside it, written atomically.

Layout of ``RUN/checkpoints/step_0000100/``::

    model/                 a normal model folder (config.json + model.safetensors): `att3d generate` loads it
    optimizer.safetensors  optimizer tensors; param groups in trainer.json
    rng.safetensors        generator states (per rank)
    offset.safetensors …   what a mode adds (finetuning: the raw offset δ)
    trainer.json           step, counters, prompt-set hash, config — written last

Everything goes to a hidden temp folder first, which is renamed into place; ``latest.json`` is then
replaced atomically. A kill at any point leaves either the previous checkpoint or the new one, and
:func:`find_latest` ignores half-written temp folders. No pickles anywhere.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from backend.fileio import atomic_write_json, write_folder_atomically
from backend.model import save_model

LATEST = "latest.json"
STATE = "trainer.json"


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state as safetensors-ready tensors (``state.{param}.{key}``) plus JSON metadata
    (param groups, non-tensor state); :func:`optimizer_from_flat` restores it exactly."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for idx, d in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(d)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class NonFiniteWeights(ValueError):
    """The weights hold NaN or inf: such a checkpoint would only spread the damage, so none is written."""


def nonfinite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_finite(model, optimizer: torch.optim.Optimizer | None = None) -> None:
    """NonFiniteWeights naming the first damaged tensors of ``model`` (or of the optimizer's state)."""
    bad = nonfinite_tensors(dict(model.state_dict()))
    if optimizer is not None and not bad:
        bad = [f"optimizer {k}" for k in nonfinite_tensors(optimizer_to_flat(optimizer)[0])]
    if bad:
        raise NonFiniteWeights(f"non-finite values (NaN/inf) in {', '.join(bad[:3])}{' …' if len(bad) > 3 else ''}")


def save_checkpoint(run_dir: Path, step: int, model, optimizer: torch.optim.Optimizer,
                    rng: dict[str, torch.Tensor], state: dict[str, Any], provenance: dict[str, Any],
                    keep: int = 3, extra: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write ``RUN/checkpoints/step_N/`` atomically (every file flushed to disk before the rename), point
    ``latest.json`` at it and keep the newest ``keep``; ``extra`` maps more safetensors file names to
    their tensors. NonFiniteWeights, and nothing written, when a weight is NaN or inf."""
    check_finite(model, optimizer)
    for name, more in (extra or {}).items():
        if nonfinite_tensors(more):
            raise NonFiniteWeights(f"non-finite values (NaN/inf) in {name}: {', '.join(nonfinite_tensors(more)[:3])}")
    ckdir = Path(run_dir) / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    final = ckdir / f"step_{step:07d}"

    def write(tmp: Path) -> None:
        save_model(model, tmp / "model", provenance)
        tensors, meta = optimizer_to_flat(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        save_file({k: v.contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
        for name, more in (extra or {}).items():
            save_file(more, str(tmp / name))
        (tmp / STATE).write_text(json.dumps({**state, "step": step, "optimizer": meta}, indent=2) + "\n")

    write_folder_atomically(final, write)
    atomic_write_json(ckdir / LATEST, {"step": step, "path": final.name})
    _prune(ckdir, keep, final)
    return final


def _complete(path: Path) -> bool:
    return all((path / f).is_file() for f in (STATE, "optimizer.safetensors", "rng.safetensors",
                                                 "model/config.json", "model/model.safetensors"))


def _prune(ckdir: Path, keep: int, current: Path) -> None:
    if keep <= 0:
        return
    done = sorted(p for p in ckdir.glob("step_*") if p.is_dir())
    for p in done[:-keep]:
        if p != current:
            shutil.rmtree(p, ignore_errors=True)
    for p in ckdir.glob(".step_*"):  # temp folders of killed writers
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def candidates(run_dir: Path) -> list[Path]:
    """The run's complete-looking checkpoints, newest first (``latest.json``'s first, then by step)."""
    ckdir = Path(run_dir) / "checkpoints"
    if not ckdir.is_dir():
        return []
    found = sorted((p for p in ckdir.glob("step_*") if p.is_dir() and _complete(p)), reverse=True)
    try:
        latest = ckdir / json.loads((ckdir / LATEST).read_text())["path"]
        if latest in found:
            found.remove(latest)
            found.insert(0, latest)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return found


def find_latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (``latest.json`` first, else a scan), or None."""
    found = candidates(run_dir)
    return found[0] if found else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """``{"state": trainer.json, "model_dir": Path, "optimizer": tensors, "rng": tensors}``; ValueError
    when a file is unreadable or truncated."""
    path = Path(path)
    try:
        state = json.loads((path / STATE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError(f"{STATE} has no step")
        return {"state": state, "model_dir": path / "model",
                "optimizer": load_file(str(path / "optimizer.safetensors")),
                "rng": load_file(str(path / "rng.safetensors"))}
    except (OSError, ValueError, SafetensorError) as e:
        raise ValueError(f"checkpoint {path} is unreadable ({e})") from None
