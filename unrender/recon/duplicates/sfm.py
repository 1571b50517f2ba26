"""Incremental structure from motion over instances: essential-matrix view graph, PnP, bundle adjustment.

1. View graph: instances are nodes, verified pairs (:mod:`.matching`) edges weighted by inlier count.
2. Seed: the pair with the largest ``inliers * min(1, angle / 5 deg)`` (``angle`` = median triangulation
   angle of its matches, so a pair seen from nearly the same direction does not seed a flat
   reconstruction); its relative pose ``(R, t/|t|)`` fixes the first two virtual cameras, whose baseline
   is 1 (rescaled later by :func:`normalize_frame`), and its tracks are triangulated.
3. Repeatedly register the unposed instance seeing the most triangulated tracks by PnP (RANSAC, then
   Levenberg-Marquardt), triangulate the tracks that now have two posed observations, and bundle-adjust
   everything (:func:`.bundle.bundle_adjust`). Observations reprojecting worse than ``max_error_px``
   after adjustment are dropped.

All poses are object-to-camera in OpenCV axes (x right, y down, z forward) in this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from .bundle import BundleConfig, bundle_adjust, reprojection_errors
from .matching import PairMatch
from .tracks import Tracks


@dataclass
class SfMConfig:
    """Settings of :func:`incremental_sfm`.

    Attributes:
        min_pnp_inliers: an instance is posed only if PnP finds at least this many inlier tracks.
        pnp_threshold_px: PnP RANSAC inlier threshold.
        max_error_px: observations reprojecting worse than this after bundle adjustment are removed.
        min_angle_deg: a track is triangulated only when its two rays meet at least at this angle.
        bundle: settings of each bundle adjustment.
    """

    min_pnp_inliers: int = 10
    pnp_threshold_px: float = 3.0
    max_error_px: float = 4.0
    min_angle_deg: float = 1.0
    bundle: BundleConfig = field(default_factory=BundleConfig)


@dataclass
class SfMResult:
    """Poses and points of :func:`incremental_sfm` (OpenCV camera axes, arbitrary similarity frame).

    Attributes:
        rvecs, tvecs: ``[N,3]`` object-to-camera axis-angle rotations and translations (NaN if not posed).
        posed: ``[N]`` bool.
        points: ``[P,3]`` triangulated object points.
        obs_cam, obs_pt: ``[M]`` instance and point of every kept observation; ``obs_uv[M,2]`` its pixel.
        reference: the instance whose pose is the identity.
    """

    rvecs: np.ndarray
    tvecs: np.ndarray
    posed: np.ndarray
    points: np.ndarray
    obs_cam: np.ndarray
    obs_pt: np.ndarray
    obs_uv: np.ndarray
    reference: int


def _rays(K: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Unit bearing vectors ``[M,3]`` of pixels ``uv[M,2]`` (camera frame): ``normalize(K^-1 (u, v, 1))``."""
    h = np.concatenate([uv, np.ones((uv.shape[0], 1))], 1) @ np.linalg.inv(K).T
    return h / np.linalg.norm(h, axis=1, keepdims=True)


def triangulate(K, R1, t1, R2, t2, uv1, uv2) -> np.ndarray:
    """Points ``[M,3]`` from pixels ``uv1[M,2]``, ``uv2[M,2]`` of two cameras (linear DLT, OpenCV)."""
    import cv2

    P1, P2 = K @ np.hstack([R1, t1[:, None]]), K @ np.hstack([R2, t2[:, None]])
    X = cv2.triangulatePoints(P1, P2, uv1.T.astype(np.float64), uv2.T.astype(np.float64))
    return (X[:3] / np.where(np.abs(X[3]) < 1e-12, 1e-12, X[3])).T


def ray_angles(K, R1, t1, R2, t2, X) -> np.ndarray:
    """Angle (degrees) ``[M]`` at each point ``X[M,3]`` between the rays to the two camera centres ``-R^T t``."""
    c1, c2 = -R1.T @ t1, -R2.T @ t2
    a, b = c1 - X, c2 - X
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def _seed_pair(pairs: list[PairMatch], K: np.ndarray) -> PairMatch:
    best, score = None, -1.0
    for p in pairs:
        X = triangulate(K, np.eye(3), np.zeros(3), p.R, p.t, p.points_i, p.points_j)
        ang = float(np.median(ray_angles(K, np.eye(3), np.zeros(3), p.R, p.t, X))) if len(X) else 0.0
        s = p.inliers * min(1.0, ang / 5.0)
        if s > score:
            best, score = p, s
    return best


class _State:
    """Mutable reconstruction of one :func:`incremental_sfm` call (poses, points, observations)."""

    def __init__(self, tracks: Tracks, n: int):
        self.tracks = tracks
        self.R = np.full((n, 3, 3), np.nan)
        self.t = np.full((n, 3), np.nan)
        self.posed = np.zeros(n, bool)
        self.X = np.full((tracks.count, 3), np.nan)
        self.active = np.ones(tracks.track.shape[0], bool)  # observation kept (not an outlier)

    def set_pose(self, k, R, t):
        self.R[k], self.t[k], self.posed[k] = R, t, True

    def triangulate_new(self, K, min_angle):
        """Triangulate every track with no point yet and >= 2 posed, active observations (the widest-angle pair)."""
        tr = self.tracks
        ok = self.active & self.posed[tr.instance]
        for t_id in np.unique(tr.track[ok]):
            if np.isfinite(self.X[t_id, 0]):
                continue
            obs = np.nonzero(ok & (tr.track == t_id))[0]
            if obs.size < 2:
                continue
            best = None
            for a in range(obs.size):
                for b in range(a + 1, obs.size):
                    ka, kb = tr.instance[obs[a]], tr.instance[obs[b]]
                    X = triangulate(K, self.R[ka], self.t[ka], self.R[kb], self.t[kb], tr.uv[obs[a]][None],
                                    tr.uv[obs[b]][None])[0]
                    ang = ray_angles(K, self.R[ka], self.t[ka], self.R[kb], self.t[kb], X[None])[0]
                    depths = [(self.R[k] @ X + self.t[k])[2] for k in (ka, kb)]
                    if min(depths) > 0 and ang >= min_angle and (best is None or ang > best[0]):
                        best = (ang, X)
            if best is not None:
                self.X[t_id] = best[1]

    def observations(self):
        """``(cam[M], pt[M], uv[M,2], rows[M])`` of active observations of posed instances and triangulated tracks."""
        tr = self.tracks
        sel = self.active & self.posed[tr.instance] & np.isfinite(self.X[tr.track, 0])
        rows = np.nonzero(sel)[0]
        return tr.instance[rows], tr.track[rows], tr.uv[rows], rows

    def adjust(self, K, reference, cfg: SfMConfig):
        cam, pt, uv, rows = self.observations()
        if rows.size == 0:
            return
        used_pts = np.unique(pt)
        remap = -np.ones(self.X.shape[0], np.int64)
        remap[used_pts] = np.arange(used_pts.size)
        posed = np.nonzero(self.posed)[0]
        cslot = -np.ones(self.posed.shape[0], np.int64)
        cslot[posed] = np.arange(posed.size)
        rv = Rotation.from_matrix(self.R[posed]).as_rotvec()
        rv, tv, Xs = bundle_adjust(K, rv, self.t[posed].copy(), self.X[used_pts].copy(), cslot[cam], remap[pt], uv,
                                   fixed={int(cslot[reference])}, cfg=cfg.bundle)
        self.R[posed], self.t[posed], self.X[used_pts] = Rotation.from_rotvec(rv).as_matrix(), tv, Xs
        err = reprojection_errors(K, rv, tv, Xs, cslot[cam], remap[pt], uv)
        depth = np.einsum("mij,mj->mi", self.R[cam], self.X[pt])[:, 2] + self.t[cam][:, 2]
        self.active[rows[(err > cfg.max_error_px) | (depth <= 0)]] = False
        # A point left with fewer than two observations is no longer constrained: forget it.
        cam, pt, _, _ = self.observations()
        counts = np.bincount(pt, minlength=self.X.shape[0])
        self.X[(counts < 2) & np.isfinite(self.X[:, 0])] = np.nan


def _register(state: _State, k: int, K: np.ndarray, cfg: SfMConfig) -> bool:
    import cv2

    tids, uv = state.tracks.of_instance(k)
    act = state.active[state.tracks.instance == k]
    sel = act & np.isfinite(state.X[tids, 0])
    if sel.sum() < max(cfg.min_pnp_inliers, 6):
        return False
    X, u = state.X[tids[sel]], uv[sel]
    ok, rvec, tvec, inl = cv2.solvePnPRansac(X, u, K, None, reprojectionError=cfg.pnp_threshold_px,
                                             iterationsCount=2000, confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
    if not ok or inl is None or len(inl) < cfg.min_pnp_inliers:
        return False
    inl = inl.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(X[inl], u[inl], K, None, rvec, tvec)
    state.set_pose(k, Rotation.from_rotvec(rvec.ravel()).as_matrix(), tvec.ravel())
    rows = np.nonzero(state.tracks.instance == k)[0][sel]
    outl = np.ones(rows.size, bool)
    outl[inl] = False
    state.active[rows[outl]] = False
    return True


def incremental_sfm(pairs: list[PairMatch], tracks: Tracks, num_instances: int, K: np.ndarray,
                    cfg: SfMConfig | None = None) -> SfMResult:
    """Pose as many instances as the matches allow (module docstring).

    Args:
        pairs: verified pairs (:func:`.matching.match_instances`), at least one.
        tracks: their tracks (:func:`.tracks.build_tracks`).
        num_instances: ``N``.
        K: intrinsics ``[3,3]``.
    Returns:
        :class:`SfMResult`; instances that could not be registered have ``posed = False``.
    """
    cfg = cfg or SfMConfig()
    state = _State(tracks, num_instances)
    seed = _seed_pair(pairs, K)
    state.set_pose(seed.i, np.eye(3), np.zeros(3))
    state.set_pose(seed.j, seed.R, seed.t / max(np.linalg.norm(seed.t), 1e-12))
    state.triangulate_new(K, cfg.min_angle_deg)
    state.adjust(K, seed.i, cfg)
    while not state.posed.all():
        candidates = []
        for k in np.nonzero(~state.posed)[0]:
            tids, _ = tracks.of_instance(k)
            act = state.active[tracks.instance == k]
            candidates.append((int((act & np.isfinite(state.X[tids, 0])).sum()), int(k)))
        placed = False
        for _, k in sorted(candidates, reverse=True):
            if _register(state, k, K, cfg):
                placed = True
                break
        if not placed:
            break
        state.triangulate_new(K, cfg.min_angle_deg)
        state.adjust(K, seed.i, cfg)
    state.adjust(K, seed.i, cfg)  # once more after the last outlier removal
    cam, pt, uv, _ = state.observations()
    used = np.unique(pt)
    remap = -np.ones(state.X.shape[0], np.int64)
    remap[used] = np.arange(used.size)
    rvecs = np.full((num_instances, 3), np.nan)
    if state.posed.any():
        rvecs[state.posed] = Rotation.from_matrix(state.R[state.posed]).as_rotvec()
    return SfMResult(rvecs, state.t.copy(), state.posed.copy(), state.X[used], cam, remap[pt], uv, seed.i)


def _cost(K, res: SfMResult, f_scale: float) -> float:
    """Mean soft-L1 cost of ``res``'s observations (what :func:`.bundle.bundle_adjust` minimises)."""
    err = reprojection_errors(K, res.rvecs, res.tvecs, res.points, res.obs_cam, res.obs_pt, res.obs_uv)
    return float((2 * (np.sqrt(1 + (err / f_scale) ** 2) - 1)).mean()) if err.size else float("inf")


def necker_reversal(res: SfMResult, K: np.ndarray, cfg: SfMConfig) -> SfMResult:
    """The depth-reversed twin of ``res``, bundle-adjusted.

    A copy spans a few degrees of the photo, so every virtual camera is close to affine, and affine views
    fit the points mirrored in depth, ``X' = M (X - m) + m`` with ``M = diag(1, 1, -1)`` in the reference
    camera frame and ``m`` the points' centroid, as well as the true ones (the Necker reversal). Only
    perspective tells them apart, weakly, so incremental reconstruction may land on either: each posed
    instance is re-posed by PnP against the mirrored points and everything is adjusted again; the caller
    keeps whichever of the two fits better.
    """
    import cv2

    m = res.points.mean(0)
    X = (res.points - m) * np.array([1.0, 1.0, -1.0]) + m
    rvecs, tvecs = res.rvecs.copy(), res.tvecs.copy()
    posed = np.nonzero(res.posed)[0]
    for k in posed:
        sel = res.obs_cam == k
        M = np.diag([1.0, 1.0, -1.0])
        r0 = Rotation.from_matrix(M @ Rotation.from_rotvec(res.rvecs[k]).as_matrix() @ M).as_rotvec()
        ok, rv, tv = cv2.solvePnP(X[res.obs_pt[sel]], res.obs_uv[sel], K, None, r0.copy(), res.tvecs[k].copy(),
                                  useExtrinsicGuess=False, flags=cv2.SOLVEPNP_EPNP)
        if ok:
            rv, tv = cv2.solvePnPRefineLM(X[res.obs_pt[sel]], res.obs_uv[sel], K, None, rv, tv)
            rvecs[k], tvecs[k] = rv.ravel(), tv.ravel()
    cslot = -np.ones(len(res.posed), np.int64)
    cslot[posed] = np.arange(posed.size)
    rv, tv, X = bundle_adjust(K, rvecs[posed], tvecs[posed], X, cslot[res.obs_cam], res.obs_pt, res.obs_uv,
                              fixed=set(), cfg=cfg.bundle)
    rvecs[posed], tvecs[posed] = rv, tv
    return SfMResult(rvecs, tvecs, res.posed.copy(), X, res.obs_cam, res.obs_pt, res.obs_uv, res.reference)


def resolve_necker(res: SfMResult, K: np.ndarray, cfg: SfMConfig) -> tuple[SfMResult, bool]:
    """``res`` or its :func:`necker_reversal`, whichever has the lower robust reprojection cost; and whether
    the reversal won. Needs 3 posed instances (with two, both fit exactly)."""
    if res.posed.sum() < 3 or len(res.points) < 6:
        return res, False
    twin = necker_reversal(res, K, cfg)
    if _cost(K, twin, cfg.bundle.f_scale_px) < _cost(K, res, cfg.bundle.f_scale_px):
        return twin, True
    return res, False


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Rotation angle(s) in degrees of ``R[...,3,3]``: ``acos((tr R - 1) / 2)``."""
    tr = np.trace(R, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0)))
