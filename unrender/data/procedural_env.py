"""Random HDR environment maps (lat-long) for synthetic scenes, deterministic from a seed.

Lat-long convention (shared with the environment-light code): an image ``[H,W,3]`` whose pixel
``(row, col)`` has centre ``(u, v) = ((col + 0.5) / W, (row + 0.5) / H)``; row 0 looks straight up
(+y). The polar angle from +y is ``theta = pi * v`` and the azimuth ``phi = 2 pi u``; the direction is

    d = (sin(phi) sin(theta), cos(theta), -cos(phi) sin(theta))

so ``u = 0`` (and 1) looks down -z, ``u = 0.25`` down +x, ``u = 0.5`` down +z.

Example:
    >>> env = random_environment(0, 16, 32)
    >>> env.shape, bool(env.max() > 1)
    (torch.Size([16, 32, 3]), True)
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError


def latlong_directions(height: int, width: int) -> torch.Tensor:
    """Unit directions ``[H,W,3]`` of the pixel centres of a lat-long map (convention in the module doc).

    Example:
        >>> d = latlong_directions(2, 4)
        >>> [round(x, 3) for x in d[0, 0].tolist()]
        [0.5, 0.707, -0.5]
    """
    v = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    u = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    theta, phi = math.pi * v[:, None], 2 * math.pi * u[None, :]
    d = torch.stack(torch.broadcast_tensors(torch.sin(phi) * torch.sin(theta), torch.cos(theta),
                                            -torch.cos(phi) * torch.sin(theta)), -1)
    return d.float()


def direction_from_angles(theta: float, phi: float) -> torch.Tensor:
    """Direction ``[3]`` at polar angle ``theta`` (from +y) and azimuth ``phi``, same convention."""
    return torch.tensor([math.sin(phi) * math.sin(theta), math.cos(theta), -math.cos(phi) * math.sin(theta)])


def random_environment(seed: int, height: int = 256, width: int = 512) -> torch.Tensor:
    """A random HDR sky ``[H,W,3]`` (linear radiance, float32) in lat-long layout.

    Made of: a sky gradient (bluish zenith to bright horizon, radiance ~0.3-1.5), a sun disc of
    angular radius 1.5-3 degrees and radiance 50-200 with a soft glow, 2-4 coloured area-light-like
    blobs (radiance 2-8), and a darker ground (``y < 0``, radiance ~0.05-0.3). Uses a local
    ``torch.Generator``; the same seed gives the same map.

    Example:
        >>> a, b = random_environment(3, 32, 64), random_environment(3, 32, 64)
        >>> bool(torch.equal(a, b)), bool(a.min() >= 0)
        (True, True)
    """
    h, w = int(height), int(width)
    if h < 2 or w < 2:
        raise InputError(f"height and width must be at least 2; got {height!r}, {width!r}.")
    gen = torch.Generator().manual_seed(int(seed))

    def rnd(lo, hi, n=()):
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    d = latlong_directions(h, w)
    y = d[..., 1:2]
    zenith = torch.stack([rnd(0.1, 0.3), rnd(0.2, 0.45), rnd(0.5, 1.0)])
    horizon = torch.stack([rnd(0.6, 1.2), rnd(0.6, 1.2), rnd(0.7, 1.4)])
    ground = torch.stack([rnd(0.05, 0.25), rnd(0.04, 0.2), rnd(0.03, 0.15)])
    t = y.clamp(min=0.0) ** 0.5
    sky = horizon * (1 - t) + zenith * t
    # Ground darkens quickly below the horizon, with a thin bright band at the horizon itself.
    below = torch.sigmoid(-y * 40.0)
    env = sky * (1 - below) + (ground * (0.6 + 0.4 * (1 + y).clamp(0, 1))) * below

    sun_theta = math.radians(float(rnd(20.0, 75.0)))
    sun_phi = float(rnd(0.0, 2 * math.pi))
    sun_dir = direction_from_angles(sun_theta, sun_phi)
    sun_radius = math.radians(float(rnd(1.5, 3.0)))
    # Keep the disc at least ~1.5 pixels wide so it exists at low resolutions.
    sun_radius = max(sun_radius, 1.5 * math.pi / h)
    sun_power = float(rnd(50.0, 200.0))
    sun_color = torch.stack([torch.tensor(1.0), rnd(0.85, 1.0), rnd(0.65, 0.95)])
    ang = torch.acos((d * sun_dir).sum(-1, keepdim=True).clamp(-1, 1))
    disc = torch.sigmoid((sun_radius - ang) / (0.15 * sun_radius))
    glow = torch.exp(-(ang / (4 * sun_radius)) ** 2) * 0.05 + torch.exp(-(ang / 0.35) ** 2) * 0.01
    env = env + sun_color * sun_power * (disc + glow)

    for _ in range(int(torch.randint(2, 5, (1,), generator=gen))):
        bt = math.acos(float(rnd(-0.2, 0.9)))
        bd = direction_from_angles(bt, float(rnd(0.0, 2 * math.pi)))
        size = math.radians(float(rnd(8.0, 25.0)))
        col = torch.rand(3, generator=gen) ** 2 + 0.1
        col = col / col.max() * rnd(2.0, 8.0)
        a = torch.acos((d * bd).sum(-1, keepdim=True).clamp(-1, 1))
        env = env + col * torch.sigmoid((size - a) / (0.2 * size))
    return env.clamp_min(0.0).float().contiguous()
