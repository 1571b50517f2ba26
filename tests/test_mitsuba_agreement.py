"""Agreement with a third-party renderer: Mitsuba 3 (scalar_rgb), a Lambertian scene under a sun.

Two spheres of different sizes (so that a mirrored image would not match), diffuse albedo,
a directional light with no mutual shadowing, direct illumination only. Mitsuba's result is
a Monte-Carlo estimate with pixel-area antialiasing; we compare masks and interior radiance.
Skipped when mitsuba is not installed (it is an optional test dependency).
"""

import math

import numpy as np
import pytest
import torch

from unrender.cameras import Camera, look_at
from unrender.mesh import Mesh, PBRMaterial
from unrender.render.lights.punctual import DirectionalLight
from unrender.render.render_mesh import render_mesh

from conftest import icosphere

mi = pytest.importorskip("mitsuba")


def scene_meshes():
    v, f = icosphere(4, torch.float64)
    parts = [(v * 0.6 + torch.tensor([-0.7, 0.0, 0.0], dtype=torch.float64), f, v),
             (v * 0.35 + torch.tensor([0.75, 0.2, 0.1], dtype=torch.float64), f, v)]
    return parts


def test_lambert_sun_matches_mitsuba():
    mi.set_variant("scalar_rgb")
    res_w, res_h, fov = 96, 72, 45.0
    eye, target = (0.3, 0.8, 3.2), (0.0, 0.0, 0.0)
    light_dir = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64) / math.sqrt(2)  # towards the light
    irradiance = torch.tensor([2.0, 1.5, 1.0], dtype=torch.float64)
    albedo = [0.7, 0.5, 0.3]

    verts, faces, norms, off = [], [], [], 0
    for v, f, n in scene_meshes():
        verts.append(v), faces.append(f + off), norms.append(n)
        off += v.shape[0]
    mesh = Mesh(torch.cat(verts), torch.cat(faces), normals=torch.cat(norms),
                material=PBRMaterial(base_color_factor=torch.tensor(albedo)))
    cam = Camera.from_fov(fov, res_w, res_h, look_at(eye, target)).to(dtype=torch.float64)
    with torch.no_grad():
        ours = render_mesh(mesh, cam, DirectionalLight(light_dir, irradiance).double(), shading="lambert",
                           antialias=False)
    ours_img = ours.color[0].numpy()
    ours_mask = ours.alpha[0, ..., 0].numpy() > 0.5

    shapes = {}
    for i, (v, f, n) in enumerate(scene_meshes()):
        m = mi.Mesh(f"s{i}", v.shape[0], f.shape[0], has_vertex_normals=True)
        p = mi.traverse(m)
        p["vertex_positions"] = v.reshape(-1).numpy().astype(np.float32)
        p["vertex_normals"] = n.reshape(-1).numpy().astype(np.float32)
        p["faces"] = f.reshape(-1).numpy().astype(np.uint32)
        p.update()
        m.set_bsdf(mi.load_dict({"type": "diffuse", "reflectance": {"type": "rgb", "value": albedo}}))
        shapes[f"s{i}"] = m
    scene = mi.load_dict({
        "type": "scene", "integrator": {"type": "direct"},
        "sensor": {"type": "perspective", "fov": fov, "fov_axis": "x",
                   "to_world": mi.ScalarTransform4f().look_at(origin=list(eye), target=list(target), up=[0, 1, 0]),
                   "film": {"type": "hdrfilm", "width": res_w, "height": res_h, "rfilter": {"type": "box"},
                            "pixel_format": "rgba"},
                   "sampler": {"type": "independent", "sample_count": 64}},
        "sun": {"type": "directional", "direction": (-light_dir).tolist(), "irradiance": {"type": "rgb", "value": irradiance.tolist()}},
        **shapes})
    rgba = np.array(mi.render(scene, seed=0))
    theirs, theirs_mask = rgba[..., :3], rgba[..., 3] > 0.5

    # Silhouettes: pixel-area antialiasing in Mitsuba vs pixel-centre coverage here differ only at edges.
    iou = (ours_mask & theirs_mask).sum() / (ours_mask | theirs_mask).sum()
    assert iou > 0.97
    # Interior radiance (mask eroded by one pixel): mean relative error within 2 %.
    core = ours_mask.copy()
    for ax in (0, 1):
        for s in (1, -1):
            core &= np.roll(ours_mask, s, axis=ax)
    lit = core & (theirs.sum(-1) > 0.05)
    rel = np.abs(ours_img[lit] - theirs[lit]).sum() / theirs[lit].sum()
    assert lit.sum() > 1000
    assert rel < 0.02, rel
