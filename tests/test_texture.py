"""Tests of texture sampling, mip stacks and cube-map helpers (unrender.render.texture / mipmap / cubemap)."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from unrender.errors import InputError
from unrender.render.cubemap import (cube_directions, cube_to_latlong, dir_to_face, dir_to_latlong,
                                     latlong_directions, latlong_to_cube)
from unrender.render.mipmap import build_mip, downsample
from unrender.render.texture import texture

texmod = importlib.import_module("unrender.render.texture")  # the package re-exports a function of that name
BACKENDS = [False] + ([True] if texmod.numba is not None else [])


@pytest.fixture(params=BACKENDS, ids=lambda b: "numba" if b else "torch")
def backend(request, monkeypatch):
    monkeypatch.setattr(texmod, "USE_NUMBA", request.param)
    return request.param


# ---------------------------------------------------------------- slow loop references

def _ref_sample(tex, u, v, filt, wrap):
    """One lookup into ``tex[H,W,C]`` (numpy) by the textbook formulas, one texel at a time."""
    h, w, _ = tex.shape

    def fix(i, n):
        return i % n if wrap else min(max(i, 0), n - 1)

    if filt == "nearest":
        return tex[fix(math.floor(v * h), h), fix(math.floor(u * w), w)]
    x, y = u * w - 0.5, v * h - 0.5
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    out = 0.0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            out = out + wy * wx * tex[fix(y0 + dy, h), fix(x0 + dx, w)]
    return out


def _ref_texture(tex, uv, filt, wrap):
    tex, uv = tex.double().numpy(), uv.double().numpy()
    if tex.ndim == 3:
        tex = np.broadcast_to(tex, (uv.shape[0],) + tex.shape)
    out = np.zeros(uv.shape[:3] + (tex.shape[-1],))
    for b in range(uv.shape[0]):
        for i in range(uv.shape[1]):
            for j in range(uv.shape[2]):
                out[b, i, j] = _ref_sample(tex[b], uv[b, i, j, 0], uv[b, i, j, 1], filt, wrap)
    return torch.from_numpy(out)


def _safe_uv(gen, shape, h, w, dtype=torch.float64):
    """uv whose bilinear fractions lie in [0.1, 0.9] (away from the weights' kinks, for gradcheck)."""
    ix = torch.randint(-w, 2 * w, shape, generator=gen)
    iy = torch.randint(-h, 2 * h, shape, generator=gen)
    fx = 0.1 + 0.8 * torch.rand(shape, generator=gen)
    fy = 0.1 + 0.8 * torch.rand(shape, generator=gen)
    return torch.stack([(ix + 0.5 + fx) / w, (iy + 0.5 + fy) / h], -1).to(dtype)


# ---------------------------------------------------------------- 2-D lookups

@pytest.mark.parametrize("filt", ["nearest", "linear"])
@pytest.mark.parametrize("boundary", ["wrap", "clamp"])
def test_matches_loop_reference(backend, filt, boundary):
    gen = torch.Generator().manual_seed(1)
    tex = torch.rand(2, 5, 7, 2, generator=gen, dtype=torch.float64)
    uv = torch.rand(2, 6, 5, 2, generator=gen, dtype=torch.float64) * 4 - 1.5
    uv[0, 0, 0] = torch.tensor([0.5 / 7, 0.5 / 5])  # exactly a texel centre
    ref = _ref_texture(tex, uv, filt, boundary == "wrap")
    torch.testing.assert_close(texture(tex, uv, filter=filt, boundary=boundary), ref, rtol=1e-10, atol=1e-10)
    shared = _ref_texture(tex[0], uv, filt, boundary == "wrap")
    torch.testing.assert_close(texture(tex[0], uv, filter=filt, boundary=boundary), shared, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(texture(tex, uv, filter=filt, boundary=boundary)[0, 0, 0], tex[0, 0, 0])


def test_texel_centre_convention():
    tex = torch.arange(6.0).reshape(2, 3, 1)  # H=2, W=3
    uv = torch.tensor([[[[(2 + 0.5) / 3, (1 + 0.5) / 2], [0.0, 0.0]]]])
    out = texture(tex, uv, boundary="clamp")[0, 0, :, 0]
    assert out.tolist() == [5.0, 0.0]  # centre of tex[1, 2]; the corner clamps to tex[0, 0]
    wrapped = texture(tex, uv, boundary="wrap")[0, 0, 1, 0]
    assert wrapped.item() == pytest.approx((0 + 2 + 3 + 5) / 4)  # corner = mean of the four corner texels


def test_per_axis_boundary():
    gen = torch.Generator().manual_seed(2)
    tex = torch.rand(4, 6, 1, generator=gen, dtype=torch.float64)
    uv = torch.rand(1, 5, 5, 2, generator=gen, dtype=torch.float64) * 3 - 1
    out = texture(tex, uv, boundary=("wrap", "clamp"))
    u_wrapped = torch.stack([uv[..., 0] % 1.0, uv[..., 1].clamp(0, 1)], -1)
    torch.testing.assert_close(out, texture(tex, u_wrapped, boundary="clamp"))


# ---------------------------------------------------------------- mip stacks

def test_mip_levels_are_box_averages():
    gen = torch.Generator().manual_seed(3)
    tex = torch.rand(2, 8, 4, 3, generator=gen, dtype=torch.float64)
    stack = build_mip(tex)
    assert [tuple(lv.shape[1:3]) for lv in stack.levels] == [(8, 4), (4, 2), (2, 1), (1, 1)]
    assert torch.equal(stack.levels[0], tex)
    for lo, hi in zip(stack.levels[:-1], stack.levels[1:]):
        h2, w2 = hi.shape[1:3]
        for i in range(h2):
            for j in range(w2):
                rows = slice(2 * i, 2 * i + 2) if lo.shape[1] > 1 else slice(0, 1)
                cols = slice(2 * j, 2 * j + 2) if lo.shape[2] > 1 else slice(0, 1)
                torch.testing.assert_close(hi[:, i, j], lo[:, rows, cols].mean((1, 2)))
    torch.testing.assert_close(stack.levels[-1][:, 0, 0], tex.mean((1, 2)))
    assert len(build_mip(tex, max_mip_level=1).levels) == 2


def test_mip_odd_sizes_area_weighted():
    x = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0], dtype=torch.float64).reshape(1, 1, 5, 1)
    y = downsample(x)[0, 0, :, 0]  # 5 -> 2 with weights (1, 1, .5)/2.5 and (.5, 1, 1)/2.5
    torch.testing.assert_close(y, torch.tensor([(1 + 2 + 2) / 2.5, (2 + 8 + 16) / 2.5], dtype=torch.float64))
    tex = torch.rand(7, 3, 2, dtype=torch.float64)
    stack = build_mip(tex)
    assert [tuple(lv.shape[:2]) for lv in stack.levels] == [(7, 3), (3, 1), (1, 1)]
    for lv in stack.levels:  # area weighting keeps the mean on every level
        torch.testing.assert_close(lv.mean((0, 1)), tex.mean((0, 1)))


def test_cube_mip_is_per_face():
    cube = torch.rand(6, 4, 4, 2, dtype=torch.float64)
    stack = build_mip(cube)
    assert [tuple(lv.shape) for lv in stack.levels] == [(6, 4, 4, 2), (6, 2, 2, 2), (6, 1, 1, 2)]
    torch.testing.assert_close(stack.levels[2][:, 0, 0], cube.mean((1, 2)))


def test_trilinear_at_integer_level_equals_bilinear_on_that_level(backend):
    gen = torch.Generator().manual_seed(4)
    tex = torch.rand(1, 32, 16, 3, generator=gen, dtype=torch.float64)
    uv = torch.rand(1, 6, 7, 2, generator=gen, dtype=torch.float64) * 2 - 0.5
    stack = build_mip(tex)
    for lvl in (0, 1, 2):
        want = texture(stack.levels[lvl], uv, filter="linear")
        bias = torch.full(uv.shape[:3], float(lvl), dtype=torch.float64)
        for filt in ("linear-mipmap-linear", "linear-mipmap-nearest"):
            torch.testing.assert_close(texture(tex, uv, mip_level_bias=bias, mip=stack, filter=filt), want)
    # a footprint of 2 texels along u is level 1, and level 1.5 blends levels 1 and 2 equally
    da = torch.zeros(1, 6, 7, 4, dtype=torch.float64)
    da[..., 0] = 2.0 / 16
    torch.testing.assert_close(texture(tex, uv, uv_da=da), texture(stack.levels[1], uv))
    half = texture(tex, uv, uv_da=da, mip_level_bias=torch.full(uv.shape[:3], 0.5, dtype=torch.float64))
    torch.testing.assert_close(half, 0.5 * (texture(stack.levels[1], uv) + texture(stack.levels[2], uv)))
    big = texture(tex, uv, mip_level_bias=torch.full(uv.shape[:3], 99.0, dtype=torch.float64))
    torch.testing.assert_close(big, tex.mean((1, 2))[:, None, None].expand_as(big))
    capped = texture(tex, uv, mip_level_bias=torch.full(uv.shape[:3], 99.0, dtype=torch.float64), max_mip_level=1)
    torch.testing.assert_close(capped, texture(stack.levels[1], uv))


# ---------------------------------------------------------------- cube maps

def test_cube_directions_and_faces():
    r = 4
    dirs = cube_directions(r, dtype=torch.float64)
    assert dirs.shape == (6, r, r, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(6, r, r, dtype=torch.float64))
    face, s, t = dir_to_face(dirs * 3.0)
    centres = (torch.arange(r, dtype=torch.float64) + 0.5) / r
    assert torch.equal(face, torch.arange(6)[:, None, None].expand(6, r, r))
    torch.testing.assert_close(s, centres[None, None, :].expand(6, r, r))
    torch.testing.assert_close(t, centres[None, :, None].expand(6, r, r))
    # OpenGL table: +x face, top-left texel (s, t small) looks towards +z and +y
    assert dirs[0, 0, 0, 2] > 0 and dirs[0, 0, 0, 1] > 0


@pytest.mark.parametrize("filt", ["linear", "nearest"])
def test_cube_axis_lookup_returns_face_centre(backend, filt):
    r = 5
    cube = torch.rand(2, 6, r, r, 3, dtype=torch.float64)
    axes = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float64)
    d = (axes * 2.5).reshape(1, 1, 6, 3).expand(2, 1, 6, 3)
    out = texture(cube, d, boundary="cube", filter=filt)
    torch.testing.assert_close(out[:, 0], cube[:, :, r // 2, r // 2])


def test_cube_bilinear_is_continuous_across_face_edges(backend):
    gen = torch.Generator().manual_seed(5)
    cube = torch.rand(6, 8, 8, 2, generator=gen, dtype=torch.float64)
    t = torch.linspace(-0.7, 0.7, 7, dtype=torch.float64)  # at least one texel away from the corners
    eps = 1e-9
    pairs = []
    for a, b in ((0, 2), (0, 1), (1, 2), (2, 0)):  # edges between faces of axes a and b (both signs)
        for sa in (1, -1):
            for sb in (1, -1):
                c = 3 - a - b
                d1 = torch.zeros(7, 3, dtype=torch.float64)
                d1[:, a], d1[:, b], d1[:, c] = sa * (1 + eps), sb * 1.0, t
                d2 = d1.clone()
                d2[:, a], d2[:, b] = sa * 1.0, sb * (1 + eps)
                pairs.append((d1, d2))
    d1 = torch.cat([p[0] for p in pairs])[None, None]
    d2 = torch.cat([p[1] for p in pairs])[None, None]
    f1, f2 = dir_to_face(d1)[0], dir_to_face(d2)[0]
    assert bool((f1 != f2).all())  # the two sides really are on different faces
    torch.testing.assert_close(texture(cube, d1, boundary="cube"), texture(cube, d2, boundary="cube"),
                               atol=1e-6, rtol=0)


def test_cube_mip_level_from_direction_derivatives():
    r = 16
    cube = torch.rand(6, r, r, 3, dtype=torch.float64)
    d = torch.tensor([0.1, -0.05, 1.0], dtype=torch.float64).reshape(1, 1, 1, 3)
    da = torch.zeros(1, 1, 1, 6, dtype=torch.float64)
    da[..., 0] = 2.0 * 4 / r  # d(dir_x)/dX = 4 texels of s on the +z face (|m| = 1, s = (x/z + 1)/2)
    want = texture(cube, d, boundary="cube", mip_level_bias=torch.full((1, 1, 1), 2.0, dtype=torch.float64))
    got = texture(cube, d, uv_da=da, boundary="cube")
    torch.testing.assert_close(got, want)


def test_latlong_convention():
    dirs = latlong_directions(4, 8, dtype=torch.float64)
    assert dirs[0, :, 1].min() > 0.9 * math.cos(math.pi / 8)  # row 0 is up (+y)
    assert dirs[-1, :, 1].max() < -0.9 * math.cos(math.pi / 8)
    mid = dir_to_latlong(torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(mid, torch.tensor([[0.5, 0.5], [0.75, 0.5]], dtype=torch.float64))
    uv = dir_to_latlong(dirs)
    centres_u = (torch.arange(8, dtype=torch.float64) + 0.5) / 8
    centres_v = (torch.arange(4, dtype=torch.float64) + 0.5) / 4
    torch.testing.assert_close(uv[..., 0], centres_u[None].expand(4, 8))
    torch.testing.assert_close(uv[..., 1], centres_v[:, None].expand(4, 8))


def _smooth(d):
    d = d / d.norm(dim=-1, keepdim=True)
    return torch.stack([0.5 + 0.3 * d[..., 0] + 0.1 * d[..., 1] * d[..., 2], 0.4 - 0.2 * d[..., 2]], -1)


def test_latlong_cube_round_trip():
    ll = _smooth(latlong_directions(64, 128, dtype=torch.float64))
    cube = latlong_to_cube(ll, 24)
    assert cube.shape == (6, 24, 24, 2)
    torch.testing.assert_close(cube, _smooth(cube_directions(24, dtype=torch.float64)), atol=3e-3, rtol=0)
    back = cube_to_latlong(cube, 64, 128)
    torch.testing.assert_close(back, ll, atol=5e-3, rtol=0)
    # batched, and gradients reach the source map
    src = ll[None].repeat(2, 1, 1, 1).requires_grad_()
    latlong_to_cube(src, 8).sum().backward()
    assert src.grad is not None and src.grad.abs().sum() > 0


# ---------------------------------------------------------------- gradients and precision

def _gradcheck(fn, *inputs):
    return torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("boundary", ["wrap", "clamp"])
def test_gradcheck_linear(backend, boundary):
    gen = torch.Generator().manual_seed(6)
    tex = torch.rand(2, 4, 5, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    uv = _safe_uv(gen, (2, 3, 3), 4, 5).requires_grad_()
    assert _gradcheck(lambda t, u: texture(t, u, filter="linear", boundary=boundary), tex, uv)
    assert _gradcheck(lambda t: texture(t, uv.detach(), filter="nearest", boundary=boundary), tex)


def test_gradcheck_trilinear(backend):
    gen = torch.Generator().manual_seed(7)
    tex = torch.rand(1, 8, 8, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    # bilinear fractions on levels 1 (4x4) and 2 (2x2) stay >= 0.02 away from the weights' kinks
    uv = torch.tensor([0.37, 0.61], dtype=torch.float64) + 0.031 * torch.arange(9.0).reshape(1, 3, 3, 1)
    uv = uv.to(torch.float64).requires_grad_()
    da = torch.zeros(1, 3, 3, 4, dtype=torch.float64)
    da[..., 0], da[..., 3] = 2.6 / 8, 1.3 / 8  # level log2(2.6) ~ 1.38: blends levels 1 and 2
    assert _gradcheck(lambda t, u: texture(t, u, uv_da=da), tex, uv)
    bias = torch.full((1, 3, 3), 0.7, dtype=torch.float64)
    assert _gradcheck(lambda t: texture(t, uv.detach(), mip_level_bias=bias, filter="linear-mipmap-nearest"), tex)


def test_gradcheck_cube(backend):
    gen = torch.Generator().manual_seed(8)
    cube = torch.rand(6, 3, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    d = torch.tensor([[0.3, 0.8, -0.2], [1.0, -0.45, 0.1], [-0.1, 0.2, -0.9], [0.93, 0.07, 0.95]],
                     dtype=torch.float64).reshape(1, 1, 4, 3).requires_grad_()
    assert _gradcheck(lambda c, x: texture(c, x, boundary="cube"), cube, d)
    bias = torch.full((1, 1, 4), 0.4, dtype=torch.float64)
    assert _gradcheck(lambda c: texture(c, d.detach(), boundary="cube", mip_level_bias=bias), cube)


def test_backends_agree_on_values_and_gradients(monkeypatch):
    if texmod.numba is None:
        pytest.skip("numba is not installed")
    gen = torch.Generator().manual_seed(9)
    tex = torch.rand(2, 16, 16, 3, generator=gen)
    uv = torch.rand(2, 9, 9, 2, generator=gen) * 2 - 0.5
    da = torch.rand(2, 9, 9, 4, generator=gen) * 0.3
    results = []
    for use in (False, True):
        monkeypatch.setattr(texmod, "USE_NUMBA", use)
        t, u = tex.clone().requires_grad_(), uv.clone().requires_grad_()
        out = texture(t, u, uv_da=da)
        out.backward(torch.ones_like(out))
        results.append((out, t.grad, u.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_float32_matches_float64():
    gen = torch.Generator().manual_seed(10)
    tex = torch.rand(2, 32, 24, 3, generator=gen, dtype=torch.float64)
    uv = torch.rand(2, 8, 8, 2, generator=gen, dtype=torch.float64) * 3 - 1
    da = torch.rand(2, 8, 8, 4, generator=gen, dtype=torch.float64) * 0.2
    for kw in (dict(filter="linear"), dict(uv_da=da), dict(uv_da=da, boundary="clamp")):
        a = texture(tex, uv, **kw)
        b = texture(tex.float(), uv.float(), **{k: (v.float() if torch.is_tensor(v) else v) for k, v in kw.items()})
        assert b.dtype == torch.float32
        torch.testing.assert_close(b.double(), a, atol=2e-5, rtol=0)
    cube = torch.rand(6, 8, 8, 3, generator=gen, dtype=torch.float64)
    d = torch.randn(1, 6, 6, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(texture(cube.float(), d.float(), boundary="cube").double(),
                               texture(cube, d, boundary="cube"), atol=2e-5, rtol=0)


def test_prebuilt_mip_gradient_reaches_texture():
    tex = torch.rand(8, 8, 3, dtype=torch.float64, requires_grad=True)
    uv = torch.rand(1, 4, 4, 2, dtype=torch.float64)
    stack = build_mip(tex)
    texture(tex, uv, mip=stack, mip_level_bias=torch.full((1, 4, 4), 3.0, dtype=torch.float64)).sum().backward()
    # level 3 is the mean of all 64 texels; 16 pixels x 1/64 each
    torch.testing.assert_close(tex.grad, torch.full_like(tex, 16 / 64))


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, name", [
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 3)), "uv"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(2, 2, 2)), "uv"),
    (lambda: texture(torch.rand(4, 4), torch.rand(1, 2, 2, 2)), "tex"),
    (lambda: texture(torch.rand(3, 4, 4, 3), torch.rand(2, 2, 2, 2)), "batch"),
    (lambda: texture(torch.ones(4, 4, 3, dtype=torch.bool), torch.rand(1, 2, 2, 2)), "tex"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2, dtype=torch.complex64)), "uv"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2), uv_da=torch.rand(1, 2, 2, 3)), "uv_da"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2), uv_da=torch.rand(1, 3, 2, 4)), "uv_da"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2), mip_level_bias=torch.rand(1, 2, 2, 1)),
     "mip_level_bias"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2), filter="cubic"), "filter"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2), filter="linear-mipmap-linear"), "uv_da"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2), boundary="mirror"), "boundary"),
    (lambda: texture(torch.rand(5, 4, 4, 3), torch.rand(1, 2, 2, 3), boundary="cube"), "tex"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2), mip=build_mip(torch.rand(8, 8, 3))), "mip"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2), mip="stack"), "mip"),
    (lambda: texture(torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2), max_mip_level=-1), "max_mip_level"),
    (lambda: build_mip(torch.rand(4)), "tex"),
    (lambda: latlong_to_cube(torch.rand(8, 16), 4), "latlong"),
    (lambda: latlong_to_cube(torch.rand(8, 16, 3), 0), "resolution"),
    (lambda: cube_to_latlong(torch.rand(5, 4, 4, 3), 8, 16), "cube"),
    (lambda: cube_to_latlong(torch.rand(6, 4, 4, 3), 0, 16), "height"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(InputError, match=name):
        call()


# ---------------------------------------------------------------- compiled CPU kernels vs the torch path

_mipmod = importlib.import_module("unrender.render.mipmap")
_needs_numba = pytest.mark.skipif(texmod.numba is None, reason="numba is not installed")


def _both_paths(monkeypatch, fn, *inputs):
    """``(value, grads)`` of ``fn(*inputs)`` with the torch path and with the compiled kernels."""
    results = []
    for use in (False, True):
        monkeypatch.setattr(texmod, "USE_NUMBA", use)
        monkeypatch.setattr(_mipmod, "USE_NUMBA", use)
        xs = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
        out = fn(*xs)
        g = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
        out.backward(g)
        results.append((out.detach(), [x.grad for x in xs if x.requires_grad]))
    return results


@_needs_numba
@pytest.mark.parametrize("filt", ["nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear"])
@pytest.mark.parametrize("boundary", ["wrap", "clamp", ("wrap", "clamp")])
@pytest.mark.parametrize("batched", [False, True])
def test_cpu_kernels_match_torch_path_2d(monkeypatch, filt, boundary, batched):
    gen = torch.Generator().manual_seed(20)
    tex = torch.rand((2, 16, 8, 3) if batched else (16, 8, 3), generator=gen, dtype=torch.float64, requires_grad=True)
    uv = (torch.rand(2, 5, 7, 2, generator=gen, dtype=torch.float64) * 3 - 1).requires_grad_(filt != "nearest")
    da = torch.rand(2, 5, 7, 4, generator=gen, dtype=torch.float64) * 0.4
    bias = torch.rand(2, 5, 7, generator=gen, dtype=torch.float64) * 2 - 0.5
    kw = dict(uv_da=da, mip_level_bias=bias) if filt.startswith("linear-mipmap") else {}
    (a, ga), (b, gb) = _both_paths(monkeypatch, lambda t, u: texture(t, u, filter=filt, boundary=boundary, **kw),
                                   tex, uv)
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    for x, y in zip(gb, ga):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)


@_needs_numba
@pytest.mark.parametrize("filt", ["nearest", "linear", "linear-mipmap-linear"])
def test_cpu_kernels_match_torch_path_cube(monkeypatch, filt):
    gen = torch.Generator().manual_seed(21)
    cube = torch.rand(2, 6, 8, 8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    d = torch.randn(2, 9, 11, 3, generator=gen, dtype=torch.float64)
    d[0, 0, :6] = torch.tensor([[1, 1, 0.3], [-1, 0.2, -1], [0.5, -1, -1], [1, 1, 1], [0, 0, 0], [0.3, 2, 0]],
                               dtype=torch.float64)  # edges, a corner, the zero direction, an axis-aligned face
    d.requires_grad_(filt != "nearest")
    da = torch.randn(2, 9, 11, 6, generator=gen, dtype=torch.float64) * 0.2
    kw = dict(uv_da=da) if filt.startswith("linear-mipmap") else {}
    (a, ga), (b, gb) = _both_paths(monkeypatch, lambda c, x: texture(c, x, boundary="cube", filter=filt, **kw),
                                   cube, d)
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    for x, y in zip(gb, ga):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)


@_needs_numba
def test_cpu_kernels_gradcheck(monkeypatch):
    monkeypatch.setattr(texmod, "USE_NUMBA", True)
    gen = torch.Generator().manual_seed(22)
    tex = torch.rand(2, 8, 8, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    uv = torch.tensor([0.37, 0.61], dtype=torch.float64) + 0.031 * torch.arange(12.0).reshape(2, 2, 3, 1)
    uv = uv.to(torch.float64).requires_grad_()
    da = torch.zeros(2, 2, 3, 4, dtype=torch.float64)
    da[..., 0], da[..., 3] = 2.6 / 8, 1.3 / 8
    for boundary in ("wrap", "clamp"):
        assert _gradcheck(lambda t, u: texture(t, u, uv_da=da, boundary=boundary), tex, uv)
    bias = torch.full((2, 2, 3), 1.2, dtype=torch.float64)
    assert _gradcheck(lambda t, u: texture(t, u, mip_level_bias=bias, filter="linear-mipmap-nearest"), tex, uv)
    cube = torch.rand(6, 6, 6, 2, generator=gen, dtype=torch.float64, requires_grad=True)  # levels 6, 3, 1
    d = torch.tensor([[0.3, 0.8, -0.2], [1.0, -0.45, 0.1], [-0.1, 0.2, -0.9], [0.93, 0.07, 0.95]],
                     dtype=torch.float64).reshape(1, 1, 4, 3).requires_grad_()
    cbias = torch.full((1, 1, 4), 0.6, dtype=torch.float64)
    assert _gradcheck(lambda c, x: texture(c, x, boundary="cube", mip_level_bias=cbias), cube, d)


@_needs_numba
def test_cpu_kernels_deterministic_and_compact_uv(monkeypatch):
    monkeypatch.setattr(texmod, "USE_NUMBA", True)
    gen = torch.Generator().manual_seed(23)
    tex = torch.rand(64, 64, 3, generator=gen)
    uv = torch.rand(1, 40000, 1, 2, generator=gen)  # a compact list of covered pixels; many hit the same texels
    da = torch.full((1, 40000, 1, 4), 1.5 / 64)
    grads = []
    for _ in range(3):
        t, u = tex.clone().requires_grad_(), uv.clone().requires_grad_()
        out = texture(t, u, uv_da=da)
        out.backward(torch.ones_like(out))
        grads.append((out, t.grad, u.grad))
    for a, b in zip(grads[0], grads[1]):
        assert torch.equal(a, b)
    for a, b in zip(grads[0], grads[2]):
        assert torch.equal(a, b)
    # pixels whose output gradient is zero (skipped by the kernels) get a zero uv gradient
    t, u = tex.clone().requires_grad_(), uv.clone().requires_grad_()
    texture(t, u, uv_da=da)[:, :100].sum().backward()
    assert bool((u.grad[:, 100:] == 0).all()) and bool((u.grad[:, :100] != 0).any())


@_needs_numba
@pytest.mark.parametrize("shape", [(2, 16, 8, 3), (6, 8, 8, 2), (7, 3, 2), (4, 1, 1)])
def test_mip_kernels_match_torch(monkeypatch, shape):
    gen = torch.Generator().manual_seed(24)
    tex = torch.rand(shape, generator=gen, dtype=torch.float64, requires_grad=True)

    def fn(t):
        stack = build_mip(t)
        return torch.cat([lv.reshape(-1) for lv in stack.levels]), stack.flat
    results = []
    for use in (False, True):
        monkeypatch.setattr(_mipmod, "USE_NUMBA", use)
        t = tex.detach().clone().requires_grad_()
        out, flat = fn(t)
        (out * torch.arange(out.numel(), dtype=out.dtype)).sum().backward()
        results.append((out.detach(), t.grad))
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(_mipmod, "USE_NUMBA", True)
    assert _gradcheck(lambda t: build_mip(t).flat, tex)
