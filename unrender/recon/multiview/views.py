"""Training views: the dataset's frames as linear, premultiplied tensors at the training resolution."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...cameras import Camera


@dataclass
class TrainViews:
    """Frames ready for the loss.

    Attributes:
        camera: ``N`` cameras at the training resolution (intrinsics scaled with the images).
        color: premultiplied linear colour ``[N,h,w,3]`` (``rgb * mask``), row 0 at the top.
        mask: coverage ``[N,h,w,1]`` in [0,1].
        weight: optional per-pixel loss weight ``[N,h,w,1]`` (0 = unknown: the pixel says nothing about this
            view's object, e.g. it shows another object that may hide it, or lies outside the photo).
    """

    camera: Camera
    color: torch.Tensor
    mask: torch.Tensor
    weight: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.color.shape[0]

    def targets(self, idx: torch.Tensor, background: torch.Tensor):
        """``(target [B,h,w,3], mask [B,h,w,1])`` for views ``idx``, composited over ``background [B,1,1,3]``."""
        m = self.mask[idx]
        return self.color[idx] + (1 - m) * background, m


def scaled_camera(camera: Camera, width: int, height: int) -> Camera:
    """``camera`` for images resampled to ``width x height`` (pixel-corner convention: scale fx, cx by W'/W).

    Example:
        >>> cam = Camera.from_fov(60, 64, 32, torch.eye(4))
        >>> scaled_camera(cam, 32, 16).cx
        tensor([16.])
    """
    sx, sy = width / camera.width, height / camera.height
    return Camera(camera.c2w, camera.fx * sx, camera.fy * sy, camera.cx * sx, camera.cy * sy, width, height,
                  camera.near, camera.far)


def training_views(dataset, longest: int = 0, device="cpu", chunk: int = 16) -> TrainViews:
    """Decode ``dataset`` (a :class:`~unrender.data.layouts.MultiViewDataset`) into :class:`TrainViews`.

    Images are box-filtered (``area``) to ``longest`` pixels on their longer side (0 keeps the size), on
    premultiplied colour so that the background never bleeds into the object's border.
    """
    h, w = dataset.camera.height, dataset.camera.width
    scale = 1.0 if longest <= 0 or max(h, w) <= longest else longest / max(h, w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    colors, masks = [], []
    for start in range(0, len(dataset), chunk):
        idx = torch.arange(start, min(start + chunk, len(dataset)))
        rgb, mask = dataset.frames(idx)
        pre = torch.cat([rgb * mask, mask], -1).permute(0, 3, 1, 2)
        if (th, tw) != (h, w):
            pre = torch.nn.functional.interpolate(pre, size=(th, tw), mode="area")
        pre = pre.permute(0, 2, 3, 1)
        colors.append(pre[..., :3])
        masks.append(pre[..., 3:])
    cam = scaled_camera(dataset.camera, tw, th) if (th, tw) != (h, w) else dataset.camera
    return TrainViews(cam.to(device=device), torch.cat(colors).to(device), torch.cat(masks).to(device))
