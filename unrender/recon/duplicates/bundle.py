"""Bundle adjustment of instance poses and object points with ``scipy.optimize.least_squares``.

Every instance ``k`` is a virtual camera with object-to-camera pose ``(R_k, t_k)`` (OpenCV axes: x right,
y down, z forward) and the photo's intrinsics ``K``; an object point ``X_p`` observed at pixel ``u`` in
instance ``k`` has the residual

    r = pi(K (R_k X_p + t_k)) - u,     pi(x, y, z) = (x / z, y / z)

minimised with a robust loss (``soft_l1``: ``rho(s) = 2 (sqrt(1 + s) - 1)`` on ``s = |r|^2 / f^2``) over all
poses except the fixed ones and all points. Rotations are parametrised by axis-angle vectors.
The Jacobian's sparsity (each residual touches one pose and one point) is passed to the solver, so the
cost grows linearly with the number of observations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix
from scipy.spatial.transform import Rotation


@dataclass
class BundleConfig:
    """Settings of :func:`bundle_adjust`.

    Attributes:
        loss: scipy robust loss name (``linear``, ``huber``, ``soft_l1``, ``cauchy``, ``arctan``).
        f_scale_px: the loss's inlier scale in pixels.
        max_nfev: at most this many function evaluations.
    """

    loss: str = "soft_l1"
    f_scale_px: float = 1.5
    max_nfev: int = 100


def project(K: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``[M,2]`` and depths ``[M]`` of points ``X[M,3]`` under per-row poses ``rvec[M,3]``, ``tvec[M,3]``."""
    Xc = Rotation.from_rotvec(rvec).apply(X) + tvec
    z = Xc[:, 2]
    zs = np.where(np.abs(z) < 1e-9, 1e-9, z)  # a point on the camera plane has no pixel; keep the residual finite
    uv = np.stack([K[0, 0] * Xc[:, 0] / zs + K[0, 2], K[1, 1] * Xc[:, 1] / zs + K[1, 2]], -1)
    return uv, z


def reprojection_errors(K, rvecs, tvecs, points, cam_idx, pt_idx, uv) -> np.ndarray:
    """Pixel distances ``[M]`` between observations ``uv[M,2]`` and the projections of their points."""
    pred, _ = project(K, rvecs[cam_idx], tvecs[cam_idx], points[pt_idx])
    return np.linalg.norm(pred - uv, axis=-1)


def bundle_adjust(K: np.ndarray, rvecs: np.ndarray, tvecs: np.ndarray, points: np.ndarray, cam_idx: np.ndarray,
                  pt_idx: np.ndarray, uv: np.ndarray, fixed: set[int], cfg: BundleConfig | None = None):
    """Refine poses ``rvecs[C,3]``, ``tvecs[C,3]`` (cameras in ``fixed`` stay) and ``points[P,3]``.

    Args:
        K: intrinsics ``[3,3]``.
        cam_idx, pt_idx: ``[M]`` camera and point of every observation; ``uv[M,2]`` its pixel.
        fixed: cameras whose pose is held (the gauge: one fixed camera leaves only the global scale free,
            which the solver's damping keeps in place).
    Returns:
        ``(rvecs, tvecs, points)`` refined copies.
    """
    cfg = cfg or BundleConfig()
    n_cam, n_pt = rvecs.shape[0], points.shape[0]
    free = [c for c in range(n_cam) if c not in fixed]
    slot = {c: s for s, c in enumerate(free)}
    used = np.isin(cam_idx, free)
    m = cam_idx.shape[0]

    def unpack(x):
        r, t = rvecs.copy(), tvecs.copy()
        poses = x[:6 * len(free)].reshape(-1, 6)
        if free:
            r[free], t[free] = poses[:, :3], poses[:, 3:]
        return r, t, x[6 * len(free):].reshape(n_pt, 3)

    def residuals(x):
        r, t, X = unpack(x)
        pred, _ = project(K, r[cam_idx], t[cam_idx], X[pt_idx])
        return (pred - uv).ravel()

    A = lil_matrix((2 * m, 6 * len(free) + 3 * n_pt), dtype=np.int8)
    rows = np.arange(m)
    for d in range(2):
        for c in np.nonzero(used)[0]:
            s = slot[int(cam_idx[c])]
            A[2 * c + d, 6 * s:6 * s + 6] = 1
        for k in range(3):
            A[2 * rows + d, 6 * len(free) + 3 * pt_idx + k] = 1
    x0 = np.concatenate([np.concatenate([rvecs[free], tvecs[free]], 1).ravel(), points.ravel()])
    sol = least_squares(residuals, x0, jac_sparsity=A.tocsr(), loss=cfg.loss, f_scale=cfg.f_scale_px,
                        x_scale="jac", method="trf", max_nfev=cfg.max_nfev, xtol=1e-10, ftol=1e-8)
    return unpack(sol.x)
