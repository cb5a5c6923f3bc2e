"""The scene's prompt chains as the panel sees them (bpy, no UI): what a chain's keyframes ask for,
whether its built objects are out of date, and retiming without the backend.

A chain item (``scene.att3d.chains[i]``) holds the prompt keyframes; its built objects hang under a
root empty tagged with the item's ``uid`` (:mod:`.builders.chain`). The root records what it was
built from. Prompts, their order, the number of keyframes, the resolution, the steps or the build
mode differing from that record make the chain *stale* (a rebuild is needed, and replaces it in
place); frames alone never do: moving a keyframe re-keys the position curve at once.
"""
from __future__ import annotations

import re
from typing import Any

from .builders.chain import build_record, chain_root, key_position, retime
from .keyframes import sorted_keyframes
from .placement import fit_frame_range_to_chains, resolution_of


def panel_keyframes(chain) -> list[tuple[float, str]]:
    """The chain item's keyframes sorted by frame, prompts checked; ValueError says what is wrong."""
    return sorted_keyframes((k.frame, k.prompt) for k in chain.keyframes)


def build_settings(scene, chain) -> dict[str, Any]:
    """What building ``chain`` now would ask for (the record a build leaves on its root)."""
    return {"prompts": [" ".join(k.prompt.split()) for k in sorted(chain.keyframes, key=lambda k: k.frame)],
            "resolution": resolution_of(scene), "mode": chain.mode, "steps": int(chain.steps),
            "max_states": int(chain.max_states)}


def built_root(chain):
    """The root of ``chain``'s built objects, or None when it has not been built (or was deleted)."""
    return chain_root(chain.uid) if chain.uid else None


def stale_reasons(scene, chain) -> list[str] | None:
    """Why ``chain``'s objects no longer match its keyframes and settings (empty: up to date; None:
    not built). Timing is never a reason."""
    root = built_root(chain)
    if root is None:
        return None
    built, now = build_record(root), build_settings(scene, chain)
    reasons = []
    old_p, new_p = built.get("prompts", []), now["prompts"]
    if len(old_p) != len(new_p):
        reasons.append(f"{len(new_p)} keyframes (built with {len(old_p)})")
    elif old_p != new_p:
        reasons.append("keyframe order changed" if sorted(old_p) == sorted(new_p) else "prompts changed")
    if built.get("resolution") != now["resolution"]:
        reasons.append(f"resolution {now['resolution']} (built at {built.get('resolution')})")
    if built.get("mode") != now["mode"]:
        reasons.append("build mode changed")
    for key, label in (("steps", "steps"), ("max_states", "state cap")):
        if key in built and built[key] != now[key]:
            reasons.append(f"{label} {now[key]} (built with {built[key]})")
    return reasons


def retime_to_panel(scene, chain) -> bool:
    """Re-key ``chain``'s position curve to its keyframes' frames (no backend); False when it is not
    built, stale, or the keyframes are invalid (two on one frame)."""
    root = built_root(chain)
    if root is None or stale_reasons(scene, chain):
        return False
    try:
        frames = [f for f, _ in panel_keyframes(chain)]
    except ValueError:
        return False
    if not retime(root, frames):
        return False
    fit_frame_range_to_chains(scene)
    scene.frame_set(scene.frame_current)
    return True


def reset_timing(scene, chain):
    """Key ``chain``'s position curve afresh from its keyframes with its interpolation (the animator's
    edits of that curve go: only on request). Returns the root; ValueError when there is none."""
    root = built_root(chain)
    if root is None:
        raise ValueError("Build the chain first")
    key_position(root, [f for f, _ in panel_keyframes(chain)], chain.interpolation)
    fit_frame_range_to_chains(scene)
    scene.frame_set(scene.frame_current)
    return root


def chain_of_keyframe(keyframe) -> Any:
    """The chain item holding ``keyframe`` (a keyframe item's update callback gets only the item)."""
    m = re.search(r"chains\[(\d+)\]", keyframe.path_from_id())
    scene = keyframe.id_data
    return scene.att3d.chains[int(m.group(1))] if m else None
