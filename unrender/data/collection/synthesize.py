"""``synthesize_collection``: a procedural multi-category object collection in DVR's ShapeNet layout.

For each of ``categories`` categories (:data:`.categories.CATEGORIES`, in order) and each of ``objects``
objects per category, with everything drawn from ``(seed, category, object)`` so that adding objects or
categories never changes the others:

1. draw the parts (:func:`.categories.build_parts`), mesh their union watertight, decimate, normalise
   to longest side 1 and colour by part (:func:`.part_sdf.mesh_parts`);
2. draw ``views`` cameras looking at the origin from a fixed distance :data:`CAMERA_DISTANCE`, with a
   uniform random azimuth and an elevation uniform in :data:`ELEVATION_RANGE_DEG`, field of view
   :data:`FOV_DEG` (a sphere of radius 0.8 about the origin stays in view: ``asin(0.8 / 2) < 49 / 2`` degrees;
   the categories here keep every vertex within about 0.76 of the centre);
3. render them (:func:`unrender.render.render_mesh.render_mesh`, part colours lit per vertex, Lambertian,
   by a fixed soft studio light of 9 SH coefficients, over a white background) with 4 x 4 samples per pixel,
   box-filtered (:func:`render_supersampled`); the mask is the pixel's coverage (fraction of samples
   on the object), written as 8-bit grey;
4. sample :data:`POINTCLOUD_SIZE` surface points with face normals and ``occupancy_samples`` points
   uniformly in the padded unit cube ``[-0.55, 0.55]^3`` with their inside/outside labels;
5. write the object (:func:`.dvr_layout.write_dvr_object`) plus its mesh as ``mesh.obj``.

Splits are by object, per category: 70 / 10 / 20 % train / val / test, at least one object in each when
``objects >= 3`` (two objects: train + test; one: train). Model ids are 32 hex digits, as in ShapeNet:
the MD5 of ``"unrender/<synset>/<seed>/<index>"``. ``collection.json`` records the settings.

Example:
    >>> synthesize_collection("/tmp/coll", categories=2, objects=3, views=4, force=True)  # doctest: +SKIP
    PosixPath('/tmp/coll')
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ...cameras import Camera, look_at
from ...errors import InputError
from ...geometry.inside import inside_mesh
from ...geometry.sdf_samples import sample_surface
from ...io.mesh_files import save_mesh
from ...mesh import Mesh
from ...render.lights import SHIrradianceLight, project_sh9
from ..synth import prepare_output
from .categories import CATEGORIES, Category, category_by_name
from .dvr_layout import write_collection_lists, write_dvr_object
from .part_sdf import mesh_parts

CAMERA_DISTANCE = 2.0
FOV_DEG = 49.0
ELEVATION_RANGE_DEG = (10.0, 40.0)
POINTCLOUD_SIZE = 30_000
#: Half side of the cube occupancy points are drawn in: the unit box plus 0.1 padding (Occupancy Networks).
OCCUPANCY_HALF_SIDE = 0.55
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
#: Samples per pixel along each axis when rendering (4 x 4 = 16 per pixel).
SUPERSAMPLE = 4


def studio_light(dtype=torch.float32) -> SHIrradianceLight:
    """The fixed light of every rendering: sky radiance ``0.45 + 1.1 max(0, d . k)^2`` with the key
    direction ``k = normalize(0.4, 1, 0.6)`` (upper front right), projected onto 9 SH coefficients.

    Example:
        >>> e = studio_light().irradiance(torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]]))
        >>> bool(2.0 < float(e[0, 0].detach()) < 4.0)   # about pi: a white face up renders near white
        True
    """
    k = torch.nn.functional.normalize(torch.tensor([0.4, 1.0, 0.6], dtype=torch.float64), dim=0)
    i = torch.arange(4096, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / 4096
    phi = math.pi * (1 + 5 ** 0.5) * i
    d = torch.stack([(1 - z * z).sqrt() * phi.cos(), (1 - z * z).sqrt() * phi.sin(), z], -1)  # Fibonacci sphere
    radiance = 0.45 + 1.1 * (d @ k).clamp_min(0) ** 2
    return SHIrradianceLight(project_sh9(d, radiance[:, None].expand(-1, 3)).to(dtype))


def random_cameras(views: int, resolution: int, rng: np.random.Generator) -> Camera:
    """``views`` cameras at :data:`CAMERA_DISTANCE` looking at the origin (module docstring), ``resolution``^2 px.

    Example:
        >>> cam = random_cameras(24, 64, np.random.default_rng(0))
        >>> len(cam), round(float(cam.center.norm(dim=-1).max()), 4)
        (24, 2.0)
    """
    az = rng.uniform(0.0, 2 * math.pi, views)
    el = np.radians(rng.uniform(*ELEVATION_RANGE_DEG, views))
    eye = CAMERA_DISTANCE * np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], -1)
    return Camera.from_fov(FOV_DEG, resolution, resolution, look_at(torch.tensor(eye), dtype=torch.float64).float(),
                           near=0.1, far=10.0)


def split_objects(n: int, rng: np.random.Generator) -> dict[str, list[int]]:
    """Object indices ``0..n-1`` per split (module docstring), each list in increasing order.

    Example:
        >>> {k: len(v) for k, v in split_objects(10, np.random.default_rng(0)).items()}
        {'train': 7, 'val': 1, 'test': 2}
    """
    order = rng.permutation(n).tolist()
    if n >= 3:
        n_val = max(1, round(SPLIT_FRACTIONS["val"] * n))
        n_test = max(1, round(SPLIT_FRACTIONS["test"] * n))
    else:
        n_val, n_test = 0, n - 1
    return {"train": sorted(order[n_val + n_test:]), "val": sorted(order[:n_val]),
            "test": sorted(order[n_val:n_val + n_test])}


def render_supersampled(mesh: Mesh, camera: Camera, light, factor: int = SUPERSAMPLE,
                        max_pixels: int = 1 << 21) -> tuple[torch.Tensor, torch.Tensor]:
    """Box-filtered renderings: linear RGB over white ``[V,H,W,3]`` and pixel coverage ``[V,H,W]`` in [0,1].

    Lighting is per vertex (Gouraud): the vertex colours become ``albedo E(n_v) / pi`` with ``E`` the
    light's irradiance at the vertex normal, and the mesh is rendered unlit (``shading="albedo"``) -- half
    the cost of per-pixel Lambert, indistinguishable at these sizes. Each view is rendered at ``factor``
    times the resolution (pixel-centre sampling, no antialiasing) and every ``factor x factor`` block
    averaged: colour = mean of the composited samples, coverage = fraction of samples on the object.
    Unlike silhouette antialiasing this also covers parts thinner than a pixel (chair legs, lamp poles
    seen from afar). Views are rendered in batches of at most ``max_pixels`` samples.

    Example:
        >>> from unrender.geometry.primitives import icosphere
        >>> cam = random_cameras(2, 16, np.random.default_rng(0))
        >>> rgb, cover = render_supersampled(icosphere(2, radius=0.4), cam, studio_light())
        >>> rgb.shape, cover.shape
        (torch.Size([2, 16, 16, 3]), torch.Size([2, 16, 16]))
    """
    from ...render.render_mesh import render_mesh

    base = mesh.vertex_colors if mesh.vertex_colors is not None else torch.full_like(mesh.vertices, 0.8)
    with torch.no_grad():
        lit = replace(mesh, vertex_colors=base * light.irradiance(mesh.vertices, mesh.vertex_normals()) / math.pi,
                      material=None)
    w, h = camera.width, camera.height
    big = Camera(camera.c2w, camera.fx * factor, camera.fy * factor, camera.cx * factor, camera.cy * factor,
                 w * factor, h * factor, camera.near, camera.far)
    step = max(1, max_pixels // (w * h * factor * factor))
    colors, covers = [], []
    with torch.no_grad():
        for s in range(0, len(big), step):
            out = render_mesh(lit, big[s:s + step], None, shading="albedo", background=(1.0, 1.0, 1.0),
                              antialias=False)
            layers = torch.cat([out.color.clamp(0, 1), out.alpha], -1).permute(0, 3, 1, 2)
            pooled = torch.nn.functional.avg_pool2d(layers, factor).permute(0, 2, 3, 1)
            colors.append(pooled[..., :3])
            covers.append(pooled[..., 3])
    return torch.cat(colors), torch.cat(covers)


def _resolve_categories(categories) -> list[Category]:
    if isinstance(categories, (int, np.integer)):
        if not 1 <= categories <= len(CATEGORIES):
            raise InputError(f"categories must be between 1 and {len(CATEGORIES)}; got {categories}.")
        return list(CATEGORIES[:categories])
    if isinstance(categories, str) or not isinstance(categories, Sequence) or not categories:
        raise InputError(f"categories must be a count or a list of names ({', '.join(c.name for c in CATEGORIES)}).")
    cats = [category_by_name(c) for c in categories]
    if len({c.synset for c in cats}) != len(cats):
        raise InputError(f"categories lists a category twice ({list(categories)}); name each at most once.")
    return cats


def synthesize_collection(out, categories=3, objects: int = 10, views: int = 24, resolution: int = 64,
                          seed: int = 0, force: bool = False, *, grid_resolution: int = 96,
                          target_faces: int = 4000, occupancy_samples: int = 20_000, progress=None) -> Path:
    """Write a procedural collection of ``categories`` x ``objects`` objects in DVR's layout (module docstring).

    Args:
        out: output folder; must be empty or absent unless ``force`` (then it is cleared).
        categories: how many categories (the first ``K`` of chair, table, airplane, lamp, car, sofa) or a
            list of category names.
        objects: objects per category.
        views: renderings per object.
        resolution: square image size in pixels.
        seed: everything follows from it; same arguments, same bytes.
        grid_resolution: marching-cubes samples along an object's longest side.
        target_faces: triangle budget of each mesh.
        occupancy_samples: points in ``points.npz`` (0: no file).
        progress: optional callable ``(done, total, "synset/model")`` called after each object.
    Returns:
        the output folder.

    Example:
        >>> synthesize_collection("/tmp/coll", categories=3, objects=4, force=True)   # doctest: +SKIP
        PosixPath('/tmp/coll')
    """
    cats = _resolve_categories(categories)
    for name, value, low in (("objects", objects, 1), ("views", views, 1), ("resolution", resolution, 8),
                             ("grid_resolution", grid_resolution, 16), ("target_faces", target_faces, 100),
                             ("occupancy_samples", occupancy_samples, 0)):
        if int(value) != value or value < low:
            raise InputError(f"{name} must be an integer >= {low}; got {value!r}.")
    out = prepare_output(Path(out), force)
    light = studio_light()
    names = {c.synset: c.name for c in cats}
    splits: dict[str, dict[str, list[str]]] = {s: {} for s in SPLIT_FRACTIONS}
    total, done = len(cats) * objects, 0
    for cat in cats:
        cat_index = [c.synset for c in CATEGORIES].index(cat.synset)
        models = []
        for j in range(objects):
            model = hashlib.md5(f"unrender/{cat.synset}/{seed}/{j}".encode()).hexdigest()
            models.append(model)
            _write_object(out / cat.synset / model, cat, (seed, cat_index, j), views, resolution, light,
                          grid_resolution, target_faces, occupancy_samples)
            done += 1
            if progress is not None:
                progress(done, total, f"{cat.synset}/{model}")
        for split, idx in split_objects(objects, np.random.default_rng([seed, cat_index, 1 << 20])).items():
            splits[split][cat.synset] = [models[i] for i in idx]
    write_collection_lists(out, splits, names)
    meta = {"generator": "unrender synthesize_collection", "seed": seed, "objects_per_category": objects,
            "views": views, "resolution": resolution, "categories": names,
            "camera": {"distance": CAMERA_DISTANCE, "fov_deg": FOV_DEG, "elevation_range_deg": ELEVATION_RANGE_DEG},
            "background": [1.0, 1.0, 1.0], "mesh_file": "mesh.obj", "pointcloud_size": POINTCLOUD_SIZE,
            "occupancy_samples": occupancy_samples}
    (out / "collection.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def _write_object(model_dir: Path, cat: Category, key: tuple[int, int, int], views: int, resolution: int, light,
                  grid_resolution: int, target_faces: int, occupancy_samples: int) -> None:
    """Build, render and write one object; ``key = (seed, category index, object index)`` seeds everything."""
    mesh = mesh_parts(cat.builder(np.random.default_rng([*key, 0])), grid_resolution, target_faces)
    camera = random_cameras(views, resolution, np.random.default_rng([*key, 1]))
    images, masks = render_supersampled(mesh, camera, light)
    gen = torch.Generator().manual_seed(int(np.random.default_rng([*key, 2]).integers(2 ** 62)))
    points, face = sample_surface(mesh.vertices, mesh.faces, POINTCLOUD_SIZE, gen)
    normals = mesh.face_normals()[face]
    occupancy = None
    if occupancy_samples:
        q = (torch.rand(occupancy_samples, 3, generator=gen) * 2 - 1) * OCCUPANCY_HALF_SIDE
        occupancy = (q, inside_mesh(mesh.vertices, mesh.faces, q))
    write_dvr_object(model_dir, images, masks, camera, points, normals, occupancy)
    save_mesh(mesh, model_dir / "mesh.obj")
