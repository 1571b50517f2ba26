"""Pose errors of Structure from Duplicates against ground truth, after removing the gauge.

One photo fixes the instances' object-to-camera poses ``T_k = [R_k | t_k]`` only up to a similarity of
the object frame (rotation, origin, and a global scale of object and depths together). So:

* rotation error of instance ``k``: ``angle(R_k Q, G_k)`` where ``Q = argmin_Q sum_k |R_k Q - G_k|_F^2``
  (the object-frame rotation aligning prediction to truth: the polar factor of ``sum_k R_k^T G_k``);
* relative rotation error of a pair: ``angle((R_i R_j^T)^T (G_i G_j^T))``, frame-free;
* translation error: the virtual camera centres ``C_k = -R_k^T t_k`` (object frame) are aligned to the
  true ones by the least-squares similarity (Umeyama 1991): ``C'_k = s Q C_k + c``, and the error is
  ``|C'_k - C^gt_k|`` in ground-truth object units (a synthetic object has longest side 1); it is also
  reported relative to the mean distance of the true centres from their centroid.

Both ``pred`` and ``gt`` must use the same camera axes (both OpenGL or both OpenCV).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...errors import InputError


@dataclass
class PoseErrors:
    """Errors of :func:`pose_errors` over the posed instances.

    Attributes:
        rotation_deg: ``[n]`` per-instance rotation error after the frame alignment, degrees.
        mean_rotation_deg, median_rotation_deg, max_rotation_deg: its statistics.
        mean_relative_rotation_deg: mean over instance pairs of the relative rotation error.
        mean_translation: mean centre error after the similarity alignment (ground-truth units).
        mean_translation_rel: ``mean_translation`` / mean distance of the true centres from their centroid.
        posed: instances evaluated / instances in the ground truth.
    """

    rotation_deg: list[float]
    mean_rotation_deg: float
    median_rotation_deg: float
    max_rotation_deg: float
    mean_relative_rotation_deg: float
    mean_translation: float
    mean_translation_rel: float
    posed: str

    def to_dict(self) -> dict:
        return asdict(self)


def _angle(R: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)))


def _polar(M: np.ndarray) -> np.ndarray:
    """The rotation nearest ``M[3,3]`` (Frobenius): ``U diag(1, 1, det(U V^T)) V^T`` of ``M = U S V^T``."""
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(s, Q[3,3], c[3])`` minimising ``sum |s Q src_k + c - dst_k|^2`` over ``src[n,3]``, ``dst[n,3]``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    Q = U @ D @ Vt
    var = (a ** 2).sum() / len(src)
    s = float((S * np.diag(D)).sum() / max(var, 1e-300))
    return s, Q, mu_d - s * Q @ mu_s


def pose_errors(pred: np.ndarray, gt: np.ndarray, posed: np.ndarray | None = None) -> PoseErrors:
    """Rotation and translation errors of object-to-camera poses ``pred[N,4,4]`` against ``gt[N,4,4]`` (module doc).

    ``posed[N]`` (default: all) selects the instances to evaluate; at least 2 are needed for the
    relative errors and 3 for the centre alignment (with 2, the translation errors are 0 by construction).
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.shape[-2:] != (4, 4):
        raise InputError(f"pred and gt must both be [N,4,4]; got {pred.shape} and {gt.shape}.")
    posed = np.ones(len(gt), bool) if posed is None else np.asarray(posed, bool)
    idx = np.nonzero(posed)[0]
    if idx.size < 2:
        raise InputError(f"need at least 2 posed instances to measure pose errors; got {idx.size}.")
    Rp, Rg = pred[idx, :3, :3], gt[idx, :3, :3]
    Q = _polar((Rp.transpose(0, 2, 1) @ Rg).sum(0))
    rot = _angle((Rp @ Q).transpose(0, 2, 1) @ Rg)
    rel = [_angle((Rp[a] @ Rp[b].T).T @ (Rg[a] @ Rg[b].T)) for a in range(idx.size) for b in range(a + 1, idx.size)]
    Cp = -np.einsum("nji,nj->ni", Rp, pred[idx, :3, 3])
    Cg = -np.einsum("nji,nj->ni", Rg, gt[idx, :3, 3])
    s, Qc, c = umeyama(Cp, Cg)
    err = np.linalg.norm(s * Cp @ Qc.T + c - Cg, axis=1)
    spread = float(np.linalg.norm(Cg - Cg.mean(0), axis=1).mean())
    return PoseErrors(rotation_deg=[float(r) for r in rot], mean_rotation_deg=float(rot.mean()),
                      median_rotation_deg=float(np.median(rot)), max_rotation_deg=float(rot.max()),
                      mean_relative_rotation_deg=float(np.mean(rel)), mean_translation=float(err.mean()),
                      mean_translation_rel=float(err.mean() / max(spread, 1e-12)), posed=f"{idx.size}/{len(gt)}")
