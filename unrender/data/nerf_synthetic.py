"""Writer for the NeRF-synthetic (Blender) dataset layout.

Layout written under ``out_dir``::

    transforms_train.json   {"camera_angle_x": ..., "frames": [{"file_path": "./train/r_0",
                                                                "transform_matrix": [[...] x4]}, ...]}
    train/r_0.png ...       RGBA, 8-bit

``file_path`` has no extension, as in the original dataset; ``transform_matrix`` is the 4x4
camera-to-world matrix in the OpenGL convention (x right, y up, looking down -z).

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

from ..errors import InputError
from ..io.images import write_png


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
