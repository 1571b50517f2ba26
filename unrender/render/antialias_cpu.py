"""Compiled CPU (numba) discontinuity search for :func:`unrender.render.antialias`.

Same result as the pure-torch search ``_find_crossings_torch`` in :mod:`.antialias` (tested against it):
for every pixel and its right and upper neighbour with a different triangle id, pick the nearer one,
find the edge through which the segment between the two centres leaves its triangle and keep the pair
if that edge is a silhouette. No gradient flows here; the crossing point is recomputed with autograd.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _cross(a0, a1, a2, b0, b1, b2):  # pragma: no cover - compiled
    return a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0


@njit(cache=True)
def _exit_edge(pos, tri, pb, t, fx, fy, ox, oy, axis, width, height):  # pragma: no cover - compiled
    """Local index of the edge of triangle t crossed first going from (fx, fy) to (ox, oy); -1 if none
    or if that edge is not mostly across ``axis`` (each edge is handled by one direction of pairs)."""
    best, best_a, major = -1, 2.0, True
    v = np.empty((3, 3))
    for i in range(3):
        vi = tri[t, i]
        v[i, 0], v[i, 1], v[i, 2] = pos[pb, vi, 0], pos[pb, vi, 1], pos[pb, vi, 3]
    cx, cy, cw = _cross(v[1, 0], v[1, 1], v[1, 2], v[2, 0], v[2, 1], v[2, 2])
    det = v[0, 0] * cx + v[0, 1] * cy + v[0, 2] * cw
    sgn = 1.0 if det >= 0 else -1.0
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        cx, cy, cw = _cross(v[j, 0], v[j, 1], v[j, 2], v[k, 0], v[k, 1], v[k, 2])
        df = (cx * fx + cy * fy + cw) * sgn
        do = (cx * ox + cy * oy + cw) * sgn
        if do < 0:
            df = max(df, 0.0)
            a = df / (df - do)
            if a < best_a:
                best, best_a = i, a
                major = abs(cx) * height >= abs(cy) * width
    if best >= 0 and major != (axis == 0):
        return -1
    return best


@njit(cache=True)
def _is_silhouette(pos, pb, e, edges, edge_opp, always):  # pragma: no cover - compiled
    if always[e]:
        return True
    a, b = edges[e, 0], edges[e, 1]
    nx, ny, nw = _cross(pos[pb, a, 0], pos[pb, a, 1], pos[pb, a, 3], pos[pb, b, 0], pos[pb, b, 1], pos[pb, b, 3])
    c1, c2 = edge_opp[e, 0], edge_opp[e, 1]
    s1 = nx * pos[pb, c1, 0] + ny * pos[pb, c1, 1] + nw * pos[pb, c1, 3]
    s2 = nx * pos[pb, c2, 0] + ny * pos[pb, c2, 1] + nw * pos[pb, c2, 3]
    return s1 * s2 >= 0


@njit(parallel=True, cache=True)
def _search(pos, tri, tid, zw, face_edges, edges, edge_opp, always, code):  # pragma: no cover - compiled
    nb, height, width = tid.shape
    batched = pos.shape[0] > 1
    for task in prange(nb * height):
        b, row = task // height, task % height
        pb = b if batched else 0
        py = 2.0 * (row + 0.5) / height - 1.0
        for col in range(width):
            t0 = tid[b, row, col]
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
                t1 = tid[b, r1, c1]
                if t1 == t0:
                    continue
                # front = nearer surface; background (id 0) is infinitely far; ties go to P
                if t0 > 0 and (t1 == 0 or zw[b, row, col] <= zw[b, r1, c1]):
                    t, swap = t0 - 1, 0
                    fx, fy, ox, oy = px, py, qx, qy
                else:
                    t, swap = t1 - 1, 1
                    fx, fy, ox, oy = qx, qy, px, py
                e = _exit_edge(pos, tri, pb, t, fx, fy, ox, oy, axis, width, height)
                if e < 0:
                    continue
                if _is_silhouette(pos, pb, face_edges[t, e], edges, edge_opp, always):
                    code[b, row, col, axis] = 1 + e + 3 * swap


def find_crossings(pos, tri, tid, zw, face_edges, edges, edge_opp, always):
    """``(front, other, face, local_edge)`` int64 arrays of the pixel pairs to blend (flat pixel indices).

    Args (numpy): ``pos[Bp,V,4]``, ``tri[F,3]``, ``tid[B,H,W]`` triangle id + 1, ``zw[B,H,W]`` depth,
    ``face_edges[F,3]``, ``edges[E,2]``, ``edge_opp[E,2]``, ``always[E]`` bool (boundary / non-manifold).
    """
    nb, h, w = tid.shape
    code = np.zeros((nb, h, w, 2), dtype=np.int8)
    _search(np.ascontiguousarray(pos), tri, np.ascontiguousarray(tid), np.ascontiguousarray(zw),
            face_edges, edges, edge_opp, always, code)
    nz = np.flatnonzero(code)
    val = code.reshape(-1)[nz].astype(np.int64) - 1
    pix, axis = nz // 2, nz % 2
    nbr = pix + np.where(axis == 0, 1, w)
    swap = val >= 3
    front = np.where(swap, nbr, pix)
    other = np.where(swap, pix, nbr)
    edge = val % 3
    face = tid.reshape(-1)[front].astype(np.int64) - 1
    return front, other, face, edge
