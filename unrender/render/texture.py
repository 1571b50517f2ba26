"""Differentiable texture lookups in nvdiffrast's shape: nearest, bilinear, mip-mapped, cube maps.

Every filter is written as a weighted sum of ``K`` texel taps per output pixel,

    out[p] = sum_k w_k[p] * table[row_k[p]],

where ``table[M,C]`` holds all texels of all images (and mip levels) of the texture, ``row_k``
is an integer tap address and ``w_k`` its weight (bilinear: ``(1-f_x)(1-f_y)``, ...). The sum
is one custom autograd function (:class:`_TapGather`) whose backward scatters
``w_k * grad_out`` into the table (gradient w.r.t. the texture, and through the mip stack
to level 0) and returns ``<table[row_k], grad_out>`` for the weights; the weights are ordinary
autograd expressions of ``uv``, which gives the gradient w.r.t. ``uv``. Tap addresses and the
mip level are not differentiable (as in nvdiffrast).

On CPU (float32/float64, numba available, ``USE_NUMBA``) the same filters run as fused kernels
(:mod:`.texture_cpu`): taps, weights and level come straight from ``uv`` per pixel, the backward
returns the analytic ``uv`` gradient and a deterministic parallel scatter into the table. The tap
gather above is the reference and the path for other devices; the tests compare the two.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..checks import float_tensor, same_device
from ..errors import InputError
from .cubemap import _FACE_MATRICES, dir_to_face, face_to_dir
from .mipmap import MipStack, build_mip

_FILTERS = ("auto", "nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear")
_MODES = ("wrap", "clamp")


try:  # numba is a dependency; the pure-torch tap gather keeps working (and is the CUDA path) without it
    import numba

    from . import texture_cpu
except Exception:  # noqa: BLE001
    numba = texture_cpu = None

USE_NUMBA = numba is not None  # module switch, so tests can compare both paths


def _compiled(*tensors) -> bool:
    return USE_NUMBA and all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)


class _TapGather(torch.autograd.Function):
    """``out[N,C] = sum_k weights[k,N] * table[rows[k,N]]``; gradients to ``table`` and ``weights``.

    Backward: ``grad_table[rows[k,n]] += weights[k,n] * grad[n]``,
    ``grad_weights[k,n] = <table[rows[k,n]], grad[n]>``. The reference (and non-CPU) path; on CPU
    :func:`texture` uses the fused kernels of :mod:`.texture_cpu` instead.
    """

    @staticmethod
    def forward(ctx, table, rows, weights):
        k, n = rows.shape
        rows, weights = rows.contiguous(), weights.contiguous()
        vals = table.index_select(0, rows.reshape(-1)).view(k, n, -1)
        out = torch.einsum("knc,kn->nc", vals, weights)
        ctx.save_for_backward(table, rows, weights)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        table, rows, weights = ctx.saved_tensors
        grad = grad.contiguous().to(table.dtype)
        k, n = rows.shape
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_table = torch.zeros_like(table)
            src = (weights[:, :, None] * grad[None]).reshape(k * n, -1)
            grad_table.index_add_(0, rows.reshape(-1), src)
        if ctx.needs_input_grad[2]:
            vals = table.index_select(0, rows.reshape(-1)).view(k, n, -1)
            grad_weights = torch.einsum("knc,nc->kn", vals, grad)
        return grad_table, None, grad_weights


def _parse_boundary(boundary):
    """Return ``(cube, wrap_u, wrap_v)``."""
    if boundary == "cube":
        return True, False, False
    if isinstance(boundary, str) and boundary in _MODES:
        return False, boundary == "wrap", boundary == "wrap"
    if isinstance(boundary, (tuple, list)) and len(boundary) == 2 and all(b in _MODES for b in boundary):
        return False, boundary[0] == "wrap", boundary[1] == "wrap"
    raise InputError(f"boundary must be 'wrap', 'clamp', 'cube' or a (u, v) pair of 'wrap'/'clamp'; "
                     f"got {boundary!r}.")


def _check_tex(tex, cube: bool) -> torch.Tensor:
    if cube:
        tex = float_tensor("tex", tex, "[B,6,R,R,C] or [6,R,R,C] (cube map)", ndims=(4, 5))
        if tex.shape[-4] != 6 or tex.shape[-3] != tex.shape[-2]:
            raise InputError(f"tex must be a cube map [B,6,R,R,C] or [6,R,R,C] with boundary='cube'; "
                             f"got {tuple(tex.shape)}.")
    else:
        tex = float_tensor("tex", tex, "[B,H,W,C] or [H,W,C]", ndims=(3, 4))
    if tex.numel() == 0:
        raise InputError(f"tex must be non-empty; got shape {tuple(tex.shape)}.")
    return tex


def _clip(i, lo, hi):
    """``clamp(i, lo, hi)`` where ``hi`` may be an int or a per-pixel tensor."""
    return torch.minimum(i.clamp_min(lo), hi) if torch.is_tensor(hi) else i.clamp(lo, hi)


def _wrap_or_clamp(i, size, wrap: bool):
    return torch.remainder(i, size) if wrap else _clip(i, 0, size - 1)


def _cube_fix(face, ix, iy, res):
    """Move taps that fall off their face (index -1 or R) onto the neighbouring face.

    The off-face texel centre is extended along its face's plane to a 3-D direction, which is
    looked up again (nearest texel). Taps past a corner land on one of the corner's texels.
    """
    ix, iy = _clip(ix, -1, res), _clip(iy, -1, res)
    off = ((ix < 0) | (ix >= res) | (iy < 0) | (iy >= res)).nonzero(as_tuple=True)
    if off[0].numel() == 0:
        return face, ix, iy
    r = res[off] if torch.is_tensor(res) else res
    rf = r.to(torch.float64) if torch.is_tensor(r) else float(r)
    d = face_to_dir(face[off], (2 * ix[off] + 1).double() / rf - 1, (2 * iy[off] + 1).double() / rf - 1)
    f2, s2, t2 = dir_to_face(d)
    face, ix, iy = face.clone(), ix.clone(), iy.clone()
    face[off] = f2
    ix[off] = _clip(torch.floor(s2 * rf).long(), 0, r - 1)
    iy[off] = _clip(torch.floor(t2 * rf).long(), 0, r - 1)
    return face, ix, iy


class _Layout:
    """Where texels live in the flat table ``[M,C]``: ``row = (img0 + face) * T + offset_l + y * W_l + x``.

    ``img0[B,1]`` is the first image of each batch entry (0 for a texture shared by the batch),
    ``face`` is 0 for 2-D textures and ``T`` the number of texels of one image's whole stack.
    """

    def __init__(self, table, offsets, heights, widths, img0, per_img):
        self.table, self.offsets, self.heights, self.widths = table, offsets, heights, widths
        self.img0, self.t = img0, per_img

    def level(self, lvl):
        """``(H_l, W_l, offset_l)``: python ints for a fixed level, else per-pixel tensors."""
        if isinstance(lvl, int):
            return int(self.heights[lvl]), int(self.widths[lvl]), int(self.offsets[lvl])
        return self.heights[lvl], self.widths[lvl], self.offsets[lvl]


def _taps_2d(s, t, lay, lvl, wrap_u, wrap_v, nearest):
    hl, wl, off = lay.level(lvl)
    base = lay.img0 * lay.t + off
    if nearest:
        ix = _wrap_or_clamp(torch.floor(s.detach() * wl).long(), wl, wrap_u)
        iy = _wrap_or_clamp(torch.floor(t.detach() * hl).long(), hl, wrap_v)
        return (base + iy * wl + ix)[None], torch.ones_like(s)[None]
    x, y = s * wl - 0.5, t * hl - 0.5
    x0, y0 = torch.floor(x.detach()), torch.floor(y.detach())
    fx, fy = x - x0, y - y0
    ix0, iy0 = x0.long(), y0.long()
    ix = (_wrap_or_clamp(ix0, wl, wrap_u), _wrap_or_clamp(ix0 + 1, wl, wrap_u))
    iy = (_wrap_or_clamp(iy0, hl, wrap_v) * wl, _wrap_or_clamp(iy0 + 1, hl, wrap_v) * wl)
    rows = torch.stack([base + iy[0] + ix[0], base + iy[0] + ix[1], base + iy[1] + ix[0], base + iy[1] + ix[1]])
    gx, gy = 1 - fx, 1 - fy
    return rows, torch.stack([gx * gy, fx * gy, gx * fy, fx * fy])


def _taps_cube(s, t, face, lay, lvl, nearest):
    res, _, off = lay.level(lvl)

    def rows_of(f, ix, iy):
        return (lay.img0 + f) * lay.t + off + iy * res + ix

    if nearest:
        ix = _clip(torch.floor(s.detach() * res).long(), 0, res - 1)
        iy = _clip(torch.floor(t.detach() * res).long(), 0, res - 1)
        return rows_of(face, ix, iy)[None], torch.ones_like(s)[None]
    x, y = s * res - 0.5, t * res - 0.5
    x0, y0 = torch.floor(x.detach()), torch.floor(y.detach())
    fx, fy = x - x0, y - y0
    ix0, iy0 = x0.long(), y0.long()
    rows = []
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        rows.append(rows_of(*_cube_fix(face, ix0 + dx, iy0 + dy, res)))
    gx, gy = 1 - fx, 1 - fy
    return torch.stack(rows), torch.stack([gx * gy, fx * gy, gx * fy, fx * fy])


def _level_from_derivatives(uv, uv_da, cube, h0, w0):
    """Isotropic mip level ``log2(max(|dX|, |dY|))`` of the pixel footprint, in level-0 texels."""
    if not cube:
        dudx, dudy, dvdx, dvdy = uv_da.unbind(-1)
        rho2 = torch.maximum((dudx * w0) ** 2 + (dvdx * h0) ** 2, (dudy * w0) ** 2 + (dvdy * h0) ** 2)
        return 0.5 * torch.log2(rho2)
    face, _, _ = dir_to_face(uv)
    m = torch.tensor(_FACE_MATRICES, dtype=uv.dtype, device=uv.device)[face]  # dir = m @ (sc, tc, ma)
    q = (m.transpose(-1, -2) @ uv[..., None])[..., 0]  # (sc, tc, ma): linear in the direction
    ma = q[..., 2].clamp_min(torch.finfo(uv.dtype).tiny)
    rho2 = None
    for dd in (uv_da[..., 0:3], uv_da[..., 3:6]):
        dq = (m.transpose(-1, -2) @ dd[..., None])[..., 0]
        ds = (dq[..., 0] * ma - q[..., 0] * dq[..., 2]) / (ma * ma) * (0.5 * w0)
        dt = (dq[..., 1] * ma - q[..., 1] * dq[..., 2]) / (ma * ma) * (0.5 * w0)
        r2 = ds * ds + dt * dt
        rho2 = r2 if rho2 is None else torch.maximum(rho2, r2)
    return 0.5 * torch.log2(rho2)


def texture(tex, uv, uv_da=None, mip_level_bias=None, mip: MipStack | None = None, filter: str = "auto",
            boundary="wrap", max_mip_level: int | None = None) -> torch.Tensor:
    """Sample a 2-D texture or a cube map at ``uv`` (differentiable w.r.t. the texture and ``uv``).

    **2-D textures** (``boundary`` ``"wrap"``, ``"clamp"`` or a ``(u_mode, v_mode)`` pair): texel
    ``tex[b, i, j]`` has its centre at ``uv = ((j + 0.5) / W, (i + 0.5) / H)`` (u along the width).
    Bilinear: with ``x = u W - 1/2``, ``y = v H - 1/2``, ``x0 = floor(x)``, ``f_x = x - x0`` (same for y),

        out = (1-f_x)(1-f_y) T[y0, x0] + f_x (1-f_y) T[y0, x0+1] + (1-f_x) f_y T[y0+1, x0] + f_x f_y T[y0+1, x0+1]

    with indices wrapped (``i mod W``) or clamped (``clamp(i, 0, W-1)``). Nearest:
    ``T[floor(v H), floor(u W)]``.

    **Cube maps** (``boundary="cube"``): ``tex`` is ``[B,6,R,R,C]``/``[6,R,R,C]`` and ``uv`` is a
    direction ``[B,h,w,3]`` (any length), mapped to a face and face coordinates ``(s, t)`` as in
    :mod:`unrender.render.cubemap`, then filtered like a 2-D texture; a bilinear tap that falls
    off the face is taken from the adjacent face (the texel nearest to the tap's centre pushed
    over the edge), so there are no seams; a tap past a cube corner reuses a corner texel.

    **Mip-mapping** (``"linear-mipmap-nearest"``: bilinear on level ``round(lambda)``;
    ``"linear-mipmap-linear"``: bilinear on levels ``floor(lambda)`` and ``floor(lambda) + 1``
    blended by ``frac(lambda)``). The level is ``lambda = clamp(log2(rho) + bias, 0, L-1)`` with
    ``rho = max(|dX|, |dY|)`` the larger footprint axis in level-0 texels: for 2-D
    ``dX = (du/dX W, dv/dX H)``, ``dY = (du/dY W, dv/dY H)``; for cube maps ``dX``, ``dY`` are the
    face-coordinate derivatives ``R/2 d(sc/|m|)`` of the direction derivatives. Given only
    ``mip_level_bias``, ``lambda = clamp(bias, 0, L-1)`` (pick a level directly). Levels come from
    ``mip`` (see :func:`unrender.render.mipmap.build_mip`; build it once per texture update and
    reuse it) or are built here on every call when ``mip`` is None.

    Args:
        tex: ``[B,H,W,C]`` or ``[H,W,C]`` (shared by the batch); a cube map ``[B,6,R,R,C]`` or
            ``[6,R,R,C]`` for ``boundary="cube"``. May be None when ``mip`` is given.
        uv: ``[B,h,w,2]`` texture coordinates, or ``[B,h,w,3]`` directions for cube maps.
        uv_da: ``[B,h,w,4] = (du/dX, du/dY, dv/dX, dv/dY)`` per pixel, or ``[B,h,w,6] =
            (d dir/dX, d dir/dY)`` for cube maps; no gradient flows to it.
        mip_level_bias: ``[B,h,w]`` added to the level (or the level itself without ``uv_da``);
            no gradient flows to it.
        mip: a :class:`~unrender.render.mipmap.MipStack` built from ``tex`` (``tex`` is then only
            checked against ``mip.levels[0]``'s shape; gradients reach ``tex`` through the stack).
        filter: ``"auto"`` (``"linear-mipmap-linear"`` when ``uv_da`` or ``mip_level_bias`` is
            given, else ``"linear"``), ``"nearest"``, ``"linear"``, ``"linear-mipmap-nearest"``,
            ``"linear-mipmap-linear"``.
        boundary: ``"wrap"``, ``"clamp"``, ``(u_mode, v_mode)`` or ``"cube"``.
        max_mip_level: highest mip level used (None = all).
    Returns:
        ``[B,h,w,C]`` in ``tex``'s dtype.

    Example:
        >>> tex = torch.tensor([[[0.], [1.]], [[2.], [3.]]])            # [H=2, W=2, C=1]
        >>> uv = torch.tensor([[[[0.5, 0.5], [0.25, 0.25]]]])           # [B=1, h=1, w=2, 2]
        >>> texture(tex, uv, boundary="clamp")[..., 0]
        tensor([[[1.5000, 0.0000]]])
    """
    cube, wrap_u, wrap_v = _parse_boundary(boundary)
    if filter not in _FILTERS:
        raise InputError(f"filter must be one of {', '.join(map(repr, _FILTERS))}; got {filter!r}.")
    if mip is not None and not isinstance(mip, MipStack):
        raise InputError(f"mip must be a MipStack from build_mip(tex); got {type(mip).__name__}.")
    if tex is None and mip is None:
        raise InputError("tex must be a texture tensor (it may be None only when mip is given).")
    ref = _check_tex(tex if tex is not None else mip.levels[0], cube)
    if mip is not None and tuple(mip.levels[0].shape) != tuple(ref.shape):
        raise InputError(f"mip was built from a texture of shape {tuple(mip.levels[0].shape)}, but tex has "
                         f"shape {tuple(ref.shape)}; rebuild it with build_mip(tex).")
    dtype = mip.flat.dtype if mip is not None else ref.dtype
    nd = 3 if cube else 2
    uv = float_tensor("uv", uv, f"[B,h,w,{nd}]", last_dim=nd, ndims=(4,), dtype=dtype)
    same_device(("tex", ref), ("uv", uv), *((("mip", mip.flat),) if mip is not None else ()))
    bsz, h, w = uv.shape[:3]
    batched = ref.dim() == (5 if cube else 4)
    tb = ref.shape[0] if batched else 1
    if tb not in (1, bsz):
        raise InputError(f"tex has batch size {tb} but uv has {bsz}; give tex a batch of 1 or {bsz}.")
    if max_mip_level is not None and (isinstance(max_mip_level, bool) or int(max_mip_level) != max_mip_level
                                      or max_mip_level < 0):
        raise InputError(f"max_mip_level must be a non-negative integer or None; got {max_mip_level!r}.")

    def pixel_field(name, x, last):
        if x is None:
            return None
        shape = f"[B,h,w,{last}]" if last else "[B,h,w]"
        x = float_tensor(name, x, shape, last_dim=last, ndims=(4,) if last else (3,), dtype=dtype)
        if tuple(x.shape[:3]) != (bsz, h, w):
            raise InputError(f"{name} must have shape {shape} matching uv {tuple(uv.shape)}; got {tuple(x.shape)}.")
        same_device(("uv", uv), (name, x))
        return x.detach()

    uv_da = pixel_field("uv_da", uv_da, 6 if cube else 4)
    bias = pixel_field("mip_level_bias", mip_level_bias, None)
    if filter == "auto":
        filter = "linear-mipmap-linear" if (uv_da is not None or bias is not None) else "linear"
    mipmapped = filter.startswith("linear-mipmap")
    if mipmapped and uv_da is None and bias is None:
        raise InputError(f"filter={filter!r} needs uv_da or mip_level_bias to choose the mip level; pass one "
                         f"of them or use filter='linear'.")

    if mipmapped and mip is None:
        mip = build_mip(ref, max_mip_level)
    c = ref.shape[-1]
    if mip is not None:
        table = mip.flat
        offsets, heights, widths = mip.offsets, mip.heights, mip.widths
    else:
        hh, ww = ref.shape[-3], ref.shape[-2]
        table = ref.reshape(-1, hh * ww, c)
        offsets = torch.zeros(1, dtype=torch.int64, device=ref.device)
        heights = torch.full((1,), hh, dtype=torch.int64, device=ref.device)
        widths = torch.full((1,), ww, dtype=torch.int64, device=ref.device)
    per_img = table.shape[1]
    img0 = torch.arange(bsz, device=ref.device)[:, None] * ((6 if cube else 1) if tb == bsz else 0)
    lay = _Layout(table.reshape(-1, c), offsets, heights, widths, img0, per_img)

    n_lev = offsets.shape[0] if max_mip_level is None else min(offsets.shape[0], int(max_mip_level) + 1)
    nearest = filter == "nearest"
    if _compiled(lay.table, uv):
        lmode = 0 if (not mipmapped or n_lev == 1) else (1 if filter == "linear-mipmap-nearest" else 2)
        geom = texture_cpu.Geometry(cube, offsets[:n_lev].numpy(), heights[:n_lev].numpy(),
                                    widths[:n_lev].numpy(), h * w, per_img * (6 if cube else 1) if tb == bsz else 0,
                                    per_img, lmode, nearest, wrap_u, wrap_v, lay.table.dtype)
        pts = uv.reshape(-1, nd)
        da = uv_da.reshape(-1, uv_da.shape[-1]) if (lmode and uv_da is not None) else None
        bs = bias.reshape(-1) if (lmode and bias is not None) else None
        out = texture_cpu.SampleCPU.apply(lay.table, pts.detach() if nearest else pts, da, bs, geom)
        return out.reshape(bsz, h, w, c)
    pts = uv.reshape(bsz, h * w, nd)
    if cube:
        face, s, t = dir_to_face(pts)
    else:
        face, s, t = None, pts[..., 0], pts[..., 1]

    def taps(lvl):
        if cube:
            return _taps_cube(s, t, face, lay, lvl, nearest)
        return _taps_2d(s, t, lay, lvl, wrap_u, wrap_v, nearest)

    if not mipmapped or n_lev == 1:
        rows, weights = taps(0)
    else:
        if uv_da is not None:
            lam = _level_from_derivatives(uv.detach(), uv_da, cube, int(heights[0]), int(widths[0]))
            if bias is not None:
                lam = lam + bias
        else:
            lam = bias
        lam = torch.nan_to_num(lam.reshape(bsz, h * w), nan=0.0).clamp(0, n_lev - 1)
        if filter == "linear-mipmap-nearest":
            rows, weights = taps(torch.floor(lam + 0.5).long())
        else:
            l0 = torch.floor(lam)
            frac = lam - l0
            l0 = l0.long()
            r0, w0 = taps(l0)
            r1, w1 = taps(torch.clamp(l0 + 1, max=n_lev - 1))
            rows, weights = torch.cat([r0, r1]), torch.cat([w0 * (1 - frac), w1 * frac])
    k = rows.shape[0]
    out = _TapGather.apply(lay.table, rows.reshape(k, -1), weights.reshape(k, -1))
    return out.reshape(bsz, h, w, c)
