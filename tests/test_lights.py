"""Lights: punctual, SH9, spherical Gaussians, environment (split sum) and the BRDF table."""

import math

import pytest
import torch

from unrender.errors import InputError, UnrenderError
from unrender.render.lights.brdf_lut import brdf_lut, hammersley, lookup_brdf_lut
from unrender.render.lights.environment import EnvironmentLight, cube_texel_solid_angles
from unrender.render.lights.punctual import DirectionalLight, PointLight
from unrender.render.lights.spherical_gaussians import SphericalGaussianLight
from unrender.render.lights.spherical_harmonics import SHIrradianceLight, project_sh9
from unrender.render.shading.bsdf import ggx_ndf, pbr_brdf
from unrender.render.cubemap import cube_directions

F64 = torch.float64


def sphere_grid(nt=300, npf=600):
    """Midpoint quadrature over the sphere: directions [N,3] and solid angles [N]."""
    th = (torch.arange(nt, dtype=F64) + 0.5) * (math.pi / nt)
    ph = (torch.arange(npf, dtype=F64) + 0.5) * (2 * math.pi / npf)
    th, ph = torch.meshgrid(th, ph, indexing="ij")
    d = torch.stack([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()], -1).reshape(-1, 3)
    return d, (th.sin() * (math.pi / nt) * (2 * math.pi / npf)).reshape(-1)


def unit(*v):
    return torch.nn.functional.normalize(torch.tensor(v, dtype=F64), dim=-1)


def test_point_light_inverse_square_and_cosine():
    lamp = PointLight([0.0, 0.0, 0.0], [2.0, 4.0, 8.0]).double()
    n = unit(-1.0, 0.0, 0.0).expand(2, 3)
    e = lamp.irradiance(torch.tensor([[1.0, 0, 0], [2.0, 0, 0]], dtype=F64), n)
    assert torch.allclose(e[0], torch.tensor([2.0, 4.0, 8.0], dtype=F64))
    assert torch.allclose(e[0] / e[1], torch.full((3,), 4.0, dtype=F64))
    tilted = lamp.irradiance(torch.tensor([[1.0, 0, 0]], dtype=F64), unit(-0.5, math.sqrt(0.75), 0)[None])
    assert torch.allclose(tilted[0], 0.5 * e[0])
    assert (lamp.irradiance(torch.tensor([[1.0, 0, 0]], dtype=F64), -n[:1]) == 0).all()


def test_directional_light_shade_is_brdf_times_radiance():
    sun = DirectionalLight([0.0, 1.0, 1.0], [1.0, 2.0, 3.0]).double()
    n, v = unit(0.0, 0.0, 1.0)[None], unit(0.3, 0.0, 1.0)[None]
    base, r, m = torch.tensor([[0.5, 0.6, 0.7]], dtype=F64), torch.tensor([[0.4]], dtype=F64), torch.tensor([[0.2]], dtype=F64)
    out = sun.shade(torch.zeros(1, 3, dtype=F64), n, v, base, r, m)
    expect = pbr_brdf(base, r, m, n, v, unit(0.0, 1.0, 1.0)[None]) * torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    assert torch.allclose(out, expect)
    assert torch.allclose(sun.irradiance(torch.zeros(1, 3), n.float()), torch.tensor([[1.0, 2.0, 3.0]]) / math.sqrt(2))
    with pytest.raises(InputError):
        DirectionalLight([0.0, 0.0, 0.0])


def test_sh9_constant_and_band_limited_irradiance():
    d, dw = sphere_grid()
    values = torch.stack([torch.ones_like(dw), 1.0 + d[:, 2], 1.0 + d[:, 0] * d[:, 1]], -1)  # R, G, B
    light = SHIrradianceLight(project_sh9(d, values, dw)).double()
    assert abs(light.coeffs[0, 0].item() - 2 * math.sqrt(math.pi)) < 1e-4
    n = torch.nn.functional.normalize(torch.randn(16, 3, dtype=F64), dim=-1)
    e = light.irradiance(torch.zeros(16, 3, dtype=F64), n)
    assert torch.allclose(e[:, 0], torch.full((16,), math.pi, dtype=F64), atol=1e-4)
    # L = 1 + z: E = pi + (2 pi / 3) n_z; L = 1 + xy (band 2): E = pi + (pi / 4) n_x n_y
    assert torch.allclose(e[:, 1], math.pi + 2 * math.pi / 3 * n[:, 2], atol=1e-4)
    assert torch.allclose(e[:, 2], math.pi + math.pi / 4 * n[:, 0] * n[:, 1], atol=1e-4)
    # and against brute-force integration of the light's own radiance
    rad = light.radiance(d)
    num = ((n @ d.T).clamp_min(0)[..., None] * (rad * dw[:, None])[None]).sum(1)
    assert torch.allclose(e, num, atol=2e-3)


def test_sh9_clamped_cosine_lobe():
    # radiance max(z, 0): the exact irradiance at n = z is 2 pi / 3; nine coefficients give
    # sum_l (2l+1)/(4 pi) A_l^2 = pi (1 + 4/3 + 5/16) / 4 (Ramamoorthi & Hanrahan's truncation)
    d, dw = sphere_grid(600, 1200)
    light = SHIrradianceLight(project_sh9(d, d[:, 2:3].clamp_min(0).expand(-1, 3), dw)).double()
    e = light.irradiance(torch.zeros(1, 3, dtype=F64), unit(0.0, 0.0, 1.0)[None])[0, 0].item()
    assert abs(e - math.pi * (1 + 4 / 3 + 5 / 16) / 4) < 1e-4
    assert abs(e / (2 * math.pi / 3) - 1) < 0.01


@pytest.mark.parametrize("sharpness", [0.05, 1.0, 5.0, 30.0, 300.0])
def test_sg_irradiance_matches_integration(sharpness):
    d, dw = sphere_grid(600, 1200)
    light = SphericalGaussianLight(unit(0.3, 0.2, 0.9)[None], torch.tensor([sharpness], dtype=F64),
                                   torch.tensor([[1.0, 0.5, 0.25]], dtype=F64))
    n = torch.nn.functional.normalize(torch.randn(24, 3, dtype=F64), dim=-1)
    e = light.irradiance(torch.zeros(24, 3, dtype=F64), n)
    num = ((n @ d.T).clamp_min(0) * (light.radiance(d)[:, 0] * dw)[None]).sum(1)
    assert ((e[:, 0] - num).abs() / num.max()).max() < 0.015
    assert torch.allclose(e[:, 1], 0.5 * e[:, 0]) and torch.allclose(e[:, 2], 0.25 * e[:, 0])


@pytest.mark.parametrize("sharpness,rough,nv", [(2.0, 0.3, 0.9), (10.0, 0.5, 0.6), (50.0, 0.7, 0.8)])
def test_sg_specular_is_close_to_integration(sharpness, rough, nv):
    # The SG specular is an approximation (module docstring): within 30% of the exact GGX integral.
    d, dw = sphere_grid(400, 800)
    n = unit(0.0, 0.0, 1.0)[None]
    v = torch.tensor([[math.sqrt(1 - nv * nv), 0.0, nv]], dtype=F64)
    light = SphericalGaussianLight(2 * nv * n - v, torch.tensor([sharpness], dtype=F64), torch.ones(1, 3, dtype=F64))
    white, r, metal = torch.ones(1, 3, dtype=F64), torch.tensor([[rough]], dtype=F64), torch.ones(1, 1, dtype=F64)
    exact = (pbr_brdf(white, r, metal, n.expand_as(d), v.expand_as(d), d) * (light.radiance(d) * dw[:, None])).sum(0)
    approx = light.shade(torch.zeros(1, 3, dtype=F64), n, v, white, r, metal)[0]
    assert ((approx / exact - 1).abs() < 0.3).all()


def test_hammersley_and_lut_basics():
    u = hammersley(8)
    assert torch.allclose(u[:, 1], torch.tensor([0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875], dtype=F64))
    lut = brdf_lut(32, 256)
    assert lut is brdf_lut(32, 256)  # memoised
    assert lut.shape == (32, 32, 2) and (lut >= 0).all() and (lut.sum(-1) <= 1.0 + 1e-3).all()


@pytest.mark.parametrize("rough", [0.3, 0.6, 1.0])
def test_lut_matches_independent_integration(rough):
    # (A, B) from Hammersley importance sampling vs a dense quadrature of pbr_brdf's specular lobe:
    # F0 = 1 (white metal) integrates to A + B, F0 = 0 (black metal) to B.
    nt, npf = 400, 800
    th = (torch.arange(nt, dtype=F64) + 0.5) * (math.pi / 2 / nt)
    ph = (torch.arange(npf, dtype=F64) + 0.5) * (2 * math.pi / npf)
    th, ph = torch.meshgrid(th, ph, indexing="ij")
    l = torch.stack([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()], -1).reshape(-1, 3)
    dw = (th.sin() * (math.pi / 2 / nt) * (2 * math.pi / npf)).reshape(-1, 1)
    n = torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand_as(l)
    r, metal = torch.tensor([[rough]], dtype=F64), torch.ones(1, 1, dtype=F64)
    for nv in (0.25, 0.6, 0.95):
        v = torch.tensor([math.sqrt(1 - nv * nv), 0.0, nv], dtype=F64).expand_as(l)
        a_plus_b = (pbr_brdf(torch.ones(1, 3, dtype=F64), r, metal, n, v, l)[:, 0:1] * dw).sum()
        b = (pbr_brdf(torch.zeros(1, 3, dtype=F64), r, metal, n, v, l)[:, 0:1] * dw).sum()
        ab = lookup_brdf_lut(torch.tensor([[nv]], dtype=F64), r)[0]
        assert abs(ab[0] + ab[1] - a_plus_b) < 1e-2 and abs(ab[1] - b) < 1e-2, (nv, ab, a_plus_b, b)


def test_white_furnace():
    light = EnvironmentLight(resolution=16, init=1.0, num_levels=4, min_res=8)
    light.build()
    assert len(light.specular) == 4
    for level in light.specular:
        assert torch.allclose(level, torch.ones_like(level), atol=1e-5)
    assert torch.allclose(light.diffuse, torch.ones_like(light.diffuse), atol=1e-5)
    torch.manual_seed(3)
    k = 64
    n = torch.nn.functional.normalize(torch.randn(k, 3), dim=-1)
    v = torch.nn.functional.normalize(n + 0.8 * torch.randn(k, 3), dim=-1)
    v = torch.where((n * v).sum(-1, keepdim=True) > 0.05, v, n)
    base, rough, metal = torch.rand(k, 3), torch.rand(k, 1), torch.rand(k, 1)
    occ = torch.rand(k, 1)
    out = light.shade(torch.zeros(k, 3), n, v, base, rough, metal, occ)
    kd, f0 = base * (1 - metal), 0.04 * (1 - metal) + base * metal
    ab = lookup_brdf_lut((n * v).sum(-1, keepdim=True), rough.clamp(0.08, 1.0))
    assert torch.allclose(out, occ * (kd + f0 * ab[:, 0:1] + ab[:, 1:2]), atol=1e-5)
    # Lambert under a constant white environment returns the albedo exactly
    assert torch.allclose(base / math.pi * light.irradiance(torch.zeros(k, 3), n), base, atol=1e-5)


def test_prefiltered_level_matches_brute_force_convolution():
    # A smooth environment (an SG lobe) baked into a cube map; each prefiltered level must match the
    # GGX prefilter integral  sum L(l) D(h)/4 (r.l) dw / sum D(h)/4 (r.l) dw  evaluated densely.
    axis = unit(0.4, 0.5, 0.77)
    sg = lambda d: 0.1 + torch.exp(6.0 * (d @ axis - 1))[..., None].expand(*d.shape[:-1], 3)  # noqa: E731
    res = 32
    light = EnvironmentLight(sg(cube_directions(res, dtype=F64)), num_levels=4, min_res=8, num_samples=24)
    light.build()
    fine = 96
    dirs = cube_directions(fine, dtype=F64).reshape(-1, 3)
    dw = cube_texel_solid_angles(fine, dtype=F64).reshape(-1)
    rad = sg(dirs)[:, 0]
    targets = torch.stack([axis, unit(0.0, 0.5, 0.86), unit(0.9, 0.1, 0.2), unit(-0.2, 0.9, -0.3)])
    for rho in light.level_roughness()[1:]:
        alpha = torch.tensor(rho ** 2, dtype=F64)
        rl = targets @ dirs.T                                                       # [T,N]
        nh = torch.sqrt(((1 + rl) / 2).clamp_min(0))                                # r.h with v = r
        w = ggx_ndf(nh, alpha) / 4 * rl.clamp_min(0) * dw
        expect = (w * rad).sum(1) / w.sum(1)
        got = light.prefiltered(targets, torch.full((4, 1), rho, dtype=F64))[:, 0]
        assert ((got - expect).abs() / expect).max() < 0.05, (rho, got, expect)


def test_environment_gradcheck_base_and_normals():
    torch.manual_seed(0)
    light = EnvironmentLight(torch.rand(6, 2, 2, 3, dtype=F64) + 0.1, num_levels=3, min_res=2, diffuse_res=2,
                             num_samples=4, lut_resolution=8)
    n = torch.nn.functional.normalize(torch.randn(3, 3, dtype=F64), dim=-1)
    v = torch.nn.functional.normalize(n + 0.5 * torch.randn(3, 3, dtype=F64), dim=-1)
    mat = (torch.rand(3, 3, dtype=F64), torch.rand(3, 1, dtype=F64) * 0.6 + 0.2, torch.rand(3, 1, dtype=F64))

    def shade_with_base(base):
        light._parameters["base"] = base  # swap in the gradcheck input, then rebuild from it
        light.build()
        return light.shade(torch.zeros(3, 3, dtype=F64), n, v, *mat)

    base = light.base.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(shade_with_base, (base,), fast_mode=True)

    light._parameters["base"] = torch.nn.Parameter(base.detach())
    light.build()
    assert torch.autograd.gradcheck(lambda nn_: light.shade(torch.zeros(3, 3, dtype=F64), nn_, v, *mat),
                                    (n.clone().requires_grad_(True),))


def test_environment_requires_fresh_build_and_converts():
    light = EnvironmentLight.from_latlong(torch.full((16, 32, 3), 2.0), resolution=8)
    n = torch.tensor([[0.0, 1.0, 0.0]])
    with pytest.raises(UnrenderError):
        light.irradiance(torch.zeros(1, 3), n)
    light.build()
    assert torch.allclose(light.irradiance(torch.zeros(1, 3), n), torch.full((1, 3), 2 * math.pi))
    assert torch.allclose(light.to_latlong(8, 16), torch.full((8, 16, 3), 2.0))
    with torch.no_grad():
        light.base.mul_(0.5)
    with pytest.raises(UnrenderError):
        light.shade(torch.zeros(1, 3), n, n, torch.ones(1, 3), torch.ones(1, 1), torch.zeros(1, 1))
    with pytest.raises(InputError):
        EnvironmentLight(torch.ones(6, 4, 5, 3))


def test_environment_light_is_learnable():
    # fit the base map to a target irradiance through build() + irradiance(): gradients reach the map
    target = EnvironmentLight(torch.rand(6, 4, 4, 3) * 2, diffuse_res=4, num_levels=2)
    target.build()
    light = EnvironmentLight(resolution=4, diffuse_res=4, num_levels=2)
    opt = torch.optim.Adam(light.parameters(), lr=0.05)
    n = torch.nn.functional.normalize(torch.randn(256, 3), dim=-1)
    want = target.irradiance(torch.zeros(256, 3), n).detach()
    first = None
    for _ in range(20):
        light.build()
        loss = (light.irradiance(torch.zeros(256, 3), n) - want).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
