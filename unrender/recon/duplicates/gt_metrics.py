"""Scores of a duplicates reconstruction against ground truth (``unrender duplicates --gt SCENE``).

One photo fixes the object only up to a similarity, so the predicted mesh is first brought into the
ground truth's object frame:

1. rotated by the poses: with predicted and true object-to-camera rotations ``P_k``, ``G_k`` of the posed
   copies, every copy maps predicted object axes to true ones by ``G_k^T P_k``; the rotation is their average
   (the polar factor of the sum);
2. scaled and shifted so that both surfaces' samples have the same centroid and RMS radius, then refined
   by rigid ICP (Umeyama rotation on nearest neighbours; a similarity ICP can collapse the scale).

Then :func:`unrender.metrics.geometry.evaluate_meshes` gives Chamfer, F-score and normal consistency, and
the albedo PSNR compares unlit base-colour renders of both meshes from 8 views around the object, on
pixels both cover, after a per-channel least-squares scale (albedo and light trade a scale).
"""

from __future__ import annotations

import numpy as np
import torch

from ...mesh import Mesh
from ...metrics.geometry import evaluate_meshes, sample_surface
from .evaluate import _polar, pose_errors, umeyama


def _transform(mesh: Mesh, scale: float, R: np.ndarray, t: np.ndarray) -> Mesh:
    from dataclasses import replace

    v = mesh.vertices.double().numpy()
    return replace(mesh, vertices=torch.from_numpy(scale * v @ R.T + t).float(), normals=None)


def rotation_from_poses(pred: np.ndarray, gt: np.ndarray, posed: np.ndarray) -> np.ndarray:
    """Rotation ``R [3,3]`` with ``x_gt ~ R x_pred`` up to scale and shift, from the posed copies (module docstring)."""
    idx = np.nonzero(posed)[0]
    return _polar(sum(gt[k, :3, :3].T @ pred[k, :3, :3] for k in idx))


def icp_rigid(src: np.ndarray, dst: np.ndarray, iterations: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation ``(R, t)`` moving points ``src`` onto ``dst`` by ICP from the identity.

    The scale is not estimated here: a similarity ICP may shrink the source onto a few target points.
    """
    from scipy.spatial import cKDTree

    tree = cKDTree(dst)
    R, t = np.eye(3), np.zeros(3)
    for _ in range(iterations):
        _, j = tree.query(src @ R.T + t)
        _, R, _ = umeyama(src, dst[j])
        t = (dst[j] - src @ R.T).mean(0)
    return R, t


def align_to_ground_truth(mesh: Mesh, gt_mesh: Mesh, pred_poses: np.ndarray, gt_poses: np.ndarray,
                          posed: np.ndarray) -> Mesh:
    """``mesh`` moved into ``gt_mesh``'s frame (module docstring): the pose similarity's rotation, the scale and
    centre that match the two surfaces' RMS radius and centroid, then rigid ICP."""
    R = rotation_from_poses(pred_poses, gt_poses, posed)
    coarse = _transform(mesh, 1.0, R, np.zeros(3))
    src = sample_surface(coarse.vertices, coarse.faces, 5000, seed=1)[0].double().numpy()
    dst = sample_surface(gt_mesh.vertices, gt_mesh.faces, 5000, seed=2)[0].double().numpy()
    cs, cd = src.mean(0), dst.mean(0)
    k = np.sqrt(((dst - cd) ** 2).sum(1).mean() / max(((src - cs) ** 2).sum(1).mean(), 1e-30))
    src = (src - cs) * k + cd
    R2, t2 = icp_rigid(src, dst)
    return _transform(coarse, k, R2, R2 @ (cd - k * cs) + t2)


def albedo_psnr(pred: Mesh, gt: Mesh, views: int = 8, size: int = 128) -> float:
    """PSNR of unlit base colour (module docstring) between two meshes in the same frame; NaN if they never overlap."""
    from ...cameras import Camera, look_at
    from ...render.render_mesh import render_mesh

    lo, hi = gt.vertices.amin(0), gt.vertices.amax(0)
    centre, radius = (lo + hi) / 2, 1.3 * float((hi - lo).norm()) / (2 * 0.364)
    ang = torch.arange(views, dtype=torch.float32) * (2 * torch.pi / views)
    eyes = centre + radius * torch.stack([torch.sin(ang) * 0.9, torch.full_like(ang, 0.44), torch.cos(ang) * 0.9], -1)
    cam = Camera.from_fov(40, size, size, look_at(eyes, target=tuple(centre.tolist())))
    with torch.no_grad():
        a, b = render_mesh(pred, cam, shading="albedo"), render_mesh(gt, cam, shading="albedo")
    both = ((a.alpha > 0.99) & (b.alpha > 0.99)).expand(-1, -1, -1, 3)
    x, y = a.albedo[both].reshape(-1, 3).double(), b.albedo[both].reshape(-1, 3).double()
    if x.shape[0] == 0:
        return float("nan")
    k = (x * y).sum(0) / (x * x).sum(0).clamp_min(1e-12)
    mse = float(((x * k - y).clamp(-1, 1) ** 2).mean())
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def ground_truth_metrics(mesh: Mesh, object_to_camera: np.ndarray, posed: np.ndarray, gt_mesh: Mesh,
                         gt_object_to_camera: np.ndarray) -> dict:
    """``{"poses": ..., "shape": ..., "albedo_psnr": ...}`` of a reconstruction against the ground truth."""
    out = {}
    if int(np.sum(posed)) >= 2 and mesh.num_faces > 0:
        out["poses"] = pose_errors(object_to_camera, gt_object_to_camera, posed).to_dict()
        aligned = align_to_ground_truth(mesh, gt_mesh, object_to_camera, gt_object_to_camera, posed)
        out["shape"] = evaluate_meshes(aligned, gt_mesh).to_dict()
        out["albedo_psnr"] = albedo_psnr(aligned, gt_mesh)
    return out
