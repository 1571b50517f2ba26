"""Mip stacks for :func:`unrender.render.texture.texture`.

A mip stack is the list of successively halved copies of a texture, built once (per
optimisation step, since the texture changes) and passed explicitly to every lookup that
needs it. No global cache: the caller owns the stack and decides when to rebuild it.

Level ``l + 1`` halves each axis of level ``l``: ``n -> max(1, n // 2)``. Each new texel is
the *area-weighted average* of the texels of level ``l`` that its footprint covers, its
footprint being the interval ``[i * n/m, (i+1) * n/m]`` in old texel units (``m`` the new
size). For even sizes this is the plain 2x2 box average; for odd sizes the border texels
shared by two new texels are split between them by area, so every level keeps the mean of
level 0 exactly (e.g. ``3 -> 1`` averages all three, ``5 -> 2`` uses weights
``(1, 1, 0.5) / 2.5`` and ``(0.5, 1, 1) / 2.5``). An axis that has reached size 1 stays 1;
the stack ends when both axes are 1 (or at ``max_mip_level``).

Cube maps ``[B,6,R,R,C]`` are filtered face by face (no filtering across face edges).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..checks import float_tensor
from ..errors import InputError

try:  # numba is a dependency; the torch ops below are the reference and the non-CPU path
    from . import mipmap_cpu as _cpu
except Exception:  # noqa: BLE001
    _cpu = None

USE_NUMBA = _cpu is not None  # module switch, so tests can compare both paths


def _compiled(x: torch.Tensor) -> bool:
    return USE_NUMBA and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


@dataclass
class MipStack:
    """A texture and its successively halved copies, all views into one flat buffer.

    Attributes:
        levels: ``levels[l]`` has the input's shape with ``(H, W)`` replaced by ``(H_l, W_l)``:
            ``[B,H_l,W_l,C]``, ``[H_l,W_l,C]``, ``[B,6,R_l,R_l,C]`` or ``[6,R_l,R_l,C]``. ``levels[0]``
            holds the values of the input texture.
        flat: ``[N, T, C]``: every level of each of the ``N`` images (the product of the input's leading
            dims, e.g. ``B * 6`` for a cube map) concatenated level after level, rows then columns;
            ``T = sum_l H_l * W_l``.
        offsets: ``[L]`` int64, first row of each level inside ``T``.
        heights: ``[L]`` int64, ``H_l``.
        widths: ``[L]`` int64, ``W_l``.
    """

    levels: list
    flat: torch.Tensor
    offsets: torch.Tensor
    heights: torch.Tensor
    widths: torch.Tensor

    @property
    def num_levels(self) -> int:
        """Number of levels ``L`` (level 0 included)."""
        return len(self.levels)


def _area_matrix(n: int, m: int, dtype, device) -> torch.Tensor:
    """``A[m, n]``: row i averages the old texels under new texel i's footprint, by area."""
    s = n / m
    lo = torch.arange(m, dtype=torch.float64)[:, None] * s
    j = torch.arange(n, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(j + 1, lo + s) - torch.maximum(j, lo)).clamp_min(0.0)
    return (overlap / s).to(dtype=dtype, device=device)


def _halve_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Halve axis ``dim`` (1 = height or 2 = width) of ``x[N,H,W,C]``, see the module docstring."""
    n = x.shape[dim]
    if n == 1:
        return x
    if n % 2 == 0:  # the common case: a cheap reshape-and-mean, exactly the 2-texel box
        shape = list(x.shape)
        shape[dim:dim + 1] = [n // 2, 2]
        return x.reshape(shape).mean(dim + 1)
    a = _area_matrix(n, n // 2, x.dtype, x.device)
    return torch.einsum("mh,nhwc->nmwc", a, x) if dim == 1 else torch.einsum("mw,nhwc->nhmc", a, x)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """One mip step of ``x[N,H,W,C] -> [N,max(1,H//2),max(1,W//2),C]`` (area-weighted box filter).

    ``out[n,i,j] = sum_{a,b} A_H[i,a] A_W[j,b] x[n,a,b]`` with ``A`` the 1-D area-overlap
    weights of the module docstring (for even sizes ``out[i,j]`` is the mean of the 2x2 block
    ``x[2i:2i+2, 2j:2j+2]``). Differentiable w.r.t. ``x``.

    Example:
        >>> downsample(torch.arange(16.).reshape(1, 4, 4, 1))[0, :, :, 0]
        tensor([[ 2.5000,  4.5000],
                [10.5000, 12.5000]])
    """
    return _halve_axis(_halve_axis(x, 1), 2)


def build_mip(tex, max_mip_level: int | None = None) -> MipStack:
    """Build the mip stack of a 2-D texture or a cube map.

    ``level_0 = tex`` and ``level_{l+1} = downsample(level_l)`` (2x2 box average, area-weighted
    for odd sizes, see :func:`downsample`), until the level is 1x1 or ``max_mip_level``
    levels past level 0 have been made. Gradients flow from every level back to ``tex``.

    Args:
        tex: ``[B,H,W,C]``, ``[H,W,C]`` (2-D) or ``[B,6,R,R,C]`` / ``[6,R,R,C]`` (cube map; a
            4-D cube map is filtered exactly like a batch of six 2-D textures, which is what
            it is, so no flag is needed).
        max_mip_level: highest level index to build (``0`` = only the texture itself);
            ``None`` builds down to 1x1.
    Returns:
        :class:`MipStack`; pass it as ``texture(..., mip=stack)``.

    Example:
        >>> stack = build_mip(torch.rand(8, 4, 3))
        >>> [tuple(l.shape) for l in stack.levels]
        [(8, 4, 3), (4, 2, 3), (2, 1, 3), (1, 1, 3)]
    """
    tex = float_tensor("tex", tex, "[B,H,W,C], [H,W,C] or a cube map [B,6,R,R,C]", ndims=(3, 4, 5))
    if max_mip_level is not None and (int(max_mip_level) != max_mip_level or max_mip_level < 0):
        raise InputError(f"max_mip_level must be a non-negative integer or None; got {max_mip_level!r}.")
    lead, (h, w, c) = tuple(tex.shape[:-3]), tuple(tex.shape[-3:])
    if h == 0 or w == 0 or c == 0 or tex.numel() == 0:
        raise InputError(f"tex must be non-empty; got shape {tuple(tex.shape)}.")
    n = tex.numel() // (h * w * c)
    cur = tex.reshape(n, h, w, c)
    sizes = [(h, w)]
    limit = float("inf") if max_mip_level is None else int(max_mip_level)
    while (sizes[-1][0] > 1 or sizes[-1][1] > 1) and len(sizes) - 1 < limit:
        sizes.append((max(1, sizes[-1][0] // 2), max(1, sizes[-1][1] // 2)))
    counts = [hh * ww for hh, ww in sizes]
    offs = [0]
    for k in counts[:-1]:
        offs.append(offs[-1] + k)
    even = all(s % 2 == 0 or s == 1 for hh, ww in sizes[:-1] for s in (hh, ww))
    if even and _compiled(tex):  # one fused pass per level, and its transpose for the gradient
        flat = _cpu.BuildMipCPU.apply(cur, np.array(offs, dtype=np.int64),
                                      np.array([s[0] for s in sizes], dtype=np.int64),
                                      np.array([s[1] for s in sizes], dtype=np.int64))
    else:
        parts = [cur.reshape(n, h * w, c)]
        for _ in sizes[1:]:
            cur = downsample(cur)
            parts.append(cur.reshape(n, -1, c))
        flat = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
    levels = [flat[:, o:o + k].reshape(lead + (hh, ww, c)) for o, k, (hh, ww) in zip(offs, counts, sizes)]
    as_long = dict(dtype=torch.int64, device=tex.device)
    return MipStack(levels=levels, flat=flat, offsets=torch.tensor(offs, **as_long),
                    heights=torch.tensor([s[0] for s in sizes], **as_long),
                    widths=torch.tensor([s[1] for s in sizes], **as_long))
