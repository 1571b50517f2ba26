"""Silhouette Chamfer: a long-reach 2D loss between a mesh's projected vertices and a target mask.

The soft silhouette's gradient only reaches pixels within a few ``sqrt(delta)`` (0.4 pixel for DIB-R at 64^2)
of the mesh's outline, so a part of the mask far from the current mesh -- a table leg, a wing tip the
template sphere never covered -- pulls on nothing. Two directed terms in pixel units, divided by
``max(H, W)`` so that the loss does not depend on the resolution, give every vertex and every mask pixel a
gradient however far it is:

    L = mean_v max(D(p_v) - 1/2, 0) / max(H, W)  +  mean_{q ~ M} max(min_v |q - p_v| - tau, 0) / max(H, W)

* ``p_v``: vertex ``v`` projected into the view (:meth:`~unrender.cameras.Camera.world_to_pixel`: pixel
  units, row 0 at the top like the masks, pixel ``(i, j)``'s centre at ``(j + 1/2, i + 1/2)``);
* ``D``: the Euclidean distance transform of the mask's complement (0 inside the mask, the distance to the
  nearest mask pixel's centre outside), read bilinearly at ``p_v``; it reads about 1/2 on the mask's outline
  (half-way between an inside and an outside pixel centre), hence the ``- 1/2``. Every surface point of the
  true object projects inside every silhouette, so this term is 0 for a correct mesh;
* ``q ~ M``: ``samples`` pixel centres drawn from the mask (with replacement, in proportion to ``M``); each
  should have a projected vertex within ``tau`` pixels. ``tau`` (default 1.5) leaves the gaps between the
  projections of neighbouring vertices of a correct mesh unpenalised, so that the term does not spread
  vertices evenly over the image instead of over the surface.

Both directions are in 2D only (the masks and known cameras that DIB-R trains with); 3D shapes are never seen.
"""
from __future__ import annotations

import numpy as np
import torch

from ..cameras import Camera
from ..errors import InputError


def outside_distance(masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``masks[N,H,W]`` -> ``[N,H,W]`` distance in pixels from each pixel to the nearest pixel with
    ``mask > threshold`` (0 on the mask; ``max(H, W)`` for an empty mask). Constant: no gradient.

    Example:
        >>> m = torch.zeros(1, 1, 5); m[0, 0, 0] = 1
        >>> outside_distance(m)[0, 0].tolist()
        [0.0, 1.0, 2.0, 3.0, 4.0]
    """
    from scipy.ndimage import distance_transform_edt  # scipy is a core dependency; imported where it is used

    inside = (masks.detach() > threshold).cpu().numpy()
    out = np.empty(inside.shape, dtype=np.float32)
    for i, m in enumerate(inside):
        out[i] = distance_transform_edt(~m) if m.any() else float(max(m.shape))
    return torch.from_numpy(out).to(masks.device)


def silhouette_chamfer_loss(vertices: torch.Tensor, cameras: Camera, masks: torch.Tensor, samples: int = 256,
                            tolerance: float = 1.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean over the ``N`` views of ``L`` in the module docstring.

    Args:
        vertices: ``[N,V,3]`` mesh vertices, one mesh per view (repeat a sample's mesh for each of its views).
        cameras: ``N`` cameras of one image size ``(H, W)``.
        masks: ``[N,H,W]`` target masks in [0, 1], top row first.
        samples: mask pixels drawn per view for the second term.
        tolerance: ``tau`` in pixels.
        generator: random source of the mask samples.
    Returns:
        scalar, differentiable w.r.t. ``vertices`` (and the camera poses).

    Example:
        >>> from unrender.cameras import look_at
        >>> from unrender.geometry.primitives import icosphere_arrays
        >>> cam = Camera.from_fov(40, 32, 32, look_at(torch.tensor([[0., 0, 3]])))
        >>> v = torch.tensor(icosphere_arrays(3)[0] * 0.3, dtype=torch.float32)[None]
        >>> rows, cols = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
        >>> disc = (((rows - 16) ** 2 + (cols - 16) ** 2) < 4.5 ** 2).float()[None]  # the sphere's outline: 4.4 px
        >>> loss = lambda verts: silhouette_chamfer_loss(verts, cam, disc, generator=torch.Generator().manual_seed(0))
        >>> round(loss(v).item(), 3), round(loss(1.5 * v).item(), 3)   # right size (the disc's pixel steps), too big
        (0.001, 0.037)
    """
    if vertices.ndim != 3 or vertices.shape[-1] != 3 or masks.ndim != 3 or len(cameras) != vertices.shape[0] \
            or masks.shape != (vertices.shape[0], cameras.height, cameras.width):
        raise InputError(f"need vertices [N,V,3], N cameras and masks [N,H,W] of the cameras' size; got vertices "
                         f"{tuple(vertices.shape)}, {len(cameras)} cameras of {cameras.height}x{cameras.width}, "
                         f"masks {tuple(masks.shape)}.")
    n, h, w = masks.shape
    scale = float(max(h, w))
    pix = cameras.world_to_pixel(vertices)  # [N,V,2], row 0 at the top like the masks
    # term 1: vertices outside the silhouette, read from the distance transform (bilinear: grid_sample's
    # align_corners=False maps -1 / +1 to the outer pixel edges, i.e. pixel coordinates 0 and W)
    field = outside_distance(masks).to(vertices.dtype)
    grid = torch.stack([pix[..., 0] / w * 2.0 - 1.0, pix[..., 1] / h * 2.0 - 1.0], -1)[:, None]  # [N,1,V,2]
    far = torch.nn.functional.grid_sample(field[:, None], grid, mode="bilinear", padding_mode="border",
                                          align_corners=False)[:, 0, 0]  # [N,V]
    outside = (far - 0.5).clamp(min=0).mean() / scale
    # term 2: mask pixels without a projected vertex nearby
    weights = masks.detach().reshape(n, -1).clamp(min=0).to(torch.float32)
    has_mask = weights.sum(1) > 0
    if not bool(has_mask.any()):
        return outside
    weights = torch.where(has_mask[:, None], weights, torch.ones_like(weights))
    idx = torch.multinomial(weights, samples, replacement=True, generator=generator)  # [N,S]
    q = torch.stack([(idx % w).to(vertices.dtype) + 0.5, (idx // w).to(vertices.dtype) + 0.5], -1)
    nearest = torch.cdist(q, pix).amin(-1)  # [N,S]
    uncovered = (nearest - tolerance).clamp(min=0).mean(1)
    uncovered = (uncovered * has_mask).sum() / has_mask.sum()
    return outside + uncovered / scale
