"""Blender / NeRF-synthetic / instant-ngp / nerfstudio ``transforms*.json`` datasets: reader and writers.

Layout (paths relative to the dataset folder)::

    transforms_train.json, transforms_val.json, transforms_test.json     one file per split, or
    transforms.json                                                       one file for all frames
    train/r_0.png ...                                                     images the JSON points at
    masks/ or mask/ (optional)                                            masks for RGB images

Fields of a ``transforms*.json`` file:

* ``camera_angle_x``: horizontal field of view in radians, ``fx = W / (2 tan(camera_angle_x / 2))``
  (NeRF-synthetic); ``camera_angle_y`` likewise gives ``fy`` (else ``fy = fx``).
* ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``: focal lengths, principal point (pixels from the
  top-left corner, pixel centres at +0.5) and image size (instant-ngp / nerfstudio). They may sit at the
  top level and/or in each frame; a frame's values override the top-level ones, and at each level
  ``fl_x`` wins over ``camera_angle_x``. Missing ``cx``/``cy`` mean the image centre; ``w``/``h``, when
  given, must equal the image size. Non-zero distortion (``k1 k2 k3 k4 p1 p2``) is refused.
* ``frames``: list of ``{"file_path": ..., "transform_matrix": 4x4}``. ``file_path`` is relative to the
  JSON file, with or without a leading ``./`` and with or without an extension (``.png`` is tried first);
  ``transform_matrix`` is camera-to-world in the OpenGL convention (x right, y up, looking down -z),
  used as is. An optional ``mask_path`` (nerfstudio) names the frame's mask.

Frames keep the JSON order; names are the image file stems. Masks: alpha of RGBA images, else
``mask_path``, else ``mask/``/``masks/`` next to the JSON (same relative path or same file name) or
next to the image. A missing ``transforms_{split}.json`` is an error listing the split files present
(no silent fallback to another split); ``transforms.json`` alone uses every 8th frame as test.

Example:
    >>> import torch, tempfile
    >>> d = tempfile.mkdtemp()
    >>> files = write_nerf_synthetic(d, {"train": [("r_0", torch.eye(4), torch.ones(4, 4, 4))]}, 0.69)
    >>> sorted(p.name for p in files)
    ['r_0.png', 'transforms_train.json']
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ...cameras import Camera
from ...errors import DataError, InputError
from ...io.images import write_png
from .dataset import (IMAGE_EXTENSIONS, MultiViewDataset, field_of_view, find_mask, load_frames, make_camera,
                      mask_dirs_near, matrix, read_json, split_indices)

_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


# --------------------------------------------------------------------------------------------- reading


def read_blender(root, split: str = "train", dtype=torch.float32) -> MultiViewDataset:
    """Read ``root/transforms_{split}.json`` (or ``transforms.json``) and its images (see module docstring).

    Args:
        root: dataset folder.
        split: ``"train"``, ``"val"``, ``"test"`` (any ``transforms_<split>.json`` present); with a single
            ``transforms.json``: ``"train"``, ``"test"`` (every 8th frame) or ``"all"``.
        dtype: camera dtype.
    Returns:
        :class:`MultiViewDataset` with ``bounds=None`` (the format does not say where the object is).

    Example:
        >>> ds = read_blender("nerf_synthetic/lego", "val")  # doctest: +SKIP
    """
    root = Path(root)
    json_path = root / f"transforms_{split}.json"
    single = root / "transforms.json"
    present = sorted(p.name for p in root.glob("transforms_*.json"))
    if json_path.is_file():
        meta, frames = _load_meta(json_path)
        keep = list(range(len(frames)))
    elif single.is_file() and not present:
        meta, frames = _load_meta(single)
        json_path = single
        keep = split_indices(len(frames), split, single)
    else:
        have = ", ".join(present) if present else "none"
        raise DataError(f"{json_path} does not exist (split files present: {have}); pass a split that has a "
                        f"file, splits are never substituted silently.")
    frames = [frames[i] for i in keep]
    if not frames:
        raise DataError(f"{json_path} lists no frames for split {split!r}; add frames to its 'frames' list.")
    files, masks, poses = [], [], []
    for i, frame in zip(keep, frames):
        where = f"{json_path} frame {i}"
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise DataError(f"{where} needs a string 'file_path'; fix the frame entry.")
        poses.append(_pose(frame.get("transform_matrix"), f"{where} ('{frame['file_path']}') transform_matrix"))
        image = _resolve_image(json_path.parent, frame["file_path"], where)
        files.append(image)
        masks.append(_mask_for(root, json_path.parent, image, frame, where))
    rgba, has_masks = load_frames(files, masks)
    h, w = rgba.shape[1:3]
    intr = torch.tensor([_intrinsics(meta, f, w, h, f"{json_path} frame {i}") for i, f in zip(keep, frames)],
                        dtype=torch.float64)
    camera = make_camera(torch.stack(poses), *intr.unbind(-1), w, h, None, dtype)
    return MultiViewDataset(rgba, camera, [f.stem for f in files], files, split, None, has_masks, "blender")


def _load_meta(path: Path) -> tuple[dict, list]:
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise DataError(f"{path} must be a JSON object with a 'frames' list; fix the file.")
    return meta, meta["frames"]


def _pose(value, what: str) -> torch.Tensor:
    rows = value if isinstance(value, list) else None
    if rows is not None and len(rows) == 3:  # some exporters drop the constant last row
        rows = [*rows, [0.0, 0.0, 0.0, 1.0]]
    return matrix(rows, (4, 4), what)


def _resolve_image(folder: Path, file_path: str, where: str) -> Path:
    p = folder / file_path
    if p.is_file():
        return p
    tried = [p.with_name(p.name + ext) for e in IMAGE_EXTENSIONS for ext in (e, e.upper())]
    for cand in tried:
        if cand.is_file():
            return cand
    raise DataError(f"{where}: image file {p} does not exist (also tried {p.name}.png, .jpg, ...); fix its "
                    f"file_path or add the image.")


def _mask_for(root: Path, json_dir: Path, image: Path, frame: dict, where: str) -> Path | None:
    if isinstance(frame.get("mask_path"), str):
        m = json_dir / frame["mask_path"]
        if not m.is_file():
            raise DataError(f"{where}: mask file {m} does not exist; fix its mask_path or add the mask.")
        return m
    try:
        rel = str(image.relative_to(json_dir))
    except ValueError:
        rel = image.name
    for dirs, name in ((mask_dirs_near(json_dir), rel), (mask_dirs_near(json_dir), image.name),
                       (mask_dirs_near(image.parent), image.name)):
        found = find_mask(dirs, name)
        if found is not None:
            return found
    return None


def _number(levels, key: str, where: str) -> float | None:
    """First ``key`` found in ``levels`` (frame first), as a positive-or-zero finite float."""
    for level in levels:
        if key in level:
            v = level[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DataError(f"{where}: '{key}' must be a finite number; got {v!r}.")
            return float(v)
    return None


def _intrinsics(meta: dict, frame: dict, w: int, h: int, where: str) -> tuple[float, float, float, float]:
    for key in _DISTORTION_KEYS:
        d = _number((frame, meta), key, where)
        if d is not None and abs(d) > 1e-9:
            raise DataError(f"{where}: distortion {key}={d} is not supported; undistort the images first "
                            f"(e.g. colmap image_undistorter) and set the distortion to 0.")
    for key, size in (("w", w), ("h", h)):
        declared = _number((frame, meta), key, where)
        if declared is not None and int(round(declared)) != size:
            raise DataError(f"{where}: '{key}' is {declared:g} but the image is {w}x{h}; use the images the "
                            f"intrinsics belong to.")

    def focal(fl_key, angle_key, size):
        for level in (frame, meta):
            f = _number((level,), fl_key, where)
            if f is None and (a := _number((level,), angle_key, where)) is not None:
                if not 0 < a < math.pi:
                    raise DataError(f"{where}: '{angle_key}' must be a field of view in radians in (0, pi); "
                                    f"got {a}.")
                f = 0.5 * size / math.tan(0.5 * a)
            if f is not None:
                if f <= 0:
                    raise DataError(f"{where}: '{fl_key}' must be positive; got {f}.")
                return f
        return None

    fx, fy = focal("fl_x", "camera_angle_x", w), focal("fl_y", "camera_angle_y", h)
    if fx is None and fy is None:
        raise DataError(f"{where} has no focal length; add 'camera_angle_x' or 'fl_x' to the frame or the file.")
    fx, fy = fx or fy, fy or fx
    cx, cy = _number((frame, meta), "cx", where), _number((frame, meta), "cy", where)
    return fx, fy, w / 2.0 if cx is None else cx, h / 2.0 if cy is None else cy


# --------------------------------------------------------------------------------------------- writing


def write_nerf_synthetic(out_dir, split_frames: dict, camera_angle_x: float) -> list[Path]:
    """Write ``transforms_{split}.json`` and ``{split}/{name}.png`` for each split; returns the files written.

    Args:
        out_dir: dataset folder (created if needed).
        split_frames: ``{"train": [(name, c2w[4,4], rgba[H,W,4]), ...], "val": [...], "test": [...]}``;
            ``rgba`` values in [0,1] are written as they are (already sRGB-encoded, alpha = mask).
        camera_angle_x: horizontal field of view in radians (``2 atan(W / (2 fx))``).

    Output bytes are deterministic (frames in the given order, fixed float formatting).

    Example:
        >>> write_nerf_synthetic("scene", {"train": [("r_0", c2w, rgba)]}, 0.6911)  # doctest: +SKIP
    """
    if not isinstance(split_frames, dict) or not split_frames:
        raise InputError("split_frames must be a non-empty dict {split: [(name, c2w[4,4], rgba[H,W,4]), ...]}.")
    fov = float(camera_angle_x)
    if not (0 < fov < math.pi):
        raise InputError(f"camera_angle_x must be a field of view in radians in (0, pi); got {camera_angle_x!r}.")
    root = Path(out_dir)
    written: list[Path] = []
    for split, frames in split_frames.items():
        if not str(split) or "/" in str(split):
            raise InputError(f"split names must be plain folder names such as 'train'; got {split!r}.")
        entries = []
        for i, frame in enumerate(frames):
            try:
                name, c2w, rgba = frame
            except (TypeError, ValueError):
                raise InputError(f"split_frames[{split!r}][{i}] must be (name, c2w[4,4], rgba[H,W,4]).") from None
            c2w = torch.as_tensor(c2w, dtype=torch.float64).detach().cpu()
            if c2w.shape != (4, 4) or not torch.isfinite(c2w).all():
                raise InputError(f"split_frames[{split!r}][{i}] c2w must be a finite [4,4] matrix; "
                                 f"got shape {tuple(c2w.shape)}.")
            rgba = torch.as_tensor(rgba).detach().cpu()
            if rgba.dim() != 3 or rgba.shape[-1] != 4:
                raise InputError(f"split_frames[{split!r}][{i}] rgba must have shape [H,W,4]; "
                                 f"got {tuple(rgba.shape)}.")
            img_path = root / str(split) / f"{name}.png"
            write_png(img_path, rgba)
            written.append(img_path)
            entries.append({"file_path": f"./{split}/{name}",
                            "transform_matrix": [[float(x) for x in row] for row in c2w.tolist()]})
        js = root / f"transforms_{split}.json"
        js.parent.mkdir(parents=True, exist_ok=True)
        js.write_text(json.dumps({"camera_angle_x": fov, "frames": entries}, indent=4) + "\n", encoding="utf-8")
        written.append(js)
    return written


def write_blender(out_dir, split: str, names, camera: Camera, rgba, flavour: str = "nerf") -> list[Path]:
    """Write one split as ``transforms_{split}.json`` + ``{split}/{name}.png`` (RGBA); returns the files.

    ``flavour="nerf"``: NeRF-synthetic (:func:`write_nerf_synthetic`, one ``camera_angle_x``, so every
    camera needs ``fx = fy``, the same focal and a centred principal point). ``flavour="ngp"``:
    instant-ngp, each frame carries ``fl_x, fl_y, cx, cy, w, h`` and a ``file_path`` with its extension,
    so any pinhole camera is written exactly.

    Args:
        names: ``N`` frame names; camera: ``N`` cameras; rgba: ``[N,H,W,4]`` sRGB colour + alpha in [0,1].

    Example:
        >>> write_blender("out", "train", ds.names, ds.camera, ds.rgba, flavour="ngp")  # doctest: +SKIP
    """
    names = [str(n) for n in names]
    rgba = torch.as_tensor(rgba)
    if rgba.dim() != 4 or rgba.shape[-1] != 4 or rgba.shape[0] != len(names) or len(camera) != len(names):
        raise InputError(f"need one name, camera and rgba[H,W,4] image per frame; got {len(names)} names, "
                         f"{len(camera)} cameras and rgba of shape {tuple(rgba.shape)}.")
    c2w = camera.c2w.detach().cpu().double()
    if flavour == "nerf":
        fx, fy, cx, cy = (getattr(camera, k).detach().cpu().double() for k in ("fx", "fy", "cx", "cy"))
        w, h = camera.width, camera.height
        uniform = (torch.allclose(fx, fx[0].expand_as(fx), rtol=1e-6, atol=0) and torch.allclose(fy, fx, rtol=1e-6)
                   and bool(((cx - w / 2).abs() < 1e-3).all()) and bool(((cy - h / 2).abs() < 1e-3).all()))
        if not uniform:
            raise InputError("the NeRF-synthetic layout stores one camera_angle_x, so it needs fx = fy, one focal "
                             "for all frames and a centred principal point; write flavour='ngp' instead.")
        frames = [(n, c2w[i], rgba[i].float()) for i, n in enumerate(names)]
        return write_nerf_synthetic(out_dir, {split: frames}, field_of_view(float(fx[0]), w))
    if flavour != "ngp":
        raise InputError(f"flavour must be 'nerf' or 'ngp'; got {flavour!r}.")
    if not split or "/" in split:
        raise InputError(f"split must be a plain folder name such as 'train'; got {split!r}.")
    root = Path(out_dir)
    written, entries = [], []
    for i, name in enumerate(names):
        p = root / split / f"{name}.png"
        write_png(p, rgba[i].float())
        written.append(p)
        entries.append({"file_path": f"{split}/{name}.png",
                        "fl_x": float(camera.fx[i]), "fl_y": float(camera.fy[i]),
                        "cx": float(camera.cx[i]), "cy": float(camera.cy[i]),
                        "w": camera.width, "h": camera.height,
                        "transform_matrix": [[float(x) for x in row] for row in c2w[i].tolist()]})
    js = root / f"transforms_{split}.json"
    js.write_text(json.dumps({"frames": entries}, indent=4) + "\n", encoding="utf-8")
    return [*written, js]
