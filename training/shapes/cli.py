"""``att3d world``, ``att3d train-teacher``, ``att3d teacher-report``, ``att3d train-demo``,
``att3d bench-amortization``, ``att3d bench-closeness``, ``att3d calibrate-iso``.

Registered by ``backend.cli`` through ``register(subparsers)`` (module ``training.shapes.cli`` in
its PLUGINS); everything heavy is imported inside the commands.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _error(msg: str):
    try:
        from backend.cli import CLIError
    except ImportError:  # pragma: no cover
        CLIError = ValueError
    return CLIError(msg)


def cmd_world_export(args: argparse.Namespace) -> int:
    from .world import get_world

    world = get_world(args.seed)
    try:
        files = world.export(args.dir)
    except OSError as e:
        raise _error(f"cannot write {args.dir}: {e.strerror or e}") from None
    sp = {k: len(world.split(k)["seen"]) for k in ("12.5%", "50%")}
    print(f"wrote {', '.join(str(f) for f in files)}: {len(world)} prompts, seen 12.5% = {sp['12.5%']}, "
          f"50% = {sp['50%']}, prompt hash {world.prompt_hash[:12]}")
    return 0


def cmd_world_show(args: argparse.Namespace) -> int:
    from .world import get_world

    world = get_world(args.seed)
    if args.split:
        idx = world.split(args.split)[args.part]
        texts = [world.texts[i] for i in idx]
    else:
        texts = world.texts
    print("\n".join(texts))
    return 0


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from .teacher import TeacherConfig, train_teacher

    if args.steps < 1:
        raise _error("--steps must be at least 1")
    if args.focus_share is not None and not 0 <= args.focus_share <= 1:
        raise _error("--focus-share must be between 0 and 1")
    if args.focus_share and not args.focus:
        raise _error("--focus-share needs --focus PHRASE (the prompts to draw that share from)")
    cfg = None
    if args.tiny:
        cfg = TeacherConfig(block_out_channels=(16, 32), norm_num_groups=8, batch_size=8, views_per_prompt=2)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = train_teacher(args.out, steps=args.steps, resume=args.resume, cfg=cfg, data_dir=args.data_dir,
                        save_every=args.save_every, log_file=args.log, progress=not args.quiet, init=args.init,
                        recipe={"prediction_type": args.prediction_type, "snr_gamma": args.snr_gamma, "lr": args.lr,
                                "focus": tuple(args.focus) if args.focus else None,
                                "focus_share": args.focus_share})
    print(f"teacher in {out} (unet/, scheduler/, att3d_teacher.json); use it as guidance.model = \"{out}\"")
    if args.ship:
        from .teacher import ship_teacher

        print(f"shipped (fp16) to {ship_teacher(out)}")
    return 0


def cmd_teacher_report(args: argparse.Namespace) -> int:
    from .teacher import teacher_report

    rep = teacher_report(args.teacher, args.out, n_prompts=args.prompts, samples_per_prompt=args.samples,
                         guidance=args.guidance, steps=args.steps, eta=args.eta, data_dir=args.data_dir,
                         progress=not args.quiet, focus=tuple(args.focus or ()))
    rep = {k: v for k, v in rep.items() if k != "per_sample"}
    print(json.dumps(rep, indent=2))
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    from . import demo

    if args.soup and args.ship:
        raise _error("--soup and --ship: one at a time (make the soup, measure it, then ship its folder)")
    if args.soup:
        from training.soup import make_soup, parse_ingredient

        try:
            folder = make_soup([parse_ingredient(t) for t in args.soup], args.out)
        except ValueError as e:
            raise _error(str(e)) from None
        print(f"soup of {len(args.soup)} models written to {folder}; calibrate its level before use: "
              f"att3d calibrate-iso --model {folder} --write")
        return 0
    if args.ship:
        metrics = None
        if args.metrics:
            try:
                metrics = json.loads(Path(args.metrics).read_text())
            except json.JSONDecodeError as e:
                raise _error(f"{args.metrics}: not the JSON of `att3d eval --world shapes --json` ({e})") from None
            metrics = {k: v for k, v in metrics.items() if k != "per_prompt"}
        print(f"shipped (fp16) to {demo.ship(args.ship, metrics=metrics)}")
        return 0
    if args.steps < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise _error("--steps and --batch-size must be at least 1")
    if args.time_limit is not None and args.time_limit <= 0:
        raise _error("--time-limit must be a positive number of seconds")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from .teacher import resolve_teacher
    from .world import parse_fraction

    try:
        fraction = parse_fraction(args.split)
    except ValueError as e:
        raise _error(str(e)) from None
    if args.init and not Path(args.init).exists():
        raise _error(f"--init {args.init}: no such model, run or checkpoint folder")
    overrides = list(args.set or [])
    if args.time_limit:
        overrides.append(f"run.time_limit_s={args.time_limit}")
    try:
        r = demo.train_demo(str(resolve_teacher(args.teacher)), args.out, args.steps, args.resume,
                            fraction=fraction, batch_size=args.batch_size, scale=args.scale, init=args.init or "",
                            progress=not args.quiet, recipe=args.recipe, overrides=overrides, device=args.device)
    except ValueError as e:  # a bad --set or recipe: one line
        raise _error(str(e)) from None
    print(f"stopped at step {r.step} ({r.stopped}) after {r.seconds:.0f} s, "
          f"{r.frames_per_prompt:.1f} frames per prompt; checkpoint {r.checkpoint}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .amortization_bench import claim_lines, run_bench
    from .teacher import resolve_teacher

    res = run_bench(args.out, teacher=str(resolve_teacher(args.teacher)), size=args.size, resume=args.resume,
                    progress=not args.quiet)
    for line in claim_lines(res["summary"]["claim"]):
        print(line)
    print(f"wrote {res['json']} and {res['png']}")
    return 0


def cmd_eval_interpolation(args: argparse.Namespace) -> int:
    from backend.model import resolve_model_path

    from . import interpolation_metrics as im

    if args.world != "shapes":
        raise _error(f"unknown world {args.world!r} (known: shapes)")
    if args.pairs < 1 or args.steps < 2 or not 16 <= args.resolution <= 256:
        raise _error("--pairs must be ≥ 1, --steps ≥ 2 and --resolution in 16–256")
    resolve_model_path(args.model)
    res = im.evaluate_interpolation(args.model, split=args.split, fraction=args.seen_fraction,
                                    pairs_per_kind=args.pairs, steps=args.steps, resolution=args.resolution,
                                    device=args.device, progress=not args.json)
    print(json.dumps(res, default=str) if args.json else im.format_report(res))
    return 0


def cmd_calibrate_iso(args: argparse.Namespace) -> int:
    from backend.model import resolve_model_path

    from .iso_level import calibrate_model_folder

    if args.prompts < 1:
        raise _error("--prompts must be at least 1")
    folder = resolve_model_path(args.model)
    try:
        res = calibrate_model_folder(folder, args.prompts, write=args.write, progress=not args.json)
    except ValueError as e:
        raise _error(str(e)) from None
    if args.json:
        print(json.dumps(res))
        return 0
    b, a = res["before"], res["after"]
    print(f"{folder}: {res['n_prompts']} seen prompts of the {res['split_fraction']:.1%} split, {res['grid']}³ lattice")
    for name, r in (("now", b), ("calibrated", a)):
        print(f"  {name:>10}: iso_density {r['iso_density']:7.3f}   volume ratio {r['volume_ratio']:.3f}   "
              f"IoU {r['iou']:.3f}")
    print(f"wrote iso_density = {a['iso_density']} to {folder / 'config.json'}" if args.write
          else "(nothing written: add --write to set it in the model's config.json)")
    return 0


def cmd_bench_interpolation(args: argparse.Namespace) -> int:
    from . import interpolation_bench as ib

    if args.time_limit is not None and args.time_limit <= 0:
        raise _error("--time-limit must be a positive number of seconds")
    try:
        if args.summarize:
            res = ib.summarize(args.out)
        else:
            for name in args.variant or ib.DEFAULT_VARIANTS:
                ib.run_variant(args.out, name, args.size, args.teacher, args.device, args.resume, not args.quiet,
                               args.seed, args.init, args.time_limit)
            res = ib.summarize(args.out)
    except ValueError as e:
        raise _error(str(e)) from None
    for line in ib.claim_lines(res):
        print(line)
    print(f"wrote {res['json']} and {res['png']}")
    return 0


def cmd_bench_closeness(args: argparse.Namespace) -> int:
    import sys

    from backend.fileio import atomic_write_text

    from . import closeness

    out = Path(args.out) if args.out else None
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        raise _error(f"--out {args.out}: expected a file in an existing folder")
    try:
        res = closeness.run(args.model, args.device, http=args.http,
                            log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr)))
    except (OSError, ValueError) as e:
        raise _error(str(e)) from None
    for line in closeness.summary_lines(res):
        print(line)
    if out is not None:
        atomic_write_text(out, json.dumps(res, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {out}")
    return 0


def register(sub) -> None:
    w = sub.add_parser("world", help="the Shapes world: export its prompts, splits and scenes")
    wsub = w.add_subparsers(dest="world_cmd", required=True)
    e = wsub.add_parser("export", help="write prompts.txt, splits.json and scenes.json into DIR")
    e.add_argument("dir")
    e.add_argument("--seed", type=int, default=0, help="split seed")
    e.set_defaults(func=cmd_world_export)
    s = wsub.add_parser("show", help="print the prompts (of a split)")
    s.add_argument("--split", help="12.5%% or 50%%")
    s.add_argument("--part", choices=["seen", "unseen"], default="seen")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_world_show)

    t = sub.add_parser("train-teacher", help="train the Shapes-world teacher (a small pixel DDPM), resumable")
    t.add_argument("--out", required=True, help="the teacher folder (diffusers layout + checkpoint/)")
    t.add_argument("--steps", type=int, default=6000, help="total optimizer steps (batch 32)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    t.add_argument("--init", help="warm-start a new run from a teacher folder ('shipped' = the shipped one); "
                                  "--steps counts on from its steps")
    t.add_argument("--prediction-type", choices=("epsilon", "v_prediction"),
                   help="what the UNet predicts (new runs: v_prediction; with --init, fine-tunes into it)")
    t.add_argument("--snr-gamma", type=float, help="min-SNR-γ loss weighting (new runs: 5; 0 = off)")
    t.add_argument("--lr", type=float, help="learning rate (new runs: 5e-4; set it lower to fine-tune)")
    t.add_argument("--focus", action="append", metavar="PHRASE",
                   help="fine-tuning a grown world: prompts containing PHRASE (repeatable, e.g. 'tree', "
                        "'an orange') get --focus-share of every batch")
    t.add_argument("--focus-share", type=float, help="the share of every batch drawn from the --focus prompts")
    t.add_argument("--data-dir", help="where GT renders and caption embeddings are cached "
                                      "(default $ATT3D_SHAPES_DATA or ~/.cache/att3d/shapes)")
    t.add_argument("--save-every", type=int, default=100)
    t.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    t.add_argument("--log", help="append a plain-text log here")
    t.add_argument("--tiny", action="store_true", help="a tiny UNet (smoke tests)")
    t.add_argument("--ship", action="store_true", help="then copy it in fp16 over the shipped teacher "
                                                       "(training/shapes/weights/teacher)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train_teacher)

    r = sub.add_parser("teacher-report", help="sample grid + nearest-GT accuracy of a teacher")
    r.add_argument("--teacher", default="shipped", help="teacher folder (default: the shipped teacher)")
    r.add_argument("--out", required=True, help="folder for samples.png and report.json")
    r.add_argument("--prompts", type=int, default=64, help="evenly spread prompts to sample")
    r.add_argument("--samples", type=int, default=2, help="samples per prompt")
    r.add_argument("--guidance", type=float, default=1.0,
                   help="classifier-free guidance scale (default 1: the conditional model alone)")
    r.add_argument("--steps", type=int, default=50, help="DDIM steps")
    r.add_argument("--eta", type=float, default=1.0, help="DDIM eta: 0 deterministic, 1 ancestral (default)")
    r.add_argument("--focus", action="append", metavar="PHRASE",
                   help="ask only prompts containing PHRASE (repeatable, e.g. 'tree'); matched against all prompts")
    r.add_argument("--data-dir")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_teacher_report)

    d = sub.add_parser("train-demo", help="train the demo model by SDS from the teacher (resumable), or --ship it")
    d.add_argument("--teacher", default="shipped", help="teacher folder (default: the shipped teacher)")
    d.add_argument("--out", default="runs/demo", help="the run folder (default runs/demo)")
    d.add_argument("--steps", type=int, default=3000)
    d.add_argument("--batch-size", type=int, help="prompts per step (default: the recipe's: 8 for v1, 32 for v2)")
    d.add_argument("--recipe", default="v1", choices=["v1", "v2", "v3"],
                   help="v1: the first demo's recipe; v2: + surface priors, annealed t, interpolants (for a GPU); "
                        "v3: v2 continued on the trees with interpolants that keep their endpoints (CPU)")
    d.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override the recipe's training config, e.g. --set regularizers.distortion=0 (repeatable)")
    d.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop after this much training and finish the run (resume later with --resume)")
    d.add_argument("--device", help="auto, cpu or cuda (default: the recipe's)")
    d.add_argument("--scale", type=float, help="classifier-free guidance scale (default: the demo's)")
    d.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    d.add_argument("--split", default="12.5%", help="the seen split trained on: 12.5%% (default) or 50%%")
    d.add_argument("--init", metavar="MODEL", help="start from this model, run or checkpoint folder's weights "
                                                   "(e.g. a 12.5%% run, to go on with the 50%% split)")
    d.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    d.add_argument("--ship", metavar="RUN_DIR", help="instead of training: write RUN_DIR/model in fp16 to "
                                                     "backend/models/demo (the default model)")
    d.add_argument("--metrics", help="with --ship: a JSON file of `att3d eval --world shapes --json` to record")
    d.add_argument("--soup", nargs="+", metavar="MODEL[:WEIGHT]",
                   help="instead of training: write --out/model as the weighted mean of these runs' weights "
                        "(runs continued from one model; training/soup.py)")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_train_demo)

    ei = sub.add_parser("eval-interpolation", help="interpolation quality on the Shapes world: midpoint mottling, "
                                                   "smoothness along α, endpoint fidelity")
    ei.add_argument("--world", default="shapes", choices=["shapes"])
    ei.add_argument("--model", default="demo", help="model folder or shipped name (default demo)")
    ei.add_argument("--split", default="unseen", choices=["seen", "unseen", "all"],
                    help="the prompts pairs are drawn from (default: unseen by the model)")
    ei.add_argument("--seen-fraction", help="the split's seen fraction (default: the one the model trained on)")
    ei.add_argument("--pairs", type=int, default=6, help="pairs per kind: colour, shape, accessory (default 6)")
    ei.add_argument("--steps", type=int, default=8, help="α steps from 0 to 1 (default 8)")
    ei.add_argument("--resolution", type=int, default=96, help="marching-cubes lattice (default 96)")
    ei.add_argument("--device", default="cpu")
    ei.add_argument("--json", action="store_true", help="one JSON object on stdout (no progress bars)")
    ei.set_defaults(func=cmd_eval_interpolation)

    ci = sub.add_parser("calibrate-iso", help="set a Shapes model's extraction level where its volume matches "
                                              "the truth on its seen prompts")
    ci.add_argument("--model", default="demo", help="model folder or shipped name (default demo)")
    ci.add_argument("--prompts", type=int, default=64, help="seen prompts measured, evenly spread (default 64)")
    ci.add_argument("--write", action="store_true", help="write the level into the model's config.json")
    ci.add_argument("--json", action="store_true", help="one JSON object on stdout (no progress bar)")
    ci.set_defaults(func=cmd_calibrate_iso)

    bi = sub.add_parser("bench-interpolation", help="no/latent/loss/guidance interpolants on the Shapes world "
                                                    "(paper Fig. 18/19 with numbers)")
    bi.add_argument("--world", default="shapes", choices=["shapes"])
    bi.add_argument("--size", default="small", choices=["tiny", "small", "gpu"])
    bi.add_argument("--out", required=True)
    bi.add_argument("--variant", action="append",
                    help="train and measure only this variant (repeatable; default: none, latent_random, "
                         "latent_ends, latent_nearest, latent_ends_nearest, latent_ends_nearest_anchor; also "
                         "loss_ends_nearest, guidance_ends_nearest, latent_ends_nearest_small_first)")
    bi.add_argument("--seed", type=int, default=0, help="training seed (runs of seed N > 0 go to OUT/VARIANT_sN)")
    bi.add_argument("--init", help="the start's model folder (default: the preset's, checked against its pinned "
                                   "SHA-256)")
    bi.add_argument("--time-limit", type=float, metavar="SECONDS",
                    help="train each variant for at most this long (default: the preset's)")
    bi.add_argument("--summarize", action="store_true", help="only compare the variants measured in OUT")
    bi.add_argument("--teacher", default="shipped", help="teacher folder (default: the shipped teacher; checked "
                                                         "against the preset's pinned SHA-256)")
    bi.add_argument("--device", default="cpu")
    bi.add_argument("--resume", action="store_true", help="continue unfinished variants, keep measured ones")
    bi.add_argument("--quiet", action="store_true")
    bi.set_defaults(func=cmd_bench_interpolation)

    b = sub.add_parser("bench-amortization", help="amortized (12.5%%, 50%% seen) vs per-prompt on the Shapes world")
    b.add_argument("--world", default="shapes", choices=["shapes"])
    b.add_argument("--size", default="small", choices=["tiny", "small", "full"])
    b.add_argument("--teacher", default="shipped", help="teacher folder (default: the shipped teacher)")
    b.add_argument("--out", required=True)
    b.add_argument("--resume", action="store_true")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_bench)

    c = sub.add_parser("bench-closeness", help="the closeness warning on the Shapes world: false alarms over its "
                                               "prompts, misses over 50 outside ones, a warm query's time")
    c.add_argument("--model", default="demo", help="a model of the Shapes world (default: the shipped demo)")
    c.add_argument("--device", default="cpu")
    c.add_argument("--http", action="store_true", help="also time queries through an att3d serve")
    c.add_argument("--out", help="write the figures as JSON here (docs/closeness.json)")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_bench_closeness)
