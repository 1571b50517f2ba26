"""Copies as virtual views: each posed copy of the photo becomes one training view of the shared object.

Copy ``k`` with object-to-camera pose ``T_k`` (OpenGL axes) is the object seen by a camera whose
camera-to-object matrix is ``T_k^{-1}``. Its view is a square crop of the photo around the copy's mask
(``margin`` of the box side added on every side, resampled to ``size`` pixels), with the intrinsics of
the crop: ``fx' = fx * size / side``, ``cx' = (cx - x0) * size / side`` (same for y).

Per-pixel loss weights say what a crop pixel tells about copy ``k``:

* inside mask ``k``: the copy (weight 1, mask 1);
* on another copy's mask: unknown, that copy may hide part of ``k`` (weight 0);
* outside the photo (crops near the border): unknown (weight 0);
* elsewhere: background, the copy is not there (weight 1, mask 0).

The cameras of :class:`~unrender.recon.multiview.views.TrainViews` keep ``c2w = T_k^{-1}`` in the object
frame; renderers that need the light fixed in the photo frame (:mod:`.joint`) move the mesh by
``T_k`` instead of moving the camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...cameras import Camera
from ..multiview.views import TrainViews
from .inputs import DuplicatesInput


@dataclass
class CropBox:
    """A square crop of the photo: top-left corner ``(x0, y0)`` in pixels and side ``side`` (may leave the photo)."""

    x0: int
    y0: int
    side: int


def crop_box(mask: np.ndarray, margin: float = 0.15) -> CropBox:
    """The square around ``mask [H,W]``'s bounding box, grown by ``margin`` of its longer side on every side.

    Example:
        >>> m = np.zeros((20, 20), bool); m[5:10, 4:14] = True
        >>> crop_box(m, 0.0)
        CropBox(x0=4, y0=2, side=10)
    """
    ys, xs = np.nonzero(mask)
    x_lo, x_hi, y_lo, y_hi = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = int(np.ceil(max(x_hi - x_lo, y_hi - y_lo) * (1 + 2 * margin)))
    cx, cy = (x_lo + x_hi) / 2, (y_lo + y_hi) / 2
    return CropBox(int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2)), side)


def _cut(img: torch.Tensor, box: CropBox) -> torch.Tensor:
    """``img [H,W,C]`` cut to ``box`` with zeros where the box leaves the image."""
    h, w = img.shape[:2]
    out = img.new_zeros(box.side, box.side, img.shape[2])
    xa, ya = max(box.x0, 0), max(box.y0, 0)
    xb, yb = min(box.x0 + box.side, w), min(box.y0 + box.side, h)
    if xb > xa and yb > ya:
        out[ya - box.y0:yb - box.y0, xa - box.x0:xb - box.x0] = img[ya:yb, xa:xb]
    return out


def instance_views(data: DuplicatesInput, object_to_camera: np.ndarray, which, size: int = 128,
                   margin: float = 0.15, device="cpu") -> tuple[TrainViews, list[CropBox]]:
    """:class:`TrainViews` of the copies ``which`` (module docstring) and their crop boxes.

    Args:
        data: the photo (linear ``[H,W,3]``), instance masks ``[N,H,W]`` and intrinsics.
        object_to_camera: ``[N,4,4]`` OpenGL poses (rows of unposed copies are never read).
        which: indices of the copies to use (each must have a finite pose).
        size: side of every view in pixels.
        margin: crop margin, fraction of the mask box's longer side.
    Returns:
        ``(views, boxes)``; ``views.weight`` holds the per-pixel weights.
    """
    which = [int(k) for k in which]
    masks = torch.as_tensor(data.masks).bool()
    image = torch.as_tensor(data.image).float()
    h, w = image.shape[:2]
    inside = torch.ones(h, w, 1)
    colors, cover, weights, boxes, c2w, fx, fy, cx, cy = [], [], [], [], [], [], [], [], []
    K = data.intrinsics
    for k in which:
        box = crop_box(masks[k].numpy(), margin)
        own = masks[k].float()[..., None]
        others = (masks.any(0) & ~masks[k]).float()[..., None]
        layers = torch.cat([image * own, own, inside * (1 - others)], -1)  # premultiplied colour, mask, weight
        cut = _cut(layers, box).permute(2, 0, 1)[None]
        cut = torch.nn.functional.interpolate(cut, size=(size, size), mode="area")[0].permute(1, 2, 0)
        colors.append(cut[..., :3])
        cover.append(cut[..., 3:4])
        weights.append((cut[..., 4:5] > 0.999).float())  # a pixel partly on another copy is unknown
        boxes.append(box)
        s = size / box.side
        fx.append(K.fx * s), fy.append(K.fy * s), cx.append((K.cx - box.x0) * s), cy.append((K.cy - box.y0) * s)
        c2w.append(np.linalg.inv(np.asarray(object_to_camera[k], np.float64)))
    cam = Camera(torch.tensor(np.stack(c2w), dtype=torch.float32), torch.tensor(fx), torch.tensor(fy),
                 torch.tensor(cx), torch.tensor(cy), size, size)
    views = TrainViews(cam.to(device=device), torch.stack(colors).to(device), torch.stack(cover).to(device),
                       torch.stack(weights).to(device))
    return views, boxes


def hull_views(data: DuplicatesInput, object_to_camera: np.ndarray, which, longest: int = 256,
               margin: float = 0.15) -> TrainViews:
    """Whole-photo views of the copies ``which`` for carving the visual hull (colour left empty).

    Each view is the photo at ``longest`` pixels with camera-to-object ``T_k^{-1}``; its mask is copy ``k``'s
    mask united with the other copies' pixels inside ``k``'s crop box (those may hide part of ``k``, so they
    must not carve it; farther copies cannot, and must carve, or each would leave a ghost of the object).
    Carving with the whole photo, not the crops, also removes what projects outside a crop.
    """
    masks = torch.as_tensor(data.masks).float()
    h, w = masks.shape[1:]
    s = min(1.0, longest / max(h, w))
    th, tw = max(1, round(h * s)), max(1, round(w * s))
    union = masks.amax(0)
    keep = []
    for k in which:
        box = crop_box(masks[int(k)].numpy() > 0.5, margin)
        near = torch.zeros(h, w)
        near[max(box.y0, 0):max(box.y0 + box.side, 0), max(box.x0, 0):max(box.x0 + box.side, 0)] = 1
        m = torch.maximum(masks[int(k)], union * near)[None, None]
        keep.append(torch.nn.functional.interpolate(m, size=(th, tw), mode="area")[0, 0, ..., None])
    K = data.intrinsics
    c2w = np.stack([np.linalg.inv(np.asarray(object_to_camera[int(k)], np.float64)) for k in which])
    cam = Camera(torch.tensor(c2w, dtype=torch.float32), K.fx * tw / w, K.fy * th / h, K.cx * tw / w, K.cy * th / h,
                 tw, th)
    mask = torch.stack(keep)
    return TrainViews(cam, torch.zeros(*mask.shape[:3], 3), mask)
