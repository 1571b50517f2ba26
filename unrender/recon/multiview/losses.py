"""Losses and regularisers of multi-view reconstruction (nvdiffrec's recipe).

* image: tonemapped log-L1, ``mean |T(render) - T(target)|`` with ``T(x) = srgb(log(1 + x))``, which
  compresses HDR highlights so they do not dominate the gradient;
* mask: ``mean (alpha - mask)^2``;
* light: white-balance prior ``mean |L - mean_c(L)|`` over the cube-map texels;
* material smoothness: ``mean |m(x) - m(x + eps)|`` with ``eps ~ N(0, sigma^2)``.
"""

from __future__ import annotations

import torch

from ...color import linear_to_srgb


def tonemap_log(x: torch.Tensor) -> torch.Tensor:
    """``srgb(log(1 + max(x, 0)))``, the tonemap of the image loss."""
    return linear_to_srgb(torch.log1p(x.clamp_min(0.0)))


def _weighted_mean(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``mean(x)``, or ``sum(w x) / (sum(w) * C)`` with a per-pixel ``weight [B,H,W,1]`` for ``x [B,H,W,C]``."""
    if weight is None:
        return x.mean()
    return (x * weight).sum() / (weight.sum() * x.shape[-1]).clamp_min(1e-8)


def image_loss(render: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Tonemapped log-L1 between linear images ``[B,H,W,3]`` (weighted by ``weight [B,H,W,1]`` when given).

    Example:
        >>> float(image_loss(torch.ones(1, 2, 2, 3), torch.ones(1, 2, 2, 3)))
        0.0
    """
    return _weighted_mean((tonemap_log(render) - tonemap_log(target)).abs(), weight)


def mask_loss(alpha: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``mean (alpha - mask)^2`` over ``[B,H,W,1]`` (weighted by ``weight [B,H,W,1]`` when given)."""
    return _weighted_mean((alpha - mask).square(), weight)


def light_white_balance(cube: torch.Tensor) -> torch.Tensor:
    """``mean |L - mean_c L|`` of a cube map ``[6,R,R,3]``: prefers grey light, resolving the albedo/light
    colour ambiguity towards coloured materials under white light."""
    return (cube - cube.mean(-1, keepdim=True)).abs().mean()


def material_smoothness(field, points: torch.Tensor, sigma: float, generator=None) -> torch.Tensor:
    """``mean |m(x) - m(x + eps)|`` over both outputs of a material field at ``points [N,3]``."""
    if points.shape[0] == 0:
        return points.new_zeros(())
    eps = torch.randn(points.shape, generator=generator, dtype=points.dtype).to(points.device) * sigma
    a = torch.cat(field(points), -1)
    b = torch.cat(field(points + eps), -1)
    return (a - b).abs().mean()
