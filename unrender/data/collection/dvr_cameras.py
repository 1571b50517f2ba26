"""DVR's ``cameras.npz`` matrices <-> :class:`unrender.cameras.Camera` (OpenGL camera-to-world, pixels).

DVR (Niemeyer et al., CVPR 2020) stores, for view ``i`` of an object, three 4x4 matrices and projects a
homogeneous object point ``X`` with ``x = camera_mat_i @ world_mat_i @ scale_mat_i @ X``:

* ``world_mat_i`` -- extrinsics ``[[R, T], [0, 1]]``, world -> camera, **OpenCV axes** (x right, y down,
  z forward: the camera looks along +z, points in front have ``z > 0``).
* ``camera_mat_i`` -- intrinsics in *normalised image coordinates*:
  ``[[fu, 0, cu, 0], [0, fv, cv, 0], [0, 0, 1, 0], [0, 0, 0, 1]]``, so that
  ``u = fu x / z + cu`` and ``v = fv y / z + cv`` lie in ``[-1, 1]`` across the image: ``u = -1`` at the
  left edge, ``+1`` at the right edge, ``v = -1`` at the **top** edge, ``+1`` at the bottom. (DVR's FAQ
  calls (-1, -1) a corner of the image; its code samples images at ``(u, v)`` with
  ``torch.nn.functional.grid_sample``, whose ``y = -1`` is row 0 = the top row, and readers such as
  pixelNeRF convert these cameras to OpenGL with ``diag(1, -1, -1, 1)``: both put -1 at the top.)
  For DVR's ShapeNet renderings ``fu = fv`` and ``cu = cv = 0``.
* ``scale_mat_i`` -- optional, object-centric -> world (``X_world = S X``); identity (or absent) for
  ShapeNet; DVR uses it only for DTU. A similarity ``S = [[s Q, t], [0, 1]]`` (``Q`` a rotation) is
  folded into the extrinsics: ``R' = R Q``, ``T' = (R t + T) / s`` (dividing camera coordinates by
  ``s`` does not move any projection).
* ``world_mat_inv_i``, ``camera_mat_inv_i`` -- the inverses, stored next to them in DVR's ShapeNet
  files (DIB-R's data loader reads them); the writer stores them, the reader ignores them.

Conversion to :class:`Camera` (image ``W x H`` pixels, pixel centres at ``+0.5``, ``(cx, cy)`` from the
top-left corner):

    fx = fu W / 2,    cx = (cu + 1) W / 2,    fy = fv H / 2,    cy = (cv + 1) H / 2
    c2w = inverse([[R', T'], [0, 1]]) @ diag(1, -1, -1, 1)         (OpenCV -> OpenGL camera axes)

and back: ``camera_mat = [[2 fx / W, 0, 2 cx / W - 1, 0], [0, 2 fy / H, 2 cy / H - 1, 0], [0, 0, 1, 0],
[0, 0, 0, 1]]``, ``world_mat = diag(1, -1, -1, 1) @ inverse(c2w)``. The world frame is never changed.

Half-pixel note: here ``u = -1 / +1`` are the image *edges*, as pixelNeRF reads DVR's files (focal
``fu W / 2``). DVR's own pixel grid puts the centres of the first and last pixels at -1 and +1, which
scales the focal by ``(W - 1) / W`` (1.5 % at 64 px) -- below one pixel at these sizes.

Example:
    >>> from unrender.cameras import look_at
    >>> cam = Camera.from_fov(50.0, 64, 64, look_at((0.0, 1.0, 2.0)))
    >>> world_mats, camera_mats = camera_to_dvr(cam)
    >>> back = dvr_to_camera(world_mats, camera_mats, 64, 64)
    >>> bool(torch.allclose(back.c2w, cam.c2w, atol=1e-6)) and bool(torch.allclose(back.fx, cam.fx))
    True
"""

from __future__ import annotations

import numpy as np
import torch

from ...cameras import Camera
from ...errors import DataError

#: OpenCV <-> OpenGL camera axes (flip y and z); its own inverse.
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def camera_to_dvr(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """DVR matrices ``(world_mats[B,4,4], camera_mats[B,4,4])`` (float64) of the ``B`` cameras of ``camera``.

    Formulas in the module docstring. Example::

        >>> from unrender.cameras import look_at
        >>> w, k = camera_to_dvr(Camera.from_fov(60.0, 32, 32, look_at((0.0, 0.0, 2.0))))
        >>> float(w[0, 2, 3]), round(float(k[0, 0, 0]), 4)      # the origin is 2 units in front (+z, OpenCV)
        (2.0, 1.7321)
    """
    c2w = camera.c2w.detach().to("cpu", torch.float64).numpy()
    world = CV_TO_GL[None] @ np.linalg.inv(c2w)
    k = np.zeros((len(camera), 4, 4))
    w, h = float(camera.width), float(camera.height)
    k[:, 0, 0] = 2.0 * camera.fx.detach().double().cpu().numpy() / w
    k[:, 0, 2] = 2.0 * camera.cx.detach().double().cpu().numpy() / w - 1.0
    k[:, 1, 1] = 2.0 * camera.fy.detach().double().cpu().numpy() / h
    k[:, 1, 2] = 2.0 * camera.cy.detach().double().cpu().numpy() / h - 1.0
    k[:, 2, 2] = k[:, 3, 3] = 1.0
    return world, k


def _square(m, what: str) -> np.ndarray:
    """``m`` as a finite 4x4 float64 matrix (a 3x4 one gets the row ``0 0 0 1``)."""
    a = np.asarray(m, dtype=np.float64)
    if a.shape == (3, 4):
        a = np.vstack([a, [0.0, 0.0, 0.0, 1.0]])
    if a.shape != (4, 4):
        raise DataError(f"{what} has shape {a.shape}; DVR cameras are 4x4 (or 3x4) matrices.")
    if not np.isfinite(a).all():
        raise DataError(f"{what} holds NaN or infinite values; regenerate the cameras file.")
    return a


def _rotation_part(m: np.ndarray, what: str) -> tuple[float, np.ndarray]:
    """``(s, Q)`` with ``m = s Q``, ``Q`` a proper rotation, or a :class:`DataError`."""
    det = float(np.linalg.det(m))
    if det <= 0:
        raise DataError(f"{what} has a rotation part with determinant {det:.3g}; a DVR camera needs a proper "
                        f"rotation (det > 0), so the file's axes are mirrored or degenerate.")
    s = det ** (1.0 / 3.0)
    q = m / s
    if np.abs(q @ q.T - np.eye(3)).max() > 1e-3:
        raise DataError(f"{what} is not a rotation times a uniform scale (R R^T differs from the identity); "
                        f"shear or anisotropic scale cannot be a pinhole camera pose.")
    return s, q


def dvr_to_camera(world_mats, camera_mats, width: int, height: int, scale_mats=None, source: str = "cameras.npz",
                  dtype=torch.float32, near: float = 0.05, far: float = 100.0) -> Camera:
    """:class:`Camera` (OpenGL c2w, pixels) of DVR's ``world_mats[B,4,4]`` and ``camera_mats[B,4,4]``.

    Args:
        world_mats: world -> camera extrinsics, OpenCV axes (``[B,4,4]`` or ``[B,3,4]``).
        camera_mats: normalised intrinsics ``[B,4,4]`` (or ``[B,3,4]``), see the module docstring.
        width, height: image size in pixels.
        scale_mats: optional object -> world similarities ``[B,4,4]`` (``None`` = identity).
        source: file named in error messages.
        dtype: dtype of the returned camera.
    Returns:
        ``B`` cameras in the object-centric frame (the frame of ``pointcloud.npz``).

    Example:
        >>> k = np.diag([2.0, 2.0, 1.0, 1.0])[None]
        >>> cam = dvr_to_camera(np.eye(4)[None], k, 64, 64)
        >>> cam.fx.tolist(), cam.cx.tolist(), cam.c2w[0, 2, 2].item()   # looks down -z in OpenGL terms
        ([64.0], [32.0], -1.0)
    """
    n = len(world_mats)
    if len(camera_mats) != n or (scale_mats is not None and len(scale_mats) != n):
        raise DataError(f"{source} holds {n} world_mat but {len(camera_mats)} camera_mat matrices; "
                        f"every view needs both.")
    c2w, fx, fy, cx, cy = [], [], [], [], []
    for i in range(n):
        w = _square(world_mats[i], f"{source} world_mat_{i}")
        k = _square(camera_mats[i], f"{source} camera_mat_{i}")
        s, r = _rotation_part(w[:3, :3], f"{source} world_mat_{i}")
        t = w[:3, 3] / s  # a scaled extrinsic projects the same as the rigid one
        if scale_mats is not None:
            sm = _square(scale_mats[i], f"{source} scale_mat_{i}")
            sc, q = _rotation_part(sm[:3, :3], f"{source} scale_mat_{i}")
            r, t = r @ q, (r @ sm[:3, 3] + t) / sc
        off = np.abs([k[0, 1], k[0, 3], k[1, 0], k[1, 3], k[2, 0], k[2, 1], k[2, 3]]).max()
        if k[2, 2] <= 0 or off > 1e-6 * abs(k[2, 2]) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise DataError(f"{source} camera_mat_{i} must be [[fu, 0, cu, 0], [0, fv, cv, 0], [0, 0, 1, 0], "
                            f"[0, 0, 0, 1]] with fu, fv > 0; got rows {k[:3].round(6).tolist()}.")
        k = k / k[2, 2]
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = r, t
        c2w.append(np.linalg.inv(w2c) @ CV_TO_GL)
        fx.append(k[0, 0] * width / 2.0)
        fy.append(k[1, 1] * height / 2.0)
        cx.append((k[0, 2] + 1.0) * width / 2.0)
        cy.append((k[1, 2] + 1.0) * height / 2.0)
    t = lambda v: torch.tensor(np.asarray(v), dtype=dtype)  # noqa: E731
    return Camera(t(np.stack(c2w)), t(fx), t(fy), t(cx), t(cy), int(width), int(height), near, far)


def dvr_project(points, world_mat, camera_mat, scale_mat=None) -> np.ndarray:
    """DVR's own projection of object points ``points[N,3]`` to normalised image coordinates ``[N,2]``.

    ``x = camera_mat @ world_mat @ scale_mat @ (X, 1)``, ``(u, v) = x[:2] / x[2]``; for tests and checks
    that a file's matrices mean what this module says.

    Example:
        >>> dvr_project(np.array([[0.5, 0.0, 2.0]]), np.eye(4), np.diag([2.0, 2.0, 1.0, 1.0])).tolist()
        [[0.5, 0.0]]
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    homo = np.concatenate([p, np.ones((len(p), 1))], 1).T
    m = _square(camera_mat, "camera_mat") @ _square(world_mat, "world_mat")
    if scale_mat is not None:
        m = m @ _square(scale_mat, "scale_mat")
    x = m @ homo
    return (x[:2] / x[2:3]).T
