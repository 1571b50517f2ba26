"""Write a :class:`MultiViewDataset` in any supported layout (conversion, and fixtures for tests).

Layouts and what they keep:

=============== ================================================================================================
``blender``     ``transforms_<split>.json`` with one ``camera_angle_x`` + RGBA PNGs (needs fx = fy, one focal,
                centred principal point)
``blender-ngp`` ``transforms_<split>.json`` with per-frame ``fl_x fl_y cx cy w h`` + RGBA PNGs
``colmap-txt``  ``sparse/0/*.txt`` (PINHOLE) + ``images/`` RGB PNGs + ``masks/<name>.png.png``; the 8 corners
                of ``bounds`` become ``points3D``
``colmap-bin``  the same with ``.bin`` files
``llff``        ``poses_bounds.npy`` + ``images/`` + ``masks/`` (needs fx = fy, centred principal point)
``idr``         ``cameras.npz`` (``world_mat_i``, ``scale_mat_i`` from ``bounds``) + ``image/`` + ``mask/``
``json``        ``<name>.png`` + ``<name>.json`` sidecars + ``masks/``
=============== ================================================================================================

Images are always PNG: RGBA for the Blender flavours, RGB plus grey masks (the alpha, which readers
threshold at 0.5) for the others; without masks (``has_masks=False``) no mask files are written.
Cameras and the world frame are written exactly as held (no recentring). Read back with
:func:`~unrender.data.layouts.read_dataset`: Blender layouts under the dataset's split name, the others
with ``split="all"`` (they have no split files); name-sorted layouts (all but Blender) return frames
sorted by name. Names holding ``/`` are flattened to ``_`` outside COLMAP.

Example:
    >>> ds = read_dataset("scene", "train")                  # doctest: +SKIP
    >>> write_layout(ds, "scene_colmap", "colmap-bin")       # doctest: +SKIP
    >>> read_dataset("scene_colmap", "all").names == sorted(ds.names)  # doctest: +SKIP
    True
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import InputError
from .blender import write_blender
from .colmap import write_colmap
from .dataset import MultiViewDataset, prepare_folder
from .idr import write_idr
from .json_folder import write_json_folder
from .llff import write_llff

#: Layout names :func:`write_layout` accepts.
LAYOUTS = ("blender", "blender-ngp", "colmap-txt", "colmap-bin", "llff", "idr", "json")


def write_layout(dataset: MultiViewDataset, out, layout: str, force: bool = False) -> list[Path]:
    """Write ``dataset`` into folder ``out`` in ``layout`` (one of :data:`LAYOUTS`); returns the files written.

    Args:
        dataset: the frames, cameras and (optional) bounds to write.
        out: output folder; must be empty or absent unless ``force`` (then files are overwritten in place).
        layout: see the module docstring.
        force: allow writing into a folder that already holds files.

    Example:
        >>> write_layout(ds, "out_llff", "llff")  # doctest: +SKIP
    """
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}.")
    if not isinstance(dataset, MultiViewDataset):
        raise InputError(f"dataset must be a MultiViewDataset (from read_dataset); got {type(dataset).__name__}.")
    names = list(dataset.names)
    if layout not in ("colmap-txt", "colmap-bin"):
        names = [n.replace("/", "_") for n in names]
    if len(set(names)) != len(names):
        raise InputError("frame names must be unique to be written as files; rename the duplicates.")
    out = prepare_folder(out, force)
    cam, rgba, masks = dataset.camera, dataset.rgba, dataset.has_masks
    if layout in ("blender", "blender-ngp"):
        split = dataset.split if dataset.split and "/" not in dataset.split else "all"
        return write_blender(out, split, names, cam, rgba, flavour="nerf" if layout == "blender" else "ngp")
    if layout in ("colmap-txt", "colmap-bin"):
        points = None if dataset.bounds is None else _box_corners(dataset.bounds)
        return write_colmap(out, cam, names, rgba, masks, binary=layout == "colmap-bin", points=points)
    if layout == "llff":
        return write_llff(out, cam, names, rgba, masks, bounds=dataset.bounds)
    if layout == "idr":
        return write_idr(out, cam, names, rgba, masks, bounds=dataset.bounds)
    return write_json_folder(out, cam, names, rgba, masks)


def _box_corners(bounds: torch.Tensor) -> torch.Tensor:
    b = torch.as_tensor(bounds, dtype=torch.float64).reshape(2, 3)
    return torch.stack(torch.meshgrid(*[b[:, k] for k in range(3)], indexing="ij"), -1).reshape(-1, 3)
