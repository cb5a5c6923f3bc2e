"""Where and how a result lands in the scene: the target scene, view layer and collection, the
location, the origin and size (:mod:`.sizing`), the object's name, its provenance, the scene's
frame range, and selection. Shared by the operators (through their ``apply`` on the main thread)
and the headless batch; no UI here.

Scenes and collections are passed by name and looked up again when the result is applied: a job's
result arrives later, and the ID it was started from may be gone by then.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bpy

from .builders.animation import set_frame_range
from .builders.chain import build_chain, chain_frames
from .builders.geometry import replace_geometry
from .builders.objects import (
    PROP_BLEND,
    PROP_CHAIN,
    PROP_ORIGIN,
    PROP_TARGET_HEIGHT,
    create_object,
    select_only,
    set_provenance,
    update_object,
)
from .choices import DEFAULT_RESOLUTION
from .lifecycle import session
from .naming import name_from_prompt
from .sizing import Fit, fit_mesh, fit_sequence
from .wire.types import MeshData, SequenceData

Location = tuple[float, float, float]


def model_name(meta: dict) -> str:
    """The model that made a result: its own metadata, else the one set in the preferences."""
    if meta.get("model"):
        return str(meta["model"])
    return session.settings_from_prefs(session.get_prefs())["model"]


def resolution_of(scene) -> int:
    """The scene's resolution, else the preferences' default (one default for Generate, chains and
    the live blend, the batch's too)."""
    if scene is not None and scene.att3d.resolution:
        return int(scene.att3d.resolution)
    prefs = session.get_prefs()
    return int(getattr(prefs, "resolution", 0) or DEFAULT_RESOLUTION)


def fit_of(scene) -> Fit:
    """The scene's origin and target height."""
    s = scene.att3d
    return Fit(s.origin, float(s.target_height))


def fit_of_object(obj, default: Fit) -> Fit:
    """The origin and height an object was made with (Regenerate keeps them)."""
    if PROP_ORIGIN not in obj:
        return default
    return Fit(str(obj[PROP_ORIGIN]), float(obj.get(PROP_TARGET_HEIGHT, 0.0)))


def target(scene_name: str, collection_name: str | None) -> tuple[Any, Any, Any]:
    """Scene, view layer and collection to put a result in (looked up again when applying)."""
    scene = bpy.data.scenes.get(scene_name) or bpy.context.scene
    ctx_scene = getattr(bpy.context, "scene", None)
    view_layer = bpy.context.view_layer if ctx_scene == scene and bpy.context.view_layer else scene.view_layers[0]
    coll = bpy.data.collections.get(collection_name) if collection_name else None
    if coll is None or coll.name not in scene.collection.children_recursive and coll != scene.collection:
        coll = scene.collection
    return scene, view_layer, coll


def active_collection_name(context) -> str | None:
    """The active collection's name, or None for the scene's own collection."""
    coll = getattr(context, "collection", None)
    if coll is None or coll == context.scene.collection:
        return None
    return coll.name


def place_generated(data: MeshData, prompt: str, resolution: int, color_mode: str, location: Location,
                    scene_name: str, collection_name: str | None = None, fit: Fit | None = None,
                    name: str | None = None):
    """Main thread: the generated mesh as a new object with its origin at ``location``, selected and
    active; named ``name`` (the batch's prompts file may give one), else from the prompt."""
    scene, view_layer, coll = target(scene_name, collection_name)
    data, _ = fit_mesh(data, fit or Fit())
    obj = create_object(coll, data, name or name_from_prompt(prompt), location, color_mode,
                        prompt=prompt, model=model_name(data.meta), resolution=resolution)
    select_only(view_layer, obj)
    return obj


def update_generated(object_name: str, data: MeshData, prompt: str, resolution: int, color_mode: str,
                     fit: Fit | None = None):
    """Main thread: Regenerate's result into the object (same object and mesh), if it still exists."""
    obj = bpy.data.objects.get(object_name)
    if obj is None:
        return None
    data, _ = fit_mesh(data, fit or fit_of_object(obj, Fit()))
    update_object(obj, data, color_mode)
    set_provenance(obj, data.meta, prompt=prompt, model=model_name(data.meta), resolution=resolution)
    return obj


def chain_roots(scene) -> list:
    """The top objects of the chains built in ``scene`` (one per chain)."""
    return [o for o in scene.objects if PROP_CHAIN in o and (o.parent is None or PROP_CHAIN not in o.parent)]


def fit_frame_range_to_chains(scene) -> None:
    """The scene's frame range: from the first chain's first frame to the last chain's last one."""
    frames = [f for o in chain_roots(scene) for f in chain_frames(o)]
    if frames:
        set_frame_range(scene, frames)


def build_chain_objects(seq: SequenceData, key_frames: Sequence[float], mode: str, interpolation: str, chain_id: str,
                        resolution: int, location: Location, scene_name: str, collection_name: str | None = None,
                        name: str | None = None, fit: Fit | None = None, record: dict | None = None):
    """Main thread: build a chain (mesh sequence or shape keys), or rebuild the chain ``chain_id`` in
    place (:func:`.builders.chain.build_chain`: the objects, their transforms, modifiers, materials and
    the position curve stay); the frame range then spans the scene's chains. ``name``: the chain's
    objects' name (default: from its first and last prompts); ``record``: what it was built from."""
    from .naming import chain_name

    scene, view_layer, coll = target(scene_name, collection_name)
    seq, _ = fit_sequence(seq, fit or Fit())
    name = name or chain_name(seq.prompts[0], seq.prompts[-1])
    obj = build_chain(coll, seq, key_frames, name, chain_id, mode, interpolation, location=location,
                      model=model_name(seq.meta), resolution=resolution, record=record)
    fit_frame_range_to_chains(scene)
    select_only(view_layer, obj)
    scene.frame_set(scene.frame_current)
    return obj


def apply_blend(data: MeshData, scene_name: str, location: Location | None = None):
    """Main thread: put the blend in the preview object, replacing its mesh geometry in place."""
    scene, view_layer, coll = target(scene_name, None)
    s = scene.att3d
    data, _ = fit_mesh(data, fit_of(scene))
    obj = s.blend_object
    res = int(data.meta.get("resolution") or resolution_of(scene))
    if obj is None or obj.type != "MESH" or obj.name not in scene.objects:
        loc = location if location is not None else tuple(scene.cursor.location)
        obj = create_object(coll, data, "ATT3D Blend", loc, "VERTEX", model=model_name(data.meta), resolution=res)
        obj[PROP_BLEND] = True
        s.blend_object = obj
    else:
        replace_geometry(obj, data)
        set_provenance(obj, data.meta, model=model_name(data.meta), resolution=res)
    obj["att3d_blend_a"], obj["att3d_blend_b"] = s.blend_a, s.blend_b
    obj["att3d_blend_factor"] = float(s.blend_factor)
    return obj
