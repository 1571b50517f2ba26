"""Surface smoothing of triangle meshes.

**Taubin smoothing** (Taubin 1995): alternate a shrinking and an inflating step of the uniform Laplacian,

    v <- v + lambda (mean_{j in N(v)} v_j - v),   then   v <- v + mu (mean_{j in N(v)} v_j - v),

with ``lambda > 0 > mu`` and ``|mu| > lambda``: a low-pass filter that removes high-frequency ripples (such as
those marching tetrahedra leaves) without the volume loss of plain Laplacian smoothing. Connectivity is
unchanged, so a watertight mesh stays watertight.
"""

from __future__ import annotations

import torch

from ..checks import float_tensor, index_tensor
from ..errors import InputError


def taubin_smooth(vertices, faces, iterations: int = 10, lamb: float = 0.5, mu: float = -0.53) -> torch.Tensor:
    """Taubin-smoothed vertices ``[V,3]`` of the mesh ``(vertices [V,3], faces [F,3])`` (module docstring).

    Example:
        >>> from unrender.geometry.primitives import icosphere
        >>> s = icosphere(2)
        >>> noisy = s.vertices * (1 + 0.05 * torch.randn(s.vertices.shape[0], 1))
        >>> smooth = taubin_smooth(noisy, s.faces, iterations=10)
        >>> bool(smooth.norm(dim=-1).std() < noisy.norm(dim=-1).std())
        True
    """
    vertices = float_tensor("vertices", vertices, "[V,3]", last_dim=3, ndims=(2,))
    faces = index_tensor("faces", faces, "[F,3]", last_dim=3, num_vertices=vertices.shape[0])
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 0:
        raise InputError(f"iterations must be a non-negative integer; got {iterations!r}.")
    if not (lamb > 0 > mu and -mu > lamb):
        raise InputError(f"Taubin smoothing needs lamb > 0 > mu and |mu| > lamb; got lamb={lamb}, mu={mu}.")
    if faces.shape[0] == 0 or iterations == 0:
        return vertices.clone()
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = torch.unique(torch.sort(e, dim=1).values, dim=0)
    src, dst = torch.cat([e[:, 0], e[:, 1]]), torch.cat([e[:, 1], e[:, 0]])
    deg = torch.zeros(vertices.shape[0], dtype=vertices.dtype, device=vertices.device)
    deg.index_add_(0, src, torch.ones_like(src, dtype=vertices.dtype))
    deg = deg.clamp_min(1.0)[:, None]
    v = vertices.clone()
    for _ in range(int(iterations)):
        for w in (lamb, mu):
            mean = torch.zeros_like(v).index_add_(0, src, v[dst]) / deg
            v = v + w * (mean - v)
    return v
