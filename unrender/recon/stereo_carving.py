"""Stereo carving: open the concavities a visual hull closes, using depth maps matched between views.

The visual hull puts a lid on every opening the silhouettes cannot see into (a bowl, a vase's mouth).
Through a lid, view ``i`` sees a deeper true surface. A per-pixel plane sweep finds that depth:

1. the hull's own surface, rasterized, gives each view's front depth ``f_i(p)``; the images are turned grey
   and blurred by ``blur_px`` (path-traced noise is texture that would match by chance);
2. candidate depths ``d_k = f_i(p) + k * delta`` (``k = 0..K-1``) give points ``X_k`` on the pixel's ray; a
   candidate outside the hull, or outside a neighbour's image, scores -1;
3. every neighbour view ``j`` (the ``neighbours`` nearest viewing directions) is sampled at ``pi_j(X_k)``,
   and the normalised cross-correlation of ``patch``-pixel windows between view ``i`` and the warped view
   ``j`` scores the candidate; the mean of the ``best_of`` best neighbours is the pixel's score ``s_k``
   (robust to neighbours that cannot see the point);
4. ``D_i(p) = d_{k*}`` with ``k* = argmax s_k`` when ``s_{k*} >= min_score`` and the window has texture
   (standard deviation ``>= min_texture``), else unknown (:func:`sweep_depths`);
5. a depth deeper than the hull (``k* >= 2``) that beats the lid's own score by ``min_gain`` is kept only when
   at least ``min_consistent`` neighbours' depth maps agree with it within ``2 delta`` (COLMAP's geometric
   consistency; :func:`consistent_pixels`);
6. a hull voxel is carved when at least ``min_votes`` views have a kept depth behind it by more than
   ``margin`` voxels along the pixel's ray: those views see past it (:func:`stereo_carve`).

Texture-less regions and highlights give no confident depth, so they are never carved: like
:mod:`~unrender.recon.photo_carving`, this only removes what the images contradict, but a window
correlation across views is much less sensitive to shading and blur than per-voxel colour agreement.

Example:
    >>> import torch
    >>> from unrender.cameras import Camera, orbit_poses
    >>> from unrender.geometry.primitives import icosphere
    >>> from unrender.render.render_mesh import render_mesh
    >>> from unrender.recon.visual_hull import carve
    >>> cam = Camera.from_fov(40, 48, 48, orbit_poses(8, 3.0, seed=0))
    >>> out = render_mesh(icosphere(2), cam, shading="albedo")
    >>> field = carve(cam, out.alpha, [[-0.6] * 3, [0.6] * 3], resolution=24)
    >>> result = stereo_carve(cam, out.color, out.alpha, field)
    >>> result.removed <= 0.01 * int((field.values > 0.5).sum())  # a sphere keeps its voxels
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from ..cameras import Camera
from ..color import linear_to_srgb
from ..errors import InputError
from .photo_carving import _depth_maps, _project
from .visual_hull import VoxelField, _check_masks, field_surface


@dataclass
class StereoCarveConfig:
    """Settings of :func:`stereo_carve` (module docstring for the steps they control)."""

    neighbours: int = 6
    """Views matched against each view: the nearest viewing directions between ``min_angle`` and ``max_angle``."""
    min_angle: float = 3.0
    """Degrees: closer views add no parallax."""
    max_angle: float = 50.0
    """Degrees: farther views see windows too distorted to correlate."""
    depth_samples: int = 48
    """Candidate depths ``K`` per pixel."""
    depth_range: float = 0.6
    """How far behind the hull's front the sweep looks, as a fraction of the hull's longest side."""
    patch: int = 5
    """Correlation window side in pixels (odd)."""
    max_resolution: int = 128
    """Longest image side the sweep runs at (larger images are area-downsampled first): it averages away
    path-traced noise, which otherwise matches by chance, and bounds the cost."""
    blur_px: float = 0.6
    """Gaussian blur (pixels) of the grey images first: path-traced noise is texture that matches by chance."""
    best_of: int = 2
    """Neighbours whose scores are averaged (the best ones)."""
    min_score: float = 0.7
    """Mean correlation a depth needs to count as known."""
    min_gain: float = 0.25
    """How much a deeper depth must beat the hull's front depth's score before it may carve."""
    min_texture: float = 0.02
    """Standard deviation (sRGB grey, 0..1) a window needs: flat windows match at every depth."""
    min_consistent: int = 1
    """Neighbours whose depth maps must agree with a deep depth before it may carve."""
    margin: float = 1.5
    """Voxels kept in front of a kept depth (the surface itself is never carved)."""
    min_votes: int = 2
    """Views that must see past a voxel before it is carved."""


@dataclass
class StereoCarveResult:
    """What :func:`stereo_carve` returns.

    Attributes:
        field: the hull field with carved voxels set to 0 (same grid as the input).
        removed: number of voxels carved.
        depth: ``[N,h,w]`` the sweep's depths (NaN where unknown), row 0 = top, at the sweep's image size
            (``cfg.max_resolution``).
        deep: ``[N,h,w]`` bool, the pixels whose depth carved (deeper than the hull, confident, consistent).
    """

    field: VoxelField
    removed: int
    depth: torch.Tensor
    deep: torch.Tensor


def _grey(colors: torch.Tensor, masks: torch.Tensor, blur_px: float) -> torch.Tensor:
    """sRGB luminance ``[N,H,W]`` of un-premultiplied linear ``colors [N,H,W,3]``, blurred by ``blur_px``."""
    c = torch.where(masks[..., None] > 1e-3, colors / masks[..., None].clamp_min(1e-3), colors).clamp(0, 1)
    grey = linear_to_srgb(c) @ torch.tensor([0.299, 0.587, 0.114])
    if blur_px > 0:
        grey = torch.from_numpy(gaussian_filter(grey.numpy(), (0, blur_px, blur_px), mode="nearest")).float()
    return grey


def _neighbours(camera: Camera, cfg: StereoCarveConfig) -> list[list[int]]:
    """For every view, the indices of its ``cfg.neighbours`` nearest views by viewing direction."""
    axis = F.normalize(-camera.c2w[:, :3, 2], dim=-1)
    angle = torch.rad2deg(torch.arccos((axis @ axis.T).clamp(-1, 1)))
    allowed = (angle >= cfg.min_angle) & (angle <= cfg.max_angle)
    angle = torch.where(allowed, angle, torch.full_like(angle, float("inf")))
    order = angle.argsort(1)[:, :cfg.neighbours]
    return [[int(j) for j in row if bool(allowed[i, j])] for i, row in enumerate(order)]


def sweep_step(field: VoxelField, cfg: StereoCarveConfig) -> float:
    """World distance ``delta`` between the sweep's candidate depths: ``depth_range`` of the field's longest side
    over ``depth_samples``."""
    return cfg.depth_range * max(field.values.shape) * field.step / cfg.depth_samples


def _ray_steps(camera: Camera) -> torch.Tensor:
    """World offset per unit of camera depth for every pixel centre ``[N,H,W,3]`` (``X = centre + depth * step``)."""
    ys, xs = torch.meshgrid(torch.arange(camera.height) + 0.5, torch.arange(camera.width) + 0.5, indexing="ij")
    v = lambda t: t.reshape(-1, 1, 1)  # noqa: E731
    d_cam = torch.stack([(xs - v(camera.cx)) / v(camera.fx), -(ys - v(camera.cy)) / v(camera.fy),
                         -torch.ones_like(xs).expand(len(camera), -1, -1)], -1)
    return torch.einsum("nij,nhwj->nhwi", camera.c2w[:, :3, :3], d_cam)


def _inside(field: VoxelField, points: torch.Tensor, level: float = 0.5) -> torch.Tensor:
    """Whether world ``points [...,3]`` lie in occupied voxels (trilinear field value above ``level``)."""
    size = torch.tensor(field.values.shape, dtype=torch.float32)
    ijk = (points - field.origin.float()) / field.step - 0.5  # voxel-centre index space
    grid = (2 * (ijk + 0.5) / size - 1).flip(-1)  # grid_sample wants (z, y, x) = (W, H, D) of a [X,Y,Z] volume
    v = F.grid_sample(field.values.float()[None, None], grid.reshape(1, -1, 1, 1, 3), align_corners=False,
                      padding_mode="zeros")
    return v.reshape(points.shape[:-1]) > level


def _window_ncc(a: torch.Tensor, b: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised cross-correlation of ``patch``-windows of ``a [1,H,W]`` and ``b [M,H,W]`` -> ``([M,H,W], std_a)``."""
    pool = lambda t: F.avg_pool2d(t[:, None], patch, 1, patch // 2, count_include_pad=False)[:, 0]  # noqa: E731
    ma, mb = pool(a), pool(b)
    va, vb = (pool(a * a) - ma * ma).clamp_min(0), (pool(b * b) - mb * mb).clamp_min(0)
    cov = pool(a * b) - ma * mb
    return cov / (va * vb + 1e-10).sqrt(), va.sqrt()


def sweep_depths(camera: Camera, grey: torch.Tensor, masks: torch.Tensor, field: VoxelField, front: torch.Tensor,
                 cfg: StereoCarveConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plane sweep behind the hull (module docstring, steps 2-4).

    Args:
        camera: ``N`` views; grey: ``[N,H,W]`` sRGB grey images; masks: ``[N,H,W]``; field: the hull field;
        front: ``[N,H,W]`` the hull's front depth (inf where the ray misses it).
    Returns:
        ``(depth, best_k, gain)`` each ``[N,H,W]``: the best depth (NaN where unknown), its sweep index, and
        its score minus the best score at the hull's front (``k <= 1``).
    """
    n, h, w = grey.shape
    delta = sweep_step(field, cfg)
    steps = _ray_steps(camera)
    centre = camera.center
    projection = camera.full_projection()
    depth = torch.full((n, h, w), float("nan"))
    best_k = torch.zeros((n, h, w), dtype=torch.long)
    gain = torch.zeros((n, h, w))
    for i, nbrs in enumerate(_neighbours(camera, cfg)):
        hit = torch.isfinite(front[i]) & (masks[i] > 0.5)
        if len(nbrs) < cfg.best_of or not bool(hit.any()):
            continue
        f0 = torch.where(hit, front[i], torch.zeros_like(front[i]))
        scores = []
        for k in range(cfg.depth_samples):
            x = centre[i] + (f0 + k * delta)[..., None] * steps[i]  # [H,W,3]
            ok = hit & _inside(field, x)
            clip = torch.einsum("mij,hwj->mhwi", projection[nbrs, :3, :3], x) + projection[nbrs, None, None, :3, 3]
            wc = torch.einsum("mj,hwj->mhw", projection[nbrs, 3, :3], x) + projection[nbrs, 3, 3][:, None, None]
            uv = clip[..., :2] / wc[..., None]  # NDC, y up
            grid = torch.stack([uv[..., 0], -uv[..., 1]], -1)
            warped = F.grid_sample(grey[nbrs][:, None], grid, align_corners=False, padding_mode="border")[:, 0]
            seen = F.grid_sample(masks[nbrs][:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]
            ncc, std = _window_ncc(grey[i][None], warped, cfg.patch)
            valid = ok[None] & (seen > 0.5) & (wc > 0) & (grid.abs() <= 1).all(-1)
            ncc = torch.where(valid, ncc, torch.full_like(ncc, -1.0))
            scores.append(ncc.topk(cfg.best_of, dim=0).values.mean(0))
        s = torch.stack(scores)  # [K,H,W]
        best, k = s.max(0)
        known = hit & (best >= cfg.min_score) & (std >= cfg.min_texture)
        depth[i] = torch.where(known, f0 + k * delta, torch.full_like(f0, float("nan")))
        best_k[i] = k
        gain[i] = best - s[:2].max(0).values
    return depth, best_k, gain


def consistent_pixels(camera: Camera, depth: torch.Tensor, candidates: torch.Tensor, delta: float,
                      cfg: StereoCarveConfig) -> torch.Tensor:
    """The ``candidates [N,H,W]`` whose known depth at least ``cfg.min_consistent`` neighbours' depth maps confirm
    within ``2 delta`` (COLMAP's geometric consistency; module docstring, step 5) -> bool ``[N,H,W]``."""
    n, h, w = depth.shape
    steps = _ray_steps(camera)
    projection = camera.full_projection()
    consistent = torch.zeros_like(depth, dtype=torch.bool)
    for i, nbrs in enumerate(_neighbours(camera, cfg)):
        idx = (candidates[i] & torch.isfinite(depth[i])).nonzero()
        if not idx.numel() or not nbrs:
            continue
        x = camera.center[i] + depth[i][idx[:, 0], idx[:, 1], None] * steps[i][idx[:, 0], idx[:, 1]]  # [P,3]
        px, py, wc = _project(projection[nbrs], x, h, w)  # [M,P]
        col, row = px.floor().long(), py.floor().long()
        inside = (wc > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        theirs = depth[torch.tensor(nbrs)[:, None], row.clamp(0, h - 1), col.clamp(0, w - 1)]
        agree = inside & ((theirs - wc).abs() <= 2 * delta)
        consistent[i][idx[:, 0], idx[:, 1]] = agree.sum(0) >= cfg.min_consistent
    return consistent


def stereo_carve(camera: Camera, colors, masks, field: VoxelField, cfg: StereoCarveConfig | None = None,
                 hull_level: float = 0.5) -> StereoCarveResult:
    """Carve the voxels of a visual-hull field that confident, consistent stereo depths see past (module docstring).

    Args:
        camera: ``N`` cameras matching the images.
        colors: ``[N,H,W,3]`` linear RGB (premultiplied or not: only pixels inside the masks are used).
        masks: ``[N,H,W,1]`` or ``[N,H,W]`` coverage in [0,1], row 0 = top.
        field: the soft hull field from :func:`~unrender.recon.visual_hull.carve` (occupied where ``> hull_level``).
        cfg: :class:`StereoCarveConfig` (defaults when None).
    Returns:
        :class:`StereoCarveResult` (the input field is not modified).
    """
    cfg = cfg or StereoCarveConfig()
    m = _check_masks(camera, masks).float().cpu()
    c = torch.as_tensor(colors, dtype=torch.float32).cpu()
    if c.shape != (*m.shape, 3):
        raise InputError(f"colors must be [N,H,W,3] matching the masks {tuple(m.shape)}; got {tuple(c.shape)}.")
    if cfg.patch < 3 or cfg.patch % 2 == 0:
        raise InputError(f"patch must be an odd number >= 3; got {cfg.patch}.")
    cam = camera.to(device="cpu", dtype=torch.float32)
    n, h, w = m.shape
    if max(h, w) > cfg.max_resolution > 0:
        h, w = max(1, round(h * cfg.max_resolution / max(h, w))), max(1, round(w * cfg.max_resolution / max(h, w)))
        sx, sy = w / cam.width, h / cam.height
        cam = Camera(cam.c2w, cam.fx * sx, cam.fy * sy, cam.cx * sx, cam.cy * sy, w, h, cam.near, cam.far)
        m = F.interpolate(m[:, None], size=(h, w), mode="area")[:, 0]
        c = F.interpolate(c.permute(0, 3, 1, 2), size=(h, w), mode="area").permute(0, 2, 3, 1)
    occupied = field.values > hull_level
    hull = field_surface(VoxelField(occupied.float(), field.origin, field.step))
    empty = torch.zeros(n, h, w, dtype=torch.bool)
    if hull.num_faces == 0:
        return StereoCarveResult(field, 0, torch.full((n, h, w), float("nan")), empty)
    front = _depth_maps(cam, hull)
    depth, best_k, gain = sweep_depths(cam, _grey(c, m, cfg.blur_px), m, field, front, cfg)
    candidates = (best_k >= 2) & (gain >= cfg.min_gain)  # deeper than the lid and better than it
    deep = consistent_pixels(cam, depth, candidates, sweep_step(field, cfg), cfg)

    # step 6: votes of the views that see past each occupied voxel
    centres = field.centres().float().reshape(*occupied.shape, 3)[occupied]  # [V,3]
    votes = torch.zeros(len(centres), dtype=torch.long)
    projection = cam.full_projection()
    for i in range(n):
        if not bool(deep[i].any()):
            continue
        px, py, wc = (t[0] for t in _project(projection[i:i + 1], centres, h, w))
        col, row = px.floor().long(), py.floor().long()
        inside = (wc > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        r, q = row.clamp(0, h - 1), col.clamp(0, w - 1)
        gap = depth[i][r, q] - wc  # NaN where the view has no depth there
        votes += (inside & deep[i][r, q] & (gap > cfg.margin * field.step)).long()
    carved = votes >= cfg.min_votes
    values = field.values.clone()
    flat = values[occupied]
    flat[carved] = 0.0
    values[occupied] = flat
    return StereoCarveResult(VoxelField(values, field.origin, field.step), int(carved.sum()), depth, deep)
