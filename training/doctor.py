"""``att3d doctor``: the environment a run would meet (torch, CUDA, GPUs and their memory, which optional
parts import), and with ``--gpu-bench`` real-size teacher UNets on the GPU.

``--gpu-bench`` builds IF-I-XL's and Stable Diffusion 1.5's UNets (and SD's VAE) from the shipped
architecture JSONs (``training/guidance/architectures/``: no download) directly on the GPU in half
precision with random weights, then times SDS steps (teacher forward with classifier-free guidance, the
SDS gradient, its backward into the render) at the DF415 configs' batch and resolution and at 8 prompts,
and a full training step (the paper-size ATT3D model, its mapping network reading the config's mapping
input — CLIP-L's 77×768 tokens in both DF415 configs — rendering 64×64 frames, SDS, backward, Adam), with
the peak memory of each. With two or more GPUs it also runs a 2-process NCCL all-reduce. It prints JSON
and keeps within a time budget (``--budget``, default 170 s, models' construction included): what does
not fit is reported as skipped.
"""
from __future__ import annotations

import importlib
import os
import platform
import statistics
import sys
import time
from typing import Any

import torch

#: optional parts and what needs them
OPTIONAL = {
    "tinycudann": "tiny-cuda-nn hash grids (model.backend = tcnn)",
    "xatlas": "UV atlases (generate --texture)",
    "fast_simplification": "mesh simplification (generate --simplify)",
    "mcubes": "PyMCubes marching cubes",
    "fastapi": "att3d serve",
    "uvicorn": "att3d serve",
    "tensorboard": "training logs",
    "matplotlib": "att3d plot",
    "yaml": "YAML training configs",
    "accelerate": "faster loading of large diffusers checkpoints",
    "bpy": "the Blender tests (bpy module)",
}
#: the DF415 configs the benchmark follows (batch per GPU and render size are read from them)
BENCH_CONFIGS = ("df415_if", "df415_sd")
TARGETS_H100 = {"if_sds_8x64_s": 0.3, "if_training_step_8x64_s": 0.5}


def _version(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
    except Exception:  # (an extension that fails to load counts as missing, with its reason below)
        return None
    return str(getattr(mod, "__version__", "installed"))


def environment() -> dict[str, Any]:
    """Python, torch, CUDA, the GPUs, host memory and the optional parts."""
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            gpus.append({"index": i, "name": p.name, "memory_gib": round(total / 2 ** 30, 1),
                         "free_gib": round(free / 2 ** 30, 1), "capability": f"{p.major}.{p.minor}",
                         "multiprocessors": p.multi_processor_count})
    host_gib = None
    try:
        host_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    optional = {}
    for name, why in OPTIONAL.items():
        v = _version(name)
        optional[name] = {"available": v is not None, "version": v, "for": why}
    cuda = torch.cuda.is_available()
    return {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "bf16_supported": bool(cuda and torch.cuda.is_bf16_supported()),
        "nccl": ".".join(map(str, torch.cuda.nccl.version())) if cuda and hasattr(torch.cuda, "nccl") else None,
        "gpus": gpus, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "host_memory_gib": host_gib,
        "diffusers": _version("diffusers"), "transformers": _version("transformers"),
        "optional": optional,
        "hf_offline": os.environ.get("HF_HUB_OFFLINE", ""),
    }


def format_environment(env: dict[str, Any]) -> str:
    lines = [f"python {env['python']} on {env['platform']}; {env['cpu_count']} CPUs, "
             f"{env['host_memory_gib']} GiB host memory",
             f"torch {env['torch']} (CUDA build {env['torch_cuda'] or 'none'}); diffusers {env['diffusers']}, "
             f"transformers {env['transformers']}"]
    if env["gpus"]:
        lines.append(f"CUDA: {len(env['gpus'])} GPU(s), cuDNN {env['cudnn']}, NCCL {env['nccl']}, "
                     f"bf16 {'yes' if env['bf16_supported'] else 'no'}")
        for g in env["gpus"]:
            lines.append(f"  cuda:{g['index']} {g['name']}: {g['memory_gib']} GiB ({g['free_gib']} free), "
                         f"compute capability {g['capability']}")
    else:
        lines.append("CUDA: no GPU visible (training runs on the CPU, slowly; `--gpu-bench` needs a GPU)")
    lines.append("optional parts:")
    for name, o in env["optional"].items():
        state = f"yes ({o['version']})" if o["available"] else "no"
        lines.append(f"  {name:<20} {state:<22} {o['for']}")
    return "\n".join(lines)


# -- the GPU benchmark -------------------------------------------------------------------------

def _timed(fn, repeats: int, warmup: int = 2) -> tuple[float, list[float], float]:
    """(median seconds, all times, peak GiB on the GPU; 0 on the CPU) of ``fn()``."""
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else 0.0


def _guidance(kind: str, device: torch.device):
    """An SDS guidance around a real-size teacher with random weights (IF-I-XL pixel, or SD 1.5 latent)."""
    from diffusers import DDPMScheduler

    from .guidance import GuidanceConfig, LatentDiffusionGuidance, PixelDiffusionGuidance
    from .guidance.architectures import build, shipped_config

    half = torch.float16
    if kind == "if":
        unet = build(shipped_config("if_i_xl_unet.json"), device, half)
        sched = DDPMScheduler(variance_type="learned_range", beta_schedule="squaredcos_cap_v2")
        return PixelDiffusionGuidance(GuidanceConfig(kind="pixel", dtype="float16"), device, unet=unet,
                                      scheduler=sched), 4096
    unet = build(shipped_config("sd15_unet.json"), device, half)
    vae = build(shipped_config("sd15_vae.json"), device, half)
    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    cfg = GuidanceConfig(kind="latent", dtype="float16", use_vae=True, vae_resolution=512)
    return LatentDiffusionGuidance(cfg, device, unet=unet, scheduler=sched, vae=vae), 768


def _sds_step(g, width: int, batch: int, size: int, device: torch.device, tokens: int = 77):
    images = torch.rand(batch, 3, size, size, device=device, requires_grad=True)
    cond = torch.randn(batch, tokens, width, device=device, dtype=g.dtype)
    uncond = torch.randn(batch, tokens, width, device=device, dtype=g.dtype)
    gen = torch.Generator().manual_seed(0)

    def step():
        out = g(images, [cond], uncond=uncond, generator=gen)
        out.loss.backward()
        images.grad = None
    return step


def _training_step(g, width: int, batch: int, size: int, samples: int, device: torch.device, tokens: int = 77,
                   resolutions=(9, 14, 22, 36, 58), mapping_input: tuple[int, int] | None = None):
    """One step of amortized training as the loop runs it: m(c) → renders → SDS → backward → Adam
    (the paper-size model). The teacher reads ``tokens × width`` conditioning; the mapping network reads
    ``mapping_input`` (tokens, width): the teacher's own by default, CLIP-L's 77×768 for the IF preset."""
    from backend.cameras import CameraSampler
    from backend.model import ModelConfig, build_model

    from .config import RenderConfig
    from .render_step import RenderStep

    m_tokens, m_width = mapping_input or (tokens, width)
    model = build_model(ModelConfig(max_length=m_tokens, token_dim=m_width, resolutions=list(resolutions))).to(device)
    c = torch.randn(batch, m_tokens, m_width, device=device) * 0.2
    mask = torch.ones(batch, m_tokens, dtype=torch.bool, device=device)
    model.calibrate_grid(c, mask)
    render = RenderStep(model.train(), RenderConfig(height=size, width=size, n_samples=samples))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.999), eps=1e-15)
    cond = torch.randn(batch, tokens, width, device=device, dtype=g.dtype)
    uncond = torch.randn(batch, tokens, width, device=device, dtype=g.dtype)
    gen = torch.Generator().manual_seed(0)
    dgen = torch.Generator(device=device).manual_seed(0)
    cams_sampler = CameraSampler()

    def step():
        cams = cams_sampler.sample(batch, gen, device=device)
        images, _, _ = render(c, mask, cams, generator=dgen)
        out = g(images, [cond], uncond=uncond, generator=gen)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    return step


def _nccl_check(timeout_s: float = 90.0) -> dict[str, Any]:
    """A 2-process NCCL all-reduce (GPUs 0 and 1): correctness and bus bandwidth of 256 MiB."""
    import socket
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tempfile.mkdtemp(prefix="att3d-nccl-")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_nccl_worker, args=(r, 2, port, out)) for r in range(2)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join(max(1.0, timeout_s - (time.perf_counter() - t0)))
    if any(p.is_alive() for p in procs):
        for p in procs:
            p.kill()
        return {"ok": False, "error": f"no answer within {timeout_s:.0f} s"}
    try:
        import json

        with open(os.path.join(out, "rank0.json")) as f:
            return json.load(f)
    except OSError:
        return {"ok": False, "error": f"the workers exited with {[p.exitcode for p in procs]}"}


def _nccl_worker(rank: int, world: int, port: int, out: str) -> None:
    import json

    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    x = torch.full((64 * 2 ** 20,), float(rank + 1), device=f"cuda:{rank}")  # 256 MiB of float32
    dist.all_reduce(x)
    ok = bool((x == sum(range(1, world + 1))).all())
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        dist.all_reduce(x)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / 5
    busbw = 2 * (world - 1) / world * x.numel() * 4 / dt / 1e9
    if rank == 0:
        with open(os.path.join(out, "rank0.json"), "w") as f:
            json.dump({"ok": ok, "world_size": world, "allreduce_256mib_s": dt, "bus_bandwidth_gb_s": busbw}, f)
    dist.destroy_process_group()


def mapping_input(cfg, teacher_width: int, teacher_tokens: int = 77) -> tuple[int, int, str]:
    """(tokens, width, encoder) of what a config's mapping network reads: the teacher's own tokens
    (``model.text_encoder = "guidance"``) or its own encoder's (the IF preset: CLIP-L, 77×768)."""
    mc = cfg.model
    if mc.text_encoder == "guidance":
        return teacher_tokens, teacher_width, "the teacher's"
    from .plan import encoder_dims

    tokens, width, _, where = encoder_dims(mc.text_encoder, mc.max_length)
    if not width:
        raise ValueError(f"model.text_encoder {mc.text_encoder!r}: token width unknown here ({where})")
    return tokens, width, mc.text_encoder


def gpu_bench(budget_s: float = 170.0, repeats: int = 5) -> dict[str, Any]:
    """Real-size IF-I-XL and SD 1.5 SDS and training steps on ``cuda:0`` (see the module's docstring)."""
    if not torch.cuda.is_available():
        raise RuntimeError(f"att3d doctor --gpu-bench needs a CUDA GPU: torch {torch.__version__} sees none "
                           f"(CUDA build: {torch.version.cuda or 'none — install a CUDA build of torch'})")
    from .config import load_config, preset_path

    t_start = time.perf_counter()
    device = torch.device("cuda:0")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "repeats": repeats, "benches": [], "skipped": [], "targets_h100": TARGETS_H100}

    def left() -> float:
        return budget_s - (time.perf_counter() - t_start)

    for name in BENCH_CONFIGS:
        cfg = load_config(preset_path(name))
        kind = "if" if cfg.guidance.kind == "pixel" else "sd"
        if left() < 30:
            result["skipped"].append(f"{name}: out of time")
            continue
        t0 = time.perf_counter()
        g, width = _guidance(kind, device)
        torch.cuda.synchronize()
        build_s = time.perf_counter() - t0
        size, samples = cfg.render.height, cfg.render.n_samples
        m_tokens, m_width, m_encoder = mapping_input(cfg, width)
        runs = [("sds", 8), ("training_step", 8)]
        if cfg.run.batch_size != 8:
            runs += [("sds", cfg.run.batch_size), ("training_step", cfg.run.batch_size)]
        for what, batch in runs:
            if left() < 15:
                result["skipped"].append(f"{name} {what} batch {batch}: out of time")
                continue
            try:
                fn = (_sds_step(g, width, batch, size, device) if what == "sds" else
                      _training_step(g, width, batch, size, samples, device, mapping_input=(m_tokens, m_width)))
                median, times, peak = _timed(fn, repeats)
                rec = {"config": name, "teacher": "IF-I-XL (4.3 B)" if kind == "if" else "SD 1.5 (UNet + VAE)",
                       "what": what, "batch": batch, "render": f"{size}×{size}", "median_s": round(median, 4),
                       "times_s": [round(t, 4) for t in times], "peak_gib": round(peak, 2),
                       "build_s": round(build_s, 1)}
                if what == "training_step":
                    rec["mapping_input"] = f"{m_tokens}×{m_width} ({m_encoder})"
            except torch.cuda.OutOfMemoryError as e:
                rec = {"config": name, "what": what, "batch": batch, "error": f"out of memory: {str(e)[:200]}"}
            result["benches"].append(rec)
            torch.cuda.empty_cache()
        del g
        torch.cuda.empty_cache()
    if torch.cuda.device_count() >= 2:
        result["nccl"] = _nccl_check(min(90.0, max(20.0, left())))
    else:
        result["nccl"] = {"skipped": f"{torch.cuda.device_count()} GPU visible (needs 2)"}
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    return result
