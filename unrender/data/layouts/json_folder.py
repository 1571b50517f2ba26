"""A folder of images with one JSON camera sidecar each: reader and writer.

Layout::

    a.png  a.json            every image X.<ext> has X.json next to it
    b.png  b.json
    masks/ or mask/          optional masks, same stem

Sidecar fields (one camera per image):

* intrinsics: ``"fx"``, ``"fy"``, ``"cx"``, ``"cy"`` in pixels, principal point from the top-left corner with
  pixel centres at +0.5 (as :class:`~unrender.cameras.Camera`); or ``"K"``: the 3x3 matrix
  ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` holding the same numbers (no skew).
* pose: ``"c2w"``: 4x4 camera-to-world in the OpenGL convention (x right, y up, looking down -z); or
  ``"w2c_opencv"``: 4x4 world-to-camera in the OpenCV convention (x right, y down, z forward), converted
  with ``c2w = inverse(w2c_opencv) @ diag(1, -1, -1, 1)``. Give exactly one of the two.
* optional ``"width"``, ``"height"``: must equal the image size.

A ``.json`` file whose object has none of these keys is not a sidecar and is ignored; a sidecar
without its image, or an image without its sidecar, is an error. Frames are sorted by name;
``split="test"`` is every 8th, ``"train"`` the rest, ``"all"`` all.

Example:
    >>> ds = read_json_folder("captures", split="all")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ...cameras import Camera
from ...errors import DataError, InputError
from .dataset import (MultiViewDataset, find_mask, image_files, load_frames, make_camera, mask_dirs_near, matrix,
                      opencv_to_opengl, read_json, split_indices, write_rgb_and_masks)

_SIDECAR_KEYS = ("c2w", "w2c_opencv", "K", "fx")


def read_json_folder(root, split: str = "train", dtype=torch.float32) -> MultiViewDataset:
    """Read images with ``.json`` camera sidecars from ``root`` (see module docstring).

    Args:
        root: the folder.
        split: ``"train"``, ``"test"`` (every 8th image by name) or ``"all"``.
        dtype: camera dtype.
    Returns:
        :class:`MultiViewDataset` with ``bounds=None``.

    Example:
        >>> ds = read_json_folder("captures", "train")  # doctest: +SKIP
    """
    root = Path(root)
    images = {p.stem: p for p in image_files(root)}
    sidecars = {}
    for js in sorted(root.glob("*.json")):
        meta = read_json(js)
        if isinstance(meta, dict) and any(k in meta for k in _SIDECAR_KEYS):
            if js.stem not in images:
                raise DataError(f"Camera sidecar {js} has no image {js.stem}.png (or .jpg, ...) next to it; add "
                                f"the image or remove the sidecar.")
            sidecars[js.stem] = (js, meta)
    if not sidecars:
        raise DataError(f"{root} holds no images with .json camera sidecars; see unrender.data.layouts.json_folder "
                        f"for the format.")
    for stem, img in images.items():
        if stem not in sidecars:
            raise DataError(f"Image {img} has no camera sidecar {root / (stem + '.json')}; add it or move the image "
                            f"out of the folder.")
    stems = sorted(sidecars)
    stems = [stems[i] for i in split_indices(len(stems), split, root)]
    files = [images[s] for s in stems]
    rgba, has_masks = load_frames(files, [find_mask(mask_dirs_near(root), f.name) for f in files])
    h, w = rgba.shape[1:3]
    poses, intr = [], []
    for s in stems:
        js, meta = sidecars[s]
        pose, k = _camera_fields(js, meta, w, h)
        poses.append(pose)
        intr.append(k)
    intr = torch.tensor(intr, dtype=torch.float64)
    camera = make_camera(torch.stack(poses), *intr.unbind(-1), w, h, None, dtype)
    return MultiViewDataset(rgba, camera, stems, files, split, None, has_masks, "json")


def _camera_fields(js: Path, meta: dict, w: int, h: int) -> tuple[torch.Tensor, list[float]]:
    for key, size in (("width", w), ("height", h)):
        if key in meta and meta[key] != size:
            raise DataError(f"{js} says {key}={meta[key]} but its image is {w}x{h}; fix the sidecar or the image.")
    if ("c2w" in meta) == ("w2c_opencv" in meta):
        raise DataError(f"{js} must give exactly one pose, 'c2w' (OpenGL 4x4) or 'w2c_opencv' (OpenCV 4x4).")
    if "c2w" in meta:
        pose = matrix(meta["c2w"], (4, 4), f"{js} 'c2w'")
    else:
        w2c = matrix(meta["w2c_opencv"], (4, 4), f"{js} 'w2c_opencv'")
        if abs(float(torch.linalg.det(w2c[:3, :3]))) < 1e-12:
            raise DataError(f"{js} 'w2c_opencv' is singular; give a rigid world-to-camera transform.")
        pose = opencv_to_opengl(torch.linalg.inv(w2c))
    if "K" in meta:
        K = matrix(meta["K"], (3, 3), f"{js} 'K'")
        vals = [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]
    else:
        missing = [k for k in ("fx", "fy", "cx", "cy") if k not in meta]
        if missing:
            raise DataError(f"{js} lacks {', '.join(missing)}; give fx, fy, cx, cy or a 3x3 'K'.")
        vals = matrix([meta[k] for k in ("fx", "fy", "cx", "cy")], (4,), f"{js} fx/fy/cx/cy").tolist()
    if vals[0] <= 0 or vals[1] <= 0:
        raise DataError(f"{js} has non-positive focal lengths fx={vals[0]}, fy={vals[1]}; fix the sidecar.")
    return pose, vals


def write_json_folder(out, camera: Camera, names, rgba, has_masks: bool = True) -> list[Path]:
    """Write ``<name>.png`` (RGB) + ``<name>.json`` (``fx fy cx cy width height c2w``) per frame and, when
    ``has_masks``, ``masks/<name>.png``. Returns the files written.

    Args:
        camera: ``N`` cameras; names: ``N`` frame names; rgba: ``[N,H,W,4]`` sRGB colour + alpha in [0,1].

    Example:
        >>> write_json_folder("out", ds.camera, ds.names, ds.rgba)  # doctest: +SKIP
    """
    names = [str(n) for n in names]
    rgba = torch.as_tensor(rgba)
    if len(camera) != len(names) or rgba.shape[0] != len(names):
        raise InputError(f"need one camera and one image per name; got {len(camera)} cameras, {len(names)} names "
                         f"and {rgba.shape[0]} images.")
    root = Path(out)
    written = write_rgb_and_masks(root, [f"{n}.png" for n in names], rgba, root / "masks" if has_masks else None)
    c2w = camera.c2w.detach().cpu().double()
    for i, n in enumerate(names):
        meta = {k: float(getattr(camera, k)[i]) for k in ("fx", "fy", "cx", "cy")}
        meta.update(width=camera.width, height=camera.height, c2w=c2w[i].tolist())
        js = root / f"{n}.json"
        js.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        written.append(js)
    return written
