"""Soft silhouettes (DIB-R, Chen et al. 2019): a coverage image whose gradient reaches the background.

Every triangle in front of the camera spreads an influence ``exp(-d^2 / delta)`` around its projection,
where ``d`` is the 2D distance in ndc from a pixel centre to the projected triangle (0 inside), and the
influences are combined as independent probabilities:

    A(p) = 1 - prod_j (1 - exp(-d(p, f_j)^2 / delta))

so ``A = 1`` on the projection of the mesh and decays smoothly outside, and a pixel just outside the
true silhouette pulls the nearby triangles towards it. The product is evaluated as
``1 - exp(sum_j log(1 - e_j))`` over the faces *near* ``p`` only: those whose projected bounding box grown
by ``r = sqrt(delta ln(1 / cutoff))`` contains ``p`` (farther faces have ``e_j < cutoff``). Pixels inside
some projected triangle are exactly 1 (no gradient there, as in DIB-R).

Pixel ``(row, col)`` has its centre at ndc ``(2 (col + 0.5) / W - 1, 2 (row + 0.5) / H - 1)``; row 0 is the
bottom, as in :func:`unrender.render.rasterize`.
"""

from __future__ import annotations

import math

import torch

from ..checks import float_tensor, index_tensor, resolution_pair, same_device
from ..errors import InputError
from .kernel_config import resolve_backend

try:  # numba is a dependency; the pure-torch path keeps working if it is broken on a platform
    from . import soft_silhouette_cpu
except Exception:  # noqa: BLE001
    soft_silhouette_cpu = None

# Smallest value of 1 - e_j fed to the log: bounds the gradient of pixels a hair outside an edge.
_MIN_ONE_MINUS = 1e-6


def _projected(pos: torch.Tensor, tri: torch.Tensor, cull_backfaces: bool = False):
    """Projected triangle corners ``[B,F,3,2]`` (ndc) and which triangles count: all three corners in front
    (``w > 0``) and, with ``cull_backfaces``, a counter-clockwise projection."""
    v = pos[:, tri]  # [B,F,3,4]
    w = v[..., 3]
    front = (w > 0).all(-1)
    if cull_backfaces:
        with torch.no_grad():  # det[p0 p1 p2] of the (x, y, w) rows: the projected area's sign when all w > 0
            xyw = v.detach()[..., [0, 1, 3]]
            front &= (xyw[:, :, 0] * torch.linalg.cross(xyw[:, :, 1], xyw[:, :, 2], dim=-1)).sum(-1) > 0
    safe_w = torch.where(w > 0, w, torch.ones_like(w))
    return v[..., :2] / safe_w[..., None], front


def _pixel_boxes(ndc, front, radius: float, height: int, width: int) -> torch.Tensor:
    """Inclusive pixel boxes ``[B*F,4]`` (col0, col1, row0, row1) of the bounding boxes grown by ``radius``."""
    lo, hi = ndc.amin(2) - radius, ndc.amax(2) + radius
    col0 = torch.ceil((lo[..., 0] + 1) * 0.5 * width - 0.5).clamp(0, width)
    col1 = torch.floor((hi[..., 0] + 1) * 0.5 * width - 0.5).clamp(-1, width - 1)
    row0 = torch.ceil((lo[..., 1] + 1) * 0.5 * height - 0.5).clamp(0, height)
    row1 = torch.floor((hi[..., 1] + 1) * 0.5 * height - 0.5).clamp(-1, height - 1)
    box = torch.stack([col0, col1, row0, row1], -1)
    ok = front & torch.isfinite(box).all(-1)
    box = torch.where(ok[..., None], box, torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=box.dtype, device=box.device))
    return box.reshape(-1, 4).long()


def _fragment_chunks(box: torch.Tensor, max_pairs: int):
    """Yield ``(face_row, row, col)`` int64 vectors enumerating every (face, pixel-in-box) pair, in chunks
    of about ``max_pairs`` pairs. Two levels of ``repeat_interleave`` (faces -> box rows -> pixels) avoid
    integer division per pixel."""
    device = box.device
    span_w = (box[:, 1] - box[:, 0] + 1).clamp(min=0)
    span_h = (box[:, 3] - box[:, 2] + 1).clamp(min=0)
    live = (span_w * span_h).nonzero().squeeze(1)
    if live.numel() == 0:
        return
    # one entry per (face, row) of its box
    nrows = span_h[live]
    seg_face = torch.repeat_interleave(live, nrows)
    seg_row = box[seg_face, 2] + torch.arange(seg_face.numel(), device=device) - \
        torch.repeat_interleave(torch.cumsum(nrows, 0) - nrows, nrows)
    seg_len = span_w[seg_face]
    csum = torch.cumsum(seg_len, 0)
    start = 0
    while start < seg_face.numel():
        base = int(csum[start - 1]) if start > 0 else 0
        stop = max(int(torch.searchsorted(csum, base + max_pairs, right=True)), start + 1)
        cnt = seg_len[start:stop]
        owner = torch.repeat_interleave(torch.arange(start, stop, device=device), cnt)
        first = torch.repeat_interleave(csum[start:stop] - cnt - base, cnt)
        off = torch.arange(owner.numel(), device=device) - first
        fid = seg_face[owner]
        yield fid, seg_row[owner], box[fid, 0] + off
        start = stop


def _face_terms(ndc: torch.Tensor):
    """Per-face corner coordinates, edge vectors and inverse squared edge lengths, each ``[3, B*F]``
    (one row per edge ``i`` from corner ``i`` to corner ``i + 1``), and the doubled signed area ``[B*F]``."""
    x = ndc[..., 0].reshape(-1, 3).t()
    y = ndc[..., 1].reshape(-1, 3).t()
    ex, ey = x[[1, 2, 0]] - x, y[[1, 2, 0]] - y
    inv = 1.0 / (ex * ex + ey * ey).clamp(min=torch.finfo(x.dtype).tiny)
    area = ex[0] * ey[1] - ey[0] * ex[1]
    return x, y, ex, ey, inv, area


def _inside(terms, fid, px, py) -> torch.Tensor:
    """``[N]`` bool: pixel ``(px, py)`` lies in the (non-degenerate) projected triangle ``fid``."""
    x, y, ex, ey, _, area = terms
    side = ex[:, fid] * (py - y[:, fid]) - ey[:, fid] * (px - x[:, fid])
    return (((side >= 0).all(0)) | ((side <= 0).all(0))) & (area[fid] != 0)


def _edge_offsets(terms, fid, px, py):
    """Per edge ``[3, N]``: the offset ``(dx, dy)`` from the closest point of edge ``i`` of triangle ``fid`` to the
    pixel ``(px, py)``, and that point's edge parameter ``s`` in [0, 1]."""
    x, y, ex, ey, inv, _ = terms
    ex, ey = ex[:, fid], ey[:, fid]
    apx, apy = px - x[:, fid], py - y[:, fid]
    s = ((apx * ex + apy * ey) * inv[:, fid]).clamp(0.0, 1.0)
    return apx - s * ex, apy - s * ey, s


class _BoundaryDistance2(torch.autograd.Function):
    """Squared boundary distances ``d2 [N]`` already found without gradient, made differentiable w.r.t. the
    projected corners ``[T,3,2]``.

    With ``q = (1 - s) a + s b`` the closest point of the closest edge ``(a, b)`` and ``r = p - q``,
    ``d^2 = |r|^2`` and ``d(d^2)/da = -2 (1 - s) r``, ``d(d^2)/db = -2 s r``: the change of ``s`` does not
    contribute (``r`` is orthogonal to the edge where ``0 < s < 1``; ``s`` is constant where clamped). The
    gradient of all pairs reaches the corners in two ``index_add_`` calls, where autograd through the gathers
    of :func:`_edge_offsets` would scatter every gathered term separately (the costliest part of a DIB-R step).
    """

    @staticmethod
    def forward(ctx, corners, d2, fid, edge, r, s):
        # fid [N] triangle, edge [N] its closest edge, r [N,2] = p - q, s [N] edge parameter of q
        ctx.save_for_backward(fid, edge, r, s)
        ctx.num_triangles = corners.shape[0]
        return d2.clone()

    @staticmethod
    def backward(ctx, grad):
        fid, edge, r, s = ctx.saved_tensors
        g = (-2.0 * grad)[:, None] * r
        out = torch.zeros(ctx.num_triangles * 3, 2, dtype=r.dtype, device=r.device)
        out.index_add_(0, fid * 3 + edge, (1.0 - s)[:, None] * g)
        out.index_add_(0, fid * 3 + (edge + 1) % 3, s[:, None] * g)
        return out.reshape(-1, 3, 2), None, None, None, None, None


def _near_distance2(corners, terms, fid, px, py, limit: float):
    """``(d2, near)``: the squared boundary distances ``d2`` (differentiable w.r.t. ``corners [T,3,2]``) of the
    pairs ``near`` (indices into ``fid``) whose distance is at most ``sqrt(limit)``; ``terms`` are
    :func:`_face_terms` of the detached corners."""
    with torch.no_grad():
        dx, dy, s = _edge_offsets(terms, fid, px, py)
        d2, edge = (dx * dx + dy * dy).min(0)
        near = (d2 <= limit).nonzero().squeeze(1)
        pick = edge[near][None]
        r = torch.stack([dx[:, near].gather(0, pick)[0], dy[:, near].gather(0, pick)[0]], 1)
        s = s[:, near].gather(0, pick)[0]
    return _BoundaryDistance2.apply(corners, d2[near], fid[near], edge[near], r, s), near


class _SoftSilhouetteCPU(torch.autograd.Function):
    """Compiled forward and analytic backward of :func:`soft_silhouette` (see :mod:`.soft_silhouette_cpu`),
    differentiable w.r.t. the projected corners ``ndc [B,F,3,2]``."""

    @staticmethod
    def forward(ctx, ndc, front, h, w, delta, min_d2):
        ndc_np = ndc.detach().contiguous().numpy()
        front_np = front.contiguous().numpy()
        out, covered, log_sum = soft_silhouette_cpu.soft_silhouette_forward(ndc_np, front_np, h, w, delta, min_d2,
                                                                            _MIN_ONE_MINUS)
        ctx.save_for_backward(ndc, front, torch.from_numpy(covered), torch.from_numpy(log_sum))
        ctx.constants = (delta, min_d2)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad):
        ndc, front, covered, log_sum = ctx.saved_tensors
        delta, min_d2 = ctx.constants
        g = soft_silhouette_cpu.soft_silhouette_backward(
            ndc.detach().contiguous().numpy(), front.numpy(), covered.numpy(), log_sum.numpy(),
            grad.to(torch.float64).contiguous().numpy(), delta, min_d2, _MIN_ONE_MINUS)
        return torch.from_numpy(g), None, None, None, None, None


def soft_silhouette(pos, tri, resolution, delta: float = 1e-4, cutoff: float = 1e-4,
                    max_pairs: int = 1 << 22, backend: str = "auto", cull_backfaces: bool = False) -> torch.Tensor:
    """DIB-R soft silhouette ``A(p) = 1 - prod_j (1 - exp(-d(p, f_j)^2 / delta))`` per pixel.

    ``d(p, f_j)`` is the ndc distance from pixel centre ``p`` to the projection of triangle ``j`` (0 inside);
    only triangles with all three vertices in front of the camera (``w > 0``) count, and of those only
    the ones near ``p`` (``exp(-d^2 / delta) >= cutoff`` is possible, see the module docstring). Computed
    as ``1 - exp(sum_j log(max(1 - e_j, 1e-6)))``, and exactly 1 where ``p`` is inside a triangle.

    The default ``delta = 1e-4`` (ndc units squared) gives a falloff of about one to two pixels at 256^2:
    a pixel is ``2 / 256 = 0.0078`` ndc wide, so one pixel away from an edge ``A = exp(-0.61) = 0.54``, two
    pixels away 0.09, three pixels away 0.004. For resolution ``R`` the same look in pixels needs
    ``delta = 1e-4 (256 / R)^2``.

    Args:
        pos: clip-space vertex positions ``[B,V,4]`` or ``[V,4]`` (then B = 1).
        tri: triangles ``[F,3]``.
        resolution: ``(H, W)`` or an int.
        delta: falloff ``> 0`` in squared ndc units.
        cutoff: influences below this are skipped, in ``(0, 1)``; sets the search radius
            ``sqrt(delta ln(1 / cutoff))``.
        max_pairs: (face, pixel) pairs evaluated per chunk by the ``torch`` backend, bounds its working memory.
        backend: ``"auto"`` (the compiled kernel for CPU tensors), ``"numba"`` or ``"torch"`` (the reference,
            any device); the result is the same up to rounding.
        cull_backfaces: count only triangles whose projection is counter-clockwise (those facing the camera
            when ``tri`` is wound counter-clockwise seen from outside). For a closed mesh they cover the same
            silhouette at about half the cost; the soft band outside is then made by the front triangles alone.
    Returns:
        ``[B,H,W]`` in ``[0, 1]``, ``pos``'s dtype, differentiable w.r.t. ``pos``.

    Example:
        >>> pos = torch.tensor([[-0.5, -0.5, 0, 1], [0.5, -0.5, 0, 1], [-0.5, 0.5, 0, 1]])
        >>> sil = soft_silhouette(pos, torch.tensor([[0, 1, 2]]), 16, delta=0.01)
        >>> sil[0, 4, 4].item()                                           # inside the triangle
        1.0
        >>> round(sil[0, 8, 3].item(), 4)    # 1/16 ndc left of the edge x = -0.5: exp(-0.0625^2 / 0.01)
        0.6766
    """
    pos = float_tensor("pos", pos, "[B,V,4] or [V,4]", last_dim=4, ndims=(2, 3))
    pos = pos[None] if pos.dim() == 2 else pos
    tri = index_tensor("tri", tri, "[F,3]", last_dim=3, num_vertices=pos.shape[1], device=pos.device)
    same_device(("pos", pos), ("tri", tri))
    h, w = resolution_pair(resolution)
    delta, cutoff = float(delta), float(cutoff)
    if not (delta > 0 and math.isfinite(delta)):
        raise InputError(f"delta must be a positive finite number (squared ndc units); got {delta}.")
    if not 0 < cutoff < 1:
        raise InputError(f"cutoff must lie in (0, 1); got {cutoff}.")
    if int(max_pairs) < 1:
        raise InputError(f"max_pairs must be a positive integer; got {max_pairs}.")
    backend = resolve_backend(backend, soft_silhouette_cpu is not None, pos.device.type)
    nb, nf = pos.shape[0], tri.shape[0]
    if nf == 0:
        return pos.new_zeros(nb, h, w)
    min_d2 = delta * math.log(1.0 / cutoff)
    ndc, front = _projected(pos, tri, cull_backfaces)
    if backend == "numba":
        return _SoftSilhouetteCPU.apply(ndc, front, h, w, delta, min_d2)
    with torch.no_grad():
        tight = _pixel_boxes(ndc.detach(), front, 0.0, h, w)
        grown = _pixel_boxes(ndc.detach(), front, math.sqrt(min_d2), h, w)
        fixed = _face_terms(ndc.detach())
    sx, sy = 2.0 / w, 2.0 / h

    def pixel_index(fid, row, col):
        return (row * w + col) if nb == 1 else ((fid // nf) * h + row) * w + col

    def centres(row, col):
        return (col.to(pos.dtype) + 0.5) * sx - 1.0, (row.to(pos.dtype) + 0.5) * sy - 1.0

    # Pass 1 (no gradient, tight boxes): pixels inside some triangle are 1 and take no further part.
    covered = torch.zeros(nb * h * w, dtype=torch.bool, device=pos.device)
    with torch.no_grad():
        for fid, row, col in _fragment_chunks(tight, int(max_pairs)):
            px, py = centres(row, col)
            inside = _inside(fixed, fid, px, py)
            covered[pixel_index(fid, row, col)[inside]] = True
    # Pass 2 (grown boxes): log(1 - e_j) of the near pairs at uncovered pixels, summed per pixel; the
    # distances are found without gradient first so that autograd only sees the pairs that count.
    corners = ndc.reshape(-1, 3, 2)
    log_sum = pos.new_zeros(nb * h * w)
    for fid, row, col in _fragment_chunks(grown, int(max_pairs)):
        pix = pixel_index(fid, row, col)
        keep = (~covered[pix]).nonzero().squeeze(1)
        fid, pix = fid[keep], pix[keep]
        px, py = centres(row[keep], col[keep])
        d2, near = _near_distance2(corners, fixed, fid, px, py, min_d2)
        if near.numel() == 0:
            continue
        one_minus = (1.0 - torch.exp(-d2 / delta)).clamp(min=_MIN_ONE_MINUS)
        log_sum = log_sum.index_add(0, pix[near], torch.log(one_minus))
    out = torch.where(covered, torch.ones_like(log_sum), 1.0 - torch.exp(log_sum))
    return out.reshape(nb, h, w)
