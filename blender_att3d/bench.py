"""Timings of the Blender side (no backend involved): ``python -m blender_att3d.bench``.

Prints JSON: the median (and all runs) of
* ``insert_100k_s``: a ~100k-vertex coloured mesh -> a new object with its material;
* ``shape_keys_16_s``: a 16-step consistent-topology chain -> one object with shape keys, key
  animation and the driven colour mix (generation excluded);
* ``sequence_16_s``: the same as a 16-object mesh sequence;
* ``live_blend_64``: the live blend as the slider moves, at 64³: the blend from the backend (embedded,
  in this process, when torch imports here; ``--backend http`` starts an ``att3d serve``) plus the
  preview object's mesh replaced, with the two parts apart (``backend_s``, ``blender_s``).
``--renders DIR`` also renders a few frames of the 16-step chain (Cycles, small) into DIR.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def uv_sphere(rings: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    th = np.linspace(0, np.pi, rings + 2)[1:-1]
    ph = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(th, ph, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    pos = np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]]).astype(np.float32)
    r = np.arange(rings - 1)[:, None]
    s = np.arange(segments)[None, :]
    a = 1 + r * segments + s
    b = 1 + r * segments + (s + 1) % segments
    c, d = a + segments, b + segments
    body = np.concatenate([np.stack([a, c, d], -1).reshape(-1, 3), np.stack([a, d, b], -1).reshape(-1, 3)])
    s0 = np.arange(segments)
    top = np.stack([np.zeros(segments, int), 1 + s0, 1 + (s0 + 1) % segments], -1)
    last = 1 + (rings - 1) * segments
    bot = np.stack([np.full(segments, len(pos) - 1), last + (s0 + 1) % segments, last + s0], -1)
    return pos, np.concatenate([top, body, bot]).astype(np.uint32)


def chain_sequence(n_steps: int = 16, rings: int = 128):
    """A synthetic consistent-topology chain: a sphere turning into a bumpy, differently coloured blob."""
    from .wire.types import SequenceData

    pos, faces = uv_sphere(rings, 2 * rings)
    positions, colors = [], []
    for i in range(n_steps):
        a = i / max(n_steps - 1, 1)
        bump = 1 + 0.25 * a * np.sin(6 * pos[:, 0]) * np.cos(5 * pos[:, 2])
        p = pos * bump[:, None] * np.array([1 + 0.4 * a, 1.0, 1 - 0.3 * a], np.float32)
        positions.append(p.astype(np.float32))
        c = np.stack([0.9 - 0.8 * a + 0 * pos[:, 0], 0.2 + 0.5 * a * (pos[:, 2] + 1) / 2,
                      0.1 + 0.8 * a + 0 * pos[:, 0]], 1)
        colors.append(np.clip(c, 0, 1).astype(np.float32))
    steps = [i / (n_steps - 1) for i in range(n_steps)]
    return SequenceData(steps, [f"step {i}" for i in range(n_steps)], faces=faces, positions=positions,
                        colors=colors, meta={"model": "bench"})


def stage_for_render(scene, target, size: int = 64, samples: int = 8, distance: float = 4.0):
    """Camera looking at ``target``, a sun, a grey world, Cycles on the CPU at ``size``²."""
    import bpy
    from mathutils import Vector

    from .builders.staging import add_light

    cam = bpy.data.objects.new("ATT3D Camera", bpy.data.cameras.new("ATT3D Camera"))
    scene.collection.objects.link(cam)
    center = Vector(target.location)
    cam.location = center + Vector((0.0, -distance, distance * 0.45))
    cam.rotation_euler = (center - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    add_light(scene)  # the batch scene's sun and grey world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.film_transparent = False
    return cam


def render_to(scene, path: Path) -> np.ndarray:
    """Render the current frame to ``path`` (PNG) and return its pixels as float RGBA [H, W, 4]."""
    import bpy

    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(str(path), check_existing=False)
    px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(px)
    out = px.reshape(img.size[1], img.size[0], 4)
    bpy.data.images.remove(img)
    return out


def live_blend(scene, client, runs: int, resolution: int = 64,
               prompts: tuple[str, str] = ("a red cube", "a blue sphere wearing a party hat")) -> dict:
    """Slider moves: blend at alphas 0.30, 0.33, ... and put each into the preview object, as the live
    blend's timer does (``live._blend_timer`` → ``placement.apply_blend``)."""
    from .placement import apply_blend

    s = scene.att3d
    s.blend_a, s.blend_b, s.blend_resolution = prompts[0], prompts[1], resolution
    apply_blend(client.blend(*prompts, 0.25, resolution=resolution), scene.name)  # the preview object exists
    total, backend, blender = [], [], []
    for i in range(runs + 1):
        alpha = 0.3 + 0.03 * i
        t0 = time.perf_counter()
        data = client.blend(*prompts, alpha, resolution=resolution)
        t1 = time.perf_counter()
        apply_blend(data, scene.name)
        t2 = time.perf_counter()
        if i:  # the first one warms the caches of this resolution
            total.append(t2 - t0)
            backend.append(t1 - t0)
            blender.append(t2 - t1)
    return {"resolution": resolution, "vertices": int(data.n_vertices), "median_s": round(statistics.median(total), 4),
            "backend_s": round(statistics.median(backend), 4), "blender_s": round(statistics.median(blender), 4),
            "runs_s": [round(t, 4) for t in total]}


def _blend_client(kind: str, model: str):
    if kind == "embedded":
        from .client.embedded import EmbeddedClient

        return EmbeddedClient(model)
    from .client.http import SubprocessClient

    return SubprocessClient(sys.executable, model=model)


def _median_runs(fn, runs: int) -> dict:
    times = [fn() for _ in range(runs)]
    return {"median_s": round(statistics.median(times), 4), "runs_s": [round(t, 4) for t in times]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m blender_att3d.bench")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--renders", help="also save chain-frame renders (PNG) into this folder")
    ap.add_argument("--render-size", type=int, default=160)
    ap.add_argument("--chain-rings", type=int, default=128,
                    help="chain mesh detail: 128 rings = 32,770 vertices per step (a 96^3-ish marching-cubes mesh)")
    ap.add_argument("--backend", choices=["embedded", "http", "none"], default="embedded",
                    help="where live_blend_64's blends come from (none: skip it)")
    ap.add_argument("--model", default="demo", help="the backend's model for live_blend_64")
    args = ap.parse_args(argv)

    import bpy

    from .builders.chain import build_chain, remove_chain
    from .builders.objects import create_object
    from .wire.types import MeshData

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    pos, faces = uv_sphere(223, 448)  # 99,906 vertices, 199,808 triangles
    cols = np.random.default_rng(0).random((len(pos), 3), dtype=np.float32)
    big = MeshData(pos, faces, cols)

    def insert():
        t = time.perf_counter()
        obj = create_object(scene.collection, big, "bench", (0, 0, 0), "VERTEX")
        dt = time.perf_counter() - t
        me, mat = obj.data, obj.active_material
        bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(me)
        bpy.data.materials.remove(mat)
        return dt

    seq = chain_sequence(16, args.chain_rings)
    key_frames = [1, 96]

    def shape_keys():
        remove_chain("bench")
        t = time.perf_counter()
        build_chain(scene.collection, seq, key_frames, "Bench chain", "bench", "SHAPE_KEYS")
        return time.perf_counter() - t

    def sequence():
        remove_chain("bench-seq")
        t = time.perf_counter()
        build_chain(scene.collection, seq, key_frames, "Bench seq", "bench-seq", "SEQUENCE")
        return time.perf_counter() - t

    def retime():  # a prompt keyframe moved: the position curve re-keyed, no backend (then a frame shown)
        from .builders.chain import chain_root
        from .builders.chain import retime as retime_chain

        root = chain_root("bench")
        t = time.perf_counter()
        retime_chain(root, [1, 60 if root["att3d_key_frames"][1] == 96 else 96])
        scene.frame_set(30)
        return time.perf_counter() - t

    def rebuild():  # the same chain built again in place (the objects, modifiers and timing stay)
        t = time.perf_counter()
        build_chain(scene.collection, seq, key_frames, "Bench chain", "bench", "SHAPE_KEYS")
        return time.perf_counter() - t

    result = {
        "blender": bpy.app.version_string,
        "insert_100k": {"vertices": big.n_vertices, "triangles": len(faces), **_median_runs(insert, args.runs)},
        "shape_keys_16": {"steps": len(seq), "vertices": len(seq.positions[0]), **_median_runs(shape_keys, args.runs)},
        "sequence_16": {"steps": len(seq), "vertices": len(seq.positions[0]), **_median_runs(sequence, args.runs)},
        "rebuild_in_place_16": {"steps": len(seq), **_median_runs(rebuild, args.runs)},
        "retime_16": {"steps": len(seq), **_median_runs(retime, args.runs)},
    }
    if args.backend != "none":
        from . import register

        register()  # scene.att3d: the live blend's settings and preview object
        try:
            client = _blend_client(args.backend, args.model)
        except Exception as e:  # noqa: BLE001 (no torch here, no server: say so, keep the other figures)
            result["live_blend_64"] = {"skipped": f"{type(e).__name__}: {e}"}
        else:
            try:
                result["live_blend_64"] = {"backend": args.backend, **live_blend(scene, client, args.runs)}
            finally:
                client.close()
    if args.renders:
        out = Path(args.renders)
        out.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        obj = build_chain(scene.collection, seq, key_frames, "Chain", "render", "SHAPE_KEYS")
        stage_for_render(scene, obj, size=args.render_size, samples=16, distance=4.6)
        renders = []
        for f in (1, 48, 96):
            scene.frame_set(f)
            px = render_to(scene, out / f"chain_frame_{f:03d}.png")
            h, w = px.shape[:2]
            centre = px[h // 3: 2 * h // 3, w // 3: 2 * w // 3, :3].mean((0, 1))
            renders.append({"frame": f, "path": str(out / f"chain_frame_{f:03d}.png"),
                            "mean_rgb_centre": [round(float(v), 3) for v in centre]})
        result["renders"] = renders
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
