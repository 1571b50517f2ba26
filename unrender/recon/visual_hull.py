"""Visual hull: the shape carved by silhouettes alone (the baseline every reconstruction must beat).

A point belongs to the visual hull when it projects inside the object's mask in every view that
sees it. :func:`carve` evaluates, on a voxel grid, the soft hull field

    ``h(X) = min over views i that see X of  mask_i(pi_i(X))``

(``pi_i`` = :meth:`Camera.world_to_pixel`, pixel ``(0, 0)`` = top-left corner, masks sampled
bilinearly at pixel centres; a view "sees" ``X`` when ``X`` is in front of it and projects inside
its image, so pixels outside an image never carve; voxels seen by no view are removed).
:func:`visual_hull` extracts the surface ``h = threshold`` of the lightly smoothed field with
marching cubes, in world coordinates with outward faces. :func:`estimate_bounds` finds a box
around the hull when none is given: the intersection of the frusta of the silhouettes' bounding
rectangles (six small linear programs), then a coarse conservative carve inside it.

Example:
    >>> from unrender.cameras import Camera, orbit_poses
    >>> from unrender.geometry.primitives import icosphere
    >>> from unrender.render.render_mesh import render_mesh
    >>> cam = Camera.from_fov(40, 48, 48, orbit_poses(8, 3.0, seed=0))
    >>> masks = render_mesh(icosphere(2), cam, shading="albedo").alpha
    >>> hull = visual_hull(cam, masks, resolution=32)
    >>> bool(hull.vertices.norm(dim=1).max() < 0.65)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.optimize import linprog
from skimage.measure import marching_cubes

from ..cameras import Camera
from ..checks import float_tensor
from ..errors import InputError
from ..mesh import Mesh
from ..geometry.primitives import signed_volume


@dataclass
class VoxelField:
    """Values on the voxel centres of an axis-aligned grid.

    Attributes:
        values: ``[X,Y,Z]`` field (for :func:`carve`, the soft hull field in [0,1]).
        origin: world position ``[3]`` of the grid's minimum corner (not of the first voxel centre).
        step: voxel edge length (voxels are cubes); voxel ``(i, j, k)`` has its centre at
            ``origin + (i + 0.5, j + 0.5, k + 0.5) * step``.
    """

    values: torch.Tensor
    origin: torch.Tensor
    step: float

    def centres(self) -> torch.Tensor:
        """World positions of all voxel centres ``[X*Y*Z,3]`` in ``values.reshape(-1)`` order."""
        axes = [self.origin[k] + (torch.arange(n, dtype=torch.float64) + 0.5) * self.step
                for k, n in enumerate(self.values.shape)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def _check_masks(camera: Camera, masks) -> torch.Tensor:
    """Masks as float ``[N,H,W]`` in [0,1] (uint8 scaled by 1/255), matching ``camera``."""
    if not isinstance(camera, Camera):
        raise InputError(f"camera must be an unrender.cameras.Camera; got {type(camera).__name__}.")
    m = torch.as_tensor(masks)
    if m.dtype == torch.uint8:
        m = m.float() / 255.0
    m = float_tensor("masks", m, "[N,H,W,1]", ndims=(3, 4))
    if m.dim() == 4:
        if m.shape[-1] != 1:
            raise InputError(f"masks must have shape [N,H,W,1]; got {tuple(m.shape)}.")
        m = m[..., 0]
    n, h, w = m.shape
    if n != len(camera) or (h, w) != (camera.height, camera.width):
        raise InputError(f"masks {tuple(m.shape)} must hold one {camera.height}x{camera.width} mask per camera "
                         f"({len(camera)} cameras).")
    if not torch.isfinite(m).all():
        raise InputError("masks hold NaN or infinite values; give masks in [0, 1].")
    return m


def _grid(lo: np.ndarray, hi: np.ndarray, resolution: int) -> tuple[np.ndarray, float, tuple[int, int, int]]:
    """Cubic voxels, ``resolution`` along the longest side of ``[lo, hi]``, centred on the box."""
    extent = hi - lo
    step = float(extent.max()) / resolution
    shape = tuple(int(max(1, math.ceil(e / step - 1e-6))) for e in extent)
    origin = (lo + hi) / 2 - np.array(shape) * step / 2
    return origin, step, shape


def carve(camera: Camera, masks, bounds, resolution: int = 128, dilate_px: int = 0,
          chunk: int = 2_000_000) -> VoxelField:
    """Soft hull field ``h`` (see the module docstring) on a grid of cubic voxels inside ``bounds[2,3]``.

    Voxel centres are projected through all ``N`` views at once, in blocks of about ``chunk``
    voxel-view pairs (a few large tensor ops per block rather than many small ones per view: fast,
    and insensitive to a busy CPU). ``dilate_px`` grows every mask by that many pixels first (max
    filter), making the carve conservative for voxels larger than a pixel.

    Args:
        camera: ``N`` cameras; masks: ``[N,H,W,1]`` or ``[N,H,W]``, 1 = object, row 0 = top.
        bounds: ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``; resolution: voxels along its longest side.
    Returns:
        :class:`VoxelField` with values ``[X,Y,Z]`` in [0,1] (0 where no view sees the voxel).

    Example:
        >>> from unrender.cameras import Camera, look_at
        >>> cam = Camera.from_fov(60, 8, 8, look_at((0, 0, 3)))
        >>> round(carve(cam, torch.ones(1, 8, 8, 1), [[-1, -1, -1], [1, 1, 1]], resolution=4).values.min().item(), 4)
        1.0
    """
    m = _check_masks(camera, masks).float()
    b = float_tensor("bounds", bounds, "[2,3]", last_dim=3, ndims=(2,)).double().cpu().numpy()
    if b.shape != (2, 3) or not np.isfinite(b).all() or not (b[1] > b[0]).all():
        raise InputError(f"bounds must be [[xmin, ymin, zmin], [xmax, ymax, zmax]] with max > min; got {b.tolist()}.")
    if dilate_px > 0:
        m = torch.nn.functional.max_pool2d(m[:, None], 2 * dilate_px + 1, stride=1, padding=dilate_px)[:, 0]
    origin, step, shape = _grid(b[0], b[1], int(resolution))
    field = VoxelField(torch.ones(shape, dtype=torch.float32), torch.from_numpy(origin), step)
    cam = camera.to(device=m.device, dtype=torch.float32)
    points = field.centres().to(device=m.device, dtype=torch.float32)
    h, w = cam.height, cam.width
    z_rows = cam.w2c[:, 2]  # camera-space z = z_row . (X, 1); in front of the camera when negative
    values = []
    for pts in points.split(max(1, chunk // len(cam))):
        pix = cam.world_to_pixel(pts)  # [N,K,2]
        x, y = pix[..., 0], pix[..., 1]
        in_front = (pts @ z_rows[:, :3].T + z_rows[:, 3]).T < 0
        sees = in_front & (x >= 0) & (x < w) & (y >= 0) & (y < h)
        # grid_sample addresses pixel centres at (col + 0.5, row + 0.5) with align_corners=False.
        grid = torch.stack([2 * x / w - 1, 2 * y / h - 1], -1).nan_to_num(0.0)[:, None]  # [N,1,K,2]
        sample = torch.nn.functional.grid_sample(m[:, None], grid, mode="bilinear", padding_mode="border",
                                                 align_corners=False)[:, 0, 0].clamp(0, 1)
        value = torch.where(sees, sample, torch.ones_like(sample)).amin(0)
        values.append(torch.where(sees.any(0), value, torch.zeros_like(value)))
    field.values = torch.cat(values).reshape(shape).cpu()
    return field


def _frustum_box(camera: Camera, masks: torch.Tensor, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of the intersection of the frusta of the silhouettes' bounding rectangles (LP).

    In clip space ``c = M X`` (``M`` = world-to-clip), ``ndc_x >= a`` with ``w > 0`` is the half-space
    ``(M_0 - a M_3) . (X, 1) >= 0``; likewise for the other sides, plus ``w >= near``. Sides where the
    silhouette touches the image border are dropped (the object may continue outside the image), and so
    are views with an empty mask. Axes the constraints leave unbounded get ``+-inf``.
    """
    rows, rhs = [], []
    full = camera.full_projection().double().cpu().numpy()
    n, h, w = masks.shape
    for i in range(n):
        ys, xs = np.nonzero((masks[i] >= threshold).cpu().numpy())
        if len(xs) == 0:
            continue
        r0, r1, r3 = full[i, 0], full[i, 1], full[i, 3]
        # One pixel of margin: the rectangle of pixel *cells*, grown by a pixel on each side.
        x0, x1 = (xs.min() - 1) / w * 2 - 1, (xs.max() + 2) / w * 2 - 1
        y_top, y_bot = 1 - 2 * (ys.min() - 1) / h, 1 - 2 * (ys.max() + 2) / h
        sides = [(xs.min() > 0, r0 - x0 * r3), (xs.max() < w - 1, x1 * r3 - r0),
                 (ys.max() < h - 1, r1 - y_bot * r3), (ys.min() > 0, y_top * r3 - r1)]
        for keep, plane in sides:
            if keep:
                rows.append(-plane[:3])
                rhs.append(plane[3])
        rows.append(-r3[:3])
        rhs.append(r3[3] - camera.near)
    lo, hi = np.full(3, -np.inf), np.full(3, np.inf)
    if not rows:
        return lo, hi
    a_ub, b_ub = np.array(rows), np.array(rhs)
    for k in range(3):
        for sign in (1.0, -1.0):
            c = np.zeros(3)
            c[k] = sign
            res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * 3, method="highs")
            if res.status == 2:
                raise InputError("the silhouettes' viewing frusta do not intersect; check that the camera poses "
                                 "match the masks (camera-to-world, OpenGL axes) and that masks are 1 on the object.")
            if res.status == 0:
                if sign > 0:
                    lo[k] = res.x[k]
                else:
                    hi[k] = res.x[k]
    return lo, hi


def estimate_bounds(camera: Camera, masks, threshold: float = 0.5, resolution: int = 64) -> torch.Tensor:
    """A box ``[2,3]`` (min row, max row) that contains the visual hull, a little larger than it.

    1. Intersect the frusta of the silhouettes' bounding rectangles (see :func:`_frustum_box`); axes
       left unbounded (e.g. all cameras parallel) fall back to the box of the camera centres grown by
       their spread.
    2. Carve that box at ``resolution`` with masks dilated by the projected voxel radius, so that a voxel
       whose cell touches the hull survives; return the occupied voxels' box grown by one voxel,
       clipped to the frustum box.

    Example:
        >>> from unrender.cameras import Camera, orbit_poses
        >>> from unrender.geometry.primitives import icosphere
        >>> from unrender.render.render_mesh import render_mesh
        >>> cam = Camera.from_fov(40, 48, 48, orbit_poses(8, 3.0, seed=0))
        >>> b = estimate_bounds(cam, render_mesh(icosphere(2), cam, shading="albedo").alpha)
        >>> bool((b[0] < -0.5).all() and (b[0] > -0.7).all())
        True
    """
    m = _check_masks(camera, masks)
    if not bool((m >= threshold).any()):
        raise InputError("every mask is empty (no pixel >= threshold); masks must be 1 on the object.")
    lo, hi = _frustum_box(camera, m, threshold)
    centres = camera.center.double().cpu().numpy()
    spread = float(np.ptp(centres, axis=0).max()) + 1.0
    lo = np.where(np.isfinite(lo), lo, centres.min(0) - spread)
    hi = np.where(np.isfinite(hi), hi, centres.max(0) + spread)
    origin, step, _ = _grid(lo, hi, resolution)
    # Largest projected voxel radius over the views: focal length * half diagonal / nearest depth.
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    w2c = camera.w2c.double().cpu().numpy()
    depth = -(corners @ w2c[:, 2, :3].T + w2c[:, 2, 3])  # [8,N]
    near = np.maximum(depth.min(0), camera.near)
    focal = torch.maximum(camera.fx, camera.fy).double().cpu().numpy()
    dilate = int(min(32, math.ceil(float((focal * step * math.sqrt(3) / 2 / near).max()))))
    field = carve(camera, m, np.stack([lo, hi]), resolution, dilate_px=dilate)
    occupied = (field.values >= threshold).nonzero()
    if occupied.numel() == 0:
        raise InputError("the silhouettes carve away every voxel; check that the camera poses match the masks.")
    o = field.origin.numpy()
    box_lo = o + (occupied.min(0).values.numpy() - 1) * field.step
    box_hi = o + (occupied.max(0).values.numpy() + 2) * field.step
    return torch.from_numpy(np.stack([np.maximum(box_lo, lo), np.minimum(box_hi, hi)]))


def visual_hull(camera: Camera, masks, bounds=None, resolution: int = 128, threshold: float = 0.5,
                smoothing: float = 0.75) -> Mesh:
    """Triangle mesh of the visual hull of ``masks`` seen by ``camera``, in world coordinates.

    Algorithm: ``bounds`` (or :func:`estimate_bounds`) -> :func:`carve` the soft hull field ``h`` at
    ``resolution`` voxels along the box's longest side -> Gaussian smoothing of ``h`` with standard
    deviation ``smoothing`` voxels (removes the voxel staircase) -> marching cubes at level ``threshold``
    on the zero-padded grid (so the surface is closed) -> faces flipped if needed so that the signed
    volume ``sum_t a . (b x c) / 6`` is positive (outward normals).

    Args:
        camera: ``N`` cameras (:class:`~unrender.cameras.Camera`).
        masks: ``[N,H,W,1]`` (or ``[N,H,W]``), 1 = object, image row 0 = top; float in [0,1], bool or uint8.
        bounds: ``[2,3]`` box to carve in, or ``None`` to estimate it.
        resolution: voxels along the longest side of the box.
        threshold: mask level that separates object from background.
        smoothing: Gaussian sigma in voxels (0 = none).
    Returns:
        :class:`~unrender.mesh.Mesh` (float32 vertices, outward faces, no uvs).

    Example:
        >>> from unrender.cameras import Camera, orbit_poses
        >>> from unrender.geometry.primitives import box
        >>> from unrender.render.render_mesh import render_mesh
        >>> cam = Camera.from_fov(40, 48, 48, orbit_poses(8, 3.0, seed=1))
        >>> hull = visual_hull(cam, render_mesh(box((0.8, 0.8, 0.8)), cam, shading="albedo").alpha, resolution=32)
        >>> bool((hull.vertices.abs().max(0).values > 0.35).all())
        True
    """
    m = _check_masks(camera, masks)
    if bounds is None:
        bounds = estimate_bounds(camera, m, threshold)
    field = carve(camera, m, bounds, resolution)
    if not (field.values.max() > threshold):
        raise InputError("the visual hull is empty: no voxel projects inside every mask; check that the camera "
                         "poses match the masks and that bounds contains the object.")
    return field_surface(field, threshold, smoothing)


def field_surface(field: VoxelField, threshold: float = 0.5, smoothing: float = 0.75) -> Mesh:
    """Surface ``{field = threshold}`` of a voxel field, closed and outward-facing, in world coordinates.

    The field is smoothed (Gaussian, ``smoothing`` voxels) and zero-padded, then meshed with marching
    cubes; faces are flipped if the signed volume is negative. Empty (no faces) when the field never
    exceeds ``threshold``.

    Example:
        >>> f = VoxelField(torch.zeros(6, 6, 6), torch.zeros(3, dtype=torch.float64), 0.1)
        >>> f.values[2:4, 2:4, 2:4] = 1
        >>> m = field_surface(f)
        >>> bool(m.vertices.min() > 0.1 and m.vertices.max() < 0.5)
        True
    """
    values = field.values.double().numpy()
    if smoothing > 0:
        values = gaussian_filter(values, smoothing, mode="constant")
    values = np.pad(values, 1)
    if not (values.max() > threshold):
        return Mesh(vertices=torch.zeros(0, 3), faces=torch.zeros(0, 3, dtype=torch.int64))
    verts, faces, _, _ = marching_cubes(values, level=threshold, spacing=(field.step,) * 3)
    verts = verts + field.origin.numpy() - 0.5 * field.step  # padded index i sits at origin + (i - 0.5) step
    faces = faces.astype(np.int64)
    if signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1].copy()
    return Mesh(vertices=torch.tensor(verts, dtype=torch.float32), faces=torch.from_numpy(faces))
