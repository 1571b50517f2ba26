"""``synthesize_duplicates``: one photo of N identical copies of a procedural object, with ground truth.

The test scene of Structure from Duplicates: ``copies`` copies of one procedural textured object
(:func:`unrender.geometry.procedural_objects.procedural_object` +
:func:`unrender.data.procedural_textures.random_pbr_material`) stand at random yaws and positions on a
textured ground plane (:mod:`.layout`), under a procedural HDR sky
(:func:`unrender.data.procedural_env.random_environment`), seen by one camera looking down at the group.
All copies are merged into one mesh and rasterized together, so they occlude each other.

Written files::

    OUT/image.png        the photo, sRGB RGB, 8-bit
    OUT/instances.png    instance labels, 8-bit grey: 0 = background (ground), k = copy k (1..N)
    OUT/camera.json      fov_deg, focal (pixels), width, height, cx, cy, c2w (4x4, OpenGL camera-to-world)
    OUT/gt/mesh.obj (+ .mtl, textures), OUT/gt/mesh.glb   the object in its own frame
    OUT/gt/poses.json    object_to_world [N][4][4] (copy k = label k+1), yaw_deg [N], labels [N]
    OUT/gt/probe.hdr     the environment light, lat-long, linear
    OUT/gt/scene.json    family, seed, copies, resolution, elevation etc.

Known simplifications: no cast shadows (neither between copies nor on the ground) and no
interreflections; the environment light is unoccluded for every surface point.
Same seed, same bytes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ...cameras import Camera
from ...color import linear_to_srgb
from ...errors import InputError
from ...io.images import write_hdr, write_png
from ...io.mesh_files import save_mesh
from ...mesh import Mesh
from ...render.lights.environment import EnvironmentLight
from ...render.render_mesh import render_mesh
from ..procedural_env import random_environment
from ..procedural_textures import random_pbr_material, value_noise
from ..synth import PROBE_RESOLUTION, prepare_output
from .layout import Layout, ground_corners, ground_mesh, merge_copies, random_layout

#: Families whose copies stand stably on their base (thin or knotted ones are allowed but look odd).
STANDING_FAMILIES = ("vase", "bowl", "mug", "blob")
FOV_DEG = 40.0
#: Highest label an 8-bit instance PNG can hold.
MAX_COPIES = 255


def detailed_material(seed: int, resolution: int, detail: float):
    """:func:`random_pbr_material` with extra fine colour noise multiplied into ``base_color[R,R,3]``.

    ``base' = base * (1 - detail/2 + detail * n)`` with ``n[R,R,3]`` fractal value noise of 32 cells (one
    draw per channel), so that every patch of the surface is distinctive (as the print on a real product);
    ``detail = 0`` leaves the material unchanged.
    """
    mat = random_pbr_material(seed, resolution=resolution)
    if detail > 0:
        gen = torch.Generator().manual_seed(int(seed) * 7 + 3)
        noise = torch.stack([value_noise(resolution, 32, gen, octaves=3) for _ in range(3)], -1)
        mat.base_color = (mat.base_color * (1 - detail / 2 + detail * noise)).clamp(0, 1).contiguous()
    return mat


def _ground(layout: Layout, seed: int) -> Mesh:
    ground = ground_mesh(ground_corners(layout.c2w, layout.fov_deg))
    mat = random_pbr_material(int(seed) + 104_729, resolution=256)
    mat.orm = mat.orm.clone()
    mat.orm[..., 2] = 0.0  # a dielectric floor: metallic floors mirror the sky and look unlike a photo
    mat.orm[..., 1] = mat.orm[..., 1].clamp(min=0.6)
    mat.base_color = (0.6 * mat.base_color).contiguous()  # darker than the objects, as most floors are
    ground.material = mat
    return ground


def render_scene(obj: Mesh, layout: Layout, light, resolution: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the copies over the ground: ``(linear colour[H,W,3], labels[H,W] int64)``, rows top first.

    The ground is rendered first and used as the background of the copies' pass: a copy stands on the
    ground and the camera looks down, so the ground never hides a copy and this equals one joint pass.
    Labels come from the copies' raster: triangle ``id`` belongs to copy ``id // F + 1``.
    """
    cam = Camera.from_fov(layout.fov_deg, resolution, resolution, torch.from_numpy(layout.c2w).float()[None],
                          near=0.05, far=1000.0)
    copies = merge_copies(obj, layout.object_to_world)
    with torch.no_grad():
        floor = render_mesh(_ground(layout, seed), cam, light)
        out = render_mesh(copies, cam, light, background=floor.color)
    tri = out.rast[0, ..., 3].round().long().flip(0)  # tri_id + 1, 0 = background; raster row 0 is the bottom
    labels = torch.where(tri > 0, (tri - 1) // obj.num_faces + 1, torch.zeros_like(tri))
    return out.color[0], labels


def synthesize_duplicates(out, copies: int = 8, resolution: int = 768, seed: int = 0, family: str = "auto",
                          force: bool = False, texture_resolution: int = 512, detail: float = 0.6,
                          yaw_range_deg: float = 360.0) -> Path:
    """Write one photo of ``copies`` identical objects with instance labels and ground truth (module docstring).

    Args:
        out: output folder; must be empty or absent unless ``force``.
        copies: number of copies N (2 to 255).
        resolution: square image size in pixels.
        seed: shape, texture, light, placement and camera all follow from it; same seed, same bytes.
        family: one of :data:`unrender.geometry.procedural_objects.FAMILIES`, or ``"auto"`` (one of
            :data:`STANDING_FAMILIES`, chosen by ``seed``).
        texture_resolution: size of the object's textures.
        detail: strength of the fine colour noise in the albedo (:func:`detailed_material`).
        yaw_range_deg: copies turn about the vertical by a uniform angle in ``[0, yaw_range_deg)``; 360 = any.
    Returns:
        the output folder.

    Example:
        >>> synthesize_duplicates("/tmp/dups", copies=4, resolution=256, force=True)  # doctest: +SKIP
    """
    from ...geometry.procedural_objects import FAMILIES, procedural_object

    if not 2 <= int(copies) <= MAX_COPIES:
        raise InputError(f"copies must be between 2 and {MAX_COPIES}; got {copies}.")
    if int(resolution) < 32:
        raise InputError(f"resolution must be at least 32 pixels; got {resolution}.")
    if not 0.0 <= float(yaw_range_deg) <= 360.0:
        raise InputError(f"yaw_range_deg must be between 0 and 360; got {yaw_range_deg}.")
    if family == "auto":
        family = STANDING_FAMILIES[seed % len(STANDING_FAMILIES)]
    if family not in FAMILIES:
        raise InputError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)} or 'auto'.")
    out = prepare_output(Path(out), force)
    obj = procedural_object(family, seed)
    obj.material = detailed_material(seed, texture_resolution, detail)
    layout = random_layout(obj, int(copies), seed, fov_deg=FOV_DEG, yaw_range_deg=float(yaw_range_deg))
    env = random_environment(seed)
    light = EnvironmentLight.from_latlong(env, resolution=PROBE_RESOLUTION)
    with torch.no_grad():
        light.build()
    color, labels = render_scene(obj, layout, light, int(resolution), seed)

    write_png(out / "image.png", linear_to_srgb(color.clamp(0, 1)))
    write_png(out / "instances.png", (labels.float() / 255.0)[..., None])
    focal = 0.5 * resolution / math.tan(math.radians(FOV_DEG) / 2)
    camera = {"fov_deg": FOV_DEG, "focal": focal, "width": int(resolution), "height": int(resolution),
              "cx": resolution / 2.0, "cy": resolution / 2.0, "c2w": layout.c2w.tolist(),
              "convention": "c2w is camera-to-world, OpenGL axes (x right, y up, looking down -z)"}
    (out / "camera.json").write_text(json.dumps(camera, indent=2) + "\n")

    gt = out / "gt"
    gt.mkdir()
    save_mesh(obj, gt / "mesh.obj")
    save_mesh(obj, gt / "mesh.glb")
    write_hdr(gt / "probe.hdr", env)
    visible = [int((labels == k + 1).sum()) for k in range(int(copies))]
    poses = {"object_to_world": layout.object_to_world.tolist(), "yaw_deg": layout.yaw_deg.tolist(),
             "labels": list(range(1, int(copies) + 1)), "visible_pixels": visible}
    (gt / "poses.json").write_text(json.dumps(poses, indent=2) + "\n")
    elevation = math.degrees(math.asin(float(layout.c2w[1, 2])))
    scene = {"family": family, "seed": int(seed), "copies": int(copies), "resolution": int(resolution),
             "fov_deg": FOV_DEG, "elevation_deg": elevation, "group_radius": layout.group_radius,
             "detail": detail, "texture_resolution": texture_resolution, "shadows": False,
             "yaw_range_deg": float(yaw_range_deg)}
    (gt / "scene.json").write_text(json.dumps(scene, indent=2, sort_keys=True) + "\n")
    return out


def gt_object_to_camera(folder) -> np.ndarray:
    """Ground-truth object-to-camera poses ``[N,4,4]`` (OpenGL camera axes) of a scene written by
    :func:`synthesize_duplicates`: ``inv(c2w) @ object_to_world_k``."""
    folder = Path(folder)
    c2w = np.array(json.loads((folder / "camera.json").read_text())["c2w"])
    o2w = np.array(json.loads((folder / "gt" / "poses.json").read_text())["object_to_world"])
    return np.linalg.inv(c2w)[None] @ o2w
