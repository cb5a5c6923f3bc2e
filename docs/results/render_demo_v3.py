"""Cycles renders with a demo model: a few objects, then the four-season chain (keyframes and midpoints).

With bpy (the project's .venv), from the repository root:
``python docs/results/render_demo_v3.py OUT_DIR [MODEL_DIR]`` → ``OUT_DIR/obj_*.png``,
``OUT_DIR/season_*.png`` (``training/shapes/results/demo_v3/cycles_*.png`` are them side by side).
"""
import sys
import time
from pathlib import Path

import bpy

import blender_att3d
from blender_att3d import chains
from blender_att3d.bench import render_to
from blender_att3d.bench import stage_for_render as _stage
from blender_att3d.client.embedded import EmbeddedClient
from blender_att3d.lifecycle import session

OBJECTS = ["a red cube wearing a blue party hat", "a black sphere", "an orange pyramid with a green ball on top",
           "a yellow torus with pink ears", "a purple diamond", "a tree in the summer"]
SEASONS = [(1, "a tree in the spring"), (33, "a tree in the summer"), (65, "a tree in the fall"),
           (97, "a tree in the winter")]


def stage_for_render(scene, target, **kw):
    for o in [o for o in scene.objects if o.type in ("CAMERA", "LIGHT")]:  # one camera and sun at a time
        bpy.data.objects.remove(o)
    _stage(scene, target, **kw)


def main(out: Path, model: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    blender_att3d.register()
    session.set_override(EmbeddedClient(model=model))
    scene = bpy.context.scene
    scene.att3d.resolution = 128
    for i, prompt in enumerate(OBJECTS):
        scene.att3d.prompt = prompt
        bpy.ops.att3d.generate(synchronous=True)
        obj = bpy.context.view_layer.objects.active
        stage_for_render(scene, obj, size=200, samples=24, distance=3.2)
        render_to(scene, out / f"obj_{i}.png")
        obj.hide_render = True
        print("object", i, prompt, len(obj.data.vertices))
    for frame, prompt in SEASONS:
        bpy.ops.att3d.keyframe_add(frame=frame, prompt=prompt)
    chain = scene.att3d.active_chain()
    t = time.perf_counter()
    bpy.ops.att3d.build_chain(synchronous=True)
    print("build", time.perf_counter() - t)
    root = chains.built_root(chain)
    stage_for_render(scene, root, size=200, samples=24, distance=3.4)
    for frame in range(1, 98, 16):
        scene.frame_set(frame)
        render_to(scene, out / f"season_{frame:03d}.png")
        print(frame, round(root["att3d_chain_position"], 3))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "demo")
