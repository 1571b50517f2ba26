"""Inside/outside tests, winding numbers and (signed) distances for closed triangle meshes.

Three queries of ``points[P,3]`` against a mesh ``vertices[V,3]``, ``faces[F,3]``:

* :func:`inside_mesh` -- boolean occupancy by ray parity, exact for closed meshes and fast
  (numba, 2-D bin grids): ~0.3 s for 200k points against 100k faces on 2 cores (after the
  one-time kernel compilation, cached on disk).
* :func:`winding_number` -- the generalized winding number (solid-angle sum), exact but
  ``O(P F)``: the reference the tests hold :func:`inside_mesh` to.
* :func:`closest_points` / :func:`signed_distance` -- exact point-triangle distance through a
  bounding-volume hierarchy, signed with :func:`inside_mesh` (negative inside): 1.5-3 s for 200k
  points spread through the bounding box of a 100k-face mesh, less for points near the surface.

Robustness of :func:`inside_mesh`. Coordinates are snapped to an integer grid of ``2^30`` steps
over the mesh's bounding box (a move of at most ``1e-9`` of the box, which keeps a closed mesh
closed: vertices move, connectivity does not). A point is tested by casting a ray along ``+x``,
``+y`` and ``+z``; for one ray the problem is 2-D: which projected triangles contain the
point. Every 2-D orientation ``(b - a) x (p - a)`` is then an exact int64 number (differences
at most ``2^30``, products at most ``2^60``), and the point is symbolically displaced to
``p + (eps, eps^2)`` (simulation of simplicity): an exact zero orientation takes the sign of
its derivative along that displacement, ``sign(a_v - b_v)`` or, when ``a_v = b_v``,
``sign(b_u - a_u)``. The displaced point lies on no edge and no vertex, and since
``orient(a, b, p) = -orient(b, a, p)`` holds exactly, two triangles sharing an edge always
agree about which side the ray passes: a ray through an edge or a vertex is counted exactly
once per sheet of surface it crosses, never twice or zero times. Hence the crossing parity of
each axis is exact for a closed mesh (it is the winding number mod 2, the same for every ray,
self-intersections included), up to points within
rounding (~1e-9 of the box) of the surface along the ray. The majority vote over the three
axes then only matters for meshes that are not closed (small holes flip single rays).

Example:
    >>> from unrender.geometry.primitives import box
    >>> m = box((1.0, 1.0, 1.0))
    >>> inside_mesh(m.vertices, m.faces, torch.tensor([[0.0, 0, 0], [0.9, 0, 0]])).tolist()
    [True, False]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

from ..checks import float_tensor, index_tensor
from ..errors import InputError
from ..render.kernel_config import PARALLEL

_GRID_BITS = 30  # quantization: coordinates become integers in [0, 2^30]
_GRID_SIZE = 1 << _GRID_BITS
_LEAF_SIZE = 4  # triangles per BVH leaf


def _as_arrays(vertices, faces, points=None):
    """Validate and convert to float64 / int64 numpy arrays (``points`` may be ``None``)."""
    v = float_tensor("vertices", vertices, "[V,3]", last_dim=3, ndims=(2,))
    f = index_tensor("faces", faces, "[F,3]", last_dim=3, num_vertices=v.shape[0])
    out = [v.detach().cpu().double().numpy(), f.cpu().numpy()]
    if points is not None:
        p = float_tensor("points", points, "[P,3]", last_dim=3, ndims=(2,))
        out.append(p.detach().cpu().double().numpy())
    return out


# ------------------------------------------------------------------------------------- ray parity


@njit(cache=True, inline="always")
def _orient_perturbed(au, av, bu, bv, pu, pv):  # pragma: no cover - compiled
    """Sign of ``(b - a) x (p' - a)`` for ``p' = p + (eps, eps^2)``; exact on int64 inputs, 0 only if a == b."""
    o = (bu - au) * (pv - av) - (bv - av) * (pu - au)
    if o > 0:
        return 1
    if o < 0:
        return -1
    if bv != av:
        return 1 if av > bv else -1
    if bu != au:
        return 1 if bu > au else -1
    return 0


@njit(cache=True)
def _build_bins(qv, faces, axis_u, axis_v, grid):  # pragma: no cover - compiled
    """CSR lists ``(start[G*G+1], tri[...])`` of the triangles whose projected box overlaps each cell."""
    nf = faces.shape[0]
    count = np.zeros(grid * grid + 1, dtype=np.int64)
    lo = np.empty((nf, 2), dtype=np.int64)
    hi = np.empty((nf, 2), dtype=np.int64)
    for t in range(nf):
        a, b, c = faces[t, 0], faces[t, 1], faces[t, 2]
        area2 = ((qv[b, axis_u] - qv[a, axis_u]) * (qv[c, axis_v] - qv[a, axis_v])
                 - (qv[b, axis_v] - qv[a, axis_v]) * (qv[c, axis_u] - qv[a, axis_u]))
        if area2 == 0:  # edge-on: the displaced point is never inside it
            lo[t, 0], hi[t, 0] = 1, 0
            continue
        for k in range(2):
            ax = axis_u if k == 0 else axis_v
            m0 = min(qv[a, ax], min(qv[b, ax], qv[c, ax]))
            m1 = max(qv[a, ax], max(qv[b, ax], qv[c, ax]))
            lo[t, k] = min((m0 * grid) >> _GRID_BITS, grid - 1)
            hi[t, k] = min((m1 * grid) >> _GRID_BITS, grid - 1)
        for i in range(lo[t, 0], hi[t, 0] + 1):
            for j in range(lo[t, 1], hi[t, 1] + 1):
                count[i * grid + j + 1] += 1
    for k in range(grid * grid):
        count[k + 1] += count[k]
    fill = count[:-1].copy()
    tris = np.empty(count[-1], dtype=np.int32)
    for t in range(nf):
        for i in range(lo[t, 0], hi[t, 0] + 1):
            for j in range(lo[t, 1], hi[t, 1] + 1):
                tris[fill[i * grid + j]] = t
                fill[i * grid + j] += 1
    return count, tris


@njit(parallel=PARALLEL, cache=True)
def _ray_parity(qv, faces, qp, axis, grid, start, tris, votes):  # pragma: no cover - compiled
    """Add 1 to ``votes[i]`` when the ray from ``qp[i]`` along ``+axis`` crosses the surface an odd number of times."""
    u, v = (axis + 1) % 3, (axis + 2) % 3
    for i in prange(qp.shape[0]):
        pu, pv, pd = qp[i, u], qp[i, v], qp[i, axis]
        cell = min((pu * grid) >> _GRID_BITS, grid - 1) * grid + min((pv * grid) >> _GRID_BITS, grid - 1)
        crossings = 0
        for k in range(start[cell], start[cell + 1]):
            t = tris[k]
            a, b, c = faces[t, 0], faces[t, 1], faces[t, 2]
            au, av, bu, bv, cu, cv = qv[a, u], qv[a, v], qv[b, u], qv[b, v], qv[c, u], qv[c, v]
            # p' = p + (eps, eps^2) lies in the closed box iff lo <= p < hi on both axes.
            if pu < min(au, min(bu, cu)) or pu >= max(au, max(bu, cu)):
                continue
            if pv < min(av, min(bv, cv)) or pv >= max(av, max(bv, cv)):
                continue
            s0 = _orient_perturbed(au, av, bu, bv, pu, pv)
            s1 = _orient_perturbed(bu, bv, cu, cv, pu, pv)
            s2 = _orient_perturbed(cu, cv, au, av, pu, pv)
            if s0 == 0 or s0 != s1 or s1 != s2:
                continue
            # Depth of the crossing from the (unperturbed) barycentric weights.
            wc = float((bu - au) * (pv - av) - (bv - av) * (pu - au))
            wa = float((cu - bu) * (pv - bv) - (cv - bv) * (pu - bu))
            wb = float((au - cu) * (pv - cv) - (av - cv) * (pu - cu))
            depth = (wa * qv[a, axis] + wb * qv[b, axis] + wc * qv[c, axis]) / (wa + wb + wc)
            if depth > pd:
                crossings += 1
        votes[i] += crossings & 1


def inside_mesh(vertices, faces, points) -> torch.Tensor:
    """Which of ``points[P,3]`` lie inside the closed mesh ``vertices[V,3]``, ``faces[F,3]``: bool ``[P]``.

    Algorithm: snap coordinates to a ``2^30`` integer grid over the mesh's bounding box (points
    outside the box are outside); for each axis ``a`` bin the triangles' projections onto the plane
    orthogonal to ``a`` in a ``G x G`` grid, ``G ~ 0.7 sqrt(F)``; count the crossings of the ray
    ``p + t e_a, t > 0`` with exact, symbolically perturbed 2-D orientation tests (see the module
    docstring for why edge and vertex hits are counted exactly once); inside on an axis = odd count;
    inside = at least 2 of the 3 axes agree. Orientation of the faces does not matter.

    Example:
        >>> from unrender.geometry.primitives import icosphere
        >>> s = icosphere(2, radius=1.0)
        >>> inside_mesh(s.vertices, s.faces, torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 1.5]])).tolist()
        [True, False]
    """
    v, f, p = _as_arrays(vertices, faces, points)
    result = np.zeros(p.shape[0], dtype=bool)
    if f.shape[0] == 0 or p.shape[0] == 0:
        return torch.from_numpy(result)
    used = v[np.unique(f)]
    if not np.isfinite(used).all():
        raise InputError("vertices hold NaN or infinite positions; repair the mesh before testing points against it.")
    lo, hi = used.min(0), used.max(0)
    extent = float((hi - lo).max())
    in_box = np.all((p >= lo) & (p <= hi), axis=1) & np.isfinite(p).all(1)
    if extent <= 0 or not in_box.any():
        return torch.from_numpy(result)
    scale = _GRID_SIZE / extent
    qv = np.rint((v - lo) * scale).astype(np.int64)
    qp = np.clip(np.rint((p[in_box] - lo) * scale), 0, _GRID_SIZE).astype(np.int64)
    grid = int(min(2048, max(1, round(0.7 * math.sqrt(f.shape[0])))))
    votes = np.zeros(qp.shape[0], dtype=np.int64)
    for axis in range(3):
        start, tris = _build_bins(qv, f, (axis + 1) % 3, (axis + 2) % 3, grid)
        _ray_parity(qv, f, qp, axis, grid, start, tris, votes)
    result[in_box] = votes >= 2
    return torch.from_numpy(result)


# ------------------------------------------------------------------------------- winding number


def winding_number(vertices, faces, points, chunk: int = 500_000) -> torch.Tensor:
    """Generalized winding number ``w[P]`` (float64) of ``points[P,3]`` w.r.t. ``vertices[V,3]``, ``faces[F,3]``.

    ``w(p) = sum_t Omega_t(p) / (4 pi)`` with the signed solid angle of triangle ``t`` (van Oosterom &
    Strackee 1983), for ``a, b, c`` = the corners minus ``p``:
    ``tan(Omega / 2) = a . (b x c) / (|a||b||c| + (a.b)|c| + (b.c)|a| + (c.a)|b|)``.
    ``w = 1`` inside and ``0`` outside a closed outward-facing mesh (``-1`` inside an inward-facing
    one), fractional near holes. Cost ``O(P F)``, evaluated in blocks of ``chunk`` point-triangle pairs:
    for tests and small inputs.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> m = box((1.0, 1.0, 1.0))
        >>> w = winding_number(m.vertices, m.faces, torch.tensor([[0.0, 0, 0], [2.0, 0, 0]]))
        >>> [round(x, 6) for x in w.tolist()]
        [1.0, 0.0]
    """
    v, f, p = _as_arrays(vertices, faces, points)
    tri = v[f]  # [F,3,3]
    out = np.zeros(p.shape[0])
    step = max(1, chunk // max(1, f.shape[0]))
    for s in range(0, p.shape[0], step):
        d = tri[None] - p[s:s + step, None, None, :]  # [p,F,3,3]
        a, b, c = d[..., 0, :], d[..., 1, :], d[..., 2, :]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        num = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
        den = (la * lb * lc + np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", b, c) * la
               + np.einsum("pfi,pfi->pf", c, a) * lb)
        out[s:s + step] = 2.0 * np.arctan2(num, den).sum(1) / (4.0 * math.pi)
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------- distances


@njit(cache=True)
def _build_bvh(tri_lo, tri_hi, centroid, leaf_size):  # pragma: no cover - compiled
    """Median-split BVH: node boxes ``[N,2,3]``, ``child[N]`` (-1 for leaves), ranges ``[N,2]`` into ``order``."""
    nf = centroid.shape[0]
    cap = 2 * nf + 1
    box = np.empty((cap, 2, 3))
    child = np.full(cap, -1, dtype=np.int64)
    span = np.zeros((cap, 2), dtype=np.int64)
    order = np.arange(nf)
    stack = np.empty((cap, 3), dtype=np.int64)  # (node, start, end)
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, 0, nf
    top, used = 1, 1
    while top > 0:
        top -= 1
        node, s, e = stack[top, 0], stack[top, 1], stack[top, 2]
        for k in range(3):
            box[node, 0, k], box[node, 1, k] = np.inf, -np.inf
        c_lo, c_hi = np.full(3, np.inf), np.full(3, -np.inf)
        for i in range(s, e):
            t = order[i]
            for k in range(3):
                box[node, 0, k] = min(box[node, 0, k], tri_lo[t, k])
                box[node, 1, k] = max(box[node, 1, k], tri_hi[t, k])
                c_lo[k], c_hi[k] = min(c_lo[k], centroid[t, k]), max(c_hi[k], centroid[t, k])
        span[node, 0], span[node, 1] = s, e
        if e - s <= leaf_size:
            continue
        axis = np.argmax(c_hi - c_lo)
        keys = np.empty(e - s)
        for i in range(s, e):
            keys[i - s] = centroid[order[i], axis]
        order[s:e] = order[s:e][np.argsort(keys, kind="mergesort")]
        mid = (s + e) // 2
        child[node] = used  # children are stored next to each other: used, used + 1
        stack[top, 0], stack[top, 1], stack[top, 2] = used, s, mid
        stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = used + 1, mid, e
        top += 2
        used += 2
    return box[:used], child[:used], span[:used], order


@njit(cache=True, inline="always")
def _box_dist2(box, node, p):  # pragma: no cover - compiled
    d2 = 0.0
    for k in range(3):
        g = max(box[node, 0, k] - p[k], 0.0, p[k] - box[node, 1, k])
        d2 += g * g
    return d2


@njit(cache=True, inline="always")
def _dot(ax, ay, az, bx, by, bz):  # pragma: no cover - compiled
    return ax * bx + ay * by + az * bz


@njit(cache=True)
def _segment_weight(p, a, b):  # pragma: no cover - compiled
    """Parameter ``t`` in [0,1] of the point of segment ``ab`` nearest to ``p``."""
    d = (b[0] - a[0], b[1] - a[1], b[2] - a[2])
    length2 = _dot(d[0], d[1], d[2], d[0], d[1], d[2])
    if length2 <= 0.0:
        return 0.0
    return min(max(_dot(p[0] - a[0], p[1] - a[1], p[2] - a[2], d[0], d[1], d[2]) / length2, 0.0), 1.0)


@njit(cache=True)
def _closest_on_triangle(p, a, b, c):  # pragma: no cover - compiled
    """Barycentric weights ``(wa, wb, wc)`` of the point of triangle ``abc`` nearest to ``p``.

    Decided by the Voronoi region of ``p``: a corner, an edge, or the interior.
    """
    abx, aby, abz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    acx, acy, acz = c[0] - a[0], c[1] - a[1], c[2] - a[2]
    d1 = _dot(abx, aby, abz, p[0] - a[0], p[1] - a[1], p[2] - a[2])
    d2 = _dot(acx, acy, acz, p[0] - a[0], p[1] - a[1], p[2] - a[2])
    if d1 <= 0.0 and d2 <= 0.0:
        return 1.0, 0.0, 0.0
    d3 = _dot(abx, aby, abz, p[0] - b[0], p[1] - b[1], p[2] - b[2])
    d4 = _dot(acx, acy, acz, p[0] - b[0], p[1] - b[1], p[2] - b[2])
    if d3 >= 0.0 and d4 <= d3:
        return 0.0, 1.0, 0.0
    vc = d1 * d4 - d3 * d2
    if vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0 and d1 - d3 > 0.0:  # the last test: a zero-length edge falls through
        t = d1 / (d1 - d3)
        return 1.0 - t, t, 0.0
    d5 = _dot(abx, aby, abz, p[0] - c[0], p[1] - c[1], p[2] - c[2])
    d6 = _dot(acx, acy, acz, p[0] - c[0], p[1] - c[1], p[2] - c[2])
    if d6 >= 0.0 and d5 <= d6:
        return 0.0, 0.0, 1.0
    vb = d5 * d2 - d1 * d6
    if vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0 and d2 - d6 > 0.0:
        t = d2 / (d2 - d6)
        return 1.0 - t, 0.0, t
    va = d3 * d6 - d5 * d4
    if va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0 and (d4 - d3) + (d5 - d6) > 0.0:
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        return 0.0, 1.0 - t, t
    den = va + vb + vc
    if den > 0.0:
        return va / den, vb / den, vc / den
    # Zero-area triangle that the tests above did not settle: nearest point of its three edges.
    best, w = np.inf, (1.0, 0.0, 0.0)
    for edge in range(3):
        e0, e1 = (a, b, c)[edge], (b, c, a)[edge]
        t = _segment_weight(p, e0, e1)
        x, y, z = (e0[0] + t * (e1[0] - e0[0]) - p[0], e0[1] + t * (e1[1] - e0[1]) - p[1],
                   e0[2] + t * (e1[2] - e0[2]) - p[2])
        d = _dot(x, y, z, x, y, z)
        if d < best:
            best = d
            w = (1.0 - t, t, 0.0) if edge == 0 else ((0.0, 1.0 - t, t) if edge == 1 else (t, 0.0, 1.0 - t))
    return w


@njit(parallel=PARALLEL, cache=True)
def _bvh_closest(v, faces, box, child, span, order, points, dist, face, closest):  # pragma: no cover - compiled
    for i in prange(points.shape[0]):
        p = points[i]
        best, best_t = np.inf, -1
        stack = np.empty(128, dtype=np.int64)  # depth of a median-split tree: log2(F) + 1
        stack_d = np.empty(128)
        stack[0], stack_d[0], top = 0, _box_dist2(box, 0, p), 1
        while top > 0:
            top -= 1
            node = stack[top]
            if stack_d[top] >= best:
                continue
            if child[node] < 0:
                for k in range(span[node, 0], span[node, 1]):
                    t = order[k]
                    a, b, c = v[faces[t, 0]], v[faces[t, 1]], v[faces[t, 2]]
                    wa, wb, wc = _closest_on_triangle(p, a, b, c)
                    d2 = 0.0
                    for j in range(3):
                        q = wa * a[j] + wb * b[j] + wc * c[j]
                        d2 += (p[j] - q) * (p[j] - q)
                    if d2 < best:
                        best, best_t = d2, t
                        for j in range(3):
                            closest[i, j] = wa * a[j] + wb * b[j] + wc * c[j]
                continue
            left, right = child[node], child[node] + 1
            dl, dr = _box_dist2(box, left, p), _box_dist2(box, right, p)
            if dl > dr:  # push the farther child first so that the nearer one is searched first
                left, right, dl, dr = right, left, dr, dl
            stack[top], stack_d[top] = right, dr
            stack[top + 1], stack_d[top + 1] = left, dl
            top += 2
        dist[i], face[i] = math.sqrt(best), best_t


@dataclass
class ClosestPoints:
    """Nearest surface points of :func:`closest_points`.

    Attributes:
        distance: Euclidean distance to the surface ``[P]``.
        face: index of the nearest triangle ``[P]`` (int64).
        point: the nearest surface point ``[P,3]``.
    """

    distance: torch.Tensor
    face: torch.Tensor
    point: torch.Tensor


def closest_points(vertices, faces, points) -> ClosestPoints:
    """Exact nearest point on the triangles ``vertices[V,3]``, ``faces[F,3]`` for each of ``points[P,3]``.

    A bounding-volume hierarchy (axis-aligned boxes, median split of triangle centroids along the
    longest axis, 4 triangles per leaf) is searched depth first, nearer child first, skipping every
    box farther than the best distance so far (a box's distance is a lower bound for its triangles,
    so the pruning is exact). Per triangle the closest point is found by the Voronoi region of ``p``
    (vertex, edge or interior; Ericson, *Real-Time Collision Detection*, 5.1.5). Float64 throughout;
    outputs take the dtype of ``points``.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> m = box((1.0, 1.0, 1.0))
        >>> closest_points(m.vertices, m.faces, torch.tensor([[2.0, 0.0, 0.0]])).distance.tolist()
        [1.5]
    """
    v, f, p = _as_arrays(vertices, faces, points)
    if f.shape[0] == 0:
        raise InputError("faces is empty; distances need a mesh with at least one triangle.")
    tri = v[f]
    box, child, span, order = _build_bvh(tri.min(1), tri.max(1), tri.mean(1), _LEAF_SIZE)
    dist, face, closest = np.empty(p.shape[0]), np.empty(p.shape[0], dtype=np.int64), np.empty((p.shape[0], 3))
    _bvh_closest(v, f, box, child, span, order, p, dist, face, closest)
    dtype = torch.as_tensor(points).dtype if torch.as_tensor(points).is_floating_point() else torch.float32
    return ClosestPoints(torch.from_numpy(dist).to(dtype), torch.from_numpy(face), torch.from_numpy(closest).to(dtype))


def signed_distance(vertices, faces, points) -> torch.Tensor:
    """Signed distance ``s[P]`` of ``points[P,3]`` to the closed mesh ``vertices[V,3]``, ``faces[F,3]``.

    ``s(p) = -d(p)`` if :func:`inside_mesh` says inside, else ``+d(p)``, with ``d`` the exact Euclidean
    distance to the nearest triangle (:func:`closest_points`). Negative inside, as SDF networks expect.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> m = box((1.0, 1.0, 1.0))
        >>> signed_distance(m.vertices, m.faces, torch.tensor([[0.0, 0, 0], [1.0, 0, 0]])).tolist()
        [-0.5, 0.5]
    """
    d = closest_points(vertices, faces, points).distance
    inside = inside_mesh(vertices, faces, points)
    return torch.where(inside, -d, d)
