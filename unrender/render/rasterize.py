"""Rasterization and attribute interpolation in nvdiffrast's shape.

``rasterize`` finds the visible triangle per pixel with an exact z-buffer (no gradient,
see :mod:`unrender.render.visibility`) and then recomputes the perspective-correct
barycentrics of that triangle with ordinary autograd-tracked tensor code, so gradients
flow from ``rast``'s (u, v, z/w) to the clip-space vertex positions, as in nvdiffrast.

For the covered pixel ``p = (p_x, p_y, 1)`` (ndc) of triangle ``(V_0, V_1, V_2)`` with
``V_i = (x_i, y_i, w_i)`` and ``D_i = p . c_i`` (``c_0 = V_1 x V_2`` and cyclic):

    b_i = D_i / (D_0 + D_1 + D_2),   u = b_0,  v = b_1,   z/w = sum_i b_i z_i / sum_i b_i w_i
"""

from __future__ import annotations

import torch

from ..checks import float_tensor, index_tensor, resolution_pair, same_device
from ..errors import InputError
from .kernel_config import resolve_backend
from .visibility import visible_triangles

try:  # numba is a dependency; the pure-torch path keeps working if it is broken on a platform
    from . import raster_cpu
except Exception:  # noqa: BLE001
    raster_cpu = None


def _batched_pos(pos) -> torch.Tensor:
    pos = float_tensor("pos", pos, "[B,V,4] or [V,4]", last_dim=4, ndims=(2, 3))
    return pos[None] if pos.dim() == 2 else pos


def pixel_centers_ndc(height: int, width: int, device=None, dtype=torch.float32):
    """Ndc coordinates of pixel centres, ``(x[W], y[H])``; row 0 is ndc ``y = -1``."""
    x = (torch.arange(width, device=device, dtype=dtype) + 0.5) * (2.0 / width) - 1.0
    y = (torch.arange(height, device=device, dtype=dtype) + 0.5) * (2.0 / height) - 1.0
    return x, y


def _edge_vectors(pos: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """``c[B,F,3,3]``: the homogeneous edge functions (rows c_0, c_1, c_2) of every triangle."""
    v = pos[:, tri][..., [0, 1, 3]]
    return torch.stack([torch.linalg.cross(v[:, :, 1], v[:, :, 2], dim=-1),
                        torch.linalg.cross(v[:, :, 2], v[:, :, 0], dim=-1),
                        torch.linalg.cross(v[:, :, 0], v[:, :, 1], dim=-1)], dim=2)


def _covered(tri_id: torch.Tensor, num_faces: int):
    """Flat indices of covered pixels and the (batch * F + face) row of their triangle."""
    b, h, w = tri_id.shape
    flat = tri_id.reshape(-1)
    idx = (flat > 0).nonzero().squeeze(1)
    bidx = idx // (h * w)
    rem = idx % (h * w)
    return idx, bidx * num_faces + flat[idx].long() - 1, rem // w, rem % w


def rasterize(pos, tri, resolution, backend: str = "auto") -> torch.Tensor:
    """Rasterize triangles: per pixel the nearest triangle's barycentrics, depth and id.

    Args:
        pos: clip-space vertex positions ``[B,V,4]`` or ``[V,4]`` (then B = 1), any float dtype.
        tri: triangles ``[F,3]``, integer indices into V.
        resolution: ``(H, W)`` or an int.
        backend: visibility kernel, ``"auto"`` | ``"numba"`` | ``"torch"``; the result is the same.
    Returns:
        ``rast[B,H,W,4] = (u, v, z/w, tri_id + 1)`` in ``pos``'s dtype, zeros where nothing is drawn.
        ``u, v`` and ``z/w`` are differentiable w.r.t. ``pos``; the triangle id and the coverage are not
        (see :func:`unrender.render.antialias` for silhouette gradients). Row 0 is ndc ``y = -1``.

    Example:
        >>> pos = torch.tensor([[-1., -1, 0, 1], [1, -1, 0, 1], [-1, 1, 0, 1]])
        >>> rast = rasterize(pos, torch.tensor([[0, 1, 2]]), (4, 4))
        >>> int((rast[..., 3] > 0).sum())   # the lower-left half of a 4x4 screen (diagonal included)
        10
    """
    pos = _batched_pos(pos)
    tri = index_tensor("tri", tri, "[F,3]", last_dim=3, num_vertices=pos.shape[1], device=pos.device)
    same_device(("pos", pos), ("tri", tri))
    h, w = resolution_pair(resolution)
    if backend not in ("auto", "numba", "torch"):
        raise InputError(f"backend must be 'auto', 'numba' or 'torch'; got {backend!r}.")
    if tri.shape[0] == 0:
        return pos.new_zeros(pos.shape[0], h, w, 4)
    if resolve_backend(backend, raster_cpu is not None, pos.device.type) == "numba":
        return _RasterizeCPU.apply(pos, tri, h, w)
    return rasterize_reference(pos, tri, (h, w))


class _RasterizeCPU(torch.autograd.Function):
    """Compiled forward and analytic backward of :func:`rasterize` (see :mod:`.raster_cpu`)."""

    @staticmethod
    def forward(ctx, pos, tri, h, w):
        pos_np = pos.detach().numpy()
        tri_np = tri.numpy()
        rast = torch.from_numpy(raster_cpu.rasterize_forward(pos_np, tri_np, h, w))
        ctx.save_for_backward(pos, tri, rast)
        return rast

    @staticmethod
    def backward(ctx, grad):
        pos, tri, rast = ctx.saved_tensors
        gpos = raster_cpu.rasterize_backward(pos.detach().numpy(), tri.numpy(), rast.numpy(),
                                             grad.contiguous().numpy())
        return torch.from_numpy(gpos), None, None, None


def rasterize_reference(pos: torch.Tensor, tri: torch.Tensor, resolution) -> torch.Tensor:
    """Pure-PyTorch :func:`rasterize` (any device): torch z-buffer, then autograd-tracked barycentrics.

    Args as :func:`rasterize`, already checked (``pos[B,V,4]``, ``tri[F,3]`` int64). This is the
    reference every fast path is tested against, and the CUDA/MPS path.
    """
    h, w = resolution
    bsz = pos.shape[0]
    tri_id = visible_triangles(pos, tri, h, w)
    idx, row_f, row, col = _covered(tri_id, tri.shape[0])
    out = pos.new_zeros(bsz * h * w, 4)
    if idx.numel() == 0:
        return out.reshape(bsz, h, w, 4)
    xs, ys = pixel_centers_ndc(h, w, pos.device, pos.dtype)
    p = torch.stack([xs[col], ys[row], torch.ones_like(xs[col])], -1)  # [N,3]
    c = _edge_vectors(pos, tri).reshape(-1, 3, 3)[row_f]  # [N,3,3]
    d = (c * p[:, None, :]).sum(-1)
    bary = d / d.sum(-1, keepdim=True)
    zw = pos[..., 2:4][:, tri].reshape(-1, 3, 2)[row_f]  # (z_i, w_i)
    depth = (bary * zw[..., 0]).sum(-1) / (bary * zw[..., 1]).sum(-1)
    ident = tri_id.reshape(-1)[idx].to(pos.dtype)
    vals = torch.stack([bary[:, 0], bary[:, 1], depth, ident], -1)
    out = out.index_put((idx,), vals)
    return out.reshape(bsz, h, w, 4)


def _check_rast(rast, name="rast") -> torch.Tensor:
    rast = float_tensor(name, rast, "[B,H,W,4]", last_dim=4, ndims=(4,))
    return rast


def _vertex_rows(rast: torch.Tensor, tri: torch.Tensor, num_attr_rows: int, batched: bool):
    """Per-pixel attribute row indices ``[B,H,W,3]`` (clamped for empty pixels) and the coverage mask."""
    tid = rast[..., 3].detach().long()
    mask = tid > 0
    rows = tri[(tid - 1).clamp(min=0)]
    if batched:
        off = torch.arange(rast.shape[0], device=rast.device).reshape(-1, 1, 1, 1) * num_attr_rows
        rows = rows + off
    return rows, mask


def _prepare_attr(attr, rast, tri):
    rast = _check_rast(rast)
    attr = float_tensor("attr", attr, "[B,V,C] or [V,C]", ndims=(2, 3))
    batched = attr.dim() == 3
    if batched and attr.shape[0] != rast.shape[0]:
        if attr.shape[0] != 1:
            raise InputError(f"attr has batch {attr.shape[0]} but rast has batch {rast.shape[0]}.")
        attr, batched = attr[0], False
    nv = attr.shape[-2]
    tri = index_tensor("tri", tri, "[F,3]", last_dim=3, num_vertices=nv, device=attr.device)
    same_device(("attr", attr), ("rast", rast), ("tri", tri))
    rows, mask = _vertex_rows(rast, tri, nv, batched)
    flat = attr.reshape(-1, attr.shape[-1])
    return flat, rast, rows, mask


def interpolate(attr, rast, tri, backend: str = "auto") -> torch.Tensor:
    """Interpolate per-vertex attributes over the raster.

    ``out[b,y,x] = u a[t_0] + v a[t_1] + (1 - u - v) a[t_2]`` with ``(t_0, t_1, t_2) = tri[tri_id]``,
    zero where no triangle is drawn. Differentiable w.r.t. ``attr`` and, through ``u, v``, ``rast``
    (hence the vertex positions that produced it).

    Args:
        attr: ``[B,V,C]`` or ``[V,C]`` (shared by the batch).
        rast: ``[B,H,W,4]`` from :func:`rasterize`.
        tri: ``[F,3]`` indices into ``attr``'s V (may differ from the position triangles, e.g. uv faces).
        backend: ``"auto"`` (compiled kernel for CPU tensors), ``"numba"`` or ``"torch"`` (the reference).
    Returns:
        ``[B,H,W,C]``.

    Example:
        >>> pos = torch.tensor([[-1., -1, 0, 1], [3, -1, 0, 1], [-1, 3, 0, 1]])
        >>> tri = torch.tensor([[0, 1, 2]])
        >>> rast = rasterize(pos, tri, (2, 2))
        >>> interpolate(pos[:, :2], rast, tri)[0, 0, 0].tolist()   # ndc of the lower-left pixel centre
        [-0.5, -0.5]
    """
    if backend == "auto":
        backend = "numba" if (raster_cpu is not None and rast.device.type == "cpu") else "torch"
    if backend == "numba":
        rast_c = _check_rast(rast)
        attr_c = float_tensor("attr", attr, "[B,V,C] or [V,C]", ndims=(2, 3))
        attr_c = attr_c[None] if attr_c.dim() == 2 else attr_c
        if attr_c.shape[0] not in (1, rast_c.shape[0]):
            raise InputError(f"attr has batch {attr_c.shape[0]} but rast has batch {rast_c.shape[0]}.")
        tri_c = index_tensor("tri", tri, "[F,3]", last_dim=3, num_vertices=attr_c.shape[1], device=attr_c.device)
        same_device(("attr", attr_c), ("rast", rast_c), ("tri", tri_c))
        if rast_c.device.type != "cpu" or raster_cpu is None:
            raise InputError("backend='numba' needs numba and CPU tensors; use backend='torch' for other devices.")
        dtype = torch.promote_types(attr_c.dtype, rast_c.dtype)
        return _InterpolateCPU.apply(attr_c.to(dtype), rast_c.to(dtype), tri_c)
    return interpolate_reference(attr, rast, tri)


class _InterpolateCPU(torch.autograd.Function):
    """Compiled forward and backward of :func:`interpolate` (see :mod:`.raster_cpu`)."""

    @staticmethod
    def forward(ctx, attr, rast, tri):
        ctx.save_for_backward(attr, rast, tri)
        return torch.from_numpy(raster_cpu.interpolate_forward(attr.detach().numpy(), rast.detach().numpy(),
                                                               tri.numpy()))

    @staticmethod
    def backward(ctx, grad):
        attr, rast, tri = ctx.saved_tensors
        gattr, grast = raster_cpu.interpolate_backward(attr.detach().numpy(), rast.detach().numpy(), tri.numpy(),
                                                       grad.contiguous().numpy())
        return torch.from_numpy(gattr), torch.from_numpy(grast), None


def interpolate_reference(attr, rast, tri) -> torch.Tensor:
    """Pure-PyTorch :func:`interpolate` (any device, autograd); the reference for the compiled path."""
    flat, rast, rows, mask = _prepare_attr(attr, rast, tri)
    a = flat[rows]  # [B,H,W,3,C]
    u, v = rast[..., 0:1], rast[..., 1:2]
    out = u * a[..., 0, :] + v * a[..., 1, :] + (1 - u - v) * a[..., 2, :]
    return out * mask[..., None].to(out.dtype)


def barycentric_derivatives(pos, tri, rast) -> torch.Tensor:
    """Screen-space derivatives of the barycentrics, ``rast_db[B,H,W,4] = (du/dX, du/dY, dv/dX, dv/dY)``.

    X and Y are pixel units along columns and rows. From ``b_i = D_i / S`` with ``D_i = p . c_i``:
    ``db_i/dp_x = (c_i.x - b_i sum_j c_j.x) / S`` and ``dp_x/dX = 2 / W`` (likewise for y). Used to pick
    mip levels; returned without gradient.

    Args:
        pos: ``[B,V,4]`` or ``[V,4]`` clip positions that produced ``rast``.
        tri: ``[F,3]``.
        rast: ``[B,H,W,4]``.
    """
    with torch.no_grad():
        pos = _batched_pos(pos)
        rast = _check_rast(rast)
        tri = index_tensor("tri", tri, "[F,3]", last_dim=3, num_vertices=pos.shape[1], device=pos.device)
        bsz, h, w = rast.shape[:3]
        if pos.shape[0] == 1 and bsz > 1:
            pos = pos.expand(bsz, -1, -1)
        if raster_cpu is not None and rast.device.type == "cpu":
            return torch.from_numpy(raster_cpu.barycentric_derivatives(
                pos.contiguous().numpy(), tri.numpy(), rast.to(pos.dtype).numpy())).to(rast.dtype)
        tri_id = rast[..., 3].long()
        idx, row_f, row, col = _covered(tri_id, tri.shape[0])
        out = rast.new_zeros(bsz * h * w, 4)
        if idx.numel() == 0:
            return out.reshape(bsz, h, w, 4)
        xs, ys = pixel_centers_ndc(h, w, pos.device, pos.dtype)
        p = torch.stack([xs[col], ys[row], torch.ones_like(xs[col])], -1)
        c = _edge_vectors(pos, tri).reshape(-1, 3, 3)[row_f]
        d = (c * p[:, None, :]).sum(-1)
        s = d.sum(-1, keepdim=True)
        bary = d / s
        dbx = (c[..., 0] - bary * c[..., 0].sum(-1, keepdim=True)) / s * (2.0 / w)
        dby = (c[..., 1] - bary * c[..., 1].sum(-1, keepdim=True)) / s * (2.0 / h)
        out[idx] = torch.stack([dbx[:, 0], dby[:, 0], dbx[:, 1], dby[:, 1]], -1).to(out.dtype)
        return out.reshape(bsz, h, w, 4)


def interpolate_derivatives(attr, rast, tri, rast_db) -> torch.Tensor:
    """Screen-space derivatives of interpolated attributes, ``[B,H,W,2C]`` ordered (da_0/dX, da_0/dY, ...).

    ``da/dX = (a_0 - a_2) du/dX + (a_1 - a_2) dv/dX``; e.g. for uvs this is the ``uv_da`` that
    :func:`unrender.render.texture` uses for mip-level selection. Differentiable (pure torch) when an input
    requires grad; otherwise computed by the compiled kernel on CPU.

    Args:
        attr: ``[B,V,C]`` or ``[V,C]``; rast: ``[B,H,W,4]``; tri: ``[F,3]``;
        rast_db: ``[B,H,W,4]`` from :func:`barycentric_derivatives`.
    """
    rast_db = float_tensor("rast_db", rast_db, "[B,H,W,4]", last_dim=4, ndims=(4,))
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (attr, rast, rast_db))
    if raster_cpu is not None and rast.device.type == "cpu" and not needs_grad:
        attr_c = float_tensor("attr", attr, "[B,V,C] or [V,C]", ndims=(2, 3))
        attr_c = attr_c[None] if attr_c.dim() == 2 else attr_c
        rast_c = _check_rast(rast).to(attr_c.dtype)
        if attr_c.shape[0] not in (1, rast_c.shape[0]):
            raise InputError(f"attr has batch {attr_c.shape[0]} but rast has batch {rast_c.shape[0]}.")
        tri_c = index_tensor("tri", tri, "[F,3]", last_dim=3, num_vertices=attr_c.shape[1])
        return torch.from_numpy(raster_cpu.interpolate_derivatives(
            attr_c.numpy(), rast_c.numpy(), tri_c.numpy(), rast_db.to(attr_c.dtype).numpy()))
    flat, rast, rows, mask = _prepare_attr(attr, rast, tri)
    a = flat[rows]
    e0, e1 = a[..., 0, :] - a[..., 2, :], a[..., 1, :] - a[..., 2, :]
    ddx = e0 * rast_db[..., 0:1] + e1 * rast_db[..., 2:3]
    ddy = e0 * rast_db[..., 1:2] + e1 * rast_db[..., 3:4]
    out = torch.stack([ddx, ddy], -1).flatten(-2)
    return out * mask[..., None].to(out.dtype)
