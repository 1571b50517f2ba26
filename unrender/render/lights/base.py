"""The interface every light implements, and the argument checks they share.

A light answers two questions about surface points:

* ``irradiance(points, normals)``: ``E(x, n) = integral of L_in(x, w) max(n.w, 0) dw`` ``[...,3]``,
  so a Lambertian surface of albedo ``a`` sends out ``a / pi * E``.
* ``shade(points, normals, view_dirs, base_color, roughness, metallic, occlusion)``: the
  outgoing radiance ``[...,3]`` towards ``view_dirs`` of the glTF metallic-roughness material
  (:func:`unrender.render.shading.bsdf.pbr_brdf`) lit by this light.

Shapes broadcast: ``points``, ``normals``, ``view_dirs``, ``base_color`` are ``[...,3]``;
``roughness``, ``metallic``, ``occlusion`` are ``[...,1]``. ``normals`` and ``view_dirs`` are
expected to be unit length (``view_dirs`` point from the surface towards the eye).
"""

from __future__ import annotations

import torch

from ...checks import float_tensor
from ...errors import InputError


class Light(torch.nn.Module):
    """Base class of all lights; subclasses implement :meth:`irradiance` and :meth:`shade`.

    Calling the module (``light(points, normals, view_dirs, ...)``) is :meth:`shade`.

    Example:
        >>> from unrender.render.lights.punctual import DirectionalLight
        >>> light = DirectionalLight([0.0, 0.0, 1.0], [1.0, 1.0, 1.0])
        >>> isinstance(light, Light)
        True
    """

    def irradiance(self, points, normals) -> torch.Tensor:
        """Cosine-weighted incident radiance ``E[...,3]`` at ``points[...,3]`` with ``normals[...,3]``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement irradiance().")

    def shade(self, points, normals, view_dirs, base_color, roughness, metallic, occlusion=None) -> torch.Tensor:
        """Outgoing radiance ``[...,3]`` of the glTF PBR material towards ``view_dirs``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement shade().")

    def forward(self, points, normals, view_dirs, base_color, roughness, metallic, occlusion=None) -> torch.Tensor:
        return self.shade(points, normals, view_dirs, base_color, roughness, metallic, occlusion)


def check_points_normals(points, normals, dtype=None):
    """Validate ``points[...,3]`` and ``normals[...,3]`` (converted to ``dtype`` if given)."""
    points = float_tensor("points", points, "[...,3]", last_dim=3, dtype=dtype)
    normals = float_tensor("normals", normals, "[...,3]", last_dim=3, dtype=dtype)
    return points, normals


def check_material(normals, view_dirs, base_color, roughness, metallic, occlusion, dtype=None):
    """Validate the shading arguments of :meth:`Light.shade`; returns them as tensors.

    ``occlusion=None`` becomes a scalar 1. Raises :class:`InputError` naming the argument at fault.
    """
    view_dirs = float_tensor("view_dirs", view_dirs, "[...,3]", last_dim=3, dtype=dtype)
    base_color = float_tensor("base_color", base_color, "[...,3]", last_dim=3, dtype=dtype)
    out = []
    for name, val in (("roughness", roughness), ("metallic", metallic), ("occlusion", occlusion)):
        if val is None:
            val = torch.ones((1,), dtype=base_color.dtype, device=base_color.device)
        val = float_tensor(name, val, "[...,1]", dtype=dtype)
        if val.dim() > 0 and val.shape[-1] != 1:
            raise InputError(f"{name} must have shape [...,1] (one value per point); got {tuple(val.shape)}.")
        out.append(val)
    try:
        torch.broadcast_shapes(normals.shape, view_dirs.shape, base_color.shape, *(t.shape for t in out))
    except RuntimeError as exc:
        raise InputError(f"normals {tuple(normals.shape)}, view_dirs {tuple(view_dirs.shape)}, base_color "
                         f"{tuple(base_color.shape)}, roughness/metallic/occlusion {[tuple(t.shape) for t in out]} "
                         f"do not broadcast; give every per-point argument the same leading shape.") from exc
    return (view_dirs, base_color, *out)


def material_colors(base_color: torch.Tensor, metallic: torch.Tensor):
    """glTF metallic-roughness: ``kd = base_color (1 - metallic)``, ``F0 = 0.04 (1 - metallic) + base_color metallic``."""
    return base_color * (1.0 - metallic), 0.04 * (1.0 - metallic) + base_color * metallic


def reflect(view_dirs: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Mirror direction ``r = 2 (n.v) n - v`` ``[...,3]`` of ``view_dirs`` about ``normals``."""
    return 2.0 * (normals * view_dirs).sum(-1, keepdim=True) * normals - view_dirs
