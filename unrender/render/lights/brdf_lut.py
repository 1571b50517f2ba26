"""The split-sum BRDF table (Karis 2013): GGX directional albedo split into ``F0`` scale and bias.

For the specular lobe of :func:`unrender.render.shading.bsdf.pbr_brdf` (GGX, height-correlated
Smith ``G``, Schlick ``F``), with the normal ``n = z``, ``v = (sqrt(1 - c^2), 0, c)``, ``c = n.v``:

    integral of f_spec(v, l) (n.l) dl = F0 A(c, r) + B(c, r)
    A = E_h[ (1 - F_c) G (v.h) / ((n.h)(n.v)) ],   B = E_h[ F_c G (v.h) / ((n.h)(n.v)) ],   F_c = (1 - v.h)^5

where ``h`` is drawn from the GGX distribution of normals (pdf ``D(h) (n.h)``) with
``alpha = r^2``, ``l = 2 (v.h) h - v``, and samples with ``n.l <= 0`` contribute 0. The
expectation is a deterministic quasi-Monte-Carlo average over a Hammersley point set, so
the table is the same on every run and machine (up to float64 rounding).
"""

from __future__ import annotations

import functools
import math

import torch

from ...checks import float_tensor
from ...errors import InputError


def hammersley(n: int, dtype=torch.float64) -> torch.Tensor:
    """The 2-D Hammersley point set ``[n,2]``: ``(k / n, radical_inverse_2(k))`` for ``k = 0..n-1``.

    ``radical_inverse_2`` mirrors the binary digits of ``k`` about the binary point
    (``6 = 110b -> 0.011b = 0.375``).

    Example:
        >>> hammersley(4)[:, 1]
        tensor([0.0000, 0.5000, 0.2500, 0.7500], dtype=torch.float64)
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"n must be a positive integer; got {n!r}.")
    k = torch.arange(int(n), dtype=torch.int64)
    inv = torch.zeros(int(n), dtype=torch.float64)
    bit, scale = k.clone(), 0.5
    while bool((bit > 0).any()):
        inv += (bit & 1).to(torch.float64) * scale
        bit >>= 1
        scale *= 0.5
    return torch.stack([k.to(torch.float64) / n, inv], -1).to(dtype)


def ggx_sample_half_vectors(u: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Half vectors ``[...,3]`` (normal = +z) distributed as ``D(h) (n.h)`` from uniforms ``u[...,2]``.

    ``phi = 2 pi u_0``, ``cos(theta) = sqrt((1 - u_1) / (1 + (alpha^2 - 1) u_1))`` (Walter et al. 2007).

    Args:
        u: uniforms in [0, 1) ``[...,2]``.
        alpha: GGX width broadcasting against ``u[..., 0]``.

    Example:
        >>> ggx_sample_half_vectors(torch.tensor([[0.0, 0.0]]), torch.tensor(0.5))
        tensor([[0., 0., 1.]])
    """
    a2 = alpha * alpha
    phi = 2.0 * math.pi * u[..., 0]
    cos2 = ((1.0 - u[..., 1]) / (1.0 + (a2 - 1.0) * u[..., 1])).clamp(0.0, 1.0)
    cos_t = torch.sqrt(cos2)
    sin_t = torch.sqrt((1.0 - cos2).clamp_min(0.0))
    return torch.stack([sin_t * torch.cos(phi), sin_t * torch.sin(phi), cos_t], -1)


def _compute_lut(resolution: int, num_samples: int) -> torch.Tensor:
    n = resolution
    c = (torch.arange(n, dtype=torch.float64) + 0.5) / n            # n.v, along the width
    r = (torch.arange(n, dtype=torch.float64) + 0.5) / n            # roughness, along the height
    u = hammersley(num_samples)                                     # [M,2]
    out = torch.empty(n, n, 2, dtype=torch.float64)
    vx, vz = torch.sqrt(1.0 - c * c)[:, None], c[:, None]           # [W,1]
    lam_v = None
    chunk = max(1, (1 << 20) // (n * num_samples))
    for j0 in range(0, n, chunk):
        alpha = (r[j0:j0 + chunk] ** 2)[:, None, None]              # [h,1,1]
        a2 = alpha * alpha
        h = ggx_sample_half_vectors(u[None, None], alpha)           # [h,1,M,3]
        vh = (vx[None] * h[..., 0] + vz[None] * h[..., 2])          # [h,W,M]
        nh = h[..., 2]
        nl = 2.0 * vh * nh - vz[None]
        # Height-correlated Smith G, as smith_g_correlated but with Lambda(v) computed once per texel.
        lam_v = 0.5 * (torch.sqrt(1.0 + a2 * (1.0 - vz * vz) / (vz * vz)) - 1.0)      # [h,W,1]
        nl2 = (nl * nl).clamp_min(1e-12)
        lam_l = 0.5 * (torch.sqrt(1.0 + a2 * (1.0 - nl2) / nl2) - 1.0)
        w = vh / (nh * vz[None] * (1.0 + lam_v + lam_l))
        w = torch.where((nl > 0) & (vh > 0), w, torch.zeros_like(w))
        fc = (1.0 - vh.clamp(0.0, 1.0)) ** 5
        fw = fc * w
        out[j0:j0 + chunk, :, 1] = fw.mean(-1)
        out[j0:j0 + chunk, :, 0] = w.mean(-1) - out[j0:j0 + chunk, :, 1]
    return out


@functools.lru_cache(maxsize=8)
def _cached_lut(resolution: int, num_samples: int, device: torch.device) -> torch.Tensor:
    return _compute_lut(resolution, num_samples).to(device=device, dtype=torch.float32)


def brdf_lut(resolution: int = 128, num_samples: int = 1024, device=None) -> torch.Tensor:
    """The split-sum table ``lut[R,R,2] = (A, B)`` (module docstring), float32, memoised.

    Texel ``lut[j, i]`` holds ``n.v = (i + 0.5) / R`` (along the width, texture u) and roughness
    ``(j + 0.5) / R`` (along the height, texture v), i.e. a 2-D texture looked up at
    ``uv = (n.v, roughness)``. Computed once per ``(resolution, num_samples, device)`` and cached
    (``functools.lru_cache``); treat the returned tensor as read-only.

    Args:
        resolution: table size ``R`` along both axes.
        num_samples: Hammersley samples per texel.
        device: where the table lives.
    Returns:
        ``[R,R,2]`` float32.

    Example:
        >>> lut = brdf_lut(16, 256)
        >>> tuple(lut.shape), bool((lut.sum(-1) <= 1.02).all())   # A + B: the directional albedo
        ((16, 16, 2), True)
    """
    for name, val in (("resolution", resolution), ("num_samples", num_samples)):
        if isinstance(val, bool) or int(val) != val or val < 1:
            raise InputError(f"{name} must be a positive integer; got {val!r}.")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return _cached_lut(int(resolution), int(num_samples), dev)


def lookup_brdf_lut(n_dot_v, roughness, lut: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear lookup of the split-sum table: ``(A, B)[...,2]`` at ``(n.v, roughness)``.

    Clamped to the table's texel centres at the borders; differentiable w.r.t. both
    arguments (through the bilinear weights). The specular reflectance of the split-sum
    approximation is then ``F0 A + B``.

    Args:
        n_dot_v: ``[...,1]`` cosines (clamped to [0, 1]).
        roughness: ``[...,1]`` perceptual roughness (clamped to [0, 1]).
        lut: a table from :func:`brdf_lut`; default ``brdf_lut(128)`` on ``n_dot_v``'s device.
    Returns:
        ``[...,2]`` in ``n_dot_v``'s dtype.

    Example:
        >>> ab = lookup_brdf_lut(torch.tensor([[1.0]]), torch.tensor([[0.0]]))
        >>> bool(abs(ab.sum() - 1.0) < 1e-2)   # a mirror at normal incidence reflects everything
        True
    """
    from ..texture import texture

    n_dot_v = float_tensor("n_dot_v", n_dot_v, "[...,1]")
    roughness = float_tensor("roughness", roughness, "[...,1]")
    if lut is None:
        lut = brdf_lut(device=n_dot_v.device)
    shape = torch.broadcast_shapes(n_dot_v.shape, roughness.shape)
    if len(shape) == 0 or shape[-1] != 1:
        raise InputError(f"n_dot_v and roughness must have shape [...,1]; got {tuple(n_dot_v.shape)} and "
                         f"{tuple(roughness.shape)}.")
    uv = torch.cat([n_dot_v.expand(shape), roughness.expand(shape)], -1).clamp(0.0, 1.0)
    out = texture(lut.to(uv.dtype), uv.reshape(1, 1, -1, 2), filter="linear", boundary="clamp")
    return out.reshape(shape[:-1] + (2,))
