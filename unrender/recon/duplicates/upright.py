"""Poses of upright copies: every copy stands on one plane and differs from the others by a turn about its
normal and a shift along it (a shelf of bottles, a table of mugs, a parking lot).

That model leaves three unknowns per copy instead of six, and each is found robustly:

1. **Plane normal ``u``** (photo camera frame, OpenGL axes) from the copies' apparent sizes: a copy whose
   centre is seen along the ray ``r = ((x - cx)/fx, -(y - cy)/fy, -1)`` lies on the plane ``u . X = d`` at depth
   ``s = d / (u . r)``, so its size in pixels is ``sqrt(area) ~ (u . r) / d``, linear in ``r``. A
   least-squares fit of ``sqrt(area_k)`` against ``(r_x, r_y, 1)`` gives ``u`` up to its sign (up: the
   camera sits above the plane, ``d < 0``). Needs >= 3 copies at different distances.
2. **Centres**: ``p_k = s_k r_k`` with ``d`` set so that the median copy is about 1 unit across (one
   photo cannot tell scale).
3. **Turns**: for every verified feature pair (:func:`.matching.match_instances`) the relative rotation is
   ``Rot(u, theta)``; ``theta`` is searched on a fine grid, the translation for each ``theta`` is the null
   vector of the epipolar rows ``(R x_i) x x_j``, and the score is the truncated Sampson error of all
   matches (a match that triangulates behind either copy's camera counts as an outlier: this rejects the
   essential matrix's twisted-pair twin, a half turn away). Pairs with fewer than :data:`MIN_PAIR_MATCHES`
   matches or a score above :data:`MAX_PAIR_SCORE` are dropped; turns follow along a maximum spanning tree
   (weight: matches / (0.2 + score)) of the largest connected group of the remaining pairs.

Object frame: ``y`` along ``u`` (up), ``z`` the reference copy's direction towards the camera projected on
the plane, origin at the copy's centre on the plane; ``R_k = Rot(u, theta_k) R_ref``.
Copies of other groups, or with no verified pair, are registered later by render-and-compare (:mod:`.register`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import DataError
from .inputs import DuplicatesInput
from .matching import PairMatch

#: OpenCV <-> OpenGL camera axes.
_FLIP = np.diag([1.0, -1.0, -1.0])
#: A pair links two copies' turns only with at least this many matches ...
MIN_PAIR_MATCHES = 20
#: ... and a score (mean truncated squared Sampson error, px^2) at most this. Wrong pairs (repeated texture,
#: symmetric shapes matched across a large turn) scored 1.1-3.6 on synthetic scenes, right ones 0.06-0.5.
MAX_PAIR_SCORE = 1.0


@dataclass
class UprightPoses:
    """Result of :func:`upright_poses`.

    Attributes:
        object_to_camera: ``[N,4,4]`` OpenGL poses; rows of copies outside the main group are NaN.
        posed: ``[N]`` copies posed from features (the main group).
        up: plane normal ``u`` (photo frame).
        plane_offset: ``d`` of the plane ``u . X = d`` holding every copy's centre.
        centres: ``[N,3]`` every copy's centre on the plane (known for all copies, posed or not).
        turns_deg: ``[N]`` turn of each posed copy about ``u`` relative to the reference (NaN if not posed).
        reference: the copy whose turn is 0.
        pair_turns: ``(i, j, theta_deg, score)`` of every verified pair.
    """

    object_to_camera: np.ndarray
    posed: np.ndarray
    up: np.ndarray
    plane_offset: float
    centres: np.ndarray
    turns_deg: np.ndarray
    reference: int
    pair_turns: list


def centroid_rays(data: DuplicatesInput) -> tuple[np.ndarray, np.ndarray]:
    """``(rays [N,3], sqrt(area) [N])``: the OpenGL ray through each mask's centroid and its size in pixels."""
    K = data.intrinsics
    masks = np.asarray(data.masks)
    rays, sizes = [], []
    for m in masks:
        ys, xs = np.nonzero(m)
        rays.append([(xs.mean() + 0.5 - K.cx) / K.fx, -(ys.mean() + 0.5 - K.cy) / K.fy, -1.0])
        sizes.append(np.sqrt(xs.size))
    return np.array(rays), np.array(sizes)


def plane_from_sizes(data: DuplicatesInput) -> tuple[np.ndarray, float, np.ndarray]:
    """``(u, d, centres [N,3])`` (module docstring, steps 1-2). Raises :class:`DataError` when the fit is degenerate."""
    rays, sizes = centroid_rays(data)
    if len(sizes) < 3:
        raise DataError(f"{data.image_path}: the upright model needs at least 3 copies to find their ground plane.")
    A = np.c_[rays[:, 0], rays[:, 1], np.ones(len(rays))]
    coef, *_ = np.linalg.lstsq(A, sizes, rcond=None)
    u = -np.array([coef[0], coef[1], -coef[2]])  # sizes ~ (u . r) / d with d < 0
    if not np.linalg.norm(u) > 0:
        raise DataError(f"{data.image_path}: the copies' sizes do not change with distance; cannot find their plane.")
    u /= np.linalg.norm(u)
    depth_per_d = 1.0 / (rays @ u)  # s_k / d
    if not (depth_per_d < 0).all():  # d < 0 needs u . r < 0 for every copy: all centres in front, above-plane camera
        raise DataError(f"{data.image_path}: the copies' sizes do not fit one plane seen from above it; use "
                        f"--set pose_model=free.")
    K = data.intrinsics
    # copy width in object units ~ sizes * depth / f; choose |d| so that the median is 1
    d = 1.0 / float(np.median(sizes * depth_per_d / K.fx))
    return u, d, rays * (d * depth_per_d)[:, None]


def rotation_about(u: np.ndarray, theta) -> np.ndarray:
    """Rotations ``[..., 3, 3]`` by angles ``theta [...]`` (radians) about the unit axis ``u`` (Rodrigues)."""
    theta = np.asarray(theta, np.float64)
    K = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    s, c = np.sin(theta)[..., None, None], np.cos(theta)[..., None, None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def _in_front(Rxi: np.ndarray, xj: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[T,M]`` bool: the match triangulates in front of both cameras (``z_j x_j = z_i R x_i + s t``, best sign ``s``).

    Depths from the 2x2 normal equations of ``[R x_i, -x_j] [z_i, z_j]^T = -s t``.
    """
    a, b = Rxi, -xj[None]
    aa, ab, bb = (a * a).sum(-1), (a * b).sum(-1), (b * b).sum(-1)
    det = aa * bb - ab * ab
    ok = []
    for sign in (1.0, -1.0):
        rhs = -sign * t[:, None, :]
        ra, rb = (a * rhs).sum(-1), (b * rhs).sum(-1)
        safe = np.where(det == 0, 1e-30, det)
        zi, zj = (bb * ra - ab * rb) / safe, (aa * rb - ab * ra) / safe
        ok.append((zi > 0) & (zj > 0))
    use_plus = ok[0].sum(1) >= ok[1].sum(1)
    return np.where(use_plus[:, None], ok[0], ok[1])


def pair_turn(pair: PairMatch, u: np.ndarray, K: np.ndarray, step_deg: float = 0.5,
              max_error_px: float = 3.0) -> tuple[float, float]:
    """``(theta_deg, score)``: the turn about ``u`` taking copy ``i`` to copy ``j`` (module docstring, step 3).

    ``theta`` is such that ``R_j = Rot(u, theta) R_i``; ``score`` is the mean truncated squared Sampson error
    in pixels (lower is better).
    """
    Ki = np.linalg.inv(K)
    xi = np.c_[pair.points_i, np.ones(len(pair.points_i))] @ Ki.T
    xj = np.c_[pair.points_j, np.ones(len(pair.points_j))] @ Ki.T
    thetas = np.radians(np.arange(-180.0, 180.0, step_deg))
    R = rotation_about(_FLIP @ u, thetas)  # OpenCV axes, as the matches' normalised coordinates
    rows = np.cross(np.einsum("tab,mb->tma", R, xi), xj[None])  # [T,M,3]: t . ((R x_i) x x_j) = 0
    t = np.linalg.svd(rows)[2][:, -1]  # [T,3]
    tx = np.zeros((len(thetas), 3, 3))
    tx[:, 0, 1], tx[:, 0, 2], tx[:, 1, 0] = -t[:, 2], t[:, 1], t[:, 2]
    tx[:, 1, 2], tx[:, 2, 0], tx[:, 2, 1] = -t[:, 0], -t[:, 1], t[:, 0]
    E = tx @ R
    Ex, Etx = np.einsum("tab,mb->tma", E, xi), np.einsum("tba,mb->tma", E, xj)
    num = (xj[None] * Ex).sum(-1) ** 2
    den = Ex[..., 0] ** 2 + Ex[..., 1] ** 2 + Etx[..., 0] ** 2 + Etx[..., 1] ** 2
    err = np.sqrt(num / np.maximum(den, 1e-30)) * K[0, 0]
    # Cheirality: E cannot tell R from its twisted pair (a half turn about t); points must lie in front of both
    # virtual cameras for one sign of t. Points behind count as full outliers.
    front = _in_front(np.einsum("tab,mb->tma", R, xi), xj, t)
    err = np.where(front, err, max_error_px)
    score = (np.minimum(err, max_error_px) ** 2).mean(1)
    best = int(np.argmin(score))
    return float(np.degrees(thetas[best])), float(score[best])


def _spanning_turns(n: int, edges: list[tuple[int, int, float, int]], root: int) -> np.ndarray:
    """Turns ``[n]`` (degrees, NaN where unreached) from ``root`` along a maximum spanning tree of the edges
    ``(i, j, theta, weight)``."""
    turns = np.full(n, np.nan)
    turns[root] = 0.0
    while True:  # Prim: take the heaviest edge leaving the reached set
        best = None
        for i, j, th, w in edges:
            if np.isnan(turns[i]) != np.isnan(turns[j]) and (best is None or w > best[3]):
                best = (i, j, th, w)
        if best is None:
            return turns
        i, j, th, _ = best
        if np.isnan(turns[j]):
            turns[j] = turns[i] + th
        else:
            turns[i] = turns[j] - th


def reference_rotation(u: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Object axes (columns, photo frame) of the reference copy: ``y = u``, ``z`` towards the camera on the plane."""
    back = -centre / np.linalg.norm(centre)
    z = back - (back @ u) * u
    z = z / np.linalg.norm(z) if np.linalg.norm(z) > 1e-9 else np.cross([1.0, 0.0, 0.0], u)
    x = np.cross(u, z)
    return np.stack([x / np.linalg.norm(x), u, z], 1)


def upright_poses(data: DuplicatesInput, pairs: list[PairMatch]) -> UprightPoses:
    """Plane, centres and the turns of the largest group of matched copies (module docstring)."""
    from .poses import match_components

    u, d, centres = plane_from_sizes(data)
    K = data.intrinsics.K
    n = centres.shape[0]
    pair_turns = [(p.i, p.j, *pair_turn(p, u, K)) for p in pairs]
    good = [(p, pt) for p, pt in zip(pairs, pair_turns) if p.inliers >= MIN_PAIR_MATCHES and pt[3] <= MAX_PAIR_SCORE]
    groups = match_components([p for p, _ in good])
    turns = np.full(n, np.nan)
    if groups:
        group = groups[0]
        sizes = np.asarray(data.masks).reshape(n, -1).sum(1)
        ref = max(group, key=lambda k: sizes[k])  # the most visible copy
        edges = [(p.i, p.j, th, p.inliers / (0.2 + score)) for p, (_, _, th, score) in good if p.i in group]
        turns = _spanning_turns(n, edges, ref)
    else:
        ref = int(np.argmax(np.asarray(data.masks).reshape(n, -1).sum(1)))
        turns[ref] = 0.0
    R_ref = reference_rotation(u, centres[ref])
    o2c = np.full((n, 4, 4), np.nan)
    posed = ~np.isnan(turns)
    for k in np.nonzero(posed)[0]:
        o2c[k] = np.eye(4)
        o2c[k, :3, :3] = rotation_about(u, np.radians(turns[k])) @ R_ref
        o2c[k, :3, 3] = centres[k]
    return UprightPoses(o2c, posed, u, d, centres, turns, int(ref), pair_turns)
