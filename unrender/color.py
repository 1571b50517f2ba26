"""Colour transfer functions and tone mappers: sRGB encoding, Reinhard, ACES (fit), log.

Every function is elementwise, keeps the input's shape and dtype, and is differentiable
everywhere (branches are selected with ``torch.where`` on inputs made safe for both branches,
so no NaN gradients leak from the branch that is not taken).
"""

from __future__ import annotations

import torch

from .checks import float_tensor

_SRGB_KNEE = 0.04045          # encoded value where the linear segment meets the power curve
_LINEAR_KNEE = 0.0031308      # the same point in linear units (0.04045 / 12.92)


def srgb_to_linear(x) -> torch.Tensor:
    """Decode sRGB-encoded values to linear radiance (IEC 61966-2-1, exact piecewise form).

    ``y = x / 12.92`` for ``x <= 0.04045``, else ``y = ((x + 0.055) / 1.055) ** 2.4``.

    Args:
        x: encoded values, any shape ``[...]`` (usually ``[...,3]`` in [0, 1]).
    Returns:
        linear values, same shape and dtype.

    Example:
        >>> srgb_to_linear(torch.tensor([0.0, 0.5, 1.0]))
        tensor([0.0000, 0.2140, 1.0000])
    """
    x = float_tensor("x", x, "[...]")
    high = ((x.clamp_min(_SRGB_KNEE) + 0.055) / 1.055) ** 2.4
    return torch.where(x <= _SRGB_KNEE, x / 12.92, high)


def linear_to_srgb(x) -> torch.Tensor:
    """Encode linear radiance as sRGB (IEC 61966-2-1, exact piecewise form); no clamping.

    ``y = 12.92 x`` for ``x <= 0.0031308``, else ``y = 1.055 x ** (1 / 2.4) - 0.055``.

    Args:
        x: linear values, any shape ``[...]``.
    Returns:
        encoded values, same shape and dtype (clamp to [0, 1] yourself before quantising).

    Example:
        >>> linear_to_srgb(torch.tensor([0.0, 0.214, 1.0]))
        tensor([0.0000, 0.5000, 1.0000])
    """
    x = float_tensor("x", x, "[...]")
    high = 1.055 * x.clamp_min(_LINEAR_KNEE) ** (1.0 / 2.4) - 0.055
    return torch.where(x <= _LINEAR_KNEE, 12.92 * x, high)


def tonemap_reinhard(x, white: float | None = None) -> torch.Tensor:
    """Reinhard tone mapping of linear radiance into [0, 1).

    ``y = x / (1 + x)``, or with a white point ``w``: ``y = x (1 + x / w^2) / (1 + x)`` (maps ``w`` to 1).

    Args:
        x: non-negative linear values, any shape ``[...]``.
        white: optional white point (the radiance that maps to 1).
    Returns:
        tone-mapped values, same shape.

    Example:
        >>> tonemap_reinhard(torch.tensor([0.0, 1.0, 3.0]))
        tensor([0.0000, 0.5000, 0.7500])
    """
    x = float_tensor("x", x, "[...]")
    if white is None:
        return x / (1.0 + x)
    return x * (1.0 + x / (float(white) ** 2)) / (1.0 + x)


def tonemap_aces(x) -> torch.Tensor:
    """ACES filmic tone curve, Narkowicz's (2015) rational fit, clamped to [0, 1].

    ``y = clamp(x (2.51 x + 0.03) / (x (2.43 x + 0.59) + 0.14), 0, 1)``.

    Args:
        x: linear values, any shape ``[...]``.
    Returns:
        tone-mapped values in [0, 1], same shape.

    Example:
        >>> tonemap_aces(torch.tensor([0.0, 1.0, 100.0]))
        tensor([0.0000, 0.8038, 1.0000])
    """
    x = float_tensor("x", x, "[...]")
    return (x * (2.51 * x + 0.03) / (x * (2.43 * x + 0.59) + 0.14)).clamp(0.0, 1.0)


def log_tonemap(x, srgb: bool = False, max_value: float = 65535.0) -> torch.Tensor:
    """Log tone mapping for HDR image losses, as nvdiffrec compares renders to references.

    ``y = log(clamp(x, 0, max_value) + 1)``, followed by :func:`linear_to_srgb` when ``srgb``
    (nvdiffrec's image loss uses the sRGB-encoded variant). Compressing highlights this way
    keeps a few very bright pixels from dominating an L1/L2 loss.

    Args:
        x: linear values, any shape ``[...]``.
        srgb: also apply the sRGB encoding.
        max_value: upper clamp guarding against infinities.
    Returns:
        mapped values, same shape.

    Example:
        >>> log_tonemap(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.6931])
    """
    x = float_tensor("x", x, "[...]")
    y = torch.log1p(x.clamp(0.0, float(max_value)))
    return linear_to_srgb(y) if srgb else y


def unpremultiply(rgb, alpha) -> torch.Tensor:
    """Straight colour ``rgb / alpha`` ``[...,3]`` where ``alpha [...,1] > 0``, ``rgb`` unchanged elsewhere.

    Example:
        >>> unpremultiply(torch.tensor([[0.25, 0.5, 0.0]]), torch.tensor([[0.5]]))
        tensor([[0.5000, 1.0000, 0.0000]])
    """
    rgb, alpha = torch.as_tensor(rgb), torch.as_tensor(alpha)
    return torch.where(alpha > 0, rgb / alpha.clamp_min(1e-6), rgb)
