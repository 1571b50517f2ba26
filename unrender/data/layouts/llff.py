"""LLFF ``poses_bounds.npy`` datasets (forward-facing scenes): reader and fixture writer.

Layout (paths relative to the dataset folder)::

    poses_bounds.npy     float array [N,17], one row per image, rows in image-name order
    images/              the N images, sorted by file name
    masks/ or mask/      optional, same stem as the image

Each row holds a 3x5 matrix (row-major, 15 numbers) followed by two depth bounds ``near, far``:

* columns 0..2: the camera's axes in world coordinates, in LLFF's order **[down, right, back]**;
* column 3: the camera centre in world coordinates;
* column 4: ``[H, W, focal]`` in pixels (one focal, principal point at the image centre).

The reader converts to OpenGL camera-to-world (x right, y up, z back) by reordering columns,
``c2w_gl = [right, -down, back, centre] = [col1, -col0, col2, col3]`` (NeRF's ``load_llff`` does the same).
When ``images/`` holds downsampled images (``W_img = W / s``), the focal is scaled by ``W_img / W``.
The depth bounds set the cameras' ``near`` (0.9 x smallest) and ``far`` (1.1 x largest); ``bounds`` is
``None`` because LLFF scenes are not bounded objects. ``split="test"`` is every 8th image by name (the
LLFF convention), ``"train"`` the rest, ``"all"`` all.

Example:
    >>> ds = read_llff("fern", split="test")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ...cameras import Camera
from ...errors import DataError, InputError
from .dataset import (MultiViewDataset, find_mask, image_files, load_frames, make_camera, mask_dirs_near,
                      sorted_order, split_indices, write_rgb_and_masks)


def read_llff(root, split: str = "train", dtype=torch.float32) -> MultiViewDataset:
    """Read ``root/poses_bounds.npy`` and ``root/images/`` (see module docstring).

    Args:
        root: dataset folder.
        split: ``"train"``, ``"test"`` (every 8th image by name) or ``"all"``.
        dtype: camera dtype.
    Returns:
        :class:`MultiViewDataset` with ``bounds=None``.

    Example:
        >>> ds = read_llff("fern", "all")  # doctest: +SKIP
    """
    root = Path(root)
    path = root / "poses_bounds.npy"
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} could not be read as a .npy array ({exc}); re-save it with numpy.save.") from None
    if data.ndim != 2 or data.shape[1] != 17 or data.shape[0] == 0:
        raise DataError(f"{path} must hold an [N,17] array (3x5 pose + 2 depth bounds per image); got shape "
                        f"{data.shape}.")
    data = data.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(data).all(axis=1))
    if bad.size:
        raise DataError(f"{path} row {bad[0]} holds NaN or infinite values; every pose must be finite.")
    all_files = image_files(root / "images")
    if len(all_files) != data.shape[0]:
        raise DataError(f"{path} has {data.shape[0]} poses but {root / 'images'} holds {len(all_files)} images; "
                        f"they must pair up one to one (sorted by name).")
    keep = split_indices(len(all_files), split, path)
    poses = torch.from_numpy(data[keep, :15].reshape(-1, 3, 5))
    depth = torch.from_numpy(data[keep, 15:])
    files = [all_files[i] for i in keep]
    masks = mask_dirs_near(root)
    rgba, has_masks = load_frames(files, [find_mask(masks, f.name) for f in files])
    h_img, w_img = rgba.shape[1:3]
    height, width, focal = poses[:, 0, 4], poses[:, 1, 4], poses[:, 2, 4]
    if bool((focal <= 0).any()) or bool((width <= 0).any()) or bool((height <= 0).any()):
        raise DataError(f"{path} has a non-positive H, W or focal in column 4; fix the file.")
    scale = w_img / width
    if bool(((height * scale - h_img).abs() > 1.0).any()):
        raise DataError(f"{path} declares {int(width[0])}x{int(height[0])} images but {files[0]} is {w_img}x{h_img}, "
                        f"which is not a uniform downscale; use images of the declared size.")
    c2w = torch.zeros(len(files), 4, 4, dtype=torch.float64)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2] = poses[:, :, 1], -poses[:, :, 0], poses[:, :, 2]
    c2w[:, :3, 3], c2w[:, 3, 3] = poses[:, :, 3], 1.0
    f = focal * scale
    camera = make_camera(c2w, f, f, w_img / 2.0, h_img / 2.0, w_img, h_img, None, dtype)
    near, far = float(depth.min()), float(depth.max())
    if 0 < near < far:
        camera = replace(camera, near=0.9 * near, far=1.1 * far)
    return MultiViewDataset(rgba, camera, [p.stem for p in files], files, split, None, has_masks, "llff")


def write_llff(out, camera: Camera, names, rgba, has_masks: bool = True, bounds=None) -> list[Path]:
    """Write ``poses_bounds.npy``, ``images/<name>.png`` (RGB) and, when ``has_masks``, ``masks/<name>.png``.

    Frames are written sorted by name (the order the reader pairs images and rows in). Each row is
    ``[down, right, back, centre, (H, W, focal)]`` with ``down = -c2w_gl[:,1]``, ``right = c2w_gl[:,0]``,
    ``back = c2w_gl[:,2]``, then the depth range of ``bounds[2,3]``'s corners along the view axis (or the
    camera's ``near, far`` without a box). Needs ``fx = fy`` and a centred principal point.

    Args:
        camera: ``N`` cameras; names: ``N`` frame names; rgba: ``[N,H,W,4]`` sRGB colour + alpha in [0,1].

    Example:
        >>> write_llff("out", ds.camera, ds.names, ds.rgba)  # doctest: +SKIP
    """
    names = [str(n) for n in names]
    rgba = torch.as_tensor(rgba)
    if len(camera) != len(names) or rgba.shape[0] != len(names):
        raise InputError(f"need one camera and one image per name; got {len(camera)} cameras, {len(names)} names "
                         f"and {rgba.shape[0]} images.")
    fx, fy, cx, cy = (getattr(camera, k).detach().cpu().double() for k in ("fx", "fy", "cx", "cy"))
    w, h = camera.width, camera.height
    if not (torch.allclose(fx, fy, rtol=1e-6, atol=0) and bool(((cx - w / 2).abs() < 1e-3).all())
            and bool(((cy - h / 2).abs() < 1e-3).all())):
        raise InputError("LLFF stores one focal and a centred principal point per image, so it needs fx = fy and "
                         "cx, cy = W/2, H/2; write the 'colmap-txt' or 'json' layout instead.")
    order = sorted_order(names)
    c2w = camera.c2w.detach().cpu().double()[order]
    rows = np.zeros((len(order), 17), dtype=np.float64)
    pose = torch.stack([-c2w[:, :3, 1], c2w[:, :3, 0], c2w[:, :3, 2], c2w[:, :3, 3],
                        torch.tensor([float(h), float(w), 0.0]).double().expand(len(order), 3)], -1)
    pose[:, 2, 4] = fx[order]
    rows[:, :15] = pose.reshape(-1, 15).numpy()
    rows[:, 15:] = _depth_range(c2w, bounds, camera.near, camera.far).numpy()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    file_names = [f"{names[i]}.png" for i in order]
    written = write_rgb_and_masks(root / "images", file_names, rgba[order], root / "masks" if has_masks else None)
    np.save(root / "poses_bounds.npy", rows)
    return [*written, root / "poses_bounds.npy"]


def _depth_range(c2w: torch.Tensor, bounds, near: float, far: float) -> torch.Tensor:
    """``[N,2]`` nearest/farthest depth of the box corners in front of each camera (OpenGL: depth = -z)."""
    if bounds is None:
        return torch.tensor([[near, far]], dtype=torch.float64).expand(c2w.shape[0], 2)
    b = torch.as_tensor(bounds, dtype=torch.float64).reshape(2, 3)
    corners = torch.stack(torch.meshgrid(*[b[:, k] for k in range(3)], indexing="ij"), -1).reshape(-1, 3)
    depth = -torch.einsum("nk,ck->nc", c2w[:, :3, 2], corners) + (c2w[:, :3, 2] * c2w[:, :3, 3]).sum(-1, keepdim=True)
    far_d = depth.max(-1).values.clamp_min(1e-6)
    return torch.stack([depth.min(-1).values.clamp_min(1e-3 * far_d), far_d], -1)
