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


def camera_distance(lo: Sequence[float], hi: Sequence[float], direction: Sequence[float], angle_x: float,
                    angle_y: float, margin: float = 1.1) -> float:
    """How far from the box's centre, along ``direction``, a camera looking back at the centre must be
    to see all eight corners of the box ``lo``–``hi`` within its field of view (shrunk by ``margin``).

    A corner ``p`` (from the centre) sits at depth ``d − p·u`` and sideways ``p·r``, ``p·t`` in the
    camera frame (``u`` the view direction, ``r``, ``t`` the image axes); it is inside when
    ``|p·r| · margin ≤ tan(angle_x / 2) · (d − p·u)``, and likewise for ``t``: the distance is the
    largest of those bounds.
    """
    lo_, hi_ = np.asarray(lo, float), np.asarray(hi, float)
    u = np.asarray(direction, float) / np.linalg.norm(direction)
    r = np.cross(u, [0.0, 0.0, 1.0])
    r = r / np.linalg.norm(r) if np.linalg.norm(r) > 1e-9 else np.array([1.0, 0.0, 0.0])
    t = np.cross(r, u)
    c = (lo_ + hi_) / 2
    corners = np.array([[x, y, z] for x in (lo_[0], hi_[0]) for y in (lo_[1], hi_[1]) for z in (lo_[2], hi_[2])]) - c
    tx, ty = math.tan(angle_x / 2), math.tan(angle_y / 2)
    need = corners @ u + np.maximum(np.abs(corners @ r) * margin / tx, np.abs(corners @ t) * margin / ty)
    return float(max(need.max(), 1e-3))


def frame_camera(scene, lo: Sequence[float], hi: Sequence[float]):
    """A perspective camera (the scene's camera) looking at the box ``lo``–``hi`` from
    :data:`VIEW_DIRECTION`, as close as it can be while seeing all of the box at the scene's render
    aspect."""
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
    dist = camera_distance(lo_, hi_, VIEW_DIRECTION, ax, ay)
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
