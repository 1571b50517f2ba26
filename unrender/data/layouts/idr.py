"""IDR / DTU / NeuS ``cameras.npz`` datasets: reader and fixture writer.

Layout (paths relative to the dataset folder)::

    cameras.npz          world_mat_0 ... world_mat_{N-1}   (and optionally scale_mat_0 ...)
    image/ (or images/)  the N images, sorted by file name (DTU: 000000.png ...), paired with index i
    mask/ (or masks/)    optional masks: same stem, or (DTU's 000.png naming) paired by sorted order

* ``world_mat_i``: the 3x4 (or 4x4 with last row ``0 0 0 1``) projection ``P = K [R | t]`` from world to
  image in OpenCV conventions (x right, y down, z forward; homogeneous pixel ``p ~ P X``). The reader
  decomposes it (RQ decomposition of ``P[:, :3]``, signs fixed so that ``K`` has a positive diagonal and
  ``det R = +1``, ``K`` scaled so that ``K[2,2] = 1``) and converts to an OpenGL camera-to-world in the
  dataset's *original* world frame: ``c2w = [[R^T, -R^T t], [0, 1]] @ diag(1, -1, -1, 1)``. IDR and NeuS
  cast pixel ``(i, j)``'s ray through ``K^-1 (i, j, 1)``, i.e. pixel centres sit at integer coordinates, so
  ``cx = K[0,2] + 0.5`` and ``cy = K[1,2] + 0.5`` in :class:`Camera`'s convention (centres at +0.5). A
  skew ``K[0,1]`` that moves pixels by more than 0.1 px is refused.
* ``scale_mat_i``: maps the normalised unit sphere (where IDR trains) to world coordinates,
  ``X_world = S X_norm``; all ``i`` share one, ``scale_mat_0`` is used. ``bounds`` is the axis-aligned box
  of that sphere in world coordinates, ``S[:3,3] +- |row_k(S[:3,:3])|``; ``None`` without a scale_mat.
  The world is never normalised: cameras stay in the ``world_mat`` frame.

``split="test"`` is every 8th image by name, ``"train"`` the rest, ``"all"`` all.

Example:
    >>> ds = read_idr("DTU/scan24", split="all")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from ...cameras import Camera
from ...errors import DataError, InputError
from .dataset import (MultiViewDataset, find_mask, image_files, load_frames, make_camera, mask_dirs_near,
                      opencv_to_opengl, sorted_order, split_indices, write_rgb_and_masks)


def read_idr(root, split: str = "train", dtype=torch.float32) -> MultiViewDataset:
    """Read ``root/cameras.npz`` with ``root/image/`` (or ``images/``) and ``mask/`` (see module docstring).

    Args:
        root: dataset folder.
        split: ``"train"``, ``"test"`` (every 8th image by name) or ``"all"``.
        dtype: camera dtype.
    Returns:
        :class:`MultiViewDataset`; ``bounds`` = the box of the ``scale_mat`` unit sphere (or ``None``).

    Example:
        >>> ds = read_idr("DTU/scan24", "train")  # doctest: +SKIP
    """
    root = Path(root)
    path = root / "cameras.npz"
    mats = _load_npz(path)
    n = sum(1 for k in mats if k.startswith("world_mat_") and not k.startswith("world_mat_inv"))
    missing = [i for i in range(n) if f"world_mat_{i}" not in mats]
    if n == 0 or missing:
        raise DataError(f"{path} must hold world_mat_0 ... world_mat_{{N-1}}; "
                        f"{'none found' if n == 0 else f'world_mat_{missing[0]} is missing'}.")
    folder = next((root / d for d in ("image", "images") if (root / d).is_dir()), root / "image")
    all_files = image_files(folder)
    if len(all_files) != n:
        raise DataError(f"{path} has {n} cameras but {folder} holds {len(all_files)} images; they must pair up "
                        f"one to one (sorted by name).")
    dirs = mask_dirs_near(root)
    all_masks = [find_mask(dirs, f.name) for f in all_files]
    if dirs and None in all_masks and len(image_files(dirs[0])) == n:
        all_masks = image_files(dirs[0])  # DTU names masks 000.png next to images 000000.png: pair by order
    keep = split_indices(n, split, path)
    files = [all_files[i] for i in keep]
    rgba, has_masks = load_frames(files, [all_masks[i] for i in keep])
    h, w = rgba.shape[1:3]
    c2w, intr = [], []
    for i in keep:
        what = f"{path} world_mat_{i}"
        K, R, t = decompose_projection(_matrix(mats[f"world_mat_{i}"], what, (3, 4), (4, 4))[:3], what)
        if abs(K[0, 1]) * h / (2 * K[1, 1]) > 0.1:
            raise DataError(f"{what} has skew {K[0, 1]:.4g}, which a pinhole Camera cannot represent; "
                            f"re-calibrate without skew.")
        pose = torch.eye(4, dtype=torch.float64)
        pose[:3, :3], pose[:3, 3] = R.T, -R.T @ t
        c2w.append(opencv_to_opengl(pose))
        intr.append([K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5])
    bounds = None
    if "scale_mat_0" in mats:
        S = _matrix(mats["scale_mat_0"], f"{path} scale_mat_0", (4, 4))
        half = S[:3, :3].norm(dim=1)
        bounds = torch.stack([S[:3, 3] - half, S[:3, 3] + half])
    intr = torch.tensor(intr, dtype=torch.float64)
    camera = make_camera(torch.stack(c2w), *intr.unbind(-1), w, h, bounds, dtype)
    return MultiViewDataset(rgba, camera, [f.stem for f in files], files, split, bounds, has_masks, "idr")


def _load_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} could not be read as a .npz archive ({exc}); re-save it with numpy.savez.") from None


def _matrix(value, what: str, *shapes) -> torch.Tensor:
    a = np.asarray(value)
    if a.shape not in shapes or not np.issubdtype(a.dtype, np.number):
        raise DataError(f"{what} must be a {' or '.join('x'.join(map(str, s)) for s in shapes)} numeric matrix; "
                        f"got shape {a.shape}.")
    if not np.isfinite(a).all():
        raise DataError(f"{what} holds NaN or infinite values; every camera matrix must be finite.")
    return torch.from_numpy(a.astype(np.float64))


def decompose_projection(P, what: str = "projection matrix") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``P[3,4] = s K [R | t]`` into intrinsics ``K`` (upper triangular, positive diagonal, ``K[2,2]=1``),
    rotation ``R`` (``det R = +1``) and translation ``t``, all float64.

    Algorithm: flip the sign of ``P`` if ``det P[:, :3] < 0`` (a projection is defined up to scale), RQ
    decomposition ``P[:, :3] = K R``, ``D = diag(sign(diag K))`` moved from ``K`` to ``R``
    (``K R = (K D)(D R)``), ``t = K^-1 P[:, 3]``, then ``K /= K[2,2]``.

    Example:
        >>> K = torch.tensor([[50.0, 0, 20], [0, 60, 10], [0, 0, 1]], dtype=torch.float64)
        >>> P = K @ torch.cat([torch.eye(3, dtype=torch.float64), torch.ones(3, 1, dtype=torch.float64)], 1)
        >>> Kd, R, t = decompose_projection(2 * P)
        >>> torch.allclose(Kd, K), torch.allclose(t, torch.ones(3, dtype=torch.float64))
        (True, True)
    """
    P = torch.as_tensor(P, dtype=torch.float64).reshape(3, 4)
    M = P[:, :3].numpy()
    det = float(np.linalg.det(M))
    if not np.isfinite(det) or abs(det) < 1e-300:
        raise DataError(f"{what} has a singular 3x3 part, so it is not a camera projection; fix the matrix.")
    if det < 0:
        P = -P
        M = -M
    K, R = scipy.linalg.rq(M)
    D = np.diag(np.sign(np.diag(K)))
    K, R = K @ D, D @ R
    t = np.linalg.solve(K, P[:, 3].numpy())
    K = K / K[2, 2]
    return torch.from_numpy(K), torch.from_numpy(R), torch.from_numpy(t)


def write_idr(out, camera: Camera, names, rgba, has_masks: bool = True, bounds=None) -> list[Path]:
    """Write ``cameras.npz``, ``image/<name>.png`` (RGB) and, when ``has_masks``, ``mask/<name>.png``.

    Frames are written sorted by name (index ``i`` = i-th name). ``world_mat_i`` is the 4x4
    ``[[K [R | t]], [0, 0, 0, 1]]`` with ``K = [[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]]`` and
    ``R, t`` the OpenCV world-to-camera of ``camera.c2w``; with ``bounds[2,3]``, ``scale_mat_i`` maps the
    unit sphere onto the sphere around the box (centre = box centre, radius = half its diagonal).

    Args:
        camera: ``N`` cameras; names: ``N`` frame names; rgba: ``[N,H,W,4]`` sRGB colour + alpha in [0,1].

    Example:
        >>> write_idr("out", ds.camera, ds.names, ds.rgba, bounds=ds.bounds)  # doctest: +SKIP
    """
    names = [str(n) for n in names]
    rgba = torch.as_tensor(rgba)
    if len(camera) != len(names) or rgba.shape[0] != len(names):
        raise InputError(f"need one camera and one image per name; got {len(camera)} cameras, {len(names)} names "
                         f"and {rgba.shape[0]} images.")
    order = sorted_order(names)
    c2w_cv = opencv_to_opengl(camera.c2w.detach().cpu().double())
    K = camera.to(device="cpu", dtype=torch.float64).intrinsics()
    K[:, 0, 2] -= 0.5
    K[:, 1, 2] -= 0.5
    mats = {}
    for k, i in enumerate(order):
        R = c2w_cv[i, :3, :3].T
        Rt = torch.cat([R, (-R @ c2w_cv[i, :3, 3])[:, None]], 1)
        world = torch.eye(4, dtype=torch.float64)
        world[:3] = K[i] @ Rt
        mats[f"world_mat_{k}"] = world.numpy()
        if bounds is not None:
            b = torch.as_tensor(bounds, dtype=torch.float64).reshape(2, 3)
            scale = torch.eye(4, dtype=torch.float64)
            scale[:3, :3] *= 0.5 * float((b[1] - b[0]).norm())
            scale[:3, 3] = 0.5 * (b[0] + b[1])
            mats[f"scale_mat_{k}"] = scale.numpy()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    written = write_rgb_and_masks(root / "image", [f"{names[i]}.png" for i in order], rgba[order],
                                  root / "mask" if has_masks else None)
    np.savez(root / "cameras.npz", **mats)
    return [*written, root / "cameras.npz"]
