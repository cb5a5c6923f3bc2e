"""Request bodies of the ATT3D service (pydantic, strict: wrong types and unknown fields are 422)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from blender_att3d.wire.limits import (
    MAX_CHAIN_MESHES,
    MAX_KEYFRAMES,
    MAX_NEIGHBORS,
    MAX_PROMPT_CHARS,
    MAX_RESOLUTION,
    MAX_SIMPLIFY,
    MIN_RESOLUTION,
    TEXTURE_SIZE,
    check_prompt,
)

from ..engine import check_chain, check_mc_available, check_simplify, check_texture


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _prompt(v: Any) -> str:
    return check_prompt(v)  # ValueError → 422 "Value error, the prompt is empty"


PROMPT_DOC = f"1–{MAX_PROMPT_CHARS} characters after collapsing whitespace"


class GenerateRequest(Strict):
    prompt: str = Field(description=PROMPT_DOC)
    resolution: int = Field(128, ge=MIN_RESOLUTION, le=MAX_RESOLUTION, description="marching-cubes lattice size")
    simplify: int | None = Field(None, ge=4, le=MAX_SIMPLIFY, description="simplify to about this many faces")
    texture: bool = Field(False, description=f"bake a {TEXTURE_SIZE}² UV texture")
    mc: str = Field("auto", description="marching cubes: skimage, pymcubes, torch (on the backend's device); "
                    "auto: torch on a GPU, skimage on the CPU")

    _p = field_validator("prompt")(_prompt)
    _mc = field_validator("mc")(check_mc_available)

    @field_validator("simplify")
    @classmethod
    def _simplify(cls, v: int | None) -> int | None:
        return check_simplify(v)

    @field_validator("texture")
    @classmethod
    def _texture(cls, v: bool) -> bool:
        return check_texture(v)


class BlendRequest(Strict):
    prompt_a: str = Field(description=PROMPT_DOC)
    prompt_b: str = Field(description=PROMPT_DOC)
    alpha: float = Field(ge=0.0, le=1.0, allow_inf_nan=False, description="0 = prompt_a, 1 = prompt_b")
    resolution: int = Field(96, ge=MIN_RESOLUTION, le=MAX_RESOLUTION)
    simplify: int | None = Field(None, ge=4, le=MAX_SIMPLIFY)

    _p = field_validator("prompt_a", "prompt_b")(_prompt)

    @field_validator("simplify")
    @classmethod
    def _simplify(cls, v: int | None) -> int | None:
        return check_simplify(v)


class Keyframe(Strict):
    position: float = Field(allow_inf_nan=False, ge=-1e9, le=1e9)
    prompt: str = Field(description=PROMPT_DOC)

    _p = field_validator("prompt")(_prompt)


class ChainRequest(Strict):
    keyframes: list[Keyframe] = Field(min_length=2, max_length=MAX_KEYFRAMES,
                                      description="(position, prompt) pairs, positions strictly increasing")
    steps: int = Field(4, ge=1, description="meshes per segment between keyframes; "
                                            f"(keyframes − 1) · steps + 1 ≤ {MAX_CHAIN_MESHES}")
    resolution: int = Field(96, ge=MIN_RESOLUTION, le=MAX_RESOLUTION)
    consistent: bool = Field(True, description="one shared set of faces for every step")

    @model_validator(mode="after")
    def _check(self) -> ChainRequest:
        check_chain([(k.position, k.prompt) for k in self.keyframes], self.steps)
        return self

    def keyframe_pairs(self) -> list[tuple[float, str]]:
        return [(k.position, k.prompt) for k in self.keyframes]


class NearestRequest(Strict):
    prompt: str = Field(description=PROMPT_DOC)
    k: int = Field(5, ge=1, le=MAX_NEIGHBORS)

    _p = field_validator("prompt")(_prompt)
