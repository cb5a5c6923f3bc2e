"""``att3d train``, ``att3d eval`` and ``att3d plot`` (registered into ``backend.cli``)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train import train

    if args.config and args.preset:
        raise ValueError("give --config or --preset, not both (a config file can start from a preset's values "
                         "by copying it from training/configs/)")
    if not args.config and not args.preset:
        raise ValueError("give --config FILE or --preset NAME (e.g. --preset smoke)")
    config = load_config(args.config, args.overrides, preset=args.preset)
    if args.dry_run:
        from .plan import format_plan, plan

        p = plan(config)
        print(json.dumps(p) if args.json else format_plan(p))
        return 0
    if not args.out:
        raise ValueError("give --out RUN_FOLDER (or --dry-run to print the plan)")
    out = Path(args.out)
    if not args.resume and (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step_*")):
        raise ValueError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    t0 = time.perf_counter()
    result = train(config, out, resume=args.resume, progress=not args.quiet)
    from .distributed import dist_info

    if dist_info()[0] != 0:
        return 0
    if result.stopped != "done":
        print(f"stopped at step {result.step} (signal); checkpoint {result.checkpoint}; continue with "
              f"`att3d train ... --out {out} --resume`", file=sys.stderr)
        return 130
    if config.run.mode == "per_prompt":
        print(f"trained {len(result.per_prompt)} per-prompt models under {out / 'per_prompt'} "
              f"in {time.perf_counter() - t0:.1f} s")
    else:
        print(f"wrote {result.model_dir} ({result.step} steps, {result.frames_per_prompt:.1f} frames per prompt, "
              f"{result.skipped} skipped) in {time.perf_counter() - t0:.1f} s; try: "
              f"att3d generate \"{_first_prompt(out)}\" --model {result.model_dir} --out mesh.glb")
    return 0


def _first_prompt(out: Path) -> str:
    try:
        return (out / "prompts.txt").read_text().splitlines()[0].split(" → ")[0]
    except (OSError, IndexError):
        return "a prompt"


def cmd_eval(args: argparse.Namespace) -> int:
    if args.world:
        return _eval_world(args)
    if not args.prompts:
        raise ValueError("give --prompts SET (a file, pig or animals) or --world shapes")
    from .config import EvalConfig
    from .evaluate import evaluate_model
    from .prompts import load_prompt_set, read_prompt_file

    fraction = 0.5 if args.seen_fraction is None else args.seen_fraction
    ps = load_prompt_set(args.prompts, split=args.split or "all", seen_fraction=fraction, seed=args.split_seed,
                         key=args.key)
    prompts = ps.prompts[:args.max_prompts] if args.max_prompts else ps.prompts
    queries = list(ps.prompts) + list(ps.held_out)
    for d in args.distractors or []:
        queries += read_prompt_file(d)
    n = args.views
    ec = EvalConfig(azimuths=[360.0 * i / n for i in range(n)], elevation=args.elevation, size=args.size,
                    n_samples=args.samples)
    res = evaluate_model(args.model, prompts, queries, clip=args.clip, device=args.device, ec=ec)
    res.update(prompt_set=ps.record())
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{len(prompts)} prompts, {res['n_queries']} queries, {n} views: R-precision "
              f"{res['r_precision']:.4f}, R-probability {res['r_probability']:.4f}")
    return 0


def _eval_world(args: argparse.Namespace) -> int:
    """``att3d eval --world shapes``: the synthetic world's own ground-truth metrics."""
    if args.world != "shapes":
        raise ValueError(f"unknown world {args.world!r} (known: shapes)")
    from backend.mesh import check_smooth

    try:
        smooth = check_smooth(args.smooth)
    except ValueError as e:
        raise ValueError(f"--smooth: {e}") from None
    try:
        from .shapes import metrics
    except ImportError as e:
        raise ValueError(f"the Shapes world is not available ({e})") from None
    from backend.model import resolve_model_path

    resolve_model_path(args.model)
    kwargs = {"split": args.split or "unseen", "progress": not args.json, "seasons": True}
    if args.max_prompts is not None:
        kwargs["max_prompts"] = args.max_prompts
    if args.seen_fraction is not None:
        kwargs["fraction"] = args.seen_fraction
    if args.device != "auto":
        kwargs["device"] = args.device
    if args.surface_prompts is not None:
        kwargs["surface"] = args.surface_prompts
    if smooth:
        kwargs["smooth"] = smooth
    result = metrics.evaluate(args.model, **kwargs)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(metrics.format_report(result))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import environment, format_environment, gpu_bench

    if args.gpu_bench:
        print(json.dumps({"environment": environment(), "gpu_bench": gpu_bench(args.budget, args.repeats)},
                         indent=None if args.json else 2))
        return 0
    env = environment()
    print(json.dumps(env) if args.json else format_environment(env))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_runs

    out = plot_runs(args.runs, args.out, metric=args.metric, labels=args.label or [], title=args.title or "")
    print(f"wrote {out}")
    return 0


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--config", help="a TOML or YAML config (see training/configs/)")
    t.add_argument("--preset", help="a config shipped in training/configs/ by name: smoke, df415_if, df415_sd, "
                                    "pig_interp, …")
    t.add_argument("--out", help="the run folder (model in OUT/model, checkpoints, logs, previews)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--dry-run", action="store_true", help="print the plan (models, dtypes, parameters, downloads, "
                                                          "estimated peak GPU memory, steps, frames per prompt) "
                                                          "offline, and exit")
    t.add_argument("--json", action="store_true", help="with --dry-run: the plan as one JSON object")
    t.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides, e.g. run.steps=100")
    t.set_defaults(func=cmd_train)


def register(sub) -> None:
    t = sub.add_parser("train", help="train a model (amortized, interpolation, per-prompt or finetune)")
    add_train_arguments(t)

    e = sub.add_parser("eval", help="CLIP R-precision / R-probability of a model on a prompt set")
    e.add_argument("--model", required=True, help="model folder or shipped name")
    e.add_argument("--prompts", help="prompt set: a .txt file, a prompt_library.json, pig or animals")
    e.add_argument("--world", help="evaluate in a synthetic world instead (shapes)")
    e.add_argument("--split", choices=["all", "seen", "unseen"], help="the part of the set to score (default all)")
    e.add_argument("--seen-fraction", type=float, help="the split's seen fraction (default 0.5; with --world: "
                                                      "the one the model trained on)")
    e.add_argument("--split-seed", type=int, default=0)
    e.add_argument("--key", default="", help="the list in a prompt_library.json (default: all)")
    e.add_argument("--distractors", action="append", help="a prompt file whose prompts join the query set")
    e.add_argument("--clip", default="openai/clip-vit-base-patch32", help="transformers CLIP folder or hub id")
    e.add_argument("--views", type=int, default=4, help="views on a ring around the object")
    e.add_argument("--elevation", type=float, default=20.0)
    e.add_argument("--size", type=int, default=64, help="render size before CLIP's resize")
    e.add_argument("--samples", type=int, default=64, help="samples per ray")
    e.add_argument("--max-prompts", type=int, help="score at most this many prompts (0 = all; --world default: 128)")
    e.add_argument("--surface-prompts", type=int, help="--world: measure the extracted surface against the true "
                                                       "SDF on this many of them (default 16; 0 = none)")
    e.add_argument("--smooth", type=int, default=0, metavar="N",
                   help="--world: Taubin-smooth the measured meshes N iterations first, as `att3d generate "
                        "--smooth N` (0–100; default 0: off)")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="one JSON object on stdout")
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("doctor", help="the environment (torch, CUDA, GPUs, optional parts); --gpu-bench times "
                                      "real-size teachers on the GPU")
    d.add_argument("--gpu-bench", action="store_true",
                   help="build IF-I-XL's and SD 1.5's UNets on the GPU (random weights, no download), time SDS and "
                        "training steps at the DF415 configs' batch and resolution, peak memory, NCCL with ≥ 2 GPUs; "
                        "prints JSON")
    d.add_argument("--budget", type=float, default=170.0, help="--gpu-bench time budget in seconds (default 170)")
    d.add_argument("--repeats", type=int, default=5, help="--gpu-bench timed repeats per measure (median reported)")
    d.add_argument("--json", action="store_true", help="one JSON object on one line")
    d.set_defaults(func=cmd_doctor)

    p = sub.add_parser("plot", help="quality vs rendered frames per prompt from run folders (PNG)")
    p.add_argument("runs", nargs="+", help="run folders (amortized and/or per-prompt)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--metric", default="r_probability", choices=["r_probability", "r_precision", "loss"])
    p.add_argument("--label", action="append", help="a legend label per run, in order")
    p.add_argument("--title")
    p.set_defaults(func=cmd_plot)
