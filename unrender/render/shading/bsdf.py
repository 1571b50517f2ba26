"""BRDFs: Lambert and the glTF metallic-roughness GGX microfacet model (Walter et al. 2007).

All directions are unit vectors ``[...,3]`` pointing *away* from the surface (``view_dir``
towards the eye, ``light_dir`` towards the light); scalar material parameters are ``[...,1]``
(or anything broadcasting against ``[...,3]``). Everything is plain autograd.

The specular model, with ``h = normalize(v + l)`` and ``alpha = roughness^2``:

    D(h)    = alpha^2 / (pi ((n.h)^2 (alpha^2 - 1) + 1)^2)                        (GGX / Trowbridge-Reitz)
    Lambda(x) = (sqrt(1 + alpha^2 (1 - (n.x)^2) / (n.x)^2) - 1) / 2
    G(v, l) = 1 / (1 + Lambda(v) + Lambda(l))                                      (height-correlated Smith)
    F(v.h)  = F0 + (1 - F0) (1 - v.h)^5                                            (Schlick)
    f_spec  = D G F / (4 (n.v) (n.l))
"""

from __future__ import annotations

import math

import torch

from ...checks import float_tensor
from ...errors import InputError

MIN_ROUGHNESS = 0.08
"""Default lower clamp of the perceptual roughness in :func:`pbr_brdf` (as nvdiffrec): below it
the GGX lobe becomes a spike that point lights sample badly and gradients explode."""

_EPS = 1e-7


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1, keepdim=True)


def lambert(albedo, normal, light_dir) -> torch.Tensor:
    """Lambertian BRDF times the cosine: ``albedo / pi * max(n.l, 0)``.

    Args:
        albedo: diffuse reflectance ``[...,3]`` (or ``[...,1]``).
        normal: unit normals ``[...,3]``.
        light_dir: unit directions towards the light ``[...,3]``.
    Returns:
        ``[...,C]`` (broadcast shape): outgoing radiance per unit irradiance at normal incidence.

    Example:
        >>> n = torch.tensor([[0., 0., 1.]])
        >>> lambert(torch.ones(1, 3), n, n) * torch.pi
        tensor([[1., 1., 1.]])
    """
    albedo = float_tensor("albedo", albedo, "[...,3]")
    normal = float_tensor("normal", normal, "[...,3]", last_dim=3)
    light_dir = float_tensor("light_dir", light_dir, "[...,3]", last_dim=3)
    return albedo * (_dot(normal, light_dir).clamp_min(0.0) / math.pi)


def ggx_ndf(n_dot_h, alpha) -> torch.Tensor:
    """GGX (Trowbridge-Reitz) normal distribution ``D = alpha^2 / (pi ((n.h)^2 (alpha^2 - 1) + 1)^2)``.

    Normalised so that ``integral over the hemisphere of D(h) (n.h) dh = 1``.

    Args:
        n_dot_h: cosine between normal and half vector, any shape ``[...]``.
        alpha: GGX width (``roughness^2``), broadcasting against ``n_dot_h``.
    Returns:
        ``D`` of the broadcast shape.

    Example:
        >>> ggx_ndf(torch.tensor([1.0]), torch.tensor([1.0])) * torch.pi   # alpha = 1 is uniform: D = 1/pi
        tensor([1.])
    """
    n_dot_h = float_tensor("n_dot_h", n_dot_h, "[...]")
    alpha = float_tensor("alpha", alpha, "[...]")
    a2 = alpha * alpha
    c = n_dot_h.clamp(0.0, 1.0)
    denom = (c * c * (a2 - 1.0) + 1.0).clamp_min(_EPS)
    return a2 / (math.pi * denom * denom)


def _smith_lambda(n_dot_x: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    c2 = (n_dot_x * n_dot_x).clamp_min(_EPS)
    return 0.5 * (torch.sqrt(1.0 + a2 * (1.0 - c2) / c2) - 1.0)


def smith_g1(n_dot_x, alpha) -> torch.Tensor:
    """Smith masking for GGX: ``G1 = 2 (n.x) / ((n.x) + sqrt(alpha^2 + (1 - alpha^2) (n.x)^2))``.

    Equal to ``1 / (1 + Lambda(x))`` with ``Lambda`` from the module docstring; 0 for ``n.x <= 0``.

    Args:
        n_dot_x: cosine of the view or light direction with the normal, any shape ``[...]``.
        alpha: GGX width (``roughness^2``), broadcasting.
    Returns:
        ``G1`` of the broadcast shape, in [0, 1].

    Example:
        >>> smith_g1(torch.tensor([1.0, 0.0]), torch.tensor(0.5))
        tensor([1., 0.])
    """
    n_dot_x = float_tensor("n_dot_x", n_dot_x, "[...]")
    alpha = float_tensor("alpha", alpha, "[...]")
    a2 = alpha * alpha
    c = n_dot_x.clamp_min(0.0)
    return 2.0 * c / (c + torch.sqrt(a2 + (1.0 - a2) * c * c)).clamp_min(_EPS)


def smith_g_correlated(n_dot_v, n_dot_l, alpha) -> torch.Tensor:
    """Height-correlated Smith shadowing-masking for GGX: ``G = 1 / (1 + Lambda(v) + Lambda(l))``.

    ``Lambda(x) = (sqrt(1 + alpha^2 (1 - (n.x)^2) / (n.x)^2) - 1) / 2`` (Heitz 2014); 0 where
    either cosine is <= 0.

    Args:
        n_dot_v, n_dot_l: cosines, any broadcasting shapes ``[...]``.
        alpha: GGX width (``roughness^2``), broadcasting.
    Returns:
        ``G`` of the broadcast shape, in [0, 1].

    Example:
        >>> smith_g_correlated(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.3))
        tensor(1.)
    """
    n_dot_v = float_tensor("n_dot_v", n_dot_v, "[...]")
    n_dot_l = float_tensor("n_dot_l", n_dot_l, "[...]")
    alpha = float_tensor("alpha", alpha, "[...]")
    a2 = alpha * alpha
    g = 1.0 / (1.0 + _smith_lambda(n_dot_v, a2) + _smith_lambda(n_dot_l, a2))
    return torch.where((n_dot_v > 0) & (n_dot_l > 0), g, torch.zeros_like(g))


def fresnel_schlick(f0, cos_theta, f90=1.0) -> torch.Tensor:
    """Schlick's Fresnel approximation ``F = F0 + (F90 - F0) (1 - cos)^5``.

    Args:
        f0: reflectance at normal incidence ``[...,3]`` (or ``[...,1]``).
        cos_theta: cosine between view and half vector (``v.h``), ``[...,1]`` or ``[...]`` broadcasting.
        f90: reflectance at grazing incidence (1 for physical materials).
    Returns:
        ``F`` of the broadcast shape.

    Example:
        >>> fresnel_schlick(torch.tensor([0.04]), torch.tensor([1.0, 0.0]))
        tensor([0.0400, 1.0000])
    """
    f0 = float_tensor("f0", f0, "[...,3]")
    cos_theta = float_tensor("cos_theta", cos_theta, "[...]")
    w = (1.0 - cos_theta.clamp(0.0, 1.0)) ** 5
    return f0 + (f90 - f0) * w


def pbr_brdf(base_color, roughness, metallic, normal, view_dir, light_dir,
             min_roughness: float = MIN_ROUGHNESS) -> torch.Tensor:
    """glTF metallic-roughness BRDF times the cosine, ``(kd / pi + D G F / (4 (n.v)(n.l))) (n.l)``.

    ``kd = base_color (1 - metallic)``, ``F0 = 0.04 (1 - metallic) + base_color metallic``,
    ``alpha = max(roughness, min_roughness)^2``; ``D``, ``G`` (height-correlated Smith) and ``F``
    (Schlick at ``v.h``) as in the module docstring. Zero where ``n.l <= 0``; the specular
    term is also zero where ``n.v <= 0``.

    Args:
        base_color: ``[...,3]`` linear base colour.
        roughness: ``[...,1]`` perceptual roughness in [0, 1].
        metallic: ``[...,1]`` metalness in [0, 1].
        normal: unit shading normals ``[...,3]``.
        view_dir: unit directions from the surface to the eye ``[...,3]``.
        light_dir: unit directions from the surface to the light ``[...,3]``.
        min_roughness: lower clamp of ``roughness``.
    Returns:
        ``[...,3]``: outgoing radiance per unit irradiance arriving perpendicular to ``light_dir``.

    Example:
        >>> n = torch.tensor([[0., 0., 1.]])
        >>> pbr_brdf(torch.ones(1, 3), torch.ones(1, 1), torch.zeros(1, 1), n, n, n).shape
        torch.Size([1, 3])
    """
    base_color = float_tensor("base_color", base_color, "[...,3]")
    roughness = float_tensor("roughness", roughness, "[...,1]")
    metallic = float_tensor("metallic", metallic, "[...,1]")
    normal = float_tensor("normal", normal, "[...,3]", last_dim=3)
    view_dir = float_tensor("view_dir", view_dir, "[...,3]", last_dim=3)
    light_dir = float_tensor("light_dir", light_dir, "[...,3]", last_dim=3)
    if not 0.0 <= min_roughness <= 1.0:
        raise InputError(f"min_roughness must lie in [0, 1]; got {min_roughness!r}.")
    kd = base_color * (1.0 - metallic)
    f0 = 0.04 * (1.0 - metallic) + base_color * metallic
    alpha = roughness.clamp(min_roughness, 1.0) ** 2
    alpha = alpha.clamp_min(1e-4)  # keeps D finite when min_roughness = 0
    h = torch.nn.functional.normalize(view_dir + light_dir, dim=-1, eps=_EPS)
    nl = _dot(normal, light_dir)
    nv = _dot(normal, view_dir)
    d = ggx_ndf(_dot(normal, h), alpha)
    g = smith_g_correlated(nv, nl, alpha)
    f = fresnel_schlick(f0, _dot(view_dir, h))
    nl_pos = nl.clamp_min(0.0)
    spec = d * g * f / (4.0 * nv.clamp_min(_EPS))  # the 1/(n.l) cancels against the cosine
    spec = torch.where(nv > 0, spec, torch.zeros_like(spec))
    return kd * (nl_pos / math.pi) + spec * (nl > 0).to(spec.dtype)


def unpack_orm(ks, convention: str = "gltf"):
    """Split a packed ``ks[...,3]`` texture into ``(occlusion, roughness, metallic)``, each ``[...,1]``.

    The channels are R = occlusion, G = roughness, B = metallic (glTF's ORM packing, which
    nvdiffrec's ``ks`` also uses). ``occlusion`` is returned as a visibility factor
    (1 = unoccluded) that the lights multiply with:

    * ``convention="gltf"``: ``occlusion = R`` (glTF stores visibility).
    * ``convention="nvdiffrec"``: ``occlusion = 1 - R`` (nvdiffrec modulates by ``1 - ks.r``,
      and its ks textures usually hold 0 there).

    Args:
        ks: ``[...,3]`` (extra channels beyond 3 are ignored).
        convention: ``"gltf"`` or ``"nvdiffrec"``.
    Returns:
        ``(occlusion[...,1], roughness[...,1], metallic[...,1])``.

    Example:
        >>> occ, rough, metal = unpack_orm(torch.tensor([[1.0, 0.5, 0.0]]))
        >>> rough
        tensor([[0.5000]])
    """
    ks = float_tensor("ks", ks, "[...,3]")
    if ks.dim() == 0 or ks.shape[-1] < 3:
        raise InputError(f"ks must have shape [...,3] (occlusion, roughness, metallic); got {tuple(ks.shape)}.")
    if convention not in ("gltf", "nvdiffrec"):
        raise InputError(f"convention must be 'gltf' or 'nvdiffrec'; got {convention!r}.")
    occ = ks[..., 0:1]
    if convention == "nvdiffrec":
        occ = 1.0 - occ
    return occ, ks[..., 1:2], ks[..., 2:3]
