"""Distant lighting as 9 spherical-harmonic coefficients (bands 0-2), Ramamoorthi & Hanrahan 2001.

Radiance ``L(w) = sum_i c_i Y_i(w)`` with the real SH basis, in the order
``(Y_00, Y_1-1, Y_10, Y_11, Y_2-2, Y_2-1, Y_20, Y_21, Y_22)`` for ``w = (x, y, z)``:

    Y_00 = 0.282095,  Y_1-1 = 0.488603 y,  Y_10 = 0.488603 z,  Y_11 = 0.488603 x,
    Y_2-2 = 1.092548 xy,  Y_2-1 = 1.092548 yz,  Y_20 = 0.315392 (3 z^2 - 1),
    Y_21 = 1.092548 xz,  Y_22 = 0.546274 (x^2 - y^2)

The clamped-cosine convolution is diagonal in this basis, so the irradiance is exact for
band-limited radiance:

    E(n) = sum_i A_l(i) c_i Y_i(n),   A_0 = pi,  A_1 = 2 pi / 3,  A_2 = pi / 4

Specular (an approximation): the split-sum of :mod:`.environment` with the radiance
prefiltered by the GGX lobe's zonal kernel. For ``n = v = r`` the prefilter kernel
``K(l) ~ D(h) (n.h) / (4 v.h) max(n.l, 0)`` is rotationally symmetric about ``r``, so it scales
band ``l`` by ``g_l(roughness) = integral K(l) P_l(r.l) dl / integral K(l) dl`` (computed here by
quadrature), and

    L_spec = (sum_i g_l(i)(roughness) c_i Y_i(r)) (F0 A + B),   r = 2 (n.v) n - v

with ``(A, B)`` from :func:`.brdf_lut.lookup_brdf_lut`. Nine coefficients cannot hold sharp
highlights: this light suits rough materials and smooth, low-frequency lighting.
"""

from __future__ import annotations

import functools
import math

import torch

from ...checks import float_tensor
from ...errors import InputError
from ..shading.bsdf import MIN_ROUGHNESS
from .base import Light, check_material, check_points_normals, material_colors, reflect
from .brdf_lut import lookup_brdf_lut

_C0, _C1, _C2, _C3, _C4 = 0.282094791773878, 0.488602511902920, 1.092548430592079, 0.315391565252520, 0.546274215296040
_BAND = (0, 1, 1, 1, 2, 2, 2, 2, 2)
_COSINE_LOBE = (math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0)


def sh9_basis(directions) -> torch.Tensor:
    """The 9 real SH basis functions (module docstring) at unit ``directions[...,3]`` -> ``[...,9]``.

    Example:
        >>> sh9_basis(torch.tensor([[0.0, 0.0, 1.0]]))[0, :3]
        tensor([0.2821, 0.0000, 0.4886])
    """
    d = float_tensor("directions", directions, "[...,3]", last_dim=3)
    x, y, z = d.unbind(-1)
    return torch.stack([torch.full_like(x, _C0), _C1 * y, _C1 * z, _C1 * x, _C2 * x * y, _C2 * y * z,
                        _C3 * (3.0 * z * z - 1.0), _C2 * x * z, _C4 * (x * x - y * y)], -1)


def sh9_irradiance(normals, coeffs) -> torch.Tensor:
    """Irradiance of SH9 radiance ``coeffs[...,9,C]`` at unit ``normals[...,3]``: ``E[...,C] = sum_i A_l(i) c_i
    Y_i(n)`` with the cosine-lobe factors ``A_0 = pi``, ``A_1 = 2 pi / 3``, ``A_2 = pi / 4`` (Ramamoorthi &
    Hanrahan; exact for band-limited radiance). ``coeffs`` broadcasts against ``normals``' leading dimensions.

    Example:
        >>> c = torch.zeros(9, 1); c[0, 0] = 1 / 0.282094791773878   # constant radiance 1
        >>> sh9_irradiance(torch.tensor([[0.0, 0.0, 1.0]]), c)       # E = pi L
        tensor([[3.1416]])
    """
    y = sh9_basis(normals)
    a = torch.tensor([_COSINE_LOBE[b] for b in _BAND], dtype=y.dtype, device=y.device)
    return ((y * a)[..., :, None] * coeffs.to(y.dtype)).sum(-2)


def project_sh9(directions, values, weights=None) -> torch.Tensor:
    """Fit SH9 coefficients ``[9,C]`` to radiance samples by quadrature.

    ``c_i = sum_k w_k values_k Y_i(d_k)``; ``w_k`` is the solid angle each sample stands for
    (default ``4 pi / N``, right for uniformly distributed directions; use texel solid angles
    for a cube map). Differentiable w.r.t. ``values`` and ``weights``.

    Args:
        directions: ``[N,3]`` unit directions.
        values: ``[N,C]`` radiance at those directions.
        weights: ``[N]`` solid angles, or None.
    Returns:
        ``[9,C]`` coefficients for :class:`SHIrradianceLight`.

    Example:
        >>> d = torch.nn.functional.normalize(torch.randn(20000, 3), dim=-1)
        >>> c = project_sh9(d, torch.ones(20000, 3))
        >>> bool(abs(c[0, 0] - 2 * math.sqrt(math.pi)) < 1e-3)   # constant 1: c_00 = sqrt(4 pi)
        True
    """
    directions = float_tensor("directions", directions, "[N,3]", last_dim=3, ndims=(2,))
    values = float_tensor("values", values, "[N,C]", ndims=(2,))
    if values.shape[0] != directions.shape[0]:
        raise InputError(f"values must have one row per direction ({directions.shape[0]}); got {tuple(values.shape)}.")
    n = directions.shape[0]
    if weights is None:
        weights = torch.full((n,), 4.0 * math.pi / max(n, 1), dtype=values.dtype, device=values.device)
    weights = float_tensor("weights", weights, "[N]", ndims=(1,), dtype=values.dtype)
    if weights.shape[0] != n:
        raise InputError(f"weights must have shape [N] = [{n}]; got {tuple(weights.shape)}.")
    y = sh9_basis(directions.to(values.dtype))
    return y.transpose(0, 1) @ (values * weights[:, None])


@functools.lru_cache(maxsize=4)
def _specular_band_table(num_roughness: int = 65, num_quad: int = 4096) -> torch.Tensor:
    """``g[num_roughness, 3]``: band scales (g_0 = 1, g_1, g_2) of the GGX prefilter kernel.

    Quadrature in the GGX half-vector quantile ``u``: ``cos^2(theta_h) = (1 - u) / (1 + (alpha^2 - 1) u)``
    draws ``h`` with pdf ``D(h)(n.h)``, and ``r.l = cos(2 theta_h)`` when ``n = v = r``.
    """
    r = torch.linspace(0.0, 1.0, num_roughness, dtype=torch.float64)[:, None]
    a2 = (r * r).clamp_min(1e-8) ** 2
    u = (torch.arange(num_quad, dtype=torch.float64) + 0.5) / num_quad
    cos2 = (1.0 - u) / (1.0 + (a2 - 1.0) * u)
    x = (2.0 * cos2 - 1.0)                      # cos of the angle between l and r
    w = x.clamp_min(0.0)                        # the n.l weight of the split-sum prefilter
    p1, p2 = x, 0.5 * (3.0 * x * x - 1.0)
    norm = w.sum(-1)
    return torch.stack([torch.ones_like(norm), (w * p1).sum(-1) / norm, (w * p2).sum(-1) / norm], -1)


def specular_band_scales(roughness: torch.Tensor) -> torch.Tensor:
    """Per-band scales ``[...,3] = (1, g_1, g_2)`` of the GGX prefilter at ``roughness[...,1]`` (linear interp.)."""
    table = _specular_band_table().to(device=roughness.device, dtype=roughness.dtype)
    n = table.shape[0]
    x = roughness.clamp(0.0, 1.0) * (n - 1)
    i0 = x.detach().floor().clamp(max=n - 2).long()
    f = x - i0.to(x.dtype)
    i0 = i0.squeeze(-1)
    return table[i0] * (1.0 - f) + table[i0 + 1] * f


class SHIrradianceLight(Light):
    """Distant light given by 9 SH coefficients per colour channel (learnable).

    Args:
        coeffs: ``[9,3]`` radiance coefficients (see the module docstring for order and formulas).

    Example:
        >>> c = torch.zeros(9, 3); c[0] = 2 * math.sqrt(math.pi)      # constant radiance 1
        >>> light = SHIrradianceLight(c)
        >>> light.irradiance(torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]]))   # E = pi
        tensor([[3.1416, 3.1416, 3.1416]], grad_fn=<SumBackward1>)
    """

    def __init__(self, coeffs):
        super().__init__()
        coeffs = float_tensor("coeffs", coeffs, "[9,3]", ndims=(2,))
        if coeffs.shape != (9, 3):
            raise InputError(f"coeffs must have shape [9,3]; got {tuple(coeffs.shape)}.")
        self.coeffs = torch.nn.Parameter(coeffs.clone())

    def _band_coeffs(self, scale: torch.Tensor) -> torch.Tensor:
        """``[...,9,3]`` coefficients with band ``l`` multiplied by ``scale[...,3][l]``."""
        idx = torch.tensor(_BAND, device=scale.device)
        return scale[..., idx, None] * self.coeffs.to(scale.dtype)

    def radiance(self, directions) -> torch.Tensor:
        """``L[...,3] = sum_i c_i Y_i(d)`` at unit ``directions[...,3]``."""
        y = sh9_basis(directions)
        return (y[..., :, None] * self.coeffs.to(y.dtype)).sum(-2)

    def irradiance(self, points, normals) -> torch.Tensor:
        """``E[...,3] = sum_i A_l(i) c_i Y_i(n)`` (exact for this band-limited radiance)."""
        points, normals = check_points_normals(points, normals)
        return sh9_irradiance(normals, self.coeffs)

    def shade(self, points, normals, view_dirs, base_color, roughness, metallic, occlusion=None) -> torch.Tensor:
        """``[...,3] = occlusion (kd / pi E(n) + L_spec)``, ``L_spec`` as in the module docstring.

        Roughness below ``MIN_ROUGHNESS`` (0.08) is clamped, as in the environment light.
        """
        points, normals = check_points_normals(points, normals)
        view_dirs, base_color, roughness, metallic, occlusion = check_material(
            normals, view_dirs, base_color, roughness, metallic, occlusion)
        kd, f0 = material_colors(base_color, metallic)
        rough = roughness.clamp(MIN_ROUGHNESS, 1.0)
        diffuse = kd / math.pi * self.irradiance(points, normals)
        refl = torch.nn.functional.normalize(reflect(view_dirs, normals), dim=-1, eps=1e-12)
        scale = specular_band_scales(rough)
        y = sh9_basis(refl)
        filtered = (y[..., :, None] * self._band_coeffs(scale)).sum(-2)
        n_dot_v = (normals * view_dirs).sum(-1, keepdim=True).clamp(1e-4, 1.0)
        ab = lookup_brdf_lut(n_dot_v, rough)
        spec = filtered * (f0 * ab[..., 0:1] + ab[..., 1:2])
        return (diffuse + spec) * occlusion
