"""Where the copies stand and where the camera looks from, for :func:`.synthesize.synthesize_duplicates`.

World frame: y up, the ground is the plane ``y = 0``. Every copy stands on it: its object-to-world
pose is ``T_k = translate(x_k, -y_min, z_k) @ rot_y(yaw_k)``, where ``y_min`` is the lowest vertex of
the object in its own frame (so no copy sinks into the ground or floats). Copies never intersect:
their footprints are bounded by the disc of radius ``r = max_v sqrt(x_v^2 + z_v^2)`` about the
object's y axis, and centres are drawn (rejection sampling) at least ``2 r (1 + gap)`` apart.

The camera looks at the group's centre from a random azimuth at ``elevation`` degrees above the
ground, far enough that the bounding circle of the group fills :data:`FILL` of the image width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...cameras import look_at
from ...errors import InputError
from ...mesh import Mesh

#: Fraction of the image the group's bounding sphere spans (width of the sphere's silhouette / image width).
FILL = 1.0


@dataclass
class Layout:
    """Poses of the copies and the camera.

    Attributes:
        object_to_world: ``[N,4,4]`` float64, one rigid pose per copy (rotation about y, then translation).
        yaw_deg: ``[N]`` the rotation angle of each copy about the world y axis, degrees.
        c2w: camera-to-world ``[4,4]`` float64 (OpenGL: x right, y up, looking down -z).
        fov_deg: horizontal (= vertical, square images) field of view in degrees.
        target: ``[3]`` the point the camera looks at (the group's centre, on the ground).
        group_radius: radius of the disc on the ground holding every footprint.
    """

    object_to_world: np.ndarray
    yaw_deg: np.ndarray
    c2w: np.ndarray
    fov_deg: float
    target: np.ndarray
    group_radius: float


def footprint_radius(mesh: Mesh) -> float:
    """Radius of the smallest disc about the object's y axis holding its ground projection: ``max_v |(x_v, z_v)|``."""
    v = mesh.vertices.detach().double()
    return float(v[:, [0, 2]].norm(dim=-1).max())


def rot_y(angle: float) -> np.ndarray:
    """Rotation ``[3,3]`` by ``angle`` radians about +y: ``[[c,0,s],[0,1,0],[-s,0,c]]``."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def place_copies(mesh: Mesh, copies: int, rng: np.random.Generator, gap: float = 0.15,
                 yaw_range_deg: float = 360.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Random non-overlapping standing poses of ``copies`` copies of ``mesh``.

    Yaws are uniform in ``[0, yaw_range_deg)`` (360: any direction; smaller: copies facing roughly one way,
    as on a shelf, so that each side of the object is seen by several copies).

    Centres are drawn uniformly in a disc of radius ``R = 2 r (1 + gap) sqrt(copies) * 0.75 + r`` (dense enough
    that copies crowd like a real shelf, loose enough that rejection sampling succeeds) and kept when at least
    ``2 r (1 + gap)`` from every kept centre; the disc grows by 10 % after every 2000 rejections.

    Returns:
        ``(object_to_world[N,4,4], yaw_deg[N], group_radius)``.
    """
    if copies < 1:
        raise InputError(f"copies must be at least 1; got {copies}.")
    r = footprint_radius(mesh)
    y_min = float(mesh.vertices[:, 1].min())
    spacing = 2 * r * (1 + gap)
    radius = 0.75 * spacing * math.sqrt(copies) + r
    centres: list[np.ndarray] = []
    rejected = 0
    while len(centres) < copies:
        # Uniform in the disc (not the square): sqrt of a uniform variable for the radius.
        rho, phi = (radius - r) * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
        c = np.array([rho * math.cos(phi), rho * math.sin(phi)])
        if all(np.linalg.norm(c - o) >= spacing for o in centres):
            centres.append(c)
        else:
            rejected += 1
            if rejected % 2000 == 0:
                radius *= 1.1
    yaw = rng.uniform(0, yaw_range_deg, size=copies)
    poses = np.zeros((copies, 4, 4))
    for k, (c, a) in enumerate(zip(centres, yaw)):
        poses[k, :3, :3] = rot_y(math.radians(a))
        poses[k, :3, 3] = [c[0], -y_min, c[1]]
        poses[k, 3, 3] = 1.0
    middle = np.mean(centres, axis=0)
    poses[:, [0, 2], 3] -= middle  # centre the group on the world origin
    group_radius = max(float(np.linalg.norm(c - middle)) for c in centres) + r
    return poses, yaw, group_radius


def camera_pose(group_radius: float, height: float, fov_deg: float, elevation_deg: float,
                azimuth_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera-to-world ``[4,4]`` looking at ``(0, height/2, 0)`` from ``elevation_deg`` above the ground.

    The distance ``d = rho / sin(FILL * fov / 2)`` makes the sphere of radius ``rho = sqrt(R^2 + (h/2)^2)``
    about the target (``R`` = group radius, ``h`` = object height) span :data:`FILL` of the view.
    Returns ``(c2w[4,4], target[3])``.
    """
    target = np.array([0.0, height / 2, 0.0])
    rho = math.hypot(group_radius, height / 2)
    dist = rho / math.sin(math.radians(FILL * fov_deg / 2))
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    eye = target + dist * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    c2w = look_at(eye, target, dtype=torch.float64)[0].numpy()
    return c2w, target


def random_layout(mesh: Mesh, copies: int, seed: int, fov_deg: float = 40.0,
                  elevation_range_deg: tuple[float, float] = (32.0, 48.0), yaw_range_deg: float = 360.0) -> Layout:
    """Copies at random standing poses and a camera looking down at them, all from ``seed``.

    ``elevation - fov / 2`` must stay above the horizon (>= 5 degrees) so that the whole view is ground:
    the ground quad is then bounded (:func:`ground_corners`).
    """
    lo, hi = elevation_range_deg
    if lo - fov_deg / 2 < 5.0 or hi > 85.0 or lo > hi:
        raise InputError(f"elevation range {elevation_range_deg} with fov {fov_deg} would show the horizon or look "
                         f"straight down; keep elevation - fov/2 >= 5 and elevation <= 85 degrees.")
    rng = np.random.default_rng([int(seed), 5150])
    poses, yaw, group_radius = place_copies(mesh, copies, rng, yaw_range_deg=yaw_range_deg)
    height = float(mesh.vertices[:, 1].max() - mesh.vertices[:, 1].min())
    elevation, azimuth = rng.uniform(lo, hi), rng.uniform(0, 360)
    c2w, target = camera_pose(group_radius, height, fov_deg, elevation, azimuth)
    return Layout(poses, yaw, c2w, fov_deg, target, group_radius)


def ground_corners(c2w: np.ndarray, fov_deg: float, margin: float = 0.25) -> np.ndarray:
    """The four points ``[4,3]`` where the corner rays of the (square) view hit ``y = 0``, pushed out by ``margin``.

    A ray ``o + s d`` hits the ground at ``s = -o_y / d_y`` (``d_y < 0`` is guaranteed by :func:`random_layout`).
    """
    t = math.tan(math.radians(fov_deg) / 2) * (1 + margin)
    o = c2w[:3, 3]
    pts = []
    for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        d = c2w[:3, :3] @ np.array([sx * t, sy * t, -1.0])
        if d[1] >= -1e-6:
            raise InputError("a corner of the view does not look down at the ground; lower the field of view or "
                             "raise the camera's elevation.")
        pts.append(o + (-o[1] / d[1]) * d)
    return np.stack(pts)


def ground_mesh(corners: np.ndarray, tile: float = 2.0, subdivisions: int = 16) -> Mesh:
    """A flat grid over the quadrilateral ``corners[4,3]`` (on ``y = 0``), uvs = ``(x, z) / tile`` (texture repeats).

    Subdivided so that no triangle is long compared with its distance to the camera (keeps the
    interpolated uvs' mip level selection smooth).
    """
    n = subdivisions
    s = np.linspace(0.0, 1.0, n + 1)
    a, b = np.meshgrid(s, s, indexing="ij")
    a, b = a[..., None], b[..., None]
    p0, p1, p2, p3 = corners
    pts = ((1 - a) * (1 - b) * p0 + a * (1 - b) * p1 + a * b * p2 + (1 - a) * b * p3).reshape(-1, 3)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    q00, q10, q11, q01 = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([q00, q10, q11], -1).reshape(-1, 3), np.stack([q00, q11, q01], -1).reshape(-1, 3)])
    # Wind every face so that its normal points up (+y), the side the camera sees.
    v = pts[faces]
    up = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])[:, 1] > 0
    faces = np.where(up[:, None], faces, faces[:, ::-1])
    uvs = pts[:, [0, 2]] / tile
    normals = np.tile([0.0, 1.0, 0.0], (pts.shape[0], 1))
    return Mesh(torch.from_numpy(pts).float(), torch.from_numpy(np.ascontiguousarray(faces)).long(),
                uvs=torch.from_numpy(uvs).float(), normals=torch.from_numpy(normals).float())


def merge_copies(mesh: Mesh, object_to_world: np.ndarray) -> Mesh:
    """One mesh holding ``N`` transformed copies of ``mesh`` (same material); copy ``k`` owns faces ``[k F, (k+1) F)``.

    Vertices: ``x' = R_k x + t_k``; normals are recomputed from the moved vertices.
    """
    v = mesh.vertices.double()
    verts, faces, uv_faces = [], [], []
    for k, pose in enumerate(np.asarray(object_to_world)):
        T = torch.from_numpy(pose)
        verts.append(v @ T[:3, :3].T + T[:3, 3])
        faces.append(mesh.faces + k * mesh.num_vertices)
        if mesh.uvs is not None:
            uv_faces.append(mesh.uv_faces + k * mesh.uvs.shape[0])
    uvs = None if mesh.uvs is None else mesh.uvs.repeat(len(verts), 1)
    return Mesh(torch.cat(verts).float(), torch.cat(faces), uvs=uvs,
                uv_faces=torch.cat(uv_faces) if uv_faces else None, material=mesh.material)
