"""Distant lighting as a sum of spherical Gaussians (SGs), with analytic diffuse and specular shading.

A lobe is ``G(w; mu, lambda, a) = a exp(lambda (mu.w - 1))`` (axis ``mu``, sharpness ``lambda``,
RGB amplitude ``a``); the radiance is ``L(w) = sum_k G_k(w)``. Closed forms used (Wang et al. 2009):

    integral G dw = 2 pi a / lambda (1 - exp(-2 lambda))
    integral G_1 G_2 dw = 2 pi a_1 a_2 exp(d - lambda_1 - lambda_2) (1 - exp(-2 d)) / d,
                          d = |lambda_1 mu_1 + lambda_2 mu_2|

**Diffuse.** ``E(n) = integral G(w) max(n.w, 0) dw`` has no elementary closed form. Writing
``w`` by its angle ``theta`` from ``mu`` and azimuth ``phi``, the azimuthal integral of the clamped
cosine is closed-form: with ``c = mu.n``, ``s = sqrt(1 - c^2)``, ``P = c t``, ``Q = s sqrt(1 - t^2)``,
``t = cos(theta)``,

    K(t) = integral_0^{2 pi} max(P + Q cos(phi), 0) dphi
         = 2 pi P  if P >= Q;   0  if P <= -Q;   2 (P phi0 + Q sin(phi0)), phi0 = acos(-P / Q)  otherwise

and the remaining 1-D integral is importance-sampled with the lobe's own distribution
(``t_j = 1 + log(1 - v_j (1 - e^{-2 lambda})) / lambda`` at ``M`` midpoints ``v_j = (j + 1/2) / M``):

    E(n) = a (1 - e^{-2 lambda}) / lambda * mean_j K(t_j)

which is accurate to about 0.5% of the peak for every sharpness with ``M = 16`` (fitted
closed forms such as Hill's break down for broad lobes, ``lambda < 2``).

**Specular** (Wang et al. 2009). The GGX distribution is approximated by an SG around the
normal, ``D(h) ~ 1 / (pi alpha^2) exp(2 / alpha^2 (n.h - 1))``, warped into an SG ``D_w`` of
incident directions around the mirror direction ``r = 2 (n.v) n - v`` with sharpness
``lambda_w = 2 / (alpha^2 4 (n.v))``; the cosine is the SG ``C(l) = 1.17 exp(2.133 (n.l - 1))``
(the product of two SGs is an SG), and the rest of the BRDF is evaluated at ``l = r``
(where ``h = n``):

    L_spec = sum_k (integral G_k D_w C dl) F(n.v) G_smith(n.v, n.r) / (4 (n.v) (n.r))

This is within about 30% of the exact GGX integral (exact for the diffuse part up to the
quadrature): good enough to fit lighting, not a reference renderer.

All parameters are ``nn.Parameter`` s: the lobes can be fitted to images.
"""

from __future__ import annotations

import math

import torch

from ...checks import float_tensor
from ...errors import InputError
from ..shading.bsdf import MIN_ROUGHNESS, fresnel_schlick, smith_g_correlated
from .base import Light, check_material, check_points_normals, material_colors, reflect

_MIN_SHARPNESS = 1e-4
_COS_SHARPNESS, _COS_AMPLITUDE = 2.133, 1.17  # max(cos, 0) as an SG (Wang et al. 2009)


def sg_integral(sharpness, amplitude) -> torch.Tensor:
    """``integral over the sphere of a exp(lambda (mu.w - 1)) dw = 2 pi a (1 - exp(-2 lambda)) / lambda``.

    Args:
        sharpness: ``[...]`` positive ``lambda``.
        amplitude: ``[...,C]`` ``a``.
    Returns:
        ``[...,C]``.

    Example:
        >>> sg_integral(torch.tensor([1e-3]), torch.tensor([[1.0]]))   # nearly constant: ~4 pi
        tensor([[12.5538]])
    """
    lam = float_tensor("sharpness", sharpness, "[...]").clamp_min(_MIN_SHARPNESS)
    amplitude = float_tensor("amplitude", amplitude, "[...,C]")
    return amplitude * (2.0 * math.pi * -torch.expm1(-2.0 * lam) / lam)[..., None]


def _azimuthal_clamped_cosine(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``integral_0^{2 pi} max(p + q cos(phi), 0) dphi`` for ``q >= 0`` (module docstring), NaN-free gradients."""
    ratio = (-p / q.clamp_min(1e-12)).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
    phi0 = torch.acos(ratio)
    part = 2.0 * (p * phi0 + q * torch.sin(phi0))
    return torch.where(p >= q, 2.0 * math.pi * p, torch.where(p <= -q, torch.zeros_like(p), part))


def sg_irradiance(cos_theta, sharpness, amplitude, num_nodes: int = 16) -> torch.Tensor:
    """Irradiance of SG lobes on a surface, ``E = integral a exp(lambda (mu.w - 1)) max(n.w, 0) dw``.

    Evaluated as in the module docstring (closed-form azimuthal integral, ``num_nodes``-point
    importance-sampled quadrature in the polar angle), differentiable w.r.t. all inputs.

    Args:
        cos_theta: ``[...,K]`` cosines ``mu_k.n`` between lobe axes and the normal.
        sharpness: ``[K]`` lobe sharpness.
        amplitude: ``[K,C]`` lobe amplitudes.
        num_nodes: quadrature nodes ``M``.
    Returns:
        ``[...,C]``, summed over the lobes.

    Example:
        >>> e = sg_irradiance(torch.tensor([[1.0]]), torch.tensor([1e-4]), torch.tensor([[1.0]]))
        >>> bool(abs(e - math.pi) < 1e-3)   # a constant radiance of 1 gives E = pi
        True
    """
    cos_theta = float_tensor("cos_theta", cos_theta, "[...,K]")
    lam = float_tensor("sharpness", sharpness, "[K]", ndims=(1,), dtype=cos_theta.dtype).clamp_min(_MIN_SHARPNESS)
    amplitude = float_tensor("amplitude", amplitude, "[K,C]", ndims=(2,), dtype=cos_theta.dtype)
    v = (torch.arange(num_nodes, dtype=cos_theta.dtype, device=cos_theta.device) + 0.5) / num_nodes
    mass = -torch.expm1(-2.0 * lam)                                              # [K]
    t = (1.0 + torch.log1p(-v * mass[:, None]) / lam[:, None]).clamp(-1.0, 1.0)  # [K,M]
    st = torch.sqrt((1.0 - t * t).clamp_min(1e-12))
    c = cos_theta.clamp(-1.0, 1.0)[..., None]                                    # [...,K,1]
    s = torch.sqrt((1.0 - c * c).clamp_min(1e-12))
    k = _azimuthal_clamped_cosine(c * t, s * st).mean(-1)                        # [...,K]
    return k @ (amplitude * (mass / lam)[:, None])


def _sg_inner(lam1, mu1, lam2, mu2) -> torch.Tensor:
    """``integral exp(lam1 (mu1.w - 1)) exp(lam2 (mu2.w - 1)) dw`` (unit amplitudes), broadcasting."""
    cos = (mu1 * mu2).sum(-1)
    d2 = (lam1 * lam1 + lam2 * lam2 + 2.0 * lam1 * lam2 * cos).clamp_min(0.0)
    d = torch.sqrt(d2.clamp_min(1e-20))
    # d - lam1 - lam2 without cancellation when both sharpnesses are large
    expo = 2.0 * lam1 * lam2 * (cos - 1.0) / (d + lam1 + lam2)
    return 2.0 * math.pi * torch.exp(expo) * -torch.expm1(-2.0 * d) / d


class SphericalGaussianLight(Light):
    """Distant light made of ``K`` spherical Gaussian lobes (module docstring), all learnable.

    Args:
        axis: ``[K,3]`` lobe directions (normalised on use).
        sharpness: ``[K]`` lobe sharpness ``lambda`` (> 0; clamped to 1e-4 on use).
        amplitude: ``[K,3]`` RGB peak radiance ``a``.

    Example:
        >>> light = SphericalGaussianLight([[0.0, 0.0, 1.0]], [10.0], [[1.0, 1.0, 1.0]])
        >>> e = light.irradiance(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]))
        >>> round(e[0, 0].item(), 2)   # ~ 2 pi / lambda (1 - 1 / lambda) for a sharp lobe along the normal
        0.57
    """

    def __init__(self, axis, sharpness, amplitude):
        super().__init__()
        axis = float_tensor("axis", axis, "[K,3]", last_dim=3, ndims=(2,))
        k = axis.shape[0]
        sharpness = float_tensor("sharpness", sharpness, "[K]", ndims=(1,))
        amplitude = float_tensor("amplitude", amplitude, "[K,3]", ndims=(2,))
        if sharpness.shape != (k,) or amplitude.shape != (k, 3):
            raise InputError(f"axis [K,3], sharpness [K] and amplitude [K,3] must share K = {k}; got "
                             f"{tuple(sharpness.shape)} and {tuple(amplitude.shape)}.")
        if k == 0 or not bool((axis.norm(dim=-1) > 0).all()):
            raise InputError("axis must hold at least one lobe and no zero-length direction.")
        self.axis = torch.nn.Parameter(axis.clone())
        self.sharpness = torch.nn.Parameter(sharpness.clone())
        self.amplitude = torch.nn.Parameter(amplitude.clone())
        self.num_nodes = 16  # quadrature nodes of the irradiance (module docstring)

    @classmethod
    def uniform(cls, num_lobes: int = 24, sharpness: float = 10.0, amplitude: float = 0.5):
        """``num_lobes`` lobes with axes on a Fibonacci sphere, equal sharpness and grey amplitude.

        A convenient starting point for fitting lighting to images.

        Example:
            >>> SphericalGaussianLight.uniform(12).axis.shape
            torch.Size([12, 3])
        """
        if isinstance(num_lobes, bool) or int(num_lobes) != num_lobes or num_lobes < 1:
            raise InputError(f"num_lobes must be a positive integer; got {num_lobes!r}.")
        k = int(num_lobes)
        i = torch.arange(k, dtype=torch.float64) + 0.5
        z = 1.0 - 2.0 * i / k
        phi = i * math.pi * (3.0 - math.sqrt(5.0))
        rho = torch.sqrt(1.0 - z * z)
        axis = torch.stack([rho * torch.cos(phi), rho * torch.sin(phi), z], -1).float()
        return cls(axis, torch.full((k,), float(sharpness)), torch.full((k, 3), float(amplitude)))

    def _lobes(self, dtype):
        mu = torch.nn.functional.normalize(self.axis, dim=-1).to(dtype)
        return mu, self.sharpness.clamp_min(_MIN_SHARPNESS).to(dtype), self.amplitude.to(dtype)

    def radiance(self, directions) -> torch.Tensor:
        """``L[...,3] = sum_k a_k exp(lambda_k (mu_k.d - 1))`` at unit ``directions[...,3]``."""
        d = float_tensor("directions", directions, "[...,3]", last_dim=3)
        mu, lam, amp = self._lobes(d.dtype)
        w = torch.exp(lam * ((d @ mu.transpose(0, 1)) - 1.0))      # [...,K]
        return w @ amp

    def irradiance(self, points, normals) -> torch.Tensor:
        """``E[...,3] = sum_k E_k(n)`` by :func:`sg_irradiance` (module docstring)."""
        points, normals = check_points_normals(points, normals)
        mu, lam, amp = self._lobes(normals.dtype)
        return sg_irradiance(normals @ mu.transpose(0, 1), lam, amp, self.num_nodes)

    def shade(self, points, normals, view_dirs, base_color, roughness, metallic, occlusion=None) -> torch.Tensor:
        """``[...,3] = occlusion (kd / pi E(n) + L_spec)`` with the SG specular of the module docstring.

        Roughness below ``MIN_ROUGHNESS`` (0.08) is clamped.
        """
        points, normals = check_points_normals(points, normals)
        view_dirs, base_color, roughness, metallic, occlusion = check_material(
            normals, view_dirs, base_color, roughness, metallic, occlusion)
        kd, f0 = material_colors(base_color, metallic)
        diffuse = kd / math.pi * self.irradiance(points, normals)

        mu, lam, amp = self._lobes(normals.dtype)
        alpha2 = roughness.clamp(MIN_ROUGHNESS, 1.0) ** 4
        n_dot_v = (normals * view_dirs).sum(-1, keepdim=True)
        nv = n_dot_v.clamp_min(1e-4)
        refl = torch.nn.functional.normalize(reflect(view_dirs, normals), dim=-1, eps=1e-12)
        lam_w = 2.0 / alpha2 / (4.0 * nv)                            # [...,1] warped NDF lobe
        # D_w(l) C(l) as one SG: axis m / |m|, sharpness |m|, m = lam_w r + lam_c n
        m = lam_w * refl + _COS_SHARPNESS * normals
        lam_p = m.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        log_amp = (lam_p - lam_w - _COS_SHARPNESS)                    # <= 0
        amp_p = torch.exp(log_amp) * _COS_AMPLITUDE / (math.pi * alpha2)
        inner = _sg_inner(lam_p, (m / lam_p)[..., None, :], lam, mu)  # [...,K]
        lobe = (inner @ amp) * amp_p                                  # [...,3]
        n_dot_r = (normals * refl).sum(-1, keepdim=True).clamp_min(1e-4)
        alpha = alpha2.sqrt()
        brdf_rest = fresnel_schlick(f0, nv) * smith_g_correlated(nv, n_dot_r, alpha) / (4.0 * nv * n_dot_r)
        spec = torch.where(n_dot_v > 0, lobe * brdf_rest, torch.zeros_like(lobe))
        return (diffuse + spec) * occlusion
