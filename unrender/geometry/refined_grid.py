"""Coarse-to-fine evaluation of a signed distance field on a dense grid (Occupancy Networks' MISE, for SDFs).

A dense ``R^3`` grid costs ``R^3`` field queries, most of them far from the surface where only the sign
matters. :func:`refined_sdf_grid` evaluates the field on a coarse grid of ``R_0`` points per axis and then,
level by level (``R_{l+1} = 2 R_l - 1``, so the coarse points stay grid points):

1. trilinearly upsamples the current values to the next level;
2. marks the coarse cells that may hold surface: a sign change among their 8 corners, or a corner with
   ``|f| < band * h sqrt(3)`` (``h`` the coarse spacing; for a 1-Lipschitz field every cell that the surface
   crosses passes this test at ``band >= 1``, thin parts included);
3. queries the field at every fine point of the marked cells and keeps the interpolation elsewhere.

Where the field is 1-Lipschitz and ``band >= 1``, the result has the same signs as the dense grid (and the same
values in the marked cells), so marching cubes gives the same surface for a fraction of the queries:
roughly ``O(R^2)`` instead of ``O(R^3)``.

Example:
    >>> f = lambda p: p.norm(dim=-1) - 0.4                      # a sphere
    >>> grid = refined_sdf_grid(f, resolution=65, bounds=0.6, coarse_resolution=17)
    >>> grid.values.shape, grid.queries < 65 ** 3
    (torch.Size([65, 65, 65]), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError


@dataclass
class RefinedGrid:
    """What :func:`refined_sdf_grid` returns.

    Attributes:
        values: ``[R,R,R]`` field values at ``-b + (i, j, k) 2b / (R - 1)`` (indexed x, y, z).
        queries: how many points the field was evaluated at (the dense grid needs ``R^3``).
    """

    values: torch.Tensor
    queries: int


def grid_points(resolution: int, bounds: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """``[R,R,R,3]`` points ``-b + (i, j, k) 2b / (R - 1)``, indexed ``[i, j, k]`` = (x, y, z)."""
    axis = torch.linspace(-bounds, bounds, resolution, dtype=dtype, device=device)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)


def evaluate_chunked(field: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor,
                     chunk: int) -> torch.Tensor:
    """``field`` at ``points[N,3]``, ``chunk`` points per call, concatenated to ``[N]``."""
    if points.shape[0] == 0:
        return points.new_zeros(0)
    return torch.cat([field(points[s:s + chunk]).reshape(-1) for s in range(0, points.shape[0], chunk)])


def refinement_levels(resolution: int, coarse_resolution: int) -> int:
    """Number ``L`` of doublings from ``coarse_resolution`` to ``resolution`` (``R - 1 = (R_0 - 1) 2^L``).

    Raises :class:`~unrender.errors.InputError` when no such ``L`` exists.

    Example:
        >>> refinement_levels(129, 17)
        3
    """
    if coarse_resolution < 2:
        raise InputError(f"coarse_resolution must be >= 2; got {coarse_resolution}.")
    levels, r = 0, coarse_resolution
    while r < resolution:
        r, levels = 2 * r - 1, levels + 1
    if r != resolution:
        raise InputError(f"resolution - 1 must be (coarse_resolution - 1) times a power of two; got resolution "
                         f"{resolution} and coarse_resolution {coarse_resolution} (e.g. 65 and 17, 129 and 33).")
    return levels


def _cells_to_refine(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """``[R-1]^3`` bool: cells with a sign change among their corners or a corner with ``|f| < threshold``."""
    v = values[None, None]
    high = F.max_pool3d(v, 2, 1)[0, 0]
    low = -F.max_pool3d(-v, 2, 1)[0, 0]
    near = F.max_pool3d((values.abs() < threshold).to(values.dtype)[None, None], 2, 1)[0, 0] > 0
    return near | ((high > 0) & (low <= 0))


def _fine_points_of(cells: torch.Tensor) -> torch.Tensor:
    """``[2R-1]^3`` bool: the fine-level points that lie in (or on the boundary of) a marked coarse cell."""
    fine_cells = cells.repeat_interleave(2, 0).repeat_interleave(2, 1).repeat_interleave(2, 2)
    # Fine point i is a corner of fine cells i - 1 and i; pad so that both exist at the borders.
    padded = F.pad(fine_cells.to(torch.float32)[None, None], (1, 1) * 3)
    return F.max_pool3d(padded, 2, 1)[0, 0] > 0


def refined_sdf_grid(field: Callable[[torch.Tensor], torch.Tensor], resolution: int, bounds: float,
                     coarse_resolution: int = 17, band: float = 2.0, chunk: int = 65536,
                     dtype=torch.float32, device=None) -> RefinedGrid:
    """Field values on an ``R^3`` grid by coarse-to-fine refinement near the surface (module docstring).

    Args:
        field: maps points ``[N,3]`` to values ``[N]`` (negative inside); called without gradient tracking by
            the caller's choice.
        resolution: ``R``, grid points per axis; ``R - 1 = (R_0 - 1) 2^L`` for some ``L >= 0``.
        bounds: ``b``, half-size of the cube.
        coarse_resolution: ``R_0 >= 2``, the first, dense level.
        band: refine cells with a corner closer than ``band`` coarse cell diagonals to the surface (``>= 1`` for a
            1-Lipschitz field; learned fields are only roughly one, hence the default 2).
        chunk: points per ``field`` call.
        dtype, device: of the query points.
    Returns:
        :class:`RefinedGrid` (values ``[R,R,R]`` and the number of field queries).

    Example:
        >>> grid = refined_sdf_grid(lambda p: p[:, 1].abs() - 0.01, 33, 0.5, coarse_resolution=9)   # a thin slab
        >>> bool((grid.values[:, 16] < 0).all()), bool((grid.values[:, 15] > 0).all())
        (True, True)
    """
    resolution, coarse_resolution, chunk = int(resolution), int(coarse_resolution), int(chunk)
    if chunk < 1 or not bounds > 0 or not band >= 0:
        raise InputError(f"need chunk >= 1, bounds > 0 and band >= 0; got {chunk}, {bounds}, {band}.")
    levels = refinement_levels(resolution, coarse_resolution)
    r = coarse_resolution
    values = evaluate_chunked(field, grid_points(r, bounds, dtype, device).reshape(-1, 3), chunk).reshape(r, r, r)
    queries = r ** 3
    for _ in range(levels):
        spacing = 2.0 * bounds / (r - 1)
        cells = _cells_to_refine(values, band * spacing * math.sqrt(3.0))
        r = 2 * r - 1
        values = F.interpolate(values[None, None], size=(r, r, r), mode="trilinear", align_corners=True)[0, 0]
        todo = _fine_points_of(cells)
        index = todo.nonzero()
        if index.shape[0]:
            step = 2.0 * bounds / (r - 1)
            points = index.to(dtype) * step - bounds
            values[todo] = evaluate_chunked(field, points.to(device), chunk).to(values.dtype)
        queries += int(index.shape[0])
    return RefinedGrid(values, queries)
