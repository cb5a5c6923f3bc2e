"""Pinhole cameras, and the camera / light / shading sampler of App. B.1.7 (as in DreamFusion).

World frame: Z up, the object's front faces −Y (Blender's front view). Azimuth 0 is the front,
90° the right side (+X); elevation is measured from the XY plane. Cameras look along their −Z.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

SHADING_MODES = ("albedo", "textureless", "lambertian")


@dataclass
class Cameras:
    eye: torch.Tensor  # [B, 3] camera centres
    c2w: torch.Tensor  # [B, 3, 3] columns: right, up, back
    focal: torch.Tensor  # [B] focal length as a multiple of the image width
    azimuth: torch.Tensor  # [B] degrees in (−180, 180]
    elevation: torch.Tensor  # [B] degrees
    light: torch.Tensor | None = None  # [B, 3] point-light positions
    shading: torch.Tensor | None = None  # [B] indices into SHADING_MODES
    ambient: torch.Tensor | None = None  # [B] ambient fraction for lambertian shading

    def __len__(self) -> int:
        return self.eye.shape[0]

    def to(self, device) -> Cameras:
        return Cameras(**{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in self.__dict__.items()})

    def __getitem__(self, index) -> Cameras:
        return Cameras(**{k: (v[index] if torch.is_tensor(v) else v) for k, v in self.__dict__.items()})

    @property
    def view_labels(self) -> list[str]:
        return [view_label(float(a), float(e)) for a, e in zip(self.azimuth, self.elevation)]


def view_label(azimuth: float, elevation: float, front: float = 45.0, overhead: float = 60.0) -> str:
    """"front" / "side" / "back" / "overhead", used to augment the guidance prompt."""
    if elevation > overhead:
        return "overhead"
    a = abs((azimuth + 180.0) % 360.0 - 180.0)
    if a < front:
        return "front"
    if a > 180.0 - front:
        return "back"
    return "side"


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Camera-to-world rotations ``[B, 3, 3]`` looking from ``eye`` at ``target`` with Z up."""
    target = torch.zeros_like(eye) if target is None else target
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.tensor([0.0, 0.0, 1.0], device=eye.device, dtype=eye.dtype).expand_as(fwd)
    right = torch.cross(fwd, up, dim=-1)
    # Looking straight down: any right vector will do.
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    right = torch.where(degenerate, torch.tensor([1.0, 0.0, 0.0], device=eye.device, dtype=eye.dtype), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    true_up = torch.cross(right, fwd, dim=-1)
    return torch.stack([right, true_up, -fwd], dim=-1)


def spherical(azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    az, el = torch.deg2rad(azimuth_deg), torch.deg2rad(elevation_deg)
    return torch.stack([distance * torch.cos(el) * torch.sin(az),
                        -distance * torch.cos(el) * torch.cos(az),
                        distance * torch.sin(el)], dim=-1)


def orbit_cameras(azimuths: Sequence[float], elevation: float = 20.0, distance: float = 2.5,
                  focal: float = 1.0, device="cpu") -> Cameras:
    """Fixed cameras around the object (turntables, evaluation views), albedo shading."""
    az = torch.tensor([float(a) for a in azimuths], device=device)
    el = torch.full_like(az, float(elevation))
    eye = spherical(az, el, torch.full_like(az, float(distance)))
    return Cameras(eye, look_at(eye), torch.full_like(az, float(focal)), az, el,
                   light=eye.clone(), shading=torch.zeros_like(az, dtype=torch.long), ambient=torch.full_like(az, 0.3))


@dataclass
class CameraSampler:
    """Random rendering conditions (App. B.1.7); all ranges are configurable."""

    distance: tuple[float, float] = (2.0, 3.0)
    focal: tuple[float, float] = (0.7, 1.35)
    elevation: tuple[float, float] = (-10.0, 90.0)
    azimuth: tuple[float, float] = (-180.0, 180.0)
    light_distance: tuple[float, float] = (1.0, 3.0)
    light_angle: tuple[float, float] = (0.0, math.pi / 4)
    #: probabilities of albedo / textureless / lambertian shading
    shading_probs: tuple[float, float, float] = (0.2, 0.3, 0.5)
    #: "soft" shading: the ambient fraction is drawn from this range
    ambient: tuple[float, float] = (0.1, 0.4)

    def sample(self, n: int, generator: torch.Generator | None = None, device="cpu") -> Cameras:
        def u(lo_hi, *shape):
            lo, hi = lo_hi
            return lo + (hi - lo) * torch.rand(*(shape or (n,)), generator=generator)

        dist, focal = u(self.distance), u(self.focal)
        # Uniform on the sphere band rather than in angle, so overhead views are not oversampled.
        s0, s1 = (math.sin(math.radians(e)) for e in self.elevation)
        el = torch.rad2deg(torch.asin(u((s0, s1))))
        az = u(self.azimuth)
        eye = spherical(az, el, dist)
        c = torch.nn.functional.normalize(eye, dim=-1)
        r = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
        p = torch.nn.functional.normalize(r - (r * c).sum(-1, keepdim=True) * c + 1e-8, dim=-1)
        ang = u(self.light_angle)[:, None]
        light = (torch.cos(ang) * c + torch.sin(ang) * p) * u(self.light_distance)[:, None]
        probs = torch.tensor(self.shading_probs, dtype=torch.float)
        shading = torch.multinomial(probs / probs.sum(), n, replacement=True, generator=generator)
        cams = Cameras(eye, look_at(eye), focal, az, el, light, shading, u(self.ambient))
        return cams.to(device)
