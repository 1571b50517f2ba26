"""Tangent-space normal mapping."""

from __future__ import annotations

import torch

from ...checks import float_tensor

_EPS = 1e-12


def tangent_frame(normal, tangent) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The orthonormal frame ``(t, b, n)`` of tangent-space normal mapping, each ``[...,3]``.

    ``n = normalize(normal)``, ``t = normalize(tangent - (tangent.n) n)`` (Gram-Schmidt), ``b = n x t``.

    Example:
        >>> t, b, n = tangent_frame(torch.tensor([[0., 0., 2.]]), torch.tensor([[1., 0., 1.]]))
        >>> b
        tensor([[0., 1., 0.]])
    """
    normal = float_tensor("normal", normal, "[...,3]", last_dim=3)
    tangent = float_tensor("tangent", tangent, "[...,3]", last_dim=3)
    n = torch.nn.functional.normalize(normal, dim=-1, eps=_EPS)
    t = tangent - (tangent * n).sum(-1, keepdim=True) * n
    t = torch.nn.functional.normalize(t, dim=-1, eps=_EPS)
    return t, torch.linalg.cross(n, t, dim=-1), n


def perturb_normal(normal_map, normal, tangent) -> torch.Tensor:
    """Turn tangent-space normals into world-space shading normals.

    With ``n = normalize(normal)``, the tangent made orthogonal to it (Gram-Schmidt)
    ``t = normalize(tangent - (tangent.n) n)`` and the bitangent ``b = n x t``:

        n' = normalize(m_x t + m_y b + m_z n),   m = normal_map

    so ``m = (0, 0, 1)`` returns the geometric normal. ``normal_map`` is the decoded map in
    [-1, 1] (a PNG's ``2 * rgb - 1``); it need not be unit length. Differentiable w.r.t.
    all three inputs.

    Args:
        normal_map: tangent-space normals ``[...,3]`` in [-1, 1].
        normal: geometric (interpolated) normals ``[...,3]``.
        tangent: tangents ``[...,3]`` (the direction of increasing texture u).
    Returns:
        unit shading normals ``[...,3]`` (broadcast shape).

    Example:
        >>> n, t = torch.tensor([[0., 0., 1.]]), torch.tensor([[1., 0., 0.]])
        >>> perturb_normal(torch.tensor([[0., 1., 1.]]), n, t)   # tilts towards the bitangent +y
        tensor([[0.0000, 0.7071, 0.7071]])
    """
    normal_map = float_tensor("normal_map", normal_map, "[...,3]", last_dim=3)
    t, b, n = tangent_frame(normal, tangent)
    out = normal_map[..., 0:1] * t + normal_map[..., 1:2] * b + normal_map[..., 2:3] * n
    return torch.nn.functional.normalize(out, dim=-1, eps=_EPS)
