"""Registering the copies feature matching left unposed, by render-and-compare with a first reconstruction.

Copies that stand on one plane differ only by a turn about its normal and a shift along it (the scenes
Structure from Duplicates is about: a shelf, a table, a parking lot). The plane comes from
:mod:`.upright` or, for poses from free structure from motion, from two posed copies
(:func:`ground_plane`):

* the up axis ``u`` (photo frame) is the axis of their relative rotation ``R_b R_a^T``, which for upright
  copies is a turn about ``u`` (averaged over pairs, weighted by the turn angle; pairs turned less than
  :data:`MIN_TURN_DEG` say little and are skipped; the sign makes ``u`` point up in the image);
* the copies' origins lie on the plane ``u . x = d`` (``d`` the mean of ``u . t_k``).

An unposed copy ``j`` then has three unknowns: its turn ``theta`` (``R_j = Rot(u, theta) R_ref``) and its
origin ``p`` on the plane.
``theta`` is searched over ``yaws`` values (for each, ``p`` such that the surface centroid of the turned object lies
on the ray through the mask's centroid) by rendering the first reconstruction into ``j``'s crop and
scoring the image + mask loss on its known pixels; the best few are refined by gradient descent on
``(theta, p)`` and the best result is kept when its mask IoU passes ``min_iou``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...mesh import Mesh
from ..multiview.losses import image_loss, mask_loss
from .inputs import DuplicatesInput
from .instance_views import instance_views
from .joint import render_in_photo_frame

#: Pairs of posed copies turned less than this (degrees) do not vote for the up axis.
MIN_TURN_DEG = 8.0


@dataclass
class RegisterConfig:
    """Settings of :func:`register_unposed`."""

    yaws: int = 24
    """Turns tried per copy (evenly spaced over 360 degrees)."""
    keep: int = 3
    """Best turns refined by gradient descent."""
    steps: int = 40
    """Gradient steps per refined turn."""
    lr: float = 0.02
    """Adam learning rate (radians for the turn, object units for the shift)."""
    min_iou: float = 0.6
    """Least mask IoU (known pixels) for a copy to count as registered."""


def ground_plane(object_to_camera: np.ndarray, posed: np.ndarray) -> tuple[np.ndarray, float] | None:
    """``(u [3], d)`` of the plane the posed copies stand on (module docstring), or None when no pair turns enough."""
    from scipy.spatial.transform import Rotation

    idx = np.nonzero(posed)[0]
    votes = []
    for a in range(idx.size):
        for b in range(a + 1, idx.size):
            rv = Rotation.from_matrix(object_to_camera[idx[b], :3, :3] @ object_to_camera[idx[a], :3, :3].T).as_rotvec()
            angle = np.linalg.norm(rv)
            if np.degrees(angle) >= MIN_TURN_DEG:
                axis = rv / angle
                votes.append(angle * (axis if axis[1] >= 0 else -axis))
    if not votes:
        return None
    u = np.sum(votes, axis=0)
    u /= np.linalg.norm(u)
    d = float(np.mean(object_to_camera[idx, :3, 3] @ u))
    return u, d


def _rotation_about(u: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rodrigues: ``I + sin(theta) [u]x + (1 - cos(theta)) [u]x^2`` (differentiable in ``theta``)."""
    z = torch.zeros((), dtype=u.dtype)
    K = torch.stack([torch.stack([z, -u[2], u[1]]), torch.stack([u[2], z, -u[0]]), torch.stack([-u[1], u[0], z])])
    return torch.eye(3, dtype=u.dtype) + torch.sin(theta) * K + (1 - torch.cos(theta)) * (K @ K)


def _camera_to_object(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``[4,4]`` inverse of the rigid object-to-camera ``[R | t]``."""
    C = torch.zeros(4, 4, dtype=R.dtype)
    C[:3, :3], C[:3, 3], C[3, 3] = R.T, -R.T @ t, 1.0
    return C


def _score(mesh, light, views, R, t):
    cam = views.camera
    from dataclasses import replace

    c2o = torch.stack([_camera_to_object(r, p) for r, p in zip(R, t)]).float()
    cams = replace(cam, c2w=c2o, fx=cam.fx.expand(len(R)), fy=cam.fy.expand(len(R)), cx=cam.cx.expand(len(R)),
                   cy=cam.cy.expand(len(R)))
    out = render_in_photo_frame(mesh, cams, light, background=torch.zeros(3))
    n = len(R)
    target = views.color.expand(n, -1, -1, -1)
    mask, weight = views.mask.expand(n, -1, -1, -1), views.weight.expand(n, -1, -1, -1)
    losses = torch.stack([image_loss(out.color[i:i + 1], target[i:i + 1], weight[i:i + 1])
                          + mask_loss(out.alpha[i:i + 1], mask[i:i + 1], weight[i:i + 1]) for i in range(n)])
    inter = ((out.alpha > 0.5) & (mask > 0.5) & (weight > 0)).flatten(1).sum(1)
    union = (((out.alpha > 0.5) | (mask > 0.5)) & (weight > 0)).flatten(1).sum(1)
    return losses, (inter / union.clamp_min(1)).detach()


def register_copy(mesh: Mesh, light, data: DuplicatesInput, k: int, R_ref: np.ndarray, plane, cfg: RegisterConfig,
                  view_size: int = 128, margin: float = 0.15) -> tuple[np.ndarray, float]:
    """Object-to-camera ``[4,4]`` of copy ``k`` and its mask IoU (module docstring)."""
    u_np, d = plane
    dummy = np.repeat(np.eye(4)[None], data.masks.shape[0], 0)
    views, _ = instance_views(data, dummy, [k], view_size, margin)
    K = data.intrinsics
    ys, xs = np.nonzero(np.asarray(data.masks[k]))
    ray = np.array([(xs.mean() + 0.5 - K.cx) / K.fx, -(ys.mean() + 0.5 - K.cy) / K.fy, -1.0])
    u = torch.tensor(u_np)
    tri = mesh.vertices[mesh.faces].double()
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1)
    centre = (tri.mean(1) * area[:, None]).sum(0) / area.sum()  # the surface's centroid projects near the mask's
    ray_t = torch.tensor(ray)
    e1 = torch.tensor(np.cross(u_np, [1.0, 0.0, 0.0] if abs(u_np[0]) < 0.9 else [0.0, 0.0, 1.0]))
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(u, e1)
    Rr = torch.tensor(R_ref)

    def pose(theta, ab):
        """The turned copy: surface centroid on the mask centroid's ray, origin on the plane, then shifted."""
        R = _rotation_about(u, theta) @ Rr
        rc = R @ centre
        p0 = (d + u @ rc) / (u @ ray_t) * ray_t - rc
        return R, p0 + ab[0] * e1 + ab[1] * e2

    with torch.no_grad():
        thetas = torch.arange(cfg.yaws, dtype=torch.float64) * (2 * np.pi / cfg.yaws)
        Rs, ts = zip(*(pose(th, torch.zeros(2, dtype=torch.float64)) for th in thetas))
        losses, _ = _score(mesh, light, views, Rs, ts)
    best = (float("inf"), None, 0.0)
    for i in torch.argsort(losses)[:cfg.keep].tolist():
        theta = torch.tensor(float(thetas[i]), dtype=torch.float64, requires_grad=True)
        ab = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([theta, ab], lr=cfg.lr)
        for _ in range(cfg.steps):
            opt.zero_grad()
            R, t = pose(theta, ab)
            loss, _ = _score(mesh, light, views, [R], [t])
            loss.sum().backward()
            opt.step()
        with torch.no_grad():
            R, t = pose(theta, ab)
            loss, iou = _score(mesh, light, views, [R], [t])
        if float(loss) < best[0]:
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = R.numpy(), t.numpy()
            best = (float(loss), T, float(iou))
    return best[1], best[2]


def register_unposed(mesh: Mesh, light, data: DuplicatesInput, object_to_camera: np.ndarray, posed: np.ndarray,
                     plane: tuple[np.ndarray, float], R_ref: np.ndarray, cfg: RegisterConfig | None = None,
                     view_size: int = 128, margin: float = 0.15, log=print) -> tuple[np.ndarray, np.ndarray]:
    """``(object_to_camera, posed)`` with the unposed copies registered where possible (module docstring).

    Args:
        mesh, light: a reconstruction from the posed copies (object frame; light in the photo frame).
        data: the photo, masks and intrinsics.
        object_to_camera, posed: current poses ``[N,4,4]`` and which are known ``[N]``.
        plane: ``(u, d)`` of the plane holding the copies' origins (photo frame).
        R_ref: rotation of a posed copy; every copy's rotation is ``Rot(u, theta) R_ref``.
    """
    cfg = cfg or RegisterConfig()
    o2c, done = object_to_camera.copy(), posed.copy()
    light = light.cpu()
    with torch.no_grad():
        light.build()
    for k in np.nonzero(~posed)[0]:
        T, iou = register_copy(mesh, light, data, int(k), R_ref, plane, cfg, view_size, margin)
        ok = iou >= cfg.min_iou
        log(f"copy {data.labels[k]}: mask IoU {iou:.3f} -> {'registered' if ok else 'left unposed'}")
        if ok:
            o2c[k], done[k] = T, True
    return o2c, done
