"""rasterize / interpolate: fast path vs reference, analytic renders, gradients, bad input."""

import math

import pytest
import torch

from unrender.cameras import Camera, look_at
from unrender.errors import InputError
from unrender.render.rasterize import (barycentric_derivatives, interpolate, interpolate_derivatives, rasterize)

from conftest import icosphere

BACKENDS = ["numba", "torch"]


def sphere_scene(res=(48, 64), subdiv=2, dtype=torch.float64, eye=(0.3, 0.5, 2.6)):
    v, f = icosphere(subdiv, dtype)
    cam = Camera.from_fov(45, res[1], res[0], look_at(eye)).to(dtype=dtype)
    return v, f, cam, cam.world_to_clip(v).contiguous()


def test_backends_agree_ids_and_values():
    v, f, cam, pos = sphere_scene(res=(96, 128), subdiv=3)
    r1 = rasterize(pos, f, (96, 128), backend="numba")
    r2 = rasterize(pos, f, (96, 128), backend="torch")
    same = r1[..., 3] == r2[..., 3]
    assert same.float().mean() > 0.999
    assert (r1[..., 3] > 0).sum() > 1000
    assert torch.allclose(r1[same], r2[same], atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sphere_silhouette_area(backend):
    # A sphere of radius r at distance d subtends a cone of half-angle asin(r/d): its silhouette is a
    # circle of radius f * tan(asin(r / d)) pixels on the image plane of focal f.
    res = 256
    v, f = icosphere(5, torch.float64)
    cam = Camera.from_fov(40, res, res, look_at((0, 0, 3.0))).to(dtype=torch.float64)
    rast = rasterize(cam.world_to_clip(v), f, res, backend=backend)
    area = (rast[..., 3] > 0).sum().item()
    rho = cam.fx.item() * math.tan(math.asin(1 / 3.0))
    # The polyhedron is inscribed in the unit sphere, so its silhouette is slightly smaller.
    assert 0.985 * math.pi * rho ** 2 < area < 1.002 * math.pi * rho ** 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_quad_at_known_depth(backend):
    cam = Camera.from_fov(60, 32, 32, look_at((0, 0, 0), (0, 0, -1)), near=0.1, far=10).to(dtype=torch.float64)
    depth = 2.5
    quad = torch.tensor([[-5, -5, -depth], [5, -5, -depth], [5, 5, -depth], [-5, 5, -depth]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]])
    rast = rasterize(cam.world_to_clip(quad), tri, 32, backend=backend)
    assert (rast[..., 3] > 0).all()
    n, fa = 0.1, 10.0
    expect = ((fa + n) / (fa - n) * depth - 2 * fa * n / (fa - n)) / depth  # ndc z at eye depth `depth`
    assert torch.allclose(rast[..., 2], torch.full_like(rast[..., 2], expect), atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_perspective_correct_interpolation(backend):
    # Interpolating world positions over a slanted plane must give the ray/plane intersections.
    cam = Camera.from_fov(50, 40, 30, look_at((0.2, 0.3, 3.0))).to(dtype=torch.float64)
    quad = torch.tensor([[-2, -2, -1.5], [2, -2, 0.5], [2, 2, 0.5], [-2, 2, -1.5]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]])
    rast = rasterize(cam.world_to_clip(quad), tri, (30, 40), backend=backend)
    world = interpolate(quad, rast, tri)[0].flip(0)  # rows top-first to match Camera.rays
    o, d = cam.rays()
    normal = torch.linalg.cross(quad[1] - quad[0], quad[3] - quad[0])
    t = ((quad[0] - o[0]) @ normal) / (d[0] @ normal)
    hit = o[0] + t[..., None] * d[0]
    mask = (rast[0].flip(0)[..., 3] > 0)
    assert mask.sum() > 500
    assert torch.allclose(world[mask], hit[mask], atol=1e-9)


def test_batched_equals_looped_and_broadcast():
    v, f = icosphere(2, torch.float32)
    eyes = torch.tensor([[0, 0.5, 2.6], [1.5, 0.2, 2.0], [-2.0, -1.0, 1.0]])
    cam = Camera.from_fov(45, 40, 32, look_at(eyes))
    pos = cam.world_to_clip(v)
    batched = rasterize(pos, f, (32, 40))
    for i in range(3):
        assert torch.equal(batched[i], rasterize(pos[i], f, (32, 40))[0])
    col = torch.rand(v.shape[0], 3)
    assert torch.equal(interpolate(col, batched, f), interpolate(col[None].expand(3, -1, -1), batched, f))


def test_stable_across_runs():
    v, f, cam, pos = sphere_scene(dtype=torch.float32, subdiv=3)
    runs = [rasterize(pos, f, (48, 64)) for _ in range(3)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_triangle_crossing_camera_plane(backend):
    # A ground plane that extends behind the camera must be clipped, not wrapped around.
    cam = Camera.from_fov(60, 32, 32, look_at((0, 1, 0), (0, 1, -1))).to(dtype=torch.float64)
    plane = torch.tensor([[-50, 0, 50], [50, 0, 50], [50, 0, -50], [-50, 0, -50]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]])
    rast = rasterize(cam.world_to_clip(plane), tri, 32, backend=backend)
    covered = rast[0, ..., 3] > 0
    assert covered[:14].all() and not covered[17:].any()  # row 0 is the bottom: ground below horizon


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_raster_is_zero(backend):
    pos = torch.tensor([[5.0, 5, 0, 1], [6, 5, 0, 1], [5, 6, 0, 1]])
    rast = rasterize(pos, torch.tensor([[0, 1, 2]]), (8, 8), backend=backend)
    assert rast.shape == (1, 8, 8, 4) and not rast.any()
    assert not rasterize(pos, torch.zeros(0, 3, dtype=torch.long), (8, 8)).any()


def test_gradcheck_fast_path_float64():
    # Small perturbations keep every pixel on its triangle, so the map pos -> rast is smooth.
    v, f, cam, pos = sphere_scene(res=(12, 16), subdiv=1)
    pos = pos.clone().requires_grad_()
    fn = lambda p: rasterize(p, f, (12, 16), backend="numba")[..., :3]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (pos,), eps=1e-7, atol=1e-5)


def test_fast_backward_matches_reference_autograd():
    v, f, cam, pos = sphere_scene(res=(48, 64), subdiv=2)
    g = torch.randn(1, 48, 64, 4, dtype=torch.float64)
    grads = []
    for backend in BACKENDS:
        p = pos.clone().requires_grad_()
        (rasterize(p, f, (48, 64), backend=backend) * g).sum().backward()
        grads.append(p.grad)
    assert grads[0].abs().max() > 1
    assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-9)


def test_float32_matches_float64():
    v, f, cam, pos = sphere_scene(res=(48, 64), subdiv=2)
    r64 = rasterize(pos, f, (48, 64))
    r32 = rasterize(pos.float(), f, (48, 64))
    same = r64[..., 3] == r32[..., 3]
    assert same.float().mean() > 0.995
    assert torch.allclose(r32[same].double(), r64[same], atol=1e-4)


def test_interpolate_gradcheck_attr_and_positions():
    v, f, cam, pos = sphere_scene(res=(10, 12), subdiv=1)
    attr = torch.rand(v.shape[0], 2, dtype=torch.float64, requires_grad=True)
    p = pos.clone().requires_grad_()
    fn = lambda a, q: interpolate(a, rasterize(q, f, (10, 12)), f)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (attr, p), eps=1e-7, atol=1e-5)


def test_screen_derivatives_match_finite_differences():
    # d(attr)/dX from rast_db equals the difference of neighbouring pixels on a plane (linear in screen
    # space for an affine attribute of ndc, here ndc x itself: d(ndc x)/dX = 2/W).
    cam = Camera.from_fov(50, 40, 30, look_at((0.2, 0.3, 3.0))).to(dtype=torch.float64)
    quad = torch.tensor([[-2, -2, -1.5], [2, -2, 0.5], [2, 2, 0.5], [-2, 2, -1.5]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]])
    pos = cam.world_to_clip(quad)
    rast = rasterize(pos, tri, (30, 40))
    db = barycentric_derivatives(pos, tri, rast)
    world = interpolate(quad, rast, tri)
    d = interpolate_derivatives(quad, rast, tri, db)  # [1,H,W,6]
    fd = (world[0, 10:20, 16] - world[0, 10:20, 14]) / 2  # central difference along X
    assert torch.allclose(d[0, 10:20, 15, 0::2], fd, rtol=2e-3, atol=1e-6)
    fdy = (world[0, 16, 10:20] - world[0, 14, 10:20]) / 2
    assert torch.allclose(d[0, 15, 10:20, 1::2], fdy, rtol=2e-3, atol=1e-6)


def test_bad_input_names_argument():
    pos = torch.rand(3, 4)
    with pytest.raises(InputError, match="pos"):
        rasterize(torch.rand(3, 3), torch.tensor([[0, 1, 2]]), 8)
    with pytest.raises(InputError, match="tri"):
        rasterize(pos, torch.tensor([[0, 1, 7]]), 8)
    with pytest.raises(InputError, match="tri"):
        rasterize(pos, torch.tensor([[0.0, 1, 2]]), 8)
    with pytest.raises(InputError, match="resolution"):
        rasterize(pos, torch.tensor([[0, 1, 2]]), (0, 8))
    with pytest.raises(InputError, match="attr"):
        interpolate(torch.rand(3), torch.zeros(1, 8, 8, 4), torch.tensor([[0, 1, 2]]))
    # non-contiguous, int32 and float64 inputs are converted, not refused
    pos64 = torch.rand(4, 3, dtype=torch.float64).t()[:, :3].t()
    rasterize(torch.cat([pos64, torch.ones(3, 1, dtype=torch.float64)], 1), torch.tensor([[0, 1, 2]], dtype=torch.int32), 8)


@pytest.mark.parametrize("batched_attr", [False, True])
def test_interpolate_fast_path_matches_reference(batched_attr):
    v, f, cam, pos = sphere_scene(res=(32, 40), subdiv=2)
    pos = torch.cat([pos, pos.flip(1)], 0)  # two different views
    attr = torch.rand(*(((2,) if batched_attr else ()) + (v.shape[0], 3)), dtype=torch.float64)
    outs, grads = [], []
    g = torch.randn(2, 32, 40, 3, dtype=torch.float64)
    for backend in BACKENDS:
        a = attr.clone().requires_grad_()
        p = pos.clone().requires_grad_()
        out = interpolate(a, rasterize(p, f, (32, 40)), f, backend=backend)
        (out * g).sum().backward()
        outs.append(out)
        grads.append((a.grad, p.grad))
    assert torch.allclose(outs[0], outs[1], atol=1e-12)
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-10)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-8)
    assert grads[0][1].abs().max() > 0


def test_interpolate_fast_path_gradcheck():
    v, f, cam, pos = sphere_scene(res=(8, 10), subdiv=1)
    rast = rasterize(pos, f, (8, 10)).detach()
    uv = rast[..., :2].clone().requires_grad_()  # the triangle id channel is not differentiable
    attr = torch.rand(v.shape[0], 2, dtype=torch.float64, requires_grad=True)
    fn = lambda a, q: interpolate(a, torch.cat([q, rast[..., 2:]], -1), f, backend="numba")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (attr, uv), eps=1e-7, atol=1e-6)


def test_derivative_kernels_match_reference():
    v, f, cam, pos = sphere_scene(res=(32, 40), subdiv=2)
    rast = rasterize(pos, f, (32, 40))
    fast = barycentric_derivatives(pos, f, rast)
    attr = torch.rand(v.shape[0], 2, dtype=torch.float64)
    fast_a = interpolate_derivatives(attr, rast, f, fast)
    import importlib
    R = importlib.import_module("unrender.render.rasterize")  # the package re-exports a function of that name
    saved, R.raster_cpu = R.raster_cpu, None
    try:
        ref = barycentric_derivatives(pos, f, rast)
        ref_a = interpolate_derivatives(attr, rast, f, ref)
    finally:
        R.raster_cpu = saved
    assert fast.abs().max() > 0 and torch.allclose(fast, ref, atol=1e-12)
    assert torch.allclose(fast_a, ref_a, atol=1e-12)
