"""Random PBR materials (base colour, ORM, normal map) for synthetic scenes, deterministic from a seed.

All randomness comes from a local ``torch.Generator`` seeded with ``seed``; the global RNG is
never touched. Patterns are built from value noise (random low-resolution grids upsampled
bicubically and summed over octaves), stripes and checkers.

Example:
    >>> m = random_pbr_material(0, resolution=64)
    >>> m.base_color.shape, m.orm.shape, m.normal.shape
    (torch.Size([64, 64, 3]), torch.Size([64, 64, 3]), torch.Size([64, 64, 3]))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..mesh import PBRMaterial


def value_noise(res: int, cells: int, gen: torch.Generator, octaves: int = 3) -> torch.Tensor:
    """Fractal value noise ``[res,res]`` in [0,1]: ``octaves`` random grids of ``cells * 2^k`` cells, halving amplitude.

    Example:
        >>> n = value_noise(32, 4, torch.Generator().manual_seed(0))
        >>> n.shape, bool(n.min() >= 0 and n.max() <= 1)
        (torch.Size([32, 32]), True)
    """
    out = torch.zeros(res, res)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        c = max(2, int(cells * 2 ** k))
        grid = torch.rand(1, 1, c, c, generator=gen)
        out += amp * F.interpolate(grid, size=(res, res), mode="bicubic", align_corners=True)[0, 0]
        total += amp
        amp *= 0.5
    out = out / total
    lo, hi = out.min(), out.max()
    return (out - lo) / (hi - lo).clamp_min(1e-6)


def _uniform(gen, lo, hi, n=None):
    if n is None:
        return lo + (hi - lo) * float(torch.rand((), generator=gen))
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _palette(gen, n: int) -> torch.Tensor:
    """``n`` random linear RGB colours with varied hue and moderate saturation ``[n,3]``."""
    hue = torch.rand(n, generator=gen)
    sat = _uniform(gen, 0.25, 0.9, n)
    val = _uniform(gen, 0.25, 0.95, n)
    k = (torch.arange(3)[None] * (1 / 3) + hue[:, None]) % 1.0
    rgb = val[:, None] * (1 - sat[:, None] * (0.5 + 0.5 * torch.cos(2 * math.pi * k)))
    return rgb.clamp(0.02, 1.0) ** 2.2  # roughly sRGB-looking colours, stored linear


def _pattern(kind: str, res: int, gen: torch.Generator) -> torch.Tensor:
    """A mask ``[res,res]`` in [0,1] of the given pattern kind."""
    y, x = torch.meshgrid(torch.linspace(0, 1, res), torch.linspace(0, 1, res), indexing="ij")
    if kind == "stripes":
        angle = _uniform(gen, 0, math.pi)
        freq = _uniform(gen, 3, 14)
        t = (x * math.cos(angle) + y * math.sin(angle)) * freq
        t = t + 0.15 * value_noise(res, 3, gen, 2)  # slightly wobbly
        return torch.sigmoid((torch.sin(2 * math.pi * t)) * 12)
    if kind == "checker":
        n = int(_uniform(gen, 3, 12))
        return (((x * n).floor() + (y * n).floor()) % 2).float()
    return torch.sigmoid((value_noise(res, int(_uniform(gen, 2, 6)), gen) - 0.5) * 16)


def random_pbr_material(seed: int, resolution: int = 512) -> PBRMaterial:
    """A random :class:`PBRMaterial` with textures ``[R,R,3]``, ``R = resolution``.

    * ``base_color`` (linear RGB in [0,1]): two or three palette colours mixed by stripes, a checker
      or noise blobs, with some low-frequency noise on top.
    * ``orm``: R = occlusion (1, softly darkened in crevices of the bump pattern), G = roughness in
      [0.2, 0.9] varying by region, B = metallic, 0 except for occasional noise-shaped metal regions
      (which get lower roughness).
    * ``normal``: tangent-space normals in [-1,1] from a bump height field ``h``:
      ``n = normalize(-s dh/du, -s dh/dv, 1)``.

    Example:
        >>> a, b = random_pbr_material(1, 32), random_pbr_material(1, 32)
        >>> bool(torch.equal(a.base_color, b.base_color))
        True
    """
    res = int(resolution)
    if res < 4:
        raise InputError(f"resolution must be at least 4; got {resolution!r}.")
    gen = torch.Generator().manual_seed(int(seed))
    kinds = ["stripes", "checker", "blobs"]
    kind = kinds[int(torch.randint(0, 3, (1,), generator=gen))]
    cols = _palette(gen, 3)
    mask = _pattern(kind, res, gen)
    base = cols[0][None, None] * (1 - mask[..., None]) + cols[1][None, None] * mask[..., None]
    if float(torch.rand((), generator=gen)) < 0.5:  # sprinkle a third colour as blobs
        spots = torch.sigmoid((value_noise(res, 5, gen) - 0.75) * 30)
        base = base * (1 - spots[..., None]) + cols[2][None, None] * spots[..., None]
    grain = value_noise(res, 16, gen, 3)
    base = (base * (0.85 + 0.3 * grain[..., None])).clamp(0.0, 1.0)

    rough_lo = _uniform(gen, 0.2, 0.5)
    rough_hi = _uniform(gen, rough_lo + 0.1, 0.9)
    region = value_noise(res, int(_uniform(gen, 2, 5)), gen)
    rough = rough_lo + (rough_hi - rough_lo) * (0.5 * region + 0.5 * mask)
    metal = torch.zeros(res, res)
    if float(torch.rand((), generator=gen)) < 0.4:
        metal = (value_noise(res, 3, gen) > _uniform(gen, 0.6, 0.8)).float()
        rough = torch.where(metal > 0, rough.clamp(max=0.45), rough)

    bump_kind = kinds[int(torch.randint(0, 3, (1,), generator=gen))]
    height = 0.6 * _pattern(bump_kind, res, gen) + 0.4 * value_noise(res, 24, gen, 2)
    strength = _uniform(gen, 0.5, 3.0)
    dh_dv, dh_du = torch.gradient(height)
    scale = strength * res / 64.0
    n = torch.stack([-scale * dh_du, -scale * dh_dv, torch.ones_like(height)], -1)
    normal = F.normalize(n, dim=-1)
    occl = (1.0 - 0.3 * (1.0 - height)).clamp(0.0, 1.0)
    orm = torch.stack([occl, rough.clamp(0.2, 0.9), metal], -1)
    return PBRMaterial(base_color=base.contiguous(), orm=orm.contiguous(), normal=normal.contiguous(),
                       roughness_factor=float(rough.mean()), metallic_factor=float(metal.mean()))
