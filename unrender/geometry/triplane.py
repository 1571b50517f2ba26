"""Tri-plane feature fields (EG3D's factorisation), batched over scenes.

A tri-plane holds three axis-aligned feature planes ``P_xy, P_xz, P_yz`` of ``C`` channels and ``R x R``
texels over a box ``[lo, hi]``. The feature of a point ``p`` is the sum of the bilinear samples of the
three planes at its projections, after mapping the box to ``[-1, 1]^3``::

    q = 2 (p - lo) / (hi - lo) - 1
    f(p) = P_xy(q_x, q_y) + P_xz(q_x, q_z) + P_yz(q_y, q_z)          ([C])

Points outside the box read zeros (``padding_mode="zeros"``), so empty space costs no parameters.
Sampling is :func:`torch.nn.functional.grid_sample` (``align_corners=False``: texel centres at
``(i + 0.5) / R``), whose backward scatters into the planes; one call serves all scenes of a batch.

Example:
    >>> planes = torch.zeros(2, 3, 4, 8, 8)            # 2 scenes, C=4, R=8
    >>> planes[:, 0] = 1.0                               # the xy plane is constant 1
    >>> f = sample_triplanes(planes, torch.zeros(2, 5, 3), torch.tensor([[-1.0] * 3, [1.0] * 3]))
    >>> f.shape, float(f[0, 0, 0])
    (torch.Size([2, 5, 4]), 1.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

#: Which two point coordinates index each plane: xy, xz, yz.
PLANE_AXES = ((0, 1), (0, 2), (1, 2))


def normalize_to_box(points: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """``q = 2 (p - lo) / (hi - lo) - 1``: points ``[..., 3]`` in the box ``bounds [2,3]`` to ``[-1, 1]^3``."""
    lo, hi = bounds[0], bounds[1]
    return 2.0 * (points - lo) / (hi - lo) - 1.0


def sample_triplanes(planes: torch.Tensor, points: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """Sum of the three planes' bilinear samples at each point (module docstring).

    Args:
        planes: ``[S,3,C,R,R]`` tri-planes of ``S`` scenes; plane ``k`` is indexed by the coordinates
            :data:`PLANE_AXES` ``[k]`` (the first along the texture's width, the second along its height).
        points: ``[S,M,3]`` world points, ``M`` per scene.
        bounds: ``[2,3]`` box (min corner, max corner) the planes span, shared by all scenes.
    Returns:
        ``[S,M,C]`` features; zero outside the box.
    """
    if planes.dim() != 5 or planes.shape[1] != 3:
        raise InputError(f"planes must have shape [S,3,C,R,R]; got {tuple(planes.shape)}.")
    if points.dim() != 3 or points.shape[0] != planes.shape[0] or points.shape[-1] != 3:
        raise InputError(f"points must have shape [S,M,3] with S = {planes.shape[0]}; got {tuple(points.shape)}.")
    s, _, c, r1, r2 = planes.shape
    q = normalize_to_box(points, bounds.to(points))
    grid = torch.stack([q[..., list(axes)] for axes in PLANE_AXES], dim=1)           # [S,3,M,2]
    grid = grid.reshape(s * 3, -1, 1, 2)
    feats = F.grid_sample(planes.reshape(s * 3, c, r1, r2), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)                                      # [S*3,C,M,1]
    return feats.reshape(s, 3, c, -1).sum(dim=1).transpose(1, 2)


def total_variation(planes: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring texels, over both plane axes::

        TV = mean((P[..., i+1, j] - P[..., i, j])^2) + mean((P[..., i, j+1] - P[..., i, j])^2)

    Args:
        planes: ``[..., R, R]`` feature planes (any leading shape).
    Returns:
        scalar tensor.

    Example:
        >>> float(total_variation(torch.ones(3, 4, 8, 8)))
        0.0
    """
    return (planes.diff(dim=-1).square().mean() + planes.diff(dim=-2).square().mean())
