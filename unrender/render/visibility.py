"""Exact z-buffer visibility: which triangle is nearest at each pixel centre.

Visibility carries no gradient, so it may run in a fast kernel. Two interchangeable
backends compute the same thing:

* ``"numba"`` (:mod:`unrender.render.raster_cpu`): a compiled scanline loop over triangle
  bounding boxes, parallel over (batch, band of rows); used on CPU.
* ``"torch"`` (this module): the pure-PyTorch reference, also the CUDA/MPS path: every (triangle,
  pixel-in-bounding-box) fragment is enumerated in chunks and the nearest is kept with a
  ``scatter_reduce(amin)`` over a packed 64-bit (depth, triangle id) key.

Both use homogeneous 2D rasterization (Olano & Greer 1997), so triangles that cross the
camera plane need no clipping: for clip-space vertices ``V_i = (x_i, y_i, w_i)`` let
``c_0 = V_1 x V_2``, ``c_1 = V_2 x V_0``, ``c_2 = V_0 x V_1`` and ``D_i(p) = c_i . (p_x, p_y, 1)``.
Pixel ``p`` (ndc) is covered iff every ``D_i`` has the sign of ``det = V_0 . c_0`` (or is 0), and then
``z/w = sum_i D_i z_i / det``, which must lie in ``[-1, 1]`` (near/far clipping). Ties in depth go to
the lower triangle id in both backends.
"""

from __future__ import annotations

import torch


def triangle_setup(pos: torch.Tensor, tri: torch.Tensor, height: int, width: int):
    """Per-triangle edge functions, depth plane and pixel bounding box.

    Args:
        pos: clip-space positions ``[B,V,4]``.
        tri: ``[F,3]`` int64.
    Returns:
        ``coef[B,F,4,3]`` (rows: D_0, D_1, D_2 and z/w as linear functions ``a p_x + b p_y + c``, already
        divided by ``det`` so that coverage is ``D_i >= 0``), and ``box[B,F,4]`` int64
        (col0, col1, row0, row1, inclusive; empty when col0 > col1).
    """
    v = pos[:, tri]  # [B,F,3,4]
    xyw = v[..., [0, 1, 3]]
    c = torch.stack([torch.linalg.cross(xyw[:, :, 1], xyw[:, :, 2], dim=-1),
                     torch.linalg.cross(xyw[:, :, 2], xyw[:, :, 0], dim=-1),
                     torch.linalg.cross(xyw[:, :, 0], xyw[:, :, 1], dim=-1)], dim=2)  # [B,F,3,3]
    det = (xyw[:, :, 0] * c[:, :, 0]).sum(-1)
    ok = det != 0
    inv = torch.where(ok, 1.0 / torch.where(ok, det, torch.ones_like(det)), torch.zeros_like(det))
    lam = c * inv[..., None, None]
    zc = (lam * v[..., 2:3]).sum(2)  # sum_i lambda_i z_i  -> [B,F,3]
    coef = torch.cat([lam, zc[:, :, None]], dim=2)
    # Bounding box in pixels; triangles reaching behind the camera get the whole screen.
    w = v[..., 3]
    front = (w > 0).all(-1)
    safe_w = torch.where(w > 0, w, torch.ones_like(w))
    ndc = v[..., :2] / safe_w[..., None]
    lo, hi = ndc.amin(2), ndc.amax(2)
    col0 = torch.ceil((lo[..., 0] + 1) * 0.5 * width - 0.5)
    col1 = torch.floor((hi[..., 0] + 1) * 0.5 * width - 0.5)
    row0 = torch.ceil((lo[..., 1] + 1) * 0.5 * height - 0.5)
    row1 = torch.floor((hi[..., 1] + 1) * 0.5 * height - 0.5)
    box = torch.stack([col0, col1, row0, row1], -1)
    full = torch.tensor([0, width - 1, 0, height - 1], dtype=box.dtype, device=box.device)
    box = torch.where(front[..., None], box, full)
    box = torch.stack([box[..., 0].clamp(0, width), box[..., 1].clamp(-1, width - 1),
                       box[..., 2].clamp(0, height), box[..., 3].clamp(-1, height - 1)], -1).long()
    box[~(ok & torch.isfinite(coef).all(-1).all(-1))] = torch.tensor([1, 0, 1, 0], device=box.device)
    return coef, box


# --------------------------------------------------------------------------- torch backend
def _ordered_bits(z: torch.Tensor) -> torch.Tensor:
    """Map float32 values to int64 keys with the same order (for packing depth into a sort key)."""
    bits = z.to(torch.float32).view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, -(bits & 0x7FFFFFFF), bits) + (1 << 31)


def _visibility_torch(coef, box, height, width, max_fragments: int = 1 << 23):
    device = coef.device
    nb, nf = coef.shape[:2]
    coef = coef.to(torch.float32)
    span_w = (box[..., 1] - box[..., 0] + 1).clamp(min=0)
    span_h = (box[..., 3] - box[..., 2] + 1).clamp(min=0)
    counts = (span_w * span_h).reshape(-1)
    keys = torch.full((nb * height * width,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)
    flat_coef, flat_box = coef.reshape(-1, 4, 3), box.reshape(-1, 4)
    live = counts.nonzero().squeeze(1)
    csum = torch.cumsum(counts[live], 0)
    start = 0
    while start < live.numel():
        # Take triangles until the chunk holds about max_fragments fragments (at least one triangle).
        base = csum[start - 1] if start > 0 else torch.zeros((), dtype=csum.dtype, device=device)
        stop = int(torch.searchsorted(csum, base + max_fragments, right=True))
        stop = max(stop, start + 1)
        ids = live[start:stop]
        cnt = counts[ids]
        owner = torch.repeat_interleave(torch.arange(ids.numel(), device=device), cnt)
        first = torch.cumsum(cnt, 0) - cnt
        off = torch.arange(owner.numel(), device=device) - first[owner]
        tid = ids[owner]
        bx = flat_box[tid]
        sw = (bx[:, 1] - bx[:, 0] + 1)
        col = bx[:, 0] + off % sw
        row = bx[:, 2] + off // sw
        px = (2.0 * (col.to(torch.float32) + 0.5) / width - 1.0)
        py = (2.0 * (row.to(torch.float32) + 0.5) / height - 1.0)
        k = flat_coef[tid]
        vals = k[..., 0] * px[:, None] + k[..., 1] * py[:, None] + k[..., 2]  # [N,4]
        inside = (vals[:, :3] >= 0).all(-1) & (vals[:, 3] >= -1) & (vals[:, 3] <= 1)
        bidx = tid // nf
        face = tid % nf
        pix = (bidx * height + row) * width + col
        key = (_ordered_bits(vals[:, 3]) << 32) | face
        keys.scatter_reduce_(0, pix[inside], key[inside], reduce="amin")
        start = stop
    hit = keys != torch.iinfo(torch.int64).max
    ids = torch.where(hit, (keys & 0xFFFFFFFF) + 1, torch.zeros_like(keys))
    return ids.reshape(nb, height, width).to(torch.int32)


def visible_triangles(pos: torch.Tensor, tri: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Triangle id + 1 of the nearest triangle at each pixel centre, 0 where none: ``[B,H,W]`` int32.

    The pure-PyTorch z-buffer (any device). ``pos[B,V,4]`` clip positions, ``tri[F,3]`` int64.
    """
    with torch.no_grad():
        coef, box = triangle_setup(pos.detach(), tri, height, width)
        return _visibility_torch(coef, box, height, width)
