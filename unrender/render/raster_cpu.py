"""Compiled CPU kernels (numba) for :func:`unrender.render.rasterize` and :func:`interpolate`.

Rasterize forward: triangle setup, exact z-buffer and perspective-correct barycentrics in one call;
backward: the analytic gradient of ``rast``'s (u, v, z/w) w.r.t. the clip positions.
Interpolate forward/backward: ``out = u a_0 + v a_1 + (1-u-v) a_2`` and its gradients to attr and (u, v).
Both are checked against the pure-PyTorch autograd reference in ``tests/test_rasterize.py``.

Gradient (per covered pixel, ``p = (p_x, p_y, 1)``, ``V_i = (x_i, y_i, w_i)``, cyclic ``(i, j, k)``):
``D_i = p . (V_j x V_k)``, ``S = sum D``, ``b_i = D_i / S``, ``M = sum b_i w_i``, ``z/w = sum b_i z_i / M``.
With upstream ``(g_u, g_v, g_z)``: ``g_b = (g_u, g_v, 0) + g_z (z - (z/w) w) / M``,
``g_D = (g_b - (g_b . b)) / S``, and ``dD_i/dV_j = V_k x p``, ``dD_i/dV_k = p x V_j``;
``dz_i += g_z b_i / M``, ``dw_i -= g_z (z/w) b_i / M`` (direct terms).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernel_config import PARALLEL, worker_count


@njit(cache=True, inline="always")
def _cross(a0, a1, a2, b0, b1, b2):  # pragma: no cover - compiled
    return a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0


@njit(parallel=PARALLEL, cache=True)
def _setup(pos, tri, height, width, coef, box):  # pragma: no cover - compiled
    nb, nf = coef.shape[0], coef.shape[1]
    for task in prange(nb * nf):
        b, f = task // nf, task % nf
        i0, i1, i2 = tri[f, 0], tri[f, 1], tri[f, 2]
        v = np.empty((3, 4), dtype=np.float64)
        for r in range(4):
            v[0, r], v[1, r], v[2, r] = pos[b, i0, r], pos[b, i1, r], pos[b, i2, r]
        c = np.empty((3, 3), dtype=np.float64)
        for i in range(3):
            j, k = (i + 1) % 3, (i + 2) % 3
            c[i, 0], c[i, 1], c[i, 2] = _cross(v[j, 0], v[j, 1], v[j, 3], v[k, 0], v[k, 1], v[k, 3])
        det = v[0, 0] * c[0, 0] + v[0, 1] * c[0, 1] + v[0, 3] * c[0, 2]
        box[b, f, 0], box[b, f, 1], box[b, f, 2], box[b, f, 3] = 1, 0, 1, 0
        if det == 0.0 or not np.isfinite(det):
            continue
        for i in range(3):
            for r in range(3):
                coef[b, f, i, r] = c[i, r] / det
        for r in range(3):
            coef[b, f, 3, r] = coef[b, f, 0, r] * v[0, 2] + coef[b, f, 1, r] * v[1, 2] + coef[b, f, 2, r] * v[2, 2]
        if v[0, 3] > 0 and v[1, 3] > 0 and v[2, 3] > 0:
            xlo, xhi = np.inf, -np.inf
            ylo, yhi = np.inf, -np.inf
            for i in range(3):
                x, y = v[i, 0] / v[i, 3], v[i, 1] / v[i, 3]
                xlo, xhi, ylo, yhi = min(xlo, x), max(xhi, x), min(ylo, y), max(yhi, y)
            if not (np.isfinite(xlo) and np.isfinite(xhi) and np.isfinite(ylo) and np.isfinite(yhi)):
                continue
            c0 = max(0.0, np.ceil((xlo + 1) * 0.5 * width - 0.5))
            c1 = min(width - 1.0, np.floor((xhi + 1) * 0.5 * width - 0.5))
            r0 = max(0.0, np.ceil((ylo + 1) * 0.5 * height - 0.5))
            r1 = min(height - 1.0, np.floor((yhi + 1) * 0.5 * height - 0.5))
            box[b, f, 0], box[b, f, 1], box[b, f, 2], box[b, f, 3] = int(c0), int(c1), int(r0), int(r1)
        else:  # reaches behind the camera: test the whole screen, the edge functions clip it
            box[b, f, 0], box[b, f, 1], box[b, f, 2], box[b, f, 3] = 0, width - 1, 0, height - 1


@njit(parallel=PARALLEL, cache=True)
def _zbuffer(coef, box, height, width, bands, out_id):  # pragma: no cover - compiled
    nb, nf = coef.shape[0], coef.shape[1]
    band_h = (height + bands - 1) // bands
    for task in prange(nb * bands):
        b = task // bands
        r_lo = (task % bands) * band_h
        r_hi = min(height, r_lo + band_h) - 1
        zbuf = np.full((band_h, width), np.inf, dtype=np.float32)
        for f in range(nf):
            c0, c1 = box[b, f, 0], box[b, f, 1]
            y0, y1 = max(box[b, f, 2], r_lo), min(box[b, f, 3], r_hi)
            if c0 > c1 or y0 > y1:
                continue
            k = coef[b, f]
            for row in range(y0, y1 + 1):
                py = 2.0 * (row + 0.5) / height - 1.0
                d0r = k[0, 1] * py + k[0, 2]
                d1r = k[1, 1] * py + k[1, 2]
                d2r = k[2, 1] * py + k[2, 2]
                zr = k[3, 1] * py + k[3, 2]
                for col in range(c0, c1 + 1):
                    px = 2.0 * (col + 0.5) / width - 1.0
                    if k[0, 0] * px + d0r < 0.0 or k[1, 0] * px + d1r < 0.0 or k[2, 0] * px + d2r < 0.0:
                        continue
                    z = np.float32(k[3, 0] * px + zr)
                    if z < -1.0 or z > 1.0:
                        continue
                    if z < zbuf[row - r_lo, col]:
                        zbuf[row - r_lo, col] = z
                        out_id[b, row, col] = f + 1


@njit(cache=True, inline="always")
def _pixel_terms(pos, tri, b, t, px, py):  # pragma: no cover - compiled
    """Vertices and edge-function values D_i of triangle t at ndc (px, py), as scalars."""
    i0, i1, i2 = tri[t, 0], tri[t, 1], tri[t, 2]
    x0, y0, z0, w0 = pos[b, i0, 0], pos[b, i0, 1], pos[b, i0, 2], pos[b, i0, 3]
    x1, y1, z1, w1 = pos[b, i1, 0], pos[b, i1, 1], pos[b, i1, 2], pos[b, i1, 3]
    x2, y2, z2, w2 = pos[b, i2, 0], pos[b, i2, 1], pos[b, i2, 2], pos[b, i2, 3]
    cx, cy, cw = _cross(x1, y1, w1, x2, y2, w2)
    d0 = cx * px + cy * py + cw
    cx, cy, cw = _cross(x2, y2, w2, x0, y0, w0)
    d1 = cx * px + cy * py + cw
    cx, cy, cw = _cross(x0, y0, w0, x1, y1, w1)
    d2 = cx * px + cy * py + cw
    return x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2, d0, d1, d2


@njit(parallel=PARALLEL, cache=True)
def _barycentrics(pos, tri, ids, rast):  # pragma: no cover - compiled
    nb, height, width = ids.shape
    for task in prange(nb * height):
        b, row = task // height, task % height
        py = 2.0 * (row + 0.5) / height - 1.0
        for col in range(width):
            t = ids[b, row, col] - 1
            if t < 0:
                continue
            px = 2.0 * (col + 0.5) / width - 1.0
            x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2, d0, d1, d2 = _pixel_terms(pos, tri, b, t, px, py)
            s = d0 + d1 + d2
            b0, b1, b2 = d0 / s, d1 / s, d2 / s
            rast[b, row, col, 0] = b0
            rast[b, row, col, 1] = b1
            rast[b, row, col, 2] = (b0 * z0 + b1 * z1 + b2 * z2) / (b0 * w0 + b1 * w1 + b2 * w2)
            rast[b, row, col, 3] = t + 1


@njit(cache=True, inline="always")
def _scatter_edge(acc, b, vj, vk, gd, xj, yj, wj, xk, yk, wk, px, py):  # pragma: no cover - compiled
    # dD_i/dV_j = V_k x p and dD_i/dV_k = p x V_j, components (x, y, w)
    ax, ay, aw = _cross(xk, yk, wk, px, py, 1.0)
    bx, by, bw = _cross(px, py, 1.0, xj, yj, wj)
    acc[b, vj, 0] += gd * ax
    acc[b, vj, 1] += gd * ay
    acc[b, vj, 3] += gd * aw
    acc[b, vk, 0] += gd * bx
    acc[b, vk, 1] += gd * by
    acc[b, vk, 3] += gd * bw


@njit(parallel=PARALLEL, cache=True)
def _barycentrics_backward(pos, tri, ids, grad, chunks, gpos):  # pragma: no cover - compiled
    nb, height, width = ids.shape
    rows_total = nb * height
    per = (rows_total + chunks - 1) // chunks
    for ch in prange(chunks):
        acc = gpos[ch]
        for task in range(ch * per, min(rows_total, (ch + 1) * per)):
            b, row = task // height, task % height
            py = 2.0 * (row + 0.5) / height - 1.0
            for col in range(width):
                t = ids[b, row, col] - 1
                if t < 0:
                    continue
                gu, gv, gz = grad[b, row, col, 0], grad[b, row, col, 1], grad[b, row, col, 2]
                if gu == 0.0 and gv == 0.0 and gz == 0.0:
                    continue
                px = 2.0 * (col + 0.5) / width - 1.0
                x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2, d0, d1, d2 = _pixel_terms(pos, tri, b, t, px, py)
                s = d0 + d1 + d2
                b0, b1, b2 = d0 / s, d1 / s, d2 / s
                m = b0 * w0 + b1 * w1 + b2 * w2
                depth = (b0 * z0 + b1 * z1 + b2 * z2) / m
                g0 = gu + gz * (z0 - depth * w0) / m
                g1 = gv + gz * (z1 - depth * w1) / m
                g2 = gz * (z2 - depth * w2) / m
                dot = g0 * b0 + g1 * b1 + g2 * b2
                i0, i1, i2 = tri[t, 0], tri[t, 1], tri[t, 2]
                _scatter_edge(acc, b, i1, i2, (g0 - dot) / s, x1, y1, w1, x2, y2, w2, px, py)
                _scatter_edge(acc, b, i2, i0, (g1 - dot) / s, x2, y2, w2, x0, y0, w0, px, py)
                _scatter_edge(acc, b, i0, i1, (g2 - dot) / s, x0, y0, w0, x1, y1, w1, px, py)
                gzm = gz / m
                acc[b, i0, 2] += gzm * b0
                acc[b, i1, 2] += gzm * b1
                acc[b, i2, 2] += gzm * b2
                acc[b, i0, 3] -= gzm * depth * b0
                acc[b, i1, 3] -= gzm * depth * b1
                acc[b, i2, 3] -= gzm * depth * b2


def rasterize_forward(pos: np.ndarray, tri: np.ndarray, height: int, width: int) -> np.ndarray:
    """``rast[B,H,W,4]`` for ``pos[B,V,4]``, ``tri[F,3]`` (int64) as numpy arrays."""
    nb, nf = pos.shape[0], tri.shape[0]
    coef = np.zeros((nb, nf, 4, 3), dtype=np.float64)
    box = np.zeros((nb, nf, 4), dtype=np.int64)
    _setup(pos, tri, height, width, coef, box)
    threads = worker_count()
    bands = max(1, min(height, -(-2 * threads // nb))) if threads > 1 else 1
    ids = np.zeros((nb, height, width), dtype=np.int32)
    _zbuffer(coef, box, height, width, bands, ids)
    rast = np.zeros((nb, height, width, 4), dtype=pos.dtype)
    _barycentrics(pos, tri, ids, rast)
    return rast


def rasterize_backward(pos: np.ndarray, tri: np.ndarray, rast: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Gradient ``[B,V,4]`` of the loss w.r.t. ``pos`` given ``grad = dL/drast`` ``[B,H,W,4]``."""
    ids = rast[..., 3].astype(np.int32)
    chunks = worker_count()
    gpos = np.zeros((chunks,) + pos.shape, dtype=np.float64)
    _barycentrics_backward(pos, tri, ids, grad, chunks, gpos)
    return gpos.sum(0).astype(pos.dtype)


def visibility(pos: np.ndarray, tri: np.ndarray, height: int, width: int) -> np.ndarray:
    """Triangle id + 1 per pixel ``[B,H,W]`` int32 (the z-buffer pass alone)."""
    return rasterize_forward(pos, tri, height, width)[..., 3].astype(np.int32)


# --------------------------------------------------------------------------- interpolation
@njit(parallel=PARALLEL, cache=True)
def _interpolate(attr, rast, tri, out):  # pragma: no cover - compiled
    nb, height, width = rast.shape[0], rast.shape[1], rast.shape[2]
    shared = attr.shape[0] == 1
    nc = attr.shape[2]
    for task in prange(nb * height):
        b, row = task // height, task % height
        ab = 0 if shared else b
        for col in range(width):
            t = int(rast[b, row, col, 3]) - 1
            if t < 0:
                continue
            u, v = rast[b, row, col, 0], rast[b, row, col, 1]
            w = 1.0 - u - v
            i0, i1, i2 = tri[t, 0], tri[t, 1], tri[t, 2]
            for c in range(nc):
                out[b, row, col, c] = u * attr[ab, i0, c] + v * attr[ab, i1, c] + w * attr[ab, i2, c]


@njit(parallel=PARALLEL, cache=True)
def _interpolate_backward(attr, rast, tri, grad, chunks, gattr, grast):  # pragma: no cover - compiled
    nb, height, width = rast.shape[0], rast.shape[1], rast.shape[2]
    shared = attr.shape[0] == 1
    nc = attr.shape[2]
    rows_total = nb * height
    per = (rows_total + chunks - 1) // chunks
    for ch in prange(chunks):
        acc = gattr[ch]
        for task in range(ch * per, min(rows_total, (ch + 1) * per)):
            b, row = task // height, task % height
            ab = 0 if shared else b
            for col in range(width):
                t = int(rast[b, row, col, 3]) - 1
                if t < 0:
                    continue
                u, v = rast[b, row, col, 0], rast[b, row, col, 1]
                w = 1.0 - u - v
                i0, i1, i2 = tri[t, 0], tri[t, 1], tri[t, 2]
                gu, gv = 0.0, 0.0
                for c in range(nc):
                    g = grad[b, row, col, c]
                    a2 = attr[ab, i2, c]
                    gu += g * (attr[ab, i0, c] - a2)
                    gv += g * (attr[ab, i1, c] - a2)
                    acc[ab, i0, c] += g * u
                    acc[ab, i1, c] += g * v
                    acc[ab, i2, c] += g * w
                grast[b, row, col, 0] = gu
                grast[b, row, col, 1] = gv


def interpolate_forward(attr: np.ndarray, rast: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """``out[B,H,W,C]`` for ``attr[1 or B,V,C]``, ``rast[B,H,W,4]``, ``tri[F,3]``."""
    out = np.zeros(rast.shape[:3] + (attr.shape[2],), dtype=np.result_type(attr.dtype, rast.dtype))
    _interpolate(attr, rast, tri, out)
    return out


def interpolate_backward(attr, rast, tri, grad):
    """``(d attr, d rast)`` given ``grad = dL/dout``; ``d rast`` has only its (u, v) channels set."""
    chunks = worker_count()
    gattr = np.zeros((chunks,) + attr.shape, dtype=np.float64)
    grast = np.zeros(rast.shape, dtype=rast.dtype)
    _interpolate_backward(attr, rast, tri, grad, chunks, gattr, grast)
    return gattr.sum(0).astype(attr.dtype), grast


# --------------------------------------------------------------------------- screen-space derivatives
@njit(parallel=PARALLEL, cache=True)
def _bary_derivatives(pos, tri, rast, out):  # pragma: no cover - compiled
    nb, height, width = rast.shape[0], rast.shape[1], rast.shape[2]
    sx, sy = 2.0 / width, 2.0 / height
    for task in prange(nb * height):
        b, row = task // height, task % height
        py = 2.0 * (row + 0.5) / height - 1.0
        for col in range(width):
            t = int(rast[b, row, col, 3]) - 1
            if t < 0:
                continue
            px = 2.0 * (col + 0.5) / width - 1.0
            x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2, d0, d1, d2 = _pixel_terms(pos, tri, b, t, px, py)
            s = d0 + d1 + d2
            # c_i.x and c_i.y of the edge functions: d D_i / d p
            c0x, c0y, _ = _cross(x1, y1, w1, x2, y2, w2)
            c1x, c1y, _ = _cross(x2, y2, w2, x0, y0, w0)
            c2x, c2y, _ = _cross(x0, y0, w0, x1, y1, w1)
            sumx, sumy = c0x + c1x + c2x, c0y + c1y + c2y
            b0, b1 = d0 / s, d1 / s
            out[b, row, col, 0] = (c0x - b0 * sumx) / s * sx
            out[b, row, col, 1] = (c0y - b0 * sumy) / s * sy
            out[b, row, col, 2] = (c1x - b1 * sumx) / s * sx
            out[b, row, col, 3] = (c1y - b1 * sumy) / s * sy


@njit(parallel=PARALLEL, cache=True)
def _interpolate_derivatives(attr, rast, tri, rast_db, out):  # pragma: no cover - compiled
    nb, height, width = rast.shape[0], rast.shape[1], rast.shape[2]
    shared = attr.shape[0] == 1
    nc = attr.shape[2]
    for task in prange(nb * height):
        b, row = task // height, task % height
        ab = 0 if shared else b
        for col in range(width):
            t = int(rast[b, row, col, 3]) - 1
            if t < 0:
                continue
            i0, i1, i2 = tri[t, 0], tri[t, 1], tri[t, 2]
            dux, duy, dvx, dvy = rast_db[b, row, col, 0], rast_db[b, row, col, 1], rast_db[b, row, col, 2], rast_db[b, row, col, 3]
            for c in range(nc):
                a2 = attr[ab, i2, c]
                e0, e1 = attr[ab, i0, c] - a2, attr[ab, i1, c] - a2
                out[b, row, col, 2 * c] = e0 * dux + e1 * dvx
                out[b, row, col, 2 * c + 1] = e0 * duy + e1 * dvy


def barycentric_derivatives(pos: np.ndarray, tri: np.ndarray, rast: np.ndarray) -> np.ndarray:
    """``rast_db[B,H,W,4]`` (du/dX, du/dY, dv/dX, dv/dY) for ``pos[B,V,4]`` (see rasterize.py)."""
    out = np.zeros(rast.shape, dtype=rast.dtype)
    _bary_derivatives(pos, tri, rast, out)
    return out


def interpolate_derivatives(attr: np.ndarray, rast: np.ndarray, tri: np.ndarray, rast_db: np.ndarray) -> np.ndarray:
    """``[B,H,W,2C]`` screen-space derivatives of ``attr[1 or B,V,C]`` (no gradient)."""
    out = np.zeros(rast.shape[:3] + (2 * attr.shape[2],), dtype=np.result_type(attr.dtype, rast.dtype))
    _interpolate_derivatives(attr, rast, tri, rast_db, out)
    return out
