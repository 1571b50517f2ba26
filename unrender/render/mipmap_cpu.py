"""Compiled CPU (numba) mip-stack building for :mod:`.mipmap`, forward and backward.

Each even-sized level is the 2x2 box average of the previous one; the backward spreads each level's
gradient back down the chain (a quarter to each of the four parent texels). Odd sizes fall back to
the torch ops of :mod:`.mipmap`, which are also the reference these kernels are tested against.
"""

from __future__ import annotations

import torch
from numba import njit, prange

from .kernel_config import PARALLEL


# ---------------------------------------------------------------- mip stacks (even sizes)

@njit(cache=True, error_model="numpy", inline="always")
def _mip_down_row(flat, n, i, so, sw, sh, do, dw):  # pragma: no cover - compiled
    """Row ``i`` of level ``l`` from level ``l - 1``: mean over rows first, then columns (torch's order)."""
    fy = 2 if sh > 1 else 1
    fx = 2 if sw > 1 else 1
    ra = so + (fy * i) * sw
    rb = ra + (sw if fy == 2 else 0)
    for j in range(dw):
        for c in range(flat.shape[2]):
            if fy == 2:
                a = (flat[n, ra + fx * j, c] + flat[n, rb + fx * j, c]) / 2
            else:
                a = flat[n, ra + fx * j, c]
            if fx == 2:
                if fy == 2:
                    b = (flat[n, ra + fx * j + 1, c] + flat[n, rb + fx * j + 1, c]) / 2
                else:
                    b = flat[n, ra + fx * j + 1, c]
                a = (a + b) / 2
            flat[n, do + i * dw + j, c] = a


@njit(parallel=PARALLEL, cache=True, error_model="numpy")
def _mip_down(flat, offs, hs, ws):  # pragma: no cover - compiled
    """Levels ``1..L-1`` of ``flat[N,T,C]``, each from the one before (small levels serially: a parallel
    region per level costs more than they do)."""
    n_img = flat.shape[0]
    for lv in range(1, offs.shape[0]):
        so, sw, sh = offs[lv - 1], ws[lv - 1], hs[lv - 1]
        do, dw, dh = offs[lv], ws[lv], hs[lv]
        if n_img * dh * dw >= 16384:
            for task in prange(n_img * dh):
                _mip_down_row(flat, task // dh, task % dh, so, sw, sh, do, dw)
        else:
            for task in range(n_img * dh):
                _mip_down_row(flat, task // dh, task % dh, so, sw, sh, do, dw)


@njit(cache=True, error_model="numpy", inline="always")
def _mip_up_row(grad, tmp, out0, n, i, lv, so, sw, dst, dw, dh, base):  # pragma: no cover - compiled
    fy = 2 if dh > 1 else 1
    fx = 2 if dw > 1 else 1
    scale = 1.0 / (fy * fx)
    src = so + (i // fy) * sw
    for j in range(dw):
        for c in range(grad.shape[2]):
            g = tmp[n, src + j // fx, c] * scale
            if lv == 1:
                out0[n, i * dw + j, c] = grad[n, i * dw + j, c] + g
            else:
                tmp[n, dst - base + i * dw + j, c] += g


@njit(parallel=PARALLEL, cache=True, error_model="numpy")
def _mip_up(grad, offs, hs, ws, tmp, out0):  # pragma: no cover - compiled
    """Backward of :func:`_mip_down`: push each level's gradient (``/4`` per 2x2 block) to the level below.

    ``tmp`` holds levels >= 1 of ``grad`` (starting at ``offs[1]``) and accumulates; ``out0`` receives
    level 0's total gradient ``grad_0 + up(tmp_1)``.
    """
    n_img = grad.shape[0]
    base = offs[1]
    for lv in range(offs.shape[0] - 1, 0, -1):
        so, sw = offs[lv] - base, ws[lv]
        dst, dw, dh = offs[lv - 1], ws[lv - 1], hs[lv - 1]
        if n_img * dh * dw >= 16384:
            for task in prange(n_img * dh):
                _mip_up_row(grad, tmp, out0, task // dh, task % dh, lv, so, sw, dst, dw, dh, base)
        else:
            for task in range(n_img * dh):
                _mip_up_row(grad, tmp, out0, task // dh, task % dh, lv, so, sw, dst, dw, dh, base)


class BuildMipCPU(torch.autograd.Function):
    """``flat[N,T,C]`` of a texture ``x[N,H,W,C]`` whose levels only halve even sizes (or keep size 1)."""

    @staticmethod
    def forward(ctx, x, offs, hs, ws):
        n, h, w, c = x.shape
        flat = x.new_empty(n, int(offs[-1] + hs[-1] * ws[-1]), c)
        flat[:, :h * w] = x.detach().reshape(n, h * w, c)
        if offs.shape[0] > 1:
            _mip_down(flat.numpy(), offs, hs, ws)
        ctx.layout = (offs, hs, ws, x.shape)
        return flat

    @staticmethod
    def backward(ctx, grad):
        offs, hs, ws, shape = ctx.layout
        grad = grad.detach().contiguous()
        n, h, w, c = shape
        if offs.shape[0] == 1:
            return grad.reshape(shape), None, None, None
        tmp = grad[:, int(offs[1]):].clone()
        out0 = grad.new_empty(n, h * w, c)
        _mip_up(grad.numpy(), offs, hs, ws, tmp.numpy(), out0.numpy())
        return out0.reshape(shape), None, None, None
