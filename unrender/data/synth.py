"""Procedural datasets: render a known object under a known light from many views.

``synthesize_object`` builds a procedural textured object (:mod:`unrender.geometry.primitives`,
:mod:`unrender.data.procedural_textures`) under a procedural HDR environment
(:mod:`unrender.data.procedural_env`), renders it with :func:`unrender.render.render_mesh.render_mesh`
and writes the NeRF-synthetic layout plus the ground truth:

    OUT/transforms_{train,val,test}.json, OUT/{train,val,test}/r_<i>.png   (RGBA, sRGB)
    OUT/gt/mesh.obj + mesh.mtl + texture_{kd,ks,n}.png, OUT/gt/mesh.glb   (world coordinates)
    OUT/gt/probe.hdr                                                       (lat-long, linear)
    OUT/gt/scene.json                                                      (family, seed, cameras)

``render_mesh_dataset`` does the same for any mesh file the user gives. Same seed, same bytes.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

from ..cameras import Camera, orbit_poses
from ..errors import DataError, InputError
from ..io.images import read_hdr, write_hdr
from ..io.mesh_files import load_mesh, save_mesh
from ..mesh import Mesh
from ..color import linear_to_srgb
from ..render.lights.environment import EnvironmentLight
from ..render.render_mesh import render_mesh
from .nerf_synthetic import write_nerf_synthetic
from .procedural_env import random_environment
from .procedural_textures import random_pbr_material

FOV_DEG = 40.0
#: Light probe face resolution used for rendering synthetic views (prefiltering cost grows with it).
PROBE_RESOLUTION = 128


def split_sizes(views: int) -> dict[str, int]:
    """Frames per split for ``views`` training views: val gets ``views // 4``, test ``views // 2`` (>= 1 each)."""
    if views < 1:
        raise InputError(f"views must be at least 1; got {views}.")
    return {"train": views, "val": max(1, views // 4), "test": max(1, views // 2)}


def prepare_output(out: Path, force: bool) -> Path:
    """Create ``out``; refuse to touch a non-empty folder unless ``force`` (then it is cleared)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise DataError(f"{out} already holds files; choose another folder or pass --force to overwrite it.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def to_rgba8_ready(color: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Straight-alpha sRGB ``[...,4]`` in [0,1] from premultiplied linear ``color[...,3]`` and ``alpha[...,1]``."""
    straight = torch.where(alpha > 1e-6, color / alpha.clamp(min=1e-6), torch.zeros_like(color))
    return torch.cat([linear_to_srgb(straight.clamp(0, 1)), alpha.clamp(0, 1)], -1)


def render_views(mesh: Mesh, light, c2w: torch.Tensor, resolution: int, batch: int = 8) -> list[torch.Tensor]:
    """RGBA images ``[H,W,4]`` (sRGB, straight alpha) of ``mesh`` from each pose of ``c2w[N,4,4]``."""
    from ..render.antialias import build_topology

    topology = build_topology(mesh.faces)
    images = []
    with torch.no_grad():
        for start in range(0, c2w.shape[0], batch):
            cam = Camera.from_fov(FOV_DEG, resolution, resolution, c2w[start:start + batch], near=0.05, far=100.0)
            out = render_mesh(mesh, cam, light, topology=topology)
            images.extend(to_rgba8_ready(out.color, out.alpha).unbind(0))
    return images


def _camera_radius(mesh: Mesh) -> tuple[torch.Tensor, float]:
    lo, hi = mesh.vertices.amin(0), mesh.vertices.amax(0)
    center = (lo + hi) / 2
    bound = (mesh.vertices - center).norm(dim=-1).max().item()
    return center, 1.15 * bound / math.sin(math.radians(FOV_DEG) / 2)


def write_dataset(out: Path, mesh: Mesh, env: torch.Tensor, views: int, resolution: int, seed: int,
                  extra: dict | None = None, splits: dict[str, int] | None = None) -> None:
    """Render ``mesh`` under the lat-long ``env[H,W,3]`` into ``out`` (NeRF-synthetic layout + ``gt/``);
    ``splits`` (frames per split) defaults to :func:`split_sizes` of ``views``."""
    light = EnvironmentLight.from_latlong(env, resolution=PROBE_RESOLUTION)
    with torch.no_grad():
        light.build()
    center, radius = _camera_radius(mesh)
    split_frames = {}
    cameras = {}
    for k, (split, n) in enumerate((splits or split_sizes(views)).items()):
        c2w = orbit_poses(n, radius, target=center.tolist(), seed=seed * 1000 + k)
        images = render_views(mesh, light, c2w, resolution)
        split_frames[split] = [(f"r_{i}", c2w[i], img) for i, img in enumerate(images)]
        cameras[split] = c2w.tolist()
    write_nerf_synthetic(out, split_frames, camera_angle_x=math.radians(FOV_DEG))
    gt = out / "gt"
    gt.mkdir(exist_ok=True)
    save_mesh(mesh, gt / "mesh.obj")
    save_mesh(mesh, gt / "mesh.glb")
    write_hdr(gt / "probe.hdr", env)
    meta = {"seed": seed, "views": views, "resolution": resolution, "camera_angle_x": math.radians(FOV_DEG),
            "object_center": center.tolist(), "camera_radius": radius, **(extra or {})}
    (gt / "scene.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def synthesize_object(out, family: str = "auto", views: int = 100, resolution: int = 256, seed: int = 0,
                      force: bool = False, texture_resolution: int = 512) -> Path:
    """Write a procedural textured object rendered from ``views`` training views (see module docstring).

    Args:
        out: output folder; must be empty or absent unless ``force``.
        family: one of :data:`unrender.geometry.procedural_objects.FAMILIES`, or ``"auto"`` (chosen by ``seed``).
        views: training views (val: views // 4, test: views // 2).
        resolution: square image size in pixels.
        seed: everything (shape, textures, light, cameras) follows from it; same seed, same bytes.
    Returns:
        the output folder.

    Example:
        >>> synthesize_object("/tmp/vase", family="vase", views=4, resolution=64, force=True)  # doctest: +SKIP
    """
    from ..geometry.procedural_objects import FAMILIES, procedural_object

    if family == "auto":
        family = FAMILIES[seed % len(FAMILIES)]
    if family not in FAMILIES:
        raise InputError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)} or 'auto'.")
    split_sizes(views)
    out = prepare_output(Path(out), force)
    mesh = procedural_object(family, seed)
    mesh.material = random_pbr_material(seed, resolution=texture_resolution)
    env = random_environment(seed)
    write_dataset(out, mesh, env, views, resolution, seed, extra={"family": family})
    return out


def render_mesh_dataset(mesh_path, out, views: int = 100, resolution: int = 256, env_path=None, seed: int = 0,
                        force: bool = False) -> Path:
    """Render the user's mesh file (OBJ/PLY/GLB) into a NeRF-synthetic dataset, in its own world frame."""
    mesh_path = Path(mesh_path)
    mesh = load_mesh(mesh_path)
    env = read_hdr(env_path) if env_path is not None else random_environment(seed)
    split_sizes(views)
    out = prepare_output(Path(out), force)
    write_dataset(out, mesh, env, views, resolution, seed, extra={"source_mesh": str(mesh_path)})
    return out


def convert_to_layout(out, layout: str) -> Path:
    """Rewrite the NeRF-synthetic dataset that :func:`synthesize_object` wrote in ``out`` into ``layout``.

    Layouts without split files (COLMAP, LLFF, IDR, JSON folder) get every frame of train, val and test,
    named ``{split}_{name}`` (their readers hold out every 8th frame by name as the test split); the
    ground truth in ``gt/`` stays where it is. ``"blender"`` leaves the folder unchanged.
    """
    import tempfile

    from .layouts import LAYOUTS, MultiViewDataset, read_dataset, write_layout

    out = Path(out)
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}.")
    if layout == "blender":
        return out
    parts = [read_dataset(out, split) for split in ("train", "val", "test")]
    cams = [p.camera for p in parts]
    camera = Camera(torch.cat([c.c2w for c in cams]), torch.cat([c.fx for c in cams]), torch.cat([c.fy for c in cams]),
                    torch.cat([c.cx for c in cams]), torch.cat([c.cy for c in cams]), cams[0].width, cams[0].height,
                    cams[0].near, cams[0].far)
    joined = MultiViewDataset(torch.cat([p.rgba for p in parts]), camera,
                              [f"{p.split}_{n}" for p in parts for n in p.names], [f for p in parts for f in p.files],
                              "all", bounds=None, has_masks=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staged = Path(tmp) / "layout"
        write_layout(joined, staged, layout)
        for item in out.iterdir():
            if item.name != "gt":
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        for item in staged.iterdir():
            shutil.move(str(item), out / item.name)
    return out
