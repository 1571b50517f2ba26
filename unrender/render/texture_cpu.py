"""Compiled CPU (numba) texture sampling for :mod:`.texture` (mip building: :mod:`.mipmap_cpu`).

Same filters and formulas as the pure-torch tap gather in :mod:`.texture` (tested against it), but
fused: one pass per pixel computes the mip level, the tap addresses and the bilinear weights from
``uv`` and blends the texels, without materialising ``[K,N]`` tap tensors. The backward pass
(:class:`SampleCPU`) recomputes the taps, returns ``d out / d uv`` analytically (derivative of the
bilinear weights) and scatters ``weight * grad`` into the texel table. The scatter runs in ``nch``
contiguous pixel chunks in parallel, each into its own zeroed copy of the table, summed afterwards in
chunk order, so the result does not depend on thread timing (it is deterministic run to run).
Pixels whose output gradient is zero are skipped.

Coordinates are computed in the input dtype in the same order as the torch path (``x = u W - 1/2``),
so ``floor`` picks the same texels; the cube-edge re-lookup runs in float64 as there.
"""

from __future__ import annotations


import numpy as np
import torch
from numba import njit, prange

from .kernel_config import PARALLEL, worker_count

# Per face: (axis, sign) of sc, of tc and of the major axis, so that sc = a_s d[i_s], tc = a_t d[i_t],
# |m| = a_m d[i_m] (the table of unrender.render.cubemap) and face_to_dir puts them back.
_FACE_AXES = np.array([
    [2, -1, 1, -1, 0, 1],    # +x: sc = -z, tc = -y, m = x
    [2, 1, 1, -1, 0, -1],    # -x: sc = +z, tc = -y, m = -x
    [0, 1, 2, 1, 1, 1],      # +y: sc = +x, tc = +z, m = y
    [0, 1, 2, -1, 1, -1],    # -y: sc = +x, tc = -z, m = -y
    [0, 1, 1, -1, 2, 1],     # +z: sc = +x, tc = -y, m = z
    [0, -1, 1, -1, 2, -1],   # -z: sc = -x, tc = -y, m = -z
], dtype=np.int64)

_BIG = 4.0e18


# ---------------------------------------------------------------- shared helpers (inlined)

@njit(cache=True, error_model="numpy", inline="always")
def _ifloor(x):  # pragma: no cover - compiled
    """``int(floor(x))`` that stays defined for NaN / huge values (mapped to 0)."""
    f = np.floor(x)
    if not (f > -_BIG and f < _BIG):
        return 0
    return int(f)


@njit(cache=True, error_model="numpy", inline="always")
def _sgn(v, s):  # pragma: no cover - compiled
    """``v`` times the sign ``s`` (+-1) without leaving ``v``'s dtype."""
    return v if s > 0 else -v


@njit(cache=True, error_model="numpy", inline="always")
def _fix(i, n, wrap):  # pragma: no cover - compiled
    if wrap:  # an integer division only when the tap is more than one period away
        if i < 0:
            i += n
            return i if i >= 0 else i % n
        if i >= n:
            i -= n
            return i if i < n else i % n
        return i
    if i < 0:
        return 0
    if i > n - 1:
        return n - 1
    return i


@njit(cache=True, error_model="numpy", inline="always")
def _split_level(lam, lmode, n_lev):  # pragma: no cover - compiled
    """``(l0, l1, frac)``: lmode 0 = level 0, 1 = nearest level, 2 = blend of l0 and l1 by frac."""
    if lmode == 0:
        return 0, 0, 0.0
    if lam != lam:
        lam = 0.0
    top = n_lev - 1
    if lam < 0.0:
        lam = 0.0
    if lam > top:
        lam = float(top)
    if lmode == 1:
        return int(np.floor(lam + 0.5)), 0, 0.0
    f0 = np.floor(lam)
    l0 = int(f0)
    return l0, min(l0 + 1, top), lam - f0


@njit(cache=True, error_model="numpy", inline="always")
def _lam_2d(da, bias, p, has_da, has_bias, fh0, fw0):  # pragma: no cover - compiled
    lam = 0.0
    if has_da:
        a = da[p, 0] * fw0
        b = da[p, 2] * fh0
        c = da[p, 1] * fw0
        d = da[p, 3] * fh0
        rho2 = max(a * a + b * b, c * c + d * d)
        lam = 0.5 * np.log2(rho2) if rho2 > 0 else -np.inf
    if has_bias:
        lam = lam + bias[p]
    return lam


@njit(cache=True, error_model="numpy", inline="always")
def _taps_2d(u, v, fw, fh, w, h, wrap_u, wrap_v, half):  # pragma: no cover - compiled
    """Bilinear taps at one level: column/row offsets ``(x0, x1, y0 * W, y1 * W)`` and fractions."""
    x = u * fw - half
    y = v * fh - half
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = x - x0
    fy = y - y0
    ix0 = _ifloor(x0)
    iy0 = _ifloor(y0)
    return (_fix(ix0, w, wrap_u), _fix(ix0 + 1, w, wrap_u), _fix(iy0, h, wrap_v) * w,
            _fix(iy0 + 1, h, wrap_v) * w, fx, fy)


@njit(cache=True, error_model="numpy", inline="always")
def _nonzero_row(grad, p):  # pragma: no cover - compiled
    for c in range(grad.shape[1]):
        if grad[p, c] != 0:
            return True
    return False


@njit(cache=True, error_model="numpy", inline="always")
def _blend4(table, out, p, r00, r01, r10, r11, fx, fy, lw, first, nc):  # pragma: no cover - compiled
    gx = 1 - fx
    gy = 1 - fy
    w00 = gx * gy * lw
    w01 = fx * gy * lw
    w10 = gx * fy * lw
    w11 = fx * fy * lw
    for c in range(nc):
        val = w00 * table[r00, c] + w01 * table[r01, c] + w10 * table[r10, c] + w11 * table[r11, c]
        if first:
            out[p, c] = val
        else:
            out[p, c] += val


@njit(cache=True, error_model="numpy", inline="always")
def _back4(table, grad, acc, need_tab, p, r00, r01, r10, r11, fx, fy, lw, nc):  # pragma: no cover - compiled
    """Scatter ``w_k lw g`` to the four taps; return ``(d/dfx, d/dfy)`` of ``<out, g>`` (times lw)."""
    gx = 1 - fx
    gy = 1 - fy
    dfx = 0.0
    dfy = 0.0
    for c in range(nc):
        g = grad[p, c]
        t00, t01, t10, t11 = table[r00, c], table[r01, c], table[r10, c], table[r11, c]
        dfx += g * (gy * (t01 - t00) + fy * (t11 - t10))
        dfy += g * (gx * (t10 - t00) + fx * (t11 - t01))
    if need_tab:
        w00 = gx * gy * lw
        w01 = fx * gy * lw
        w10 = gx * fy * lw
        w11 = fx * fy * lw
        for c in range(nc):
            g = grad[p, c]
            acc[r00, c] += w00 * g
            acc[r01, c] += w01 * g
            acc[r10, c] += w10 * g
            acc[r11, c] += w11 * g
    return dfx * lw, dfy * lw


# ---------------------------------------------------------------- 2-D textures

@njit(cache=True, error_model="numpy", inline="always")
def _px_fwd_2d(p, table, uv, da, bias, has_da, has_bias, ppi, istride, offs, hs, ws, fhs, fws, lmode, n_lev,
               nearest, wrap_u, wrap_v, half, out, nc):  # pragma: no cover - compiled
    base = (p // ppi) * istride if istride != 0 else 0
    u, v = uv[p, 0], uv[p, 1]
    if nearest:
        r = base + _fix(_ifloor(v * fhs[0]), hs[0], wrap_v) * ws[0] + _fix(_ifloor(u * fws[0]), ws[0], wrap_u)
        for c in range(nc):
            out[p, c] = table[r, c]
        return
    l0, l1, frac = _split_level(_lam_2d(da, bias, p, has_da, has_bias, fhs[0], fws[0]), lmode, n_lev)
    for k in range(2):
        lv, lw = (l0, 1 - frac) if k == 0 else (l1, frac)
        if k == 1 and lw == 0:
            break
        b = base + offs[lv]
        x0, x1, y0, y1, fx, fy = _taps_2d(u, v, fws[lv], fhs[lv], ws[lv], hs[lv], wrap_u, wrap_v, half)
        _blend4(table, out, p, b + y0 + x0, b + y0 + x1, b + y1 + x0, b + y1 + x1, fx, fy, lw, k == 0, nc)


@njit(parallel=PARALLEL, cache=True, error_model="numpy")
def _fwd_2d(table, uv, da, bias, has_da, has_bias, ppi, istride, offs, hs, ws, fhs, fws, lmode, n_lev,
            nearest, wrap_u, wrap_v, half, out):  # pragma: no cover - compiled
    n_c = table.shape[1]
    for p in prange(uv.shape[0]):
        _px_fwd_2d(p, table, uv, da, bias, has_da, has_bias, ppi, istride, offs, hs, ws, fhs, fws, lmode, n_lev,
                   nearest, wrap_u, wrap_v, half, out, n_c)


@njit(cache=True, error_model="numpy", inline="always")
def _px_bwd_2d(p, table, uv, da, bias, has_da, has_bias, ppi, istride, offs, hs, ws, fhs, fws, lmode, n_lev,
               nearest, wrap_u, wrap_v, half, grad, need_tab, need_uv, acc, guv, nc):  # pragma: no cover - compiled
    if need_uv:
        guv[p, 0] = 0.0
        guv[p, 1] = 0.0
    if not _nonzero_row(grad, p):
        return
    base = (p // ppi) * istride if istride != 0 else 0
    u, v = uv[p, 0], uv[p, 1]
    if nearest:
        if need_tab:
            r = base + _fix(_ifloor(v * fhs[0]), hs[0], wrap_v) * ws[0] + _fix(_ifloor(u * fws[0]), ws[0], wrap_u)
            for c in range(nc):
                acc[r, c] += grad[p, c]
        return
    l0, l1, frac = _split_level(_lam_2d(da, bias, p, has_da, has_bias, fhs[0], fws[0]), lmode, n_lev)
    gu = 0.0
    gv = 0.0
    for k in range(2):
        lv, lw = (l0, 1 - frac) if k == 0 else (l1, frac)
        if lw == 0:
            continue
        b = base + offs[lv]
        x0, x1, y0, y1, fx, fy = _taps_2d(u, v, fws[lv], fhs[lv], ws[lv], hs[lv], wrap_u, wrap_v, half)
        dfx, dfy = _back4(table, grad, acc, need_tab, p, b + y0 + x0, b + y0 + x1, b + y1 + x0, b + y1 + x1,
                          fx, fy, lw, nc)
        gu += dfx * fws[lv]
        gv += dfy * fhs[lv]
    if need_uv:
        guv[p, 0] = gu
        guv[p, 1] = gv


@njit(parallel=PARALLEL, cache=True, error_model="numpy")
def _bwd_2d(table, uv, da, bias, has_da, has_bias, ppi, istride, offs, hs, ws, fhs, fws, lmode, n_lev,
            nearest, wrap_u, wrap_v, half, grad, need_tab, need_uv, bufs, guv):  # pragma: no cover - compiled
    n_pix, n_c = uv.shape[0], table.shape[1]
    nch = bufs.shape[0]
    for ch in prange(nch):
        acc = bufs[ch]
        if need_tab:
            acc[:, :] = 0.0
        for p in range(ch * n_pix // nch, (ch + 1) * n_pix // nch):
            _px_bwd_2d(p, table, uv, da, bias, has_da, has_bias, ppi, istride, offs, hs, ws, fhs, fws, lmode,
                       n_lev, nearest, wrap_u, wrap_v, half, grad, need_tab, need_uv, acc, guv, n_c)


# ---------------------------------------------------------------- cube maps

@njit(cache=True, error_model="numpy", inline="always")
def _cube_face(x, y, z, fax, tiny, half, one):  # pragma: no cover - compiled
    """``dir_to_face`` of one direction: ``(face, s, t, |m|, clamped)`` in the direction's dtype."""
    ax, ay, az = abs(x), abs(y), abs(z)
    if ax >= ay and ax >= az:
        f = 0 if x >= 0 else 1
    elif ay >= az:
        f = 2 if y >= 0 else 3
    else:
        f = 4 if z >= 0 else 5
    comps = (x, y, z)
    ma = _sgn(comps[fax[f, 4]], fax[f, 5])
    clamped = not (ma >= tiny)
    if clamped:
        ma = tiny
    sc = _sgn(comps[fax[f, 0]], fax[f, 1])
    tc = _sgn(comps[fax[f, 2]], fax[f, 3])
    return f, half * (sc / ma + one), half * (tc / ma + one), ma, clamped


@njit(cache=True, error_model="numpy")
def _cube_fix(face, ix, iy, r, fax):  # pragma: no cover - compiled
    """A tap off its face (index -1 or r) moves to the nearest texel of the adjacent face (torch path's rule)."""
    ix = min(max(ix, -1), r)
    iy = min(max(iy, -1), r)
    if ix >= 0 and ix < r and iy >= 0 and iy < r:
        return face, ix, iy
    rf = float(r)
    sc = (2 * ix + 1) / rf - 1.0
    tc = (2 * iy + 1) / rf - 1.0
    vs = (_sgn(sc, fax[face, 1]), _sgn(tc, fax[face, 3]), _sgn(1.0, fax[face, 5]))
    ia, ib = fax[face, 0], fax[face, 2]
    d0 = vs[0] if ia == 0 else (vs[1] if ib == 0 else vs[2])
    d1 = vs[0] if ia == 1 else (vs[1] if ib == 1 else vs[2])
    d2 = vs[0] if ia == 2 else (vs[1] if ib == 2 else vs[2])
    f2, s2, t2, _, _ = _cube_face(d0, d1, d2, fax, 2.2250738585072014e-308, 0.5, 1.0)
    return f2, min(max(_ifloor(s2 * rf), 0), r - 1), min(max(_ifloor(t2 * rf), 0), r - 1)


@njit(cache=True, error_model="numpy", inline="always")
def _lam_cube(uv, da, bias, p, has_da, has_bias, fax, fw0, tiny):  # pragma: no cover - compiled
    lam = 0.0
    if has_da:
        x, y, z = uv[p, 0], uv[p, 1], uv[p, 2]
        f, _, _, _, _ = _cube_face(x, y, z, fax, tiny, 0.5, 1.0)
        q = (x, y, z)
        q0 = q[fax[f, 0]] * fax[f, 1]
        q1 = q[fax[f, 2]] * fax[f, 3]
        ma = max(q[fax[f, 4]] * fax[f, 5], tiny)
        rho2 = 0.0
        for k in range(2):
            dd = (da[p, 3 * k], da[p, 3 * k + 1], da[p, 3 * k + 2])
            e0 = dd[fax[f, 0]] * fax[f, 1]
            e1 = dd[fax[f, 2]] * fax[f, 3]
            e2 = dd[fax[f, 4]] * fax[f, 5]
            ds = (e0 * ma - q0 * e2) / (ma * ma) * (0.5 * fw0)
            dt = (e1 * ma - q1 * e2) / (ma * ma) * (0.5 * fw0)
            rho2 = max(rho2, ds * ds + dt * dt)
        lam = 0.5 * np.log2(rho2) if rho2 > 0 else -np.inf
    if has_bias:
        lam = lam + bias[p]
    return lam


@njit(cache=True, error_model="numpy")
def _cube_rows_edge(face, ix0, iy0, b, ft, off, r, fax):  # pragma: no cover - compiled
    """Rows of the four taps when some fall off the face (out of line: rare, and keeps kernels small)."""
    f, i, j = _cube_fix(face, ix0, iy0, r, fax)
    r00 = b + f * ft + off + j * r + i
    f, i, j = _cube_fix(face, ix0 + 1, iy0, r, fax)
    r01 = b + f * ft + off + j * r + i
    f, i, j = _cube_fix(face, ix0, iy0 + 1, r, fax)
    r10 = b + f * ft + off + j * r + i
    f, i, j = _cube_fix(face, ix0 + 1, iy0 + 1, r, fax)
    r11 = b + f * ft + off + j * r + i
    return r00, r01, r10, r11


@njit(cache=True, error_model="numpy", inline="always")
def _cube_rows(face, s, t, b, ft, off, r, fr, fax, half):  # pragma: no cover - compiled
    x = s * fr - half
    y = t * fr - half
    x0 = np.floor(x)
    y0 = np.floor(y)
    ix0 = _ifloor(x0)
    iy0 = _ifloor(y0)
    if ix0 >= 0 and iy0 >= 0 and ix0 + 1 < r and iy0 + 1 < r:
        r00 = b + face * ft + off + iy0 * r + ix0
        return r00, r00 + 1, r00 + r, r00 + r + 1, x - x0, y - y0
    r00, r01, r10, r11 = _cube_rows_edge(face, ix0, iy0, b, ft, off, r, fax)
    return r00, r01, r10, r11, x - x0, y - y0


@njit(cache=True, error_model="numpy", inline="always")
def _px_fwd_cube(p, table, uv, da, bias, has_da, has_bias, ppi, istride, ft, offs, hs, fhs, lmode, n_lev,
                 nearest, fax, half, one, tiny, out, nc):  # pragma: no cover - compiled
    base = (p // ppi) * istride if istride != 0 else 0
    face, s, t, _, _ = _cube_face(uv[p, 0], uv[p, 1], uv[p, 2], fax, tiny, half, one)
    if nearest:
        r0 = hs[0]
        i = min(max(_ifloor(s * fhs[0]), 0), r0 - 1)
        j = min(max(_ifloor(t * fhs[0]), 0), r0 - 1)
        r = base + face * ft + j * r0 + i
        for c in range(nc):
            out[p, c] = table[r, c]
        return
    l0, l1, frac = _split_level(_lam_cube(uv, da, bias, p, has_da, has_bias, fax, fhs[0], tiny), lmode, n_lev)
    for k in range(2):
        lv, lw = (l0, 1 - frac) if k == 0 else (l1, frac)
        if k == 1 and lw == 0:
            break
        r00, r01, r10, r11, fx, fy = _cube_rows(face, s, t, base, ft, offs[lv], hs[lv], fhs[lv], fax, half)
        _blend4(table, out, p, r00, r01, r10, r11, fx, fy, lw, k == 0, nc)


@njit(parallel=PARALLEL, cache=True, error_model="numpy")
def _fwd_cube(table, uv, da, bias, has_da, has_bias, ppi, istride, ft, offs, hs, fhs, lmode, n_lev,
              nearest, fax, cst, out):  # pragma: no cover - compiled
    n_c = table.shape[1]
    half, one, tiny = cst[0], cst[1], cst[2]
    for p in prange(uv.shape[0]):
        _px_fwd_cube(p, table, uv, da, bias, has_da, has_bias, ppi, istride, ft, offs, hs, fhs, lmode, n_lev,
                     nearest, fax, half, one, tiny, out, n_c)


@njit(cache=True, error_model="numpy", inline="always")
def _px_bwd_cube(p, table, uv, da, bias, has_da, has_bias, ppi, istride, ft, offs, hs, fhs, lmode, n_lev,
                 nearest, fax, half, one, tiny, grad, need_tab, need_uv, acc, guv, nc):  # pragma: no cover - compiled
    if need_uv:
        guv[p, 0] = 0.0
        guv[p, 1] = 0.0
        guv[p, 2] = 0.0
    if not _nonzero_row(grad, p):
        return
    base = (p // ppi) * istride if istride != 0 else 0
    face, s, t, ma, clamped = _cube_face(uv[p, 0], uv[p, 1], uv[p, 2], fax, tiny, half, one)
    if nearest:
        if need_tab:
            r0 = hs[0]
            i = min(max(_ifloor(s * fhs[0]), 0), r0 - 1)
            j = min(max(_ifloor(t * fhs[0]), 0), r0 - 1)
            r = base + face * ft + j * r0 + i
            for c in range(nc):
                acc[r, c] += grad[p, c]
        return
    l0, l1, frac = _split_level(_lam_cube(uv, da, bias, p, has_da, has_bias, fax, fhs[0], tiny), lmode, n_lev)
    gs = 0.0
    gt = 0.0
    for k in range(2):
        lv, lw = (l0, 1 - frac) if k == 0 else (l1, frac)
        if lw == 0:
            continue
        r00, r01, r10, r11, fx, fy = _cube_rows(face, s, t, base, ft, offs[lv], hs[lv], fhs[lv], fax, half)
        dfx, dfy = _back4(table, grad, acc, need_tab, p, r00, r01, r10, r11, fx, fy, lw, nc)
        gs += dfx * fhs[lv]
        gt += dfy * fhs[lv]
    if need_uv:
        # s = (sc / m + 1) / 2, t = (tc / m + 1) / 2 with sc, tc, m signed components of the direction
        sc = uv[p, fax[face, 0]] * fax[face, 1]
        tc = uv[p, fax[face, 2]] * fax[face, 3]
        guv[p, fax[face, 0]] += 0.5 * gs / ma * fax[face, 1]
        guv[p, fax[face, 2]] += 0.5 * gt / ma * fax[face, 3]
        if not clamped:
            guv[p, fax[face, 4]] -= 0.5 * (gs * sc + gt * tc) / (ma * ma) * fax[face, 5]


@njit(parallel=PARALLEL, cache=True, error_model="numpy")
def _bwd_cube(table, uv, da, bias, has_da, has_bias, ppi, istride, ft, offs, hs, fhs, lmode, n_lev,
              nearest, fax, cst, grad, need_tab, need_uv, bufs, guv):  # pragma: no cover - compiled
    n_pix, n_c = uv.shape[0], table.shape[1]
    half, one, tiny = cst[0], cst[1], cst[2]
    nch = bufs.shape[0]
    for ch in prange(nch):
        acc = bufs[ch]
        if need_tab:
            acc[:, :] = 0.0
        for p in range(ch * n_pix // nch, (ch + 1) * n_pix // nch):
            _px_bwd_cube(p, table, uv, da, bias, has_da, has_bias, ppi, istride, ft, offs, hs, fhs, lmode, n_lev,
                         nearest, fax, half, one, tiny, grad, need_tab, need_uv, acc, guv, n_c)


# ---------------------------------------------------------------- chunked scatter reduction

def _num_chunks(n_pix: int, taps: int, rows: int) -> int:
    """Parallel chunks for the scatter: each extra chunk costs zeroing and summing a table copy, so use
    them only when the scatter (``n_pix * taps`` texel updates) outweighs that."""
    threads = worker_count()
    if threads <= 1:
        return 1
    return int(max(1, min(threads, (8 * n_pix * taps) // max(rows, 1))))


class SampleCPU(torch.autograd.Function):
    """``out[N,C]`` sampled from ``table[M,C]`` at ``uv[N,2]`` (2-D) or directions ``uv[N,3]`` (cube).

    ``geom`` is a :class:`Geometry` (level layout, filter, boundary); ``uv_da``/``bias`` are detached
    per-pixel mip inputs (or None). Gradients to ``table`` and ``uv``.
    """

    @staticmethod
    def forward(ctx, table, uv, uv_da, bias, geom):
        out = table.new_empty(uv.shape[0], table.shape[1])
        args = geom.args(table, uv, uv_da, bias)
        (_fwd_cube if geom.cube else _fwd_2d)(*args, out.numpy())
        ctx.geom = geom
        ctx.save_for_backward(table, uv, uv_da, bias)
        return out

    @staticmethod
    def backward(ctx, grad):
        table, uv, uv_da, bias = ctx.saved_tensors
        geom = ctx.geom
        need_tab, need_uv = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_tab or need_uv):
            return None, None, None, None, None
        grad = grad.detach().contiguous().to(table.dtype)
        m, n_c = table.shape
        taps = 1 if geom.nearest else (8 if geom.lmode == 2 else 4)
        # Without a table gradient there is nothing to reduce: one task per thread, no table copies.
        nch = _num_chunks(uv.shape[0], taps, m) if need_tab else worker_count()
        bufs = table.new_empty((nch, m, n_c) if need_tab else (nch, 1, n_c))
        guv = torch.empty_like(uv) if need_uv else uv.new_empty(1, uv.shape[1])
        args = geom.args(table, uv, uv_da, bias)
        kernel = _bwd_cube if geom.cube else _bwd_2d
        kernel(*args, grad.numpy(), need_tab, need_uv, bufs.numpy(), guv.numpy())
        gtab = None
        if need_tab:
            if nch == 1:
                gtab = bufs[0]
            else:
                gtab = torch.add(bufs[0], bufs[1])  # in chunk order: deterministic
                for k in range(2, nch):
                    gtab += bufs[k]
        return gtab, (guv if need_uv else None), None, None, None


class Geometry:
    """Layout and filter of one lookup, as the arguments of the compiled kernels.

    ``offsets/heights/widths`` are the levels used (``[L]`` int64 numpy), ``per_pixel_img`` the number of
    pixels per batch entry, ``img_stride`` the table rows between batch entries (0 for a shared texture),
    ``face_stride`` the rows between cube faces; ``lmode`` 0 = level 0 only, 1 = nearest level,
    2 = two blended levels.
    """

    def __init__(self, cube, offsets, heights, widths, per_pixel_img, img_stride, face_stride, lmode, nearest,
                 wrap_u, wrap_v, dtype):
        self.cube, self.nearest, self.lmode = cube, bool(nearest), int(lmode)
        self.offs = np.ascontiguousarray(offsets, dtype=np.int64)
        self.hs = np.ascontiguousarray(heights, dtype=np.int64)
        self.ws = np.ascontiguousarray(widths, dtype=np.int64)
        npd = np.float32 if dtype == torch.float32 else np.float64
        self.fhs, self.fws = self.hs.astype(npd), self.ws.astype(npd)
        self.ppi, self.istride, self.ft = int(per_pixel_img), int(img_stride), int(face_stride)
        self.wrap_u, self.wrap_v = bool(wrap_u), bool(wrap_v)
        self.cst = np.array([0.5, 1.0, np.finfo(npd).tiny], dtype=npd)

    def args(self, table, uv, uv_da, bias):
        tab, pts = table.detach().numpy(), uv.detach().numpy()
        has_da, has_bias = uv_da is not None and uv_da.numel() > 0, bias is not None and bias.numel() > 0
        da = uv_da.numpy() if has_da else np.zeros((1, 6 if self.cube else 4), tab.dtype)
        bs = bias.numpy() if has_bias else np.zeros(1, tab.dtype)
        n_lev = int(self.offs.shape[0])
        if self.cube:
            return (tab, pts, da, bs, has_da, has_bias, self.ppi, self.istride, self.ft, self.offs, self.hs,
                    self.fhs, self.lmode, n_lev, self.nearest, _FACE_AXES, self.cst)
        return (tab, pts, da, bs, has_da, has_bias, self.ppi, self.istride, self.offs, self.hs, self.ws,
                self.fhs, self.fws, self.lmode, n_lev, self.nearest, self.wrap_u, self.wrap_v, self.cst[0])
