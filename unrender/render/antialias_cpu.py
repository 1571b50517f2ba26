"""Compiled CPU (numba) discontinuity search for :func:`unrender.render.antialias`.

Same result as the pure-torch search ``_find_crossings_torch`` in :mod:`.antialias` (tested against it):
for every pixel and its right and upper neighbour with a different triangle id, pick the nearer one,
follow the segment between the two centres from its triangle across non-silhouette edges until it
leaves through a silhouette edge (or ends inside a triangle), and keep the pair in the first case.
No gradient flows here; the crossing point is recomputed with autograd.

A setup pass computes every face's three edge functions (signed so that the inside is positive) and
every edge's silhouette flag once, so the per-pair work is a few dot products.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernel_config import PARALLEL


@njit(cache=True, inline="always")
def _cross(a0, a1, a2, b0, b1, b2):  # pragma: no cover - compiled
    return a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0


@njit(parallel=PARALLEL, cache=True)
def _setup(pos, tri, edges, edge_opp, always, coef, sil):  # pragma: no cover - compiled
    """``coef[Bp,F,3,3]``: edge functions ``D_i = c . (x, y, 1)`` with ``D_i >= 0`` inside; ``sil[Bp,E]``."""
    nbp, nf, ne = coef.shape[0], coef.shape[1], sil.shape[1]
    for task in prange(nbp * nf):
        b, t = task // nf, task % nf
        i0, i1, i2 = tri[t, 0], tri[t, 1], tri[t, 2]
        x0, y0, w0 = pos[b, i0, 0], pos[b, i0, 1], pos[b, i0, 3]
        x1, y1, w1 = pos[b, i1, 0], pos[b, i1, 1], pos[b, i1, 3]
        x2, y2, w2 = pos[b, i2, 0], pos[b, i2, 1], pos[b, i2, 3]
        ax, ay, aw = _cross(x1, y1, w1, x2, y2, w2)
        bx, by, bw = _cross(x2, y2, w2, x0, y0, w0)
        cx, cy, cw = _cross(x0, y0, w0, x1, y1, w1)
        sgn = 1.0 if x0 * ax + y0 * ay + w0 * aw >= 0 else -1.0
        coef[b, t, 0, 0], coef[b, t, 0, 1], coef[b, t, 0, 2] = ax * sgn, ay * sgn, aw * sgn
        coef[b, t, 1, 0], coef[b, t, 1, 1], coef[b, t, 1, 2] = bx * sgn, by * sgn, bw * sgn
        coef[b, t, 2, 0], coef[b, t, 2, 1], coef[b, t, 2, 2] = cx * sgn, cy * sgn, cw * sgn
    for task in prange(nbp * ne):
        b, e = task // ne, task % ne
        if always[e]:
            sil[b, e] = True
            continue
        a, c = edges[e, 0], edges[e, 1]
        nx, ny, nw = _cross(pos[b, a, 0], pos[b, a, 1], pos[b, a, 3], pos[b, c, 0], pos[b, c, 1], pos[b, c, 3])
        o1, o2 = edge_opp[e, 0], edge_opp[e, 1]
        s1 = nx * pos[b, o1, 0] + ny * pos[b, o1, 1] + nw * pos[b, o1, 3]
        s2 = nx * pos[b, o2, 0] + ny * pos[b, o2, 1] + nw * pos[b, o2, 3]
        sil[b, e] = s1 * s2 >= 0


@njit(cache=True, inline="always")
def _exit_edge(coef, pb, t, fx, fy, ox, oy, entry):  # pragma: no cover - compiled
    """Edge of triangle t through which the segment (fx, fy) -> (ox, oy) leaves it: the smallest crossing
    among the edges whose function falls below 0 at O (``entry`` excluded); -1 when O is inside."""
    best, best_a = -1, 2.0
    for i in range(3):
        if i == entry:
            continue
        cx, cy, cw = coef[pb, t, i, 0], coef[pb, t, i, 1], coef[pb, t, i, 2]
        do = cx * ox + cy * oy + cw
        if do < 0:
            df = cx * fx + cy * fy + cw
            if df > do:
                a = df / (df - do)
                if a < best_a:
                    best, best_a = i, a
    return best


@njit(parallel=PARALLEL, cache=True)
def _search(coef, sil, rast, face_edges, edge_faces, max_walk, count, out):  # pragma: no cover - compiled
    """Row ``task`` writes its pairs to ``out[task, :count[task]]`` as (front, other, face, edge)."""
    nb, height, width = rast.shape[0], rast.shape[1], rast.shape[2]
    batched = coef.shape[0] > 1
    for task in prange(nb * height):
        b, row = task // height, task % height
        pb = b if batched else 0
        py = 2.0 * (row + 0.5) / height - 1.0
        n = 0
        for col in range(width):
            t0 = int(rast[b, row, col, 3])
            px = 2.0 * (col + 0.5) / width - 1.0
            for axis in range(2):
                if axis == 0:
                    if col + 1 >= width:
                        continue
                    r1, c1 = row, col + 1
                    qx, qy = 2.0 * (col + 1.5) / width - 1.0, py
                else:
                    if row + 1 >= height:
                        continue
                    r1, c1 = row + 1, col
                    qx, qy = px, 2.0 * (row + 1.5) / height - 1.0
                t1 = int(rast[b, r1, c1, 3])
                if t1 == t0:
                    continue
                # front = nearer surface; background (id 0) is infinitely far; ties go to P
                if t0 > 0 and (t1 == 0 or rast[b, row, col, 2] <= rast[b, r1, c1, 2]):
                    t, t_other, swap = t0 - 1, t1 - 1, False
                    fx, fy, ox, oy = px, py, qx, qy
                else:
                    t, t_other, swap = t1 - 1, t0 - 1, True
                    fx, fy, ox, oy = qx, qy, px, py
                entry = -1
                for _ in range(max_walk):
                    e = _exit_edge(coef, pb, t, fx, fy, ox, oy, entry)
                    if e < 0:
                        break
                    g = face_edges[t, e]
                    if sil[pb, g]:
                        # each edge is handled by one pair direction: mostly vertical edges by horizontal pairs
                        vertical = abs(coef[pb, t, e, 0]) * height >= abs(coef[pb, t, e, 1]) * width
                        if vertical == (axis == 0):
                            p_idx = (b * height + row) * width + col
                            q_idx = (b * height + r1) * width + c1
                            out[task, n, 0] = q_idx if swap else p_idx
                            out[task, n, 1] = p_idx if swap else q_idx
                            out[task, n, 2] = t
                            out[task, n, 3] = e
                            n += 1
                        break
                    t = edge_faces[g, 1] if edge_faces[g, 0] == t else edge_faces[g, 0]
                    if t == t_other:  # reached the triangle drawn at O: O is inside it, no silhouette between
                        break
                    entry = 0 if face_edges[t, 0] == g else (1 if face_edges[t, 1] == g else 2)
        count[task] = n


@njit(cache=True, inline="always")
def _compact(count, out, res):  # pragma: no cover - compiled
    k = 0
    for task in range(count.shape[0]):
        for i in range(count[task]):
            for j in range(4):
                res[j, k] = out[task, i, j]
            k += 1


def find_crossings(pos, tri, rast, face_edges, edges, edge_faces, edge_opp, always, max_walk):
    """``(front, other, face, local_edge)`` int64 arrays of the pixel pairs to blend (flat pixel indices).

    Args (numpy): ``pos[Bp,V,4]``, ``tri[F,3]``, ``rast[B,H,W,4]`` (depth and triangle id + 1 are read),
    ``face_edges[F,3]``, ``edges[E,2]``, ``edge_faces[E,2]``, ``edge_opp[E,2]``, ``always[E]`` bool
    (boundary / non-manifold), ``max_walk`` the most triangles followed along one segment.
    """
    nb, h, w = rast.shape[:3]
    pos = np.ascontiguousarray(pos, dtype=np.float64)  # float64 keeps the side tests exact enough
    coef = np.empty((pos.shape[0], tri.shape[0], 3, 3), dtype=np.float64)
    sil = np.empty((pos.shape[0], edges.shape[0]), dtype=np.bool_)
    _setup(pos, tri, edges, np.maximum(edge_opp, 0), always, coef, sil)
    count = np.zeros(nb * h, dtype=np.int64)
    out = np.empty((nb * h, 2 * w, 4), dtype=np.int64)  # only the rows' first entries get touched
    _search(coef, sil, np.ascontiguousarray(rast), face_edges, edge_faces, max_walk, count, out)
    res = np.empty((4, int(count.sum())), dtype=np.int64)
    _compact(count, out, res)
    return res[0], res[1], res[2], res[3]
