"""Punctual lights: a directional light (the sun) and a point light (inverse-square falloff).

Both light a point from a single direction ``l`` with irradiance ``E_perp`` on a surface
facing the light, so

    irradiance(x, n) = E_perp max(n.l, 0)
    shade(...)       = pbr_brdf(base_color, roughness, metallic, n, v, l) E_perp

``occlusion`` is accepted but ignored: glTF defines ambient occlusion for indirect light only.
Positions, directions and intensities are ``nn.Parameter`` s, so they can be optimised.
"""

from __future__ import annotations

import torch

from ...checks import float_tensor
from ...errors import InputError
from ..shading.bsdf import pbr_brdf
from .base import Light, check_material, check_points_normals


def _rgb(name: str, x) -> torch.Tensor:
    x = float_tensor(name, x, "[3] (RGB) or a scalar")
    if x.dim() == 0 or x.numel() == 1:
        x = x.reshape(1).expand(3).clone()
    if x.shape != (3,):
        raise InputError(f"{name} must be an RGB triple [3] or a scalar; got shape {tuple(x.shape)}.")
    return x


class _PunctualLight(Light):
    """Lights arriving from one direction per point; subclasses give ``_incident(points) -> (l, E_perp)``."""

    def _incident(self, points):
        raise NotImplementedError

    def irradiance(self, points, normals) -> torch.Tensor:
        """``E[...,3] = E_perp max(n.l, 0)`` for ``points[...,3]``, ``normals[...,3]``."""
        points, normals = check_points_normals(points, normals)
        l, e = self._incident(points)
        return e * (normals * l).sum(-1, keepdim=True).clamp_min(0.0)

    def shade(self, points, normals, view_dirs, base_color, roughness, metallic, occlusion=None) -> torch.Tensor:
        """``[...,3] = pbr_brdf(base_color, roughness, metallic, n, v, l) E_perp`` (occlusion is ignored:
        glTF applies it to indirect light only)."""
        points, normals = check_points_normals(points, normals)
        view_dirs, base_color, roughness, metallic, _ = check_material(
            normals, view_dirs, base_color, roughness, metallic, occlusion)
        l, e = self._incident(points)
        return pbr_brdf(base_color, roughness, metallic, normals, view_dirs, l) * e


class DirectionalLight(_PunctualLight):
    """Light arriving from one direction at infinity.

    ``E_perp = radiance`` everywhere; ``l = normalize(direction)``.

    Args:
        direction: ``[3]`` direction from the scene *towards* the light (need not be unit length).
        radiance: ``[3]`` (or scalar) irradiance on a surface facing the light.

    Example:
        >>> sun = DirectionalLight([0.0, 0.0, 1.0], 2.0)
        >>> sun.irradiance(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]))
        tensor([[2., 2., 2.]], grad_fn=<MulBackward0>)
    """

    def __init__(self, direction, radiance=1.0):
        super().__init__()
        direction = float_tensor("direction", direction, "[3]")
        if direction.shape != (3,) or not bool(direction.norm() > 0):
            raise InputError(f"direction must be a non-zero vector [3]; got {direction.tolist()}.")
        self.direction = torch.nn.Parameter(direction.clone())
        self.radiance = torch.nn.Parameter(_rgb("radiance", radiance).clone())

    def _incident(self, points):
        l = torch.nn.functional.normalize(self.direction, dim=0).to(points.dtype)
        return l.expand_as(points), self.radiance.to(points.dtype)


class PointLight(_PunctualLight):
    """An isotropic point light with inverse-square falloff.

    ``E_perp = intensity / |p - x|^2``, ``l = (p - x) / |p - x|`` for the light at ``p``.

    Args:
        position: ``[3]`` world position of the light.
        intensity: ``[3]`` (or scalar) radiant intensity (irradiance at unit distance).

    Example:
        >>> lamp = PointLight([0.0, 0.0, 2.0], 4.0)
        >>> lamp.irradiance(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]))
        tensor([[1., 1., 1.]], grad_fn=<MulBackward0>)
    """

    def __init__(self, position, intensity=1.0):
        super().__init__()
        position = float_tensor("position", position, "[3]")
        if position.shape != (3,):
            raise InputError(f"position must be a point [3]; got shape {tuple(position.shape)}.")
        self.position = torch.nn.Parameter(position.clone())
        self.intensity = torch.nn.Parameter(_rgb("intensity", intensity).clone())

    def _incident(self, points):
        d = self.position.to(points.dtype) - points
        dist2 = (d * d).sum(-1, keepdim=True).clamp_min(1e-12)
        return d * torch.rsqrt(dist2), self.intensity.to(points.dtype) / dist2
