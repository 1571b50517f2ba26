"""Volume rendering primitives against closed-form cases."""

import math

import pytest
import torch

from unrender.errors import InputError
from unrender.render.volume import (alpha_from_density, composite, neus_alpha, ray_box_intersection, sample_pdf,
                                    stratified_edges)


def _rays_through_box(n=5):
    o = torch.stack([torch.linspace(-0.5, 0.5, n), torch.zeros(n), torch.full((n,), -3.0)], 1)
    d = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3)
    return o, d


def test_ray_box_intersection_slab_and_miss():
    box = torch.tensor([[-1.0, -1, -1], [1.0, 1, 1]])
    o = torch.tensor([[0.0, 0, -3], [0.0, 0, 0], [5.0, 5, -3]])
    d = torch.tensor([[0.0, 0, 1], [1.0, 0, 0], [0.0, 0, 1]])
    near, far = ray_box_intersection(o, d, box)
    assert torch.allclose(near[:2], torch.tensor([2.0, 0.0]))  # second ray starts inside: near clamps to 0
    assert torch.allclose(far[:2], torch.tensor([4.0, 1.0]))
    assert near[2] == far[2]  # a miss is an empty interval
    with pytest.raises(InputError):
        ray_box_intersection(o, d, torch.zeros(3))


def test_constant_density_slab_matches_beer_lambert():
    # a slab of density sigma and thickness L in front of a background: opacity 1 - exp(-sigma L)
    o, d = _rays_through_box()
    near, far = ray_box_intersection(o, d, torch.tensor([[-1.0, -1, -0.25], [1.0, 1, 0.25]]))
    sigma, color, bg = 3.0, torch.tensor([0.2, 0.4, 0.9]), torch.tensor([1.0, 0.0, 0.0])
    for n in (1, 7, 64):  # exact for any sample count: the density is constant on the interval
        edges = stratified_edges(near, far, n)
        alpha = alpha_from_density(torch.full((len(o), n), sigma), edges.diff(dim=-1))
        out = composite(alpha, color.expand(len(o), n, 3), edges, bg)
        expected = 1 - math.exp(-sigma * 0.5)
        assert torch.allclose(out.opacity, torch.full_like(out.opacity, expected), atol=1e-6)
        assert torch.allclose(out.color, expected * color + (1 - expected) * bg, atol=1e-6)
        assert torch.allclose(out.weights.sum(-1, keepdim=True), out.opacity, atol=1e-6)


def test_sphere_of_known_density_chord_lengths():
    # rays at offset b from the centre of a sphere (radius r, density sigma) cross a chord of 2 sqrt(r^2 - b^2)
    r, sigma, n = 0.8, 2.0, 2048
    b = torch.tensor([0.0, 0.3, 0.6, 0.79, 0.9])
    o = torch.stack([b, torch.zeros(5), torch.full((5,), -2.0)], 1)
    d = torch.tensor([0.0, 0.0, 1.0]).expand(5, 3)
    near, far = ray_box_intersection(o, d, torch.tensor([[-1.0, -1, -1], [1.0, 1, 1]]))
    edges = stratified_edges(near, far, n)
    mids = o[:, None] + 0.5 * (edges[:, 1:] + edges[:, :-1])[..., None] * d[:, None]
    density = torch.where(mids.norm(dim=-1) < r, sigma, 0.0)
    out = composite(alpha_from_density(density, edges.diff(dim=-1)), torch.ones(5, n, 1), edges)
    chord = 2 * (r ** 2 - b ** 2).clamp_min(0).sqrt()
    assert torch.allclose(out.opacity[:, 0], 1 - torch.exp(-sigma * chord), atol=2e-3)
    # expected depth of the front half of an opaque sphere: sits between the entry point and the centre
    thick = composite(alpha_from_density(density * 200, edges.diff(dim=-1)), torch.ones(5, n, 1), edges)
    assert abs(float(thick.depth[0]) - (2.0 - r)) < 0.01


def test_neus_alpha_opaque_at_plane_and_depth_at_crossing():
    o, d = _rays_through_box(3)
    near, far = torch.full((3,), 1.0), torch.full((3,), 5.0)
    edges = stratified_edges(near, far, 400)
    sdf = 3.2 - edges  # plane at t = 3.2 facing the camera: positive in front
    alpha = neus_alpha(sdf, 400.0)
    out = composite(alpha, torch.ones(3, 400, 1), edges)
    assert torch.allclose(out.opacity, torch.ones_like(out.opacity), atol=1e-4)
    assert torch.allclose(out.depth, torch.full_like(out.depth, 3.2), atol=0.02)
    # moving away from a surface (sdf increasing) never adds opacity
    assert float(neus_alpha(edges - 6.0, 50.0).max()) == 0.0


def test_composite_gradients_match_finite_differences():
    alpha = torch.rand(2, 5, dtype=torch.float64).mul(0.9).requires_grad_()
    values = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True)
    edges = torch.linspace(0, 1, 6, dtype=torch.float64).expand(2, 6)
    bg = torch.rand(2, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, v: composite(a, v, edges, bg).color, (alpha, values))
    sdf = torch.linspace(0.3, -0.3, 6, dtype=torch.float64)[None].repeat(2, 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: neus_alpha(s, 10.0), (sdf,))


def test_stratified_edges_jitter_stays_in_bins_and_sample_pdf_follows_weights():
    near, far = torch.zeros(100), torch.ones(100)
    e = stratified_edges(near, far, 8, torch.Generator().manual_seed(0), jitter=True)
    assert bool((e.diff(dim=-1) > 0).all()) and bool((e[:, 0] == 0).all()) and bool((e[:, -1] == 1).all())
    plain = stratified_edges(near, far, 8)
    assert float((e - plain).abs().max()) <= 0.5 / 8 + 1e-6
    w = torch.zeros(100, 8)
    w[:, 5] = 1.0  # all mass in [5/8, 6/8)
    t = sample_pdf(e, w, 64, torch.Generator().manual_seed(1))
    inside = (t >= e[:, 5:6]) & (t <= e[:, 6:7])
    assert float(inside.float().mean()) > 0.99
    assert bool((t.diff(dim=-1) >= 0).all())
