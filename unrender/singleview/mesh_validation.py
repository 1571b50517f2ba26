"""Mesh-level validation of the implicit model: the Chamfer-L1 of the surfaces it would export, at several
iso-levels.

Why: the validation SDF L1 (near-surface queries) does not rank checkpoints or runs by the meshes they give; a
run with the lowest SDF L1 of all gave by far the worst meshes (stray surfaces in the far field, which few
queries test). The exported mesh is what is scored, so ``best_metric=chamfer`` scores it directly.

For validation item ``b`` with image ``I_b`` and ground-truth surface points ``Y_b [P,3]``:

    G_b      = sdf_grid(model, I_b, R, coarse_resolution=R_0)          (one grid per item)
    M_{b,l}  = surface_from_grid(G_b, level=l)                        (marching cubes at each level l)
    c_{b,l}  = (mean_x d(x, Y_b) + mean_y d(y, X_{b,l})) / 2          (X: P area-weighted samples of M_{b,l})

An item with no surface at level ``l`` scores ``c = bounds`` (farther than any real mesh can be). The metric is
``min_l mean_b c_{b,l}`` and the level that reaches it is kept with the checkpoint as ``implicit.mesh_level``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..geometry.sdf_samples import sample_surface
from .implicit import sdf_grid, surface_from_grid


def level_chamfers(model, images: torch.Tensor, truth: torch.Tensor, levels, resolution: int = 33,
                   coarse_resolution: int = 9, bounds: float = 0.6, seed: int = 0) -> torch.Tensor:
    """Chamfer-L1 ``c [B,L]`` of the surfaces extracted at each of ``levels`` (module docstring).

    Args:
        model: an :class:`~unrender.singleview.implicit.ImplicitPredictor`.
        images: ``[B,C,H,W]`` input images.
        truth: ``[B,P,3]`` ground-truth surface points (canonical frame).
        levels: ``L`` iso-values.
        resolution, coarse_resolution: the grid (``R - 1 = (R_0 - 1) 2^k``, or ``coarse_resolution=0``: dense).
        bounds: half-size of the extraction cube.
        seed: seed of the surface samples (item ``b`` uses ``seed + b``).
    Returns:
        ``[B,L]`` float64 on the CPU.

    Example:
        >>> from unrender.singleview.implicit import ImplicitPredictor
        >>> level_chamfers(ImplicitPredictor(num_coarse_points=64), torch.rand(2, 4, 64, 64),
        ...                torch.rand(2, 100, 3) - 0.5, levels=(0.0, 0.02), resolution=9, coarse_resolution=0).shape
        torch.Size([2, 2])
    """
    out = torch.full((images.shape[0], len(levels)), float(bounds), dtype=torch.float64)
    for b in range(images.shape[0]):
        grid = sdf_grid(model, images[b], resolution, bounds, coarse_resolution=coarse_resolution)
        grid = grid.float().cpu().numpy()
        y = truth[b].detach().float().cpu().numpy()
        for i, level in enumerate(levels):
            mesh = surface_from_grid(grid, bounds, level)
            if mesh.faces.shape[0] == 0:
                continue
            out[b, i] = mesh_chamfer(mesh.vertices, mesh.faces, y, torch.Generator().manual_seed(int(seed) + b))
    return out


def mesh_chamfer(vertices: torch.Tensor, faces: torch.Tensor, truth: np.ndarray, generator: torch.Generator) -> float:
    """Chamfer-L1 ``(mean_x d(x, Y) + mean_y d(y, X)) / 2`` between ``P = len(truth)`` area-weighted samples ``X`` of
    the mesh (drawn with ``generator``) and the points ``truth [P,3]`` (DIB-R's protocol, Euclidean distances)."""
    from .eval_metrics import point_set_scores

    x = sample_surface(vertices.detach().float().cpu(), faces.cpu(), truth.shape[0], generator)[0]
    return float(point_set_scores(x.numpy(), truth, ())[0])  # the eval protocol's formula


def best_level(sums: np.ndarray, count: int, levels) -> tuple[float, float]:
    """``(mean Chamfer, level)`` of the level with the lowest mean, from per-level sums over ``count`` items."""
    means = np.asarray(sums, np.float64) / max(int(count), 1)
    i = int(np.argmin(means))
    return float(means[i]), float(levels[i])
