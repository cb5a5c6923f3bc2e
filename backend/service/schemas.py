"""Request bodies of the ATT3D service (pydantic, strict): the JSON's shape only. Wrong types and
unknown fields are a 422; what the values may be is the engine's to say: each body becomes its
:mod:`backend.engine` request as it is parsed (:meth:`Body.request`), whose checks (the only ones)
turn a bad value into a 422 naming the field. The ranges below are the OpenAPI schema's
documentation (``json_schema_extra``), not a second check."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from blender_att3d.wire.limits import (
    DEFAULT_RESOLUTION,
    MAX_CHAIN_MESHES,
    MAX_CHAIN_STATES,
    MAX_KEYFRAMES,
    MAX_NEIGHBORS,
    MAX_PROMPT_CHARS,
    MAX_RESOLUTION,
    MAX_SIMPLIFY,
    MIN_RESOLUTION,
    MIN_SIMPLIFY,
    TEXTURE_SIZE,
)

from ..engine import Blend, Chain, Generate, InvalidInput, Nearest, Request


def _range(lo: float, hi: float) -> dict[str, Any]:
    return {"minimum": lo, "maximum": hi}


PROMPT_DOC = f"1–{MAX_PROMPT_CHARS} characters after collapsing whitespace"
RESOLUTION_DOC = f"marching-cubes lattice size, {MIN_RESOLUTION}–{MAX_RESOLUTION}"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    _request: Any = PrivateAttr(None)

    def make(self) -> Request:  # the engine request this body asks for
        raise NotImplementedError

    @model_validator(mode="after")
    def _check(self) -> Body:
        try:
            self._request = self.make()
        except InvalidInput as e:  # a 422 naming the field, as pydantic's own errors do
            msg = str(e)
            raise ValueError(msg if msg.startswith(e.field) else f"{e.field}: {msg}") from None
        return self

    def request(self) -> Request:
        return self._request


class GenerateRequest(Body):
    prompt: str = Field(description=PROMPT_DOC)
    resolution: int = Field(DEFAULT_RESOLUTION, description=RESOLUTION_DOC,
                            json_schema_extra=_range(MIN_RESOLUTION, MAX_RESOLUTION))
    simplify: int | None = Field(None, description="simplify to about this many faces",
                                 json_schema_extra=_range(MIN_SIMPLIFY, MAX_SIMPLIFY))
    texture: bool = Field(False, description=f"bake a {TEXTURE_SIZE}² UV texture")
    mc: str = Field("auto", description="marching cubes: skimage, pymcubes, torch (on the backend's device); "
                    "auto: torch on a GPU, skimage on the CPU")

    def make(self) -> Generate:
        return Generate(self.prompt, self.resolution, self.simplify, self.texture, self.mc)


class BlendRequest(Body):
    prompt_a: str = Field(description=PROMPT_DOC)
    prompt_b: str = Field(description=PROMPT_DOC)
    alpha: float = Field(allow_inf_nan=False, description="0 = prompt_a, 1 = prompt_b", json_schema_extra=_range(0, 1))
    resolution: int = Field(DEFAULT_RESOLUTION, description=RESOLUTION_DOC,
                            json_schema_extra=_range(MIN_RESOLUTION, MAX_RESOLUTION))
    simplify: int | None = Field(None, json_schema_extra=_range(MIN_SIMPLIFY, MAX_SIMPLIFY))

    def make(self) -> Blend:
        return Blend(self.prompt_a, self.prompt_b, self.alpha, self.resolution, self.simplify)


class Keyframe(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    position: float = Field(allow_inf_nan=False, ge=-1e9, le=1e9)
    prompt: str = Field(description=PROMPT_DOC)


class ChainRequest(Body):
    keyframes: list[Keyframe] = Field(description=f"2–{MAX_KEYFRAMES} (position, prompt) pairs, positions "
                                                  "strictly increasing")
    steps: int = Field(4, description="meshes per segment between keyframes; "
                                      f"(keyframes − 1) · steps + 1 ≤ {MAX_CHAIN_MESHES}")
    resolution: int = Field(DEFAULT_RESOLUTION, description=RESOLUTION_DOC,
                            json_schema_extra=_range(MIN_RESOLUTION, MAX_RESOLUTION))
    consistent: bool = Field(True, description="one shared set of faces for every step")
    max_states: int | None = Field(None, description="a consistent chain's stored states per segment at most: "
                                   "states in between go where the surface moves (default 2 · steps; "
                                   f"steps–{MAX_CHAIN_STATES}; a chain stores {MAX_CHAIN_STATES} states at most)")

    def make(self) -> Chain:
        return Chain(tuple((k.position, k.prompt) for k in self.keyframes), self.steps, self.resolution,
                     self.consistent, self.max_states)


class NearestRequest(Body):
    prompt: str = Field(description=PROMPT_DOC)
    k: int = Field(5, json_schema_extra=_range(1, MAX_NEIGHBORS))

    def make(self) -> Nearest:
        return Nearest(self.prompt, self.k)
