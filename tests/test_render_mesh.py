"""render_mesh: analytic renders through the whole composition, batching, gradients."""

import math

import pytest
import torch

from unrender.cameras import Camera, look_at, orbit_poses
from unrender.errors import InputError
from unrender.geometry.primitives import icosphere
from unrender.mesh import Mesh, PBRMaterial
from unrender.render.lights.environment import EnvironmentLight
from unrender.render.lights.punctual import DirectionalLight
from unrender.render.render_mesh import render_mesh


def sphere(subdiv=4, **kw):
    m = icosphere(subdiv, radius=1.0)
    return Mesh(m.vertices.double(), m.faces, normals=torch.nn.functional.normalize(m.vertices.double(), dim=-1), **kw)


def interior(alpha):
    core = alpha[..., 0] > 0.999
    for d in (1, 2):
        for s in (1, -1):
            core = core & alpha[..., 0].roll(s, d).gt(0.999)
    return core


def test_lambert_sphere_under_constant_light_is_albedo_times_radiance():
    albedo = torch.tensor([0.8, 0.4, 0.2])
    light = EnvironmentLight(resolution=8, init=1.7).double()
    light.build()
    cam = Camera.from_fov(40, 48, 48, look_at((0, 0, 3.0))).to(dtype=torch.float64)
    with torch.no_grad():
        out = render_mesh(sphere(material=PBRMaterial(base_color_factor=albedo)), cam, light, shading="lambert")
    core = interior(out.alpha)
    assert core.sum() > 500
    expect = (albedo * 1.7).double()
    assert torch.allclose(out.color[core], expect.expand(int(core.sum()), 3), rtol=2e-3)


def test_silhouette_area_and_depth_of_a_sphere():
    res = 128
    cam = Camera.from_fov(40, res, res, look_at((0, 0, 3.0))).to(dtype=torch.float64)
    with torch.no_grad():
        out = render_mesh(sphere(5), cam, None, shading="albedo")
    rho = cam.fx.item() * math.tan(math.asin(1 / 3.0))
    assert abs(out.alpha.sum().item() / (math.pi * rho ** 2) - 1) < 0.01  # antialiased coverage ~ exact area
    centre = out.depth[0, res // 2 - 1:res // 2 + 1, res // 2 - 1:res // 2 + 1]
    assert torch.allclose(centre, torch.full_like(centre, 2.0), atol=2e-3)  # front of the unit sphere at distance 3


def test_directional_light_matches_cosine_law():
    light = DirectionalLight(torch.tensor([0.0, 0.0, 1.0]), 2.0).double()
    cam = Camera.from_fov(30, 64, 64, look_at((0, 0, 4.0))).to(dtype=torch.float64)
    with torch.no_grad():
        out = render_mesh(sphere(5, material=PBRMaterial(base_color_factor=torch.tensor([0.5, 0.5, 0.5]))), cam,
                          light, shading="lambert", antialias=False)
    core = interior(out.alpha)
    n = out.normal[core]
    expect = 0.5 / math.pi * 2.0 * n[:, 2:3].clamp(min=0)
    assert torch.allclose(out.color[core], expect.expand(-1, 3), atol=1e-9)


def test_top_row_is_image_top():
    # An object above the optical axis appears in the upper half of the returned images.
    m = icosphere(2)
    m = Mesh(m.vertices * 0.6 + torch.tensor([0.0, 0.8, 0.0]), m.faces)
    cam = Camera.from_fov(50, 32, 32, look_at((0, 0, 3.0)))
    with torch.no_grad():
        a = render_mesh(m, cam, None, shading="albedo").alpha[0, ..., 0]
    assert a[:16].sum() > 20 and a[16:].sum() == 0


def test_batched_equals_looped():
    m = icosphere(3)
    mesh = Mesh(m.vertices, m.faces, uvs=m.uvs, uv_faces=m.uv_faces,
                material=PBRMaterial(base_color=torch.rand(32, 32, 3), orm=torch.rand(32, 32, 3)))
    light = EnvironmentLight(resolution=8, init=0.8)
    light.build()
    cam = Camera.from_fov(45, 40, 40, orbit_poses(3, 3.0, seed=2))
    with torch.no_grad():
        batched = render_mesh(mesh, cam, light)
        for i in range(3):
            single = render_mesh(mesh, cam[i], light)
            assert torch.allclose(batched.color[i], single.color[0], atol=1e-5)
            assert torch.allclose(batched.alpha[i], single.alpha[0], atol=1e-6)


def test_gradients_reach_vertices_textures_and_light():
    m = icosphere(3)
    kd = torch.rand(16, 16, 3, requires_grad=True)
    verts = m.vertices.clone().requires_grad_()
    mesh = Mesh(verts, m.faces, uvs=m.uvs, uv_faces=m.uv_faces, material=PBRMaterial(base_color=kd))
    light = EnvironmentLight(resolution=8, init=0.8)
    light.build()
    out = render_mesh(mesh, Camera.from_fov(45, 32, 32, look_at((0, 0.5, 3.0))), light, background=(0.2, 0.3, 0.4))
    (out.color.square().sum() + out.alpha.sum()).backward()
    for name, g in (("vertices", verts.grad), ("base colour", kd.grad), ("light", light.base.grad)):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_flat_normal_map_changes_nothing():
    m = icosphere(3)
    flat = torch.zeros(8, 8, 3)
    flat[..., 2] = 1.0
    light = DirectionalLight(torch.tensor([0.3, 1.0, 0.5]), 2.0)
    cam = Camera.from_fov(45, 32, 32, look_at((0, 0.5, 3.0)))
    with torch.no_grad():
        a = render_mesh(Mesh(m.vertices, m.faces, uvs=m.uvs, uv_faces=m.uv_faces, material=PBRMaterial()), cam, light)
        b = render_mesh(Mesh(m.vertices, m.faces, uvs=m.uvs, uv_faces=m.uv_faces, material=PBRMaterial(normal=flat)),
                        cam, light)
    assert torch.allclose(a.color, b.color, atol=1e-5)


def test_bad_mesh_is_refused():
    m = icosphere(1)
    v = m.vertices.clone()
    v[0, 0] = float("nan")
    cam = Camera.from_fov(45, 16, 16, look_at((0, 0, 3.0)))
    with pytest.raises(InputError, match="NaN"):
        render_mesh(Mesh(v, m.faces), cam)
    with pytest.raises(InputError, match="shading"):
        render_mesh(Mesh(m.vertices, m.faces), cam, shading="phong")
