"""A camera that frames given bounds and a light, so a scene renders as is (the batch's ``--camera``)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import bpy
import numpy as np

CAMERA_NAME = "ATT3D Camera"
LIGHT_NAME = "ATT3D Sun"
#: A three-quarter view from the front right, above: the way objects are usually shown.
VIEW_DIRECTION = (0.55, -1.0, 0.6)


def camera_distance(radius: float, angle_x: float, angle_y: float, margin: float = 1.12) -> float:
    """How far a camera must be to see all of a sphere of ``radius`` with these field-of-view angles."""
    half = min(angle_x, angle_y) / 2
    return margin * radius / math.sin(half)


def frame_camera(scene, lo: Sequence[float], hi: Sequence[float]):
    """A perspective camera (the scene's camera) looking at the box ``lo``–``hi`` from
    :data:`VIEW_DIRECTION`, far enough to see all of it at the scene's render aspect."""
    from mathutils import Vector

    lo_, hi_ = np.asarray(lo, float), np.asarray(hi, float)
    center = Vector(((lo_ + hi_) / 2).tolist())
    radius = max(float(np.linalg.norm(hi_ - lo_)) / 2, 1e-3)
    data = bpy.data.cameras.new(CAMERA_NAME)
    data.lens = 50.0
    w = scene.render.resolution_x * scene.render.pixel_aspect_x
    h = scene.render.resolution_y * scene.render.pixel_aspect_y
    half_big = math.atan(data.sensor_width / (2 * data.lens))  # AUTO sensor fit: the larger side
    ax, ay = (2 * half_big, 2 * math.atan(math.tan(half_big) * h / w)) if w >= h else \
        (2 * math.atan(math.tan(half_big) * w / h), 2 * half_big)
    dist = camera_distance(radius, ax, ay)
    cam = bpy.data.objects.new(CAMERA_NAME, data)
    scene.collection.objects.link(cam)
    cam.location = center + Vector(VIEW_DIRECTION).normalized() * dist
    cam.rotation_euler = (center - cam.location).to_track_quat("-Z", "Y").to_euler()
    data.clip_start = max(0.01, (dist - radius) * 0.1)
    data.clip_end = dist + 4 * radius
    scene.camera = cam
    return cam


def add_light(scene, energy: float = 3.0):
    """A sun from the front left, above, and a dim grey world, so every side reads."""
    sun = bpy.data.objects.new(LIGHT_NAME, bpy.data.lights.new(LIGHT_NAME, "SUN"))
    sun.data.energy = energy
    sun.data.angle = math.radians(10)  # soft shadow edges
    sun.rotation_euler = (math.radians(50), 0.0, math.radians(-35))
    scene.collection.objects.link(sun)
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    if world.node_tree is None:
        world.use_nodes = True
    bg = next((n for n in world.node_tree.nodes if n.bl_idname == "ShaderNodeBackground"), None)
    if bg is not None:
        bg.inputs["Color"].default_value = (0.35, 0.36, 0.38, 1.0)
        bg.inputs["Strength"].default_value = 0.6
    world.color = (0.35, 0.36, 0.38)
    return sun
