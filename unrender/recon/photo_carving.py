"""Photo-consistent space carving: remove the voxels of a visual hull whose colours disagree between views.

The visual hull closes every opening the silhouettes cannot see into (a bowl, a vase's mouth, the
inside of a mug) with a lid. Seen through a lid, each view sees a different point of the true inner
surface, so the colours the views record where they cross a lid voxel disagree; on the true surface
of a matte object they agree. Kutulakos & Seitz's space carving removes inconsistent surface voxels
one layer at a time until every visible voxel is consistent. Each round:

1. the current shape's surface (:func:`~unrender.recon.visual_hull.field_surface` of the occupancy) is rasterized into a depth map per
   view (:func:`~unrender.render.rasterize.rasterize`), which gives visibility;
2. every *surface voxel* (occupied, with an empty 6-neighbour) is projected into every view; view
   ``i`` sees it when the voxel lies inside mask ``i`` and no deeper than ``depth_i + tolerance``;
3. its colours ``c_i`` in the views that see it (sRGB, images blurred by ``blur_px``) give the
   inconsistency ``q``-quantile over ``i`` of ``max_channel |c_i - median_i c_i|``; a quantile
   rather than the maximum ignores highlights, which only a few views see at one point;
4. voxels seen by at least ``min_views`` views with inconsistency above ``threshold`` are removed.

It stops when a round removes fewer than ``min_removed`` voxels or after ``max_rounds`` rounds.
Texture-less regions are consistent whatever their depth, so they are never carved: carving only
ever removes what the images contradict.

Example:
    >>> import torch
    >>> from unrender.cameras import Camera, orbit_poses
    >>> from unrender.geometry.primitives import icosphere
    >>> from unrender.render.render_mesh import render_mesh
    >>> from unrender.recon.visual_hull import carve
    >>> cam = Camera.from_fov(40, 48, 48, orbit_poses(8, 3.0, seed=0))
    >>> out = render_mesh(icosphere(2), cam, shading="albedo")
    >>> field = carve(cam, out.alpha, [[-0.6] * 3, [0.6] * 3], resolution=24)
    >>> carved = photo_carve(cam, out.color, out.alpha, field)
    >>> bool((carved.field.values > 0.5).sum() > 0.9 * (field.values > 0.5).sum())  # a sphere keeps its voxels
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import binary_erosion, gaussian_filter

from ..cameras import Camera
from ..color import linear_to_srgb
from ..errors import InputError
from ..render.rasterize import interpolate, rasterize
from .visual_hull import VoxelField, _check_masks, field_surface


@dataclass
class CarveResult:
    """What :func:`photo_carve` returns.

    Attributes:
        field: the hull field with carved voxels set to 0 (same grid as the input).
        removed: voxels removed per round.
    """

    field: VoxelField
    removed: list[int]


def _depth_maps(camera: Camera, surface) -> torch.Tensor:
    """Camera depth (clip ``w``) of ``surface`` (a Mesh) per pixel ``[N,H,W]`` (row 0 = top), inf where empty."""
    v, f = surface.vertices, surface.faces.int()
    clip = camera.world_to_clip(v).contiguous()
    rast = rasterize(clip, f, (camera.height, camera.width))
    w = interpolate(clip[..., 3:4].contiguous(), rast, f)[..., 0]
    return torch.where(rast[..., 3] > 0, w, torch.full_like(w, float("inf"))).flip(1)


def _project(projection: torch.Tensor, points: torch.Tensor, h: int, w: int):
    """``(x, y, depth)`` ``[N,K]`` of world points ``[K,3]`` in every view (pixels from the top-left), given
    the views' world-to-clip matrices ``projection [N,4,4]``."""
    clip = points @ projection[:, :3, :3].transpose(1, 2) + projection[:, None, :3, 3]
    wc = projection[:, 3, :3] @ points.T + projection[:, 3, 3:]
    x = (clip[..., 0] / wc + 1) * 0.5 * w
    y = (1 - clip[..., 1] / wc) * 0.5 * h
    return x, y, wc


def _masked_quantile(values: torch.Tensor, valid: torch.Tensor, q: float) -> torch.Tensor:
    """Lower ``q``-quantile over dim 0 of ``values [N,...]`` counting only ``valid`` entries (sort, not nanquantile:
    much faster on CPU). Columns with no valid entry give +inf."""
    v = torch.where(valid, values, torch.full_like(values, float("inf"))).sort(0).values
    k = ((valid.sum(0) - 1).clamp_min(0) * q).long()
    return v.gather(0, k[None])[0]


def _inconsistency(colors: torch.Tensor, x: torch.Tensor, y: torch.Tensor, sees: torch.Tensor,
                   quantile: float) -> torch.Tensor:
    """Quantile over the views that see each point of ``max_channel |c_i - median c|`` -> ``[K]``."""
    n, h, w = colors.shape[:3]
    grid = torch.stack([2 * x / w - 1, 2 * y / h - 1], -1).nan_to_num(0.0)[:, None]  # [N,1,K,2]
    c = torch.nn.functional.grid_sample(colors.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border",
                                        align_corners=False)[:, :, 0]  # [N,3,K]
    valid = sees[:, None].expand_as(c)
    dev = (c - _masked_quantile(c, valid, 0.5)).abs().amax(1)  # [N,K]
    return _masked_quantile(dev, sees, quantile)


def _carve_decisions(projection: torch.Tensor, colors: torch.Tensor, masks: torch.Tensor, depth: torch.Tensor,
                     points: torch.Tensor, inward: torch.Tensor, occupied_at, step: float, cfg: dict,
                     chunk: int = 2048) -> torch.Tensor:
    """Which surface voxels ``points [K,3]`` to carve (module docstring, steps 2-4) -> bool ``[K]``."""
    n, h, w = masks.shape
    out = []
    for pts, nrm in zip(points.split(chunk), inward.split(chunk)):
        x, y, z = _project(projection, pts, h, w)
        col, row = x.floor().long(), y.floor().long()
        inside = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        view = torch.arange(n)[:, None].expand_as(col)
        cc, rr = col.clamp(0, w - 1), row.clamp(0, h - 1)
        sees = inside & (masks[view, rr, cc] > 0.5) & (z <= depth[view, rr, cc] + 2.0 * step)
        here = _inconsistency(colors, x, y, sees, cfg["quantile"])
        decision = torch.zeros_like(here, dtype=torch.bool)
        cand = ((sees.sum(0) >= cfg["min_views"]) & (here > cfg["threshold"])).nonzero()[:, 0]
        if cand.numel():
            # the same rays, continued into the shape: what they record may come from a deeper surface
            p, d, sv = pts[cand], nrm[cand], sees[:, cand]
            best = torch.full_like(here[cand], float("inf"))
            alive = torch.ones_like(best, dtype=torch.bool)
            for k in range(1, cfg["search_voxels"] + 1):
                deeper = p + k * step * d
                alive = alive & occupied_at(deeper)
                if not bool(alive.any()):
                    break
                dx, dy, _ = _project(projection, deeper, h, w)
                best = torch.where(alive, torch.minimum(best, _inconsistency(colors, dx, dy, sv, cfg["quantile"])), best)
            decision[cand] = (best < cfg["ratio"] * here[cand]) & (best < cfg["consistent"])
        out.append(decision)
    return torch.cat(out)


def photo_carve(camera: Camera, colors, masks, field: VoxelField, threshold: float = 0.08, ratio: float = 0.5,
                consistent: float = 0.03,
                search_voxels: int = 24, quantile: float = 0.6, min_views: int = 3, blur_px: float = 1.0,
                max_rounds: int = 60, min_removed: int = 4, min_removed_fraction: float = 0.02, hull_level: float = 0.5) -> CarveResult:
    """Carve photo-inconsistent voxels from a visual-hull field (module docstring).

    Args:
        camera: ``N`` cameras matching the images.
        colors: ``[N,H,W,3]`` linear RGB (premultiplied or not: only pixels inside the masks are used).
        masks: ``[N,H,W,1]`` or ``[N,H,W]`` coverage in [0,1], row 0 = top.
        field: the soft hull field from :func:`~unrender.recon.visual_hull.carve` (occupied where ``> hull_level``).
        threshold: inconsistency (sRGB units, 0..1) below which a voxel is never carved.
        ratio, consistent: carve when a deeper point along the inward normal is ``ratio`` times more consistent
            than the voxel and consistent in absolute terms (inconsistency below ``consistent``).
        search_voxels: how deep (voxels) to look for a more consistent point.
        quantile: which quantile of the per-view deviations is the inconsistency (robust to highlights).
        min_views: views that must see a voxel before it may be carved.
        blur_px: Gaussian blur of the images (pixels), so that a voxel's colour is an average over its footprint.
        max_rounds, min_removed, min_removed_fraction: stop after ``max_rounds`` or when a round removes
            fewer than ``max(min_removed, min_removed_fraction * removed_in_round_1)`` voxels.
        hull_level: occupancy threshold of ``field``.
    Returns:
        :class:`CarveResult` (``field.values`` zeroed where carved; the input is not modified).
    """
    m = _check_masks(camera, masks).float().cpu()
    c = torch.as_tensor(colors, dtype=torch.float32).cpu()
    if c.shape != (*m.shape, 3):
        raise InputError(f"colors must be [N,H,W,3] matching the masks {tuple(m.shape)}; got {tuple(c.shape)}.")
    if not 0 < quantile <= 1:
        raise InputError(f"quantile must be in (0, 1]; got {quantile}.")
    c = torch.where(m[..., None] > 1e-3, c / m[..., None].clamp_min(1e-3), c).clamp(0, 1)  # un-premultiply
    c = linear_to_srgb(c)
    if blur_px > 0:
        c = torch.from_numpy(gaussian_filter(c.numpy(), (0, blur_px, blur_px, 0), mode="nearest")).float()
    cam = camera.to(device="cpu", dtype=torch.float32)
    cfg = {"threshold": threshold, "ratio": ratio, "consistent": consistent, "search_voxels": search_voxels, "quantile": quantile,
           "min_views": min_views}
    occupied = field.values.numpy() > hull_level
    origin, step = field.origin.float(), float(field.step)
    centres = field.centres().float().reshape(*occupied.shape, 3)
    shape = torch.tensor(occupied.shape)

    def occupied_at(points: torch.Tensor) -> torch.Tensor:
        ijk = ((points - origin) / step).floor().long()
        ok = ((ijk >= 0) & (ijk < shape)).all(-1)
        ijk = ijk.clamp(min=torch.zeros(3, dtype=torch.long), max=shape - 1)
        return ok & torch.from_numpy(occupied)[ijk[:, 0], ijk[:, 1], ijk[:, 2]]

    projection = cam.full_projection()
    removed = []
    for _ in range(max_rounds):
        shape_now = field_surface(VoxelField(torch.from_numpy(occupied).float(), field.origin, step))
        if shape_now.num_faces == 0:
            break
        depth = _depth_maps(cam, shape_now)
        surface = occupied & ~binary_erosion(occupied, border_value=0)
        idx = np.nonzero(surface)
        smooth = gaussian_filter(occupied.astype(np.float32), 1.5, mode="constant")
        inward = torch.from_numpy(np.stack([g[idx] for g in np.gradient(smooth)], -1)).float()
        inward = torch.nn.functional.normalize(inward, dim=-1)
        bad = _carve_decisions(projection, c, m, depth, centres[idx], inward, occupied_at, step, cfg)
        occupied[tuple(torch.as_tensor(i)[bad].numpy() for i in idx)] = False
        removed.append(int(bad.sum()))
        if removed[-1] < max(min_removed, min_removed_fraction * removed[0]):
            break
    values = torch.where(torch.from_numpy(occupied), field.values, torch.zeros_like(field.values))
    return CarveResult(VoxelField(values, field.origin, field.step), removed)
