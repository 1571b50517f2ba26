"""Colour transforms, BRDF pieces and normal mapping."""

import math

import pytest
import torch

from unrender.errors import InputError
from unrender.color import linear_to_srgb, log_tonemap, srgb_to_linear, tonemap_aces, tonemap_reinhard
from unrender.render.shading.bsdf import (fresnel_schlick, ggx_ndf, lambert, pbr_brdf, smith_g1, smith_g_correlated,
                                          unpack_orm)
from unrender.render.shading.normal_map import perturb_normal


def test_srgb_known_values_and_round_trip():
    enc = torch.tensor([0.0, 0.04045, 0.5, 1.0], dtype=torch.float64)
    lin = srgb_to_linear(enc)
    expect = torch.tensor([0.0, 0.04045 / 12.92, ((0.5 + 0.055) / 1.055) ** 2.4, 1.0], dtype=torch.float64)
    assert torch.allclose(lin, expect, atol=1e-12)
    assert abs(lin[2].item() - 0.21404114) < 1e-7
    x = torch.linspace(0, 1, 1001, dtype=torch.float64)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12)
    assert torch.allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-12)
    # the two pieces meet at the knee (continuity) and the curve is monotone
    assert abs(linear_to_srgb(torch.tensor([0.0031308 + 1e-9]))[0] - 0.04045) < 1e-5
    assert (torch.diff(linear_to_srgb(x)) > 0).all()


def test_color_gradients_finite_everywhere():
    x = torch.tensor([0.0, 0.002, 0.0031308, 0.04045, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    for fn in (srgb_to_linear, linear_to_srgb, tonemap_reinhard, tonemap_aces, log_tonemap):
        (g,) = torch.autograd.grad(fn(x).sum(), x)
        assert torch.isfinite(g).all(), fn.__name__
    assert torch.autograd.gradcheck(linear_to_srgb, (torch.tensor([0.001, 0.3, 0.9], dtype=torch.float64,
                                                                  requires_grad=True),))


def test_tonemaps():
    x = torch.tensor([0.0, 1.0, 3.0, 1e4])
    assert torch.allclose(tonemap_reinhard(x), x / (1 + x))
    assert torch.allclose(tonemap_reinhard(torch.tensor([4.0]), white=4.0), torch.tensor([1.0]))
    a = tonemap_aces(torch.linspace(0, 20, 200))
    assert (a >= 0).all() and (a <= 1).all() and (torch.diff(a) >= 0).all()
    assert abs(tonemap_aces(torch.tensor([1.0]))[0] - 2.54 / 3.16) < 1e-6
    assert torch.allclose(log_tonemap(x), torch.log(x + 1))
    assert torch.allclose(log_tonemap(x, srgb=True), linear_to_srgb(torch.log(x + 1)))


@pytest.mark.parametrize("alpha", [0.05, 0.3, 1.0])
def test_ggx_ndf_projected_area_is_one(alpha):
    # integral over the hemisphere of D(h) (n.h) dh = 2 pi integral D(theta) cos sin dtheta
    n = 400000
    theta = (torch.arange(n, dtype=torch.float64) + 0.5) * (math.pi / 2 / n)
    d = ggx_ndf(torch.cos(theta), torch.tensor(alpha, dtype=torch.float64))
    total = (d * torch.cos(theta) * torch.sin(theta)).sum() * (math.pi / 2 / n) * 2 * math.pi
    assert abs(total.item() - 1.0) < 1e-4


def test_smith_terms_consistent():
    c = torch.linspace(0.05, 1.0, 50, dtype=torch.float64)
    for alpha in (0.1, 0.5, 1.0):
        a = torch.tensor(alpha, dtype=torch.float64)
        g1 = smith_g1(c, a)
        # with n.l = 1 (Lambda(l) = 0) the correlated term reduces to G1(v)
        assert torch.allclose(smith_g_correlated(c, torch.ones_like(c), a), g1, atol=1e-12)
        # correlated G >= product of G1s is false in general; it lies between G1 G1 and min(G1)
        g = smith_g_correlated(c, c.flip(0), a)
        assert (g >= g1 * smith_g1(c.flip(0), a) - 1e-12).all() and (g <= torch.minimum(g1, smith_g1(c.flip(0), a)) + 1e-12).all()
    assert smith_g_correlated(torch.tensor(-0.1), torch.tensor(0.5), torch.tensor(0.3)) == 0


def test_fresnel_and_lambert():
    f = fresnel_schlick(torch.tensor([0.04, 1.0]), torch.tensor([[1.0], [0.5], [0.0]]))
    assert torch.allclose(f[0], torch.tensor([0.04, 1.0])) and torch.allclose(f[2], torch.tensor([1.0, 1.0]))
    assert torch.allclose(f[1], torch.tensor([0.04 + 0.96 / 32, 1.0]))
    n = torch.tensor([[0.0, 0.0, 1.0]])
    l = torch.tensor([[0.6, 0.0, 0.8]])
    assert torch.allclose(lambert(torch.full((1, 3), 0.5), n, l), torch.full((1, 3), 0.5 * 0.8 / math.pi))
    assert (lambert(torch.ones(1, 3), n, -l) == 0).all()


def test_pbr_brdf_matches_formula_and_gradcheck():
    torch.manual_seed(1)
    n = torch.nn.functional.normalize(torch.tensor([[0.1, 0.2, 1.0]], dtype=torch.float64), dim=-1)
    v = torch.nn.functional.normalize(torch.tensor([[0.5, -0.1, 0.8]], dtype=torch.float64), dim=-1)
    l = torch.nn.functional.normalize(torch.tensor([[-0.3, 0.2, 0.9]], dtype=torch.float64), dim=-1)
    base = torch.tensor([[0.8, 0.4, 0.2]], dtype=torch.float64)
    rough, metal = torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([[0.3]], dtype=torch.float64)
    out = pbr_brdf(base, rough, metal, n, v, l)
    # independent evaluation of the documented formula
    h = torch.nn.functional.normalize(v + l, dim=-1)
    nl, nv, nh, vh = [(a * b).sum().item() for a, b in ((n, l), (n, v), (n, h), (v, h))]
    a2 = 0.25 ** 2
    d = a2 / (math.pi * (nh * nh * (a2 - 1) + 1) ** 2)
    lam = lambda c: 0.5 * (math.sqrt(1 + a2 * (1 - c * c) / (c * c)) - 1)  # noqa: E731
    g = 1 / (1 + lam(nv) + lam(nl))
    f0 = 0.04 * 0.7 + base * 0.3
    f = f0 + (1 - f0) * (1 - vh) ** 5
    expect = (base * 0.7 / math.pi + d * g * f / (4 * nv * nl)) * nl
    assert torch.allclose(out, expect, atol=1e-12)
    inputs = tuple(t.clone().requires_grad_(True) for t in (base, rough, metal, n, v, l))
    assert torch.autograd.gradcheck(pbr_brdf, inputs)
    assert (pbr_brdf(base, rough, metal, n, v, -l) == 0).all()


def test_pbr_brdf_energy_bounded():
    # white furnace of the BRDF itself: a white metal reflects at most everything; a white dielectric
    # reflects its full diffuse albedo plus a small specular part (nvdiffrec's kd + spec, no Fresnel weighting)
    nt, npf = 400, 800
    th = (torch.arange(nt, dtype=torch.float64) + 0.5) * (math.pi / 2 / nt)
    ph = (torch.arange(npf, dtype=torch.float64) + 0.5) * (2 * math.pi / npf)
    th, ph = torch.meshgrid(th, ph, indexing="ij")
    l = torch.stack([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()], -1).reshape(-1, 3)
    dw = (th.sin() * (math.pi / 2 / nt) * (2 * math.pi / npf)).reshape(-1, 1)
    n = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(l)
    v = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64).expand_as(l)
    for metal, lo, hi in ((1.0, 0.8, 1.0 + 1e-3), (0.0, 1.0, 1.1)):
        f = pbr_brdf(torch.ones(1, 3, dtype=torch.float64), torch.tensor([[0.6]], dtype=torch.float64),
                     torch.tensor([[metal]], dtype=torch.float64), n, v, l)
        total = (f * dw).sum(0)
        assert (total <= hi).all() and (total > lo).all()


def test_unpack_orm():
    ks = torch.tensor([[0.9, 0.4, 0.1], [0.0, 1.0, 1.0]])
    occ, rough, metal = unpack_orm(ks)
    assert occ.shape == (2, 1) and torch.equal(occ[:, 0], ks[:, 0])
    assert torch.equal(rough[:, 0], ks[:, 1]) and torch.equal(metal[:, 0], ks[:, 2])
    occ_nv, _, _ = unpack_orm(ks, convention="nvdiffrec")
    assert torch.allclose(occ_nv[:, 0], 1 - ks[:, 0])
    with pytest.raises(InputError):
        unpack_orm(torch.ones(4, 2))
    with pytest.raises(InputError):
        unpack_orm(ks, convention="orm")


def test_normal_map_identity_and_tilt():
    torch.manual_seed(0)
    n = torch.nn.functional.normalize(torch.randn(100, 3, dtype=torch.float64), dim=-1)
    t = torch.randn(100, 3, dtype=torch.float64)  # not orthogonal to n, not unit
    flat = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(100, 3)
    assert torch.allclose(perturb_normal(flat, n, t), n, atol=1e-12)
    # (1, 0, 0) gives the tangent made orthogonal to n; (0, 1, 0) the bitangent n x t
    t_orth = torch.nn.functional.normalize(t - (t * n).sum(-1, keepdim=True) * n, dim=-1)
    assert torch.allclose(perturb_normal(torch.tensor([1.0, 0, 0], dtype=torch.float64).expand(100, 3), n, t), t_orth)
    b = torch.linalg.cross(n, t_orth, dim=-1)
    assert torch.allclose(perturb_normal(torch.tensor([0.0, 2.0, 0], dtype=torch.float64).expand(100, 3), n, t), b)
    inputs = (torch.randn(4, 3, dtype=torch.float64, requires_grad=True), n[:4].clone().requires_grad_(True),
              t[:4].clone().requires_grad_(True))
    assert torch.autograd.gradcheck(perturb_normal, inputs)
    with pytest.raises(InputError):
        perturb_normal(torch.ones(4, 2), n[:4], t[:4])
