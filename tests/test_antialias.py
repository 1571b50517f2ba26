"""antialias: visibility gradients vs finite differences and analytic area, locality, topology, backends."""

import pytest
import torch

from unrender.errors import InputError
from unrender.render.antialias import antialias, build_topology, silhouette_edges
from unrender.render.rasterize import rasterize

from conftest import icosphere

BACKENDS = ["numba", "torch"]
RES = 16  # pixels are 2 / 16 = 0.125 ndc wide; centres at ndc (k + 0.5) * 0.125 - 1


def px2ndc(p):
    """Pixel coordinate (centres at k + 0.5) to ndc."""
    return p * 2.0 / RES - 1.0


def quad(x0, x1, y0, y1, dtype=torch.float64):
    pos = torch.tensor([[x0, y0, 0.0, 1.0], [x1, y0, 0.0, 1.0], [x0, y1, 0.0, 1.0], [x1, y1, 0.0, 1.0]], dtype=dtype)
    return pos, torch.tensor([[0, 1, 2], [2, 1, 3]])


def coverage_sum(pos, tri, backend="auto", topology=None):
    rast = rasterize(pos, tri, RES)
    mask = (rast[..., 3:] > 0).to(pos.dtype)
    return antialias(mask, rast, pos, tri, topology=topology, backend=backend).sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_square_area_and_edge_gradient_are_exact(backend):
    # Edges 0.1 px past pixel centres (left/bottom) and 0.2 px before them (right/top). Horizontal pairs
    # make each of the 7 covered rows exactly 7.7 px long and vertical pairs each of the 7 covered
    # columns 7.7 px tall; only the four corner pieces outside both (0.7 x 0.7 px in all) are not seen.
    x0, x1, y0, y1 = 3.6, 11.3, 4.6, 12.3
    nrows = ncols = 7
    pos, tri = quad(px2ndc(x0), px2ndc(x1), px2ndc(y0), px2ndc(y1))
    pos.requires_grad_()
    total = coverage_sum(pos, tri, backend)
    assert total.item() == pytest.approx(nrows * (x1 - x0) + ncols * (y1 - y0) - nrows * ncols, abs=1e-9)
    assert total.item() == pytest.approx((x1 - x0) * (y1 - y0) - 0.7 * 0.7, abs=1e-9)
    total.backward()
    # d(area)/d(x of the right edge) = (covered rows) * (px per ndc unit), exactly
    assert pos.grad[[1, 3], 0].sum().item() == pytest.approx(nrows * RES / 2, rel=1e-9)
    assert pos.grad[[0, 2], 0].sum().item() == pytest.approx(-nrows * RES / 2, rel=1e-9)
    assert pos.grad[[2, 3], 1].sum().item() == pytest.approx(ncols * RES / 2, rel=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vertex_gradient_matches_finite_difference_and_area(backend):
    # One vertex moved in x tilts two silhouette edges. eps = 0.15 px moves every edge crossing by at most
    # 0.15 px and no crossing passes a pixel centre (checked: the raster does not change), so the blended
    # coverage is linear over the step and the central difference must equal the autograd derivative.
    pos0 = torch.tensor([[px2ndc(2.3), px2ndc(2.7), 0, 1], [px2ndc(13.2), px2ndc(4.1), 0, 1],
                         [px2ndc(8.3), px2ndc(14.35), 0, 1]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]])
    eps = 0.15 * 2.0 / RES
    pos = pos0.clone().requires_grad_()
    coverage_sum(pos, tri, backend).backward()
    plus, minus = pos0.clone(), pos0.clone()
    plus[2, 0] += eps
    minus[2, 0] -= eps
    assert torch.equal(rasterize(plus, tri, RES)[..., 3], rasterize(minus, tri, RES)[..., 3])
    fd = (coverage_sum(plus, tri, backend) - coverage_sum(minus, tri, backend)) / (2 * eps)
    assert pos.grad[2, 0].item() == pytest.approx(fd.item(), rel=1e-6)
    # The exact area (shoelace) changes by d(area)/dx_2 = (y_0 - y_1) / 2 in ndc^2, i.e. times (RES/2)^2
    # px^2; the antialiased estimate samples rows and columns at pixel centres, so it is close, not equal.
    analytic = (pos0[0, 1] - pos0[1, 1]).item() / 2 * (RES / 2) ** 2
    assert pos.grad[2, 0].item() == pytest.approx(analytic, rel=0.15)
    assert pos.grad[2, 0].item() < 0  # moving the top vertex right shrinks this (ccw) triangle


def hexagon(x_right):
    """Fan of a hexagon whose right side x = x_right is vertical and all other sides steeper than 45
    degrees, so only horizontal pixel pairs blend (every row's coverage is its exact length)."""
    pts = [(4.2, 7.7), (10.0, 1.3), (x_right, 5.2), (x_right, 10.8), (10.0, 14.2)]
    pos = torch.tensor([[px2ndc(x), px2ndc(y), 0.0, 1.0] for x, y in pts], dtype=torch.float64)
    return pos, torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 4]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_coverage_is_continuous_when_an_edge_crosses_pixel_centres(backend):
    # Moving the right side across the column-11 centres (x = 11.5) adds 6 whole pixels to the raster;
    # the antialiased coverage only moves by d(sum of row lengths)/dx * shift (rows sampled at centres:
    # 6 rows fully, rows 2.5..4.5 by (y - 1.3) / 3.9, rows 11.5..13.5 by (14.2 - y) / 3.4). Row 1.5 spans
    # only x in [9.82, 10.08], no pixel centre: no pixel shows it, so it cannot be found (as in the paper).
    slope = 6 + (1.2 + 2.2 + 3.2) / 3.9 + (2.7 + 1.7 + 0.7) / 3.4
    shift = 1e-3
    sums, raw = [], []
    for x in (11.5 - shift, 11.5 + shift):
        pos, tri = hexagon(x)
        pos.requires_grad_()
        total = coverage_sum(pos, tri, backend)
        total.backward()
        # gradient of the right side in px per px: exactly the slope on both sides of the jump
        assert pos.grad[[2, 3], 0].sum().item() / (RES / 2) == pytest.approx(slope, rel=1e-9)
        sums.append(total.item())
        raw.append(int((rasterize(pos.detach(), tri, RES)[..., 3] > 0).sum()))
    assert raw[1] - raw[0] == 6
    assert sums[1] - sums[0] == pytest.approx(2 * shift * slope, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_silhouette_pixels_change(backend):
    # Two coplanar triangles sharing a diagonal: nothing happens along the diagonal or inside.
    pos, tri = quad(px2ndc(3.6), px2ndc(11.3), px2ndc(4.6), px2ndc(12.3))
    rast = rasterize(pos, tri, RES)
    color = torch.rand(1, RES, RES, 3, dtype=torch.float64)
    out = antialias(color, rast, pos, tri, backend=backend)
    changed = (out != color).any(-1)[0]
    cov = rast[0, ..., 3] > 0
    pad = torch.nn.functional.pad(cov[None, None].float(), (1, 1, 1, 1), mode="replicate")[0, 0] > 0
    border = (pad[1:-1, :-2] != cov) | (pad[1:-1, 2:] != cov) | (pad[:-2, 1:-1] != cov) | (pad[2:, 1:-1] != cov)
    assert changed.any()
    assert not (changed & ~border).any()
    # pixels of different triangles that touch across the shared diagonal are left alone
    ids = rast[0, ..., 3]
    diag = (ids[:, :-1] != ids[:, 1:]) & (ids[:, :-1] > 0) & (ids[:, 1:] > 0)
    assert diag.any()
    assert not changed[:, :-1][diag].any() and not changed[:, 1:][diag].any()


def test_folded_edge_is_a_silhouette_and_blends():
    # Triangle 1 is folded back over triangle 0 (both third vertices on the same side of the shared edge):
    # the shared edge is a silhouette; where triangle 1 is in front it ends there, over triangle 0.
    pos = torch.tensor([[0.0, -0.8, 0.5, 1], [0.0, 0.8, 0.5, 1], [-0.9, 0.05, 0.5, 1], [-0.5, 0.0, -0.5, 1]],
                       dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [1, 0, 3]])
    topo = build_topology(tri)
    sil = silhouette_edges(pos, topo)[0]
    shared = ((topo.edge_faces >= 0).all(-1)).nonzero().squeeze(1)
    assert shared.numel() == 1 and bool(sil[shared])
    flat = pos.clone()
    flat[3, 0] = 0.5  # unfolded: the third vertices on opposite sides, no silhouette
    assert not bool(silhouette_edges(flat, topo)[0, shared])
    rast = rasterize(pos, tri, RES)
    color = torch.where(rast[..., 3:] == 2, 1.0, 0.0).to(torch.float64)  # front triangle white, other black
    out = antialias(color, rast, pos, tri, topology=topo)
    col_edge = int(RES / 2)  # x = 0 is the boundary between columns 7 and 8
    blended = out[0, :, col_edge - 1:col_edge + 1] != color[0, :, col_edge - 1:col_edge + 1]
    assert blended.any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_topology_reuse_and_backends_agree_on_a_sphere(backend):
    v, f = icosphere(3, torch.float64)
    pos = torch.cat([v[:, :2] * 0.7, v[:, 2:] * 0.5, torch.ones_like(v[:, :1]) + v[:, 2:] * 0.3], 1)
    rast = rasterize(pos, f, (40, 48))
    color = torch.rand(1, 40, 48, 3, dtype=torch.float64)
    topo = build_topology(f)
    outs = []
    grads = []
    for be, tp in ((backend, None), (backend, topo), (backend, topo), ("torch", topo)):
        p = pos.clone().requires_grad_()
        c = color.clone().requires_grad_()
        out = antialias(c, rast, p, f, topology=tp, backend=be)
        (out * torch.linspace(0, 1, 3, dtype=torch.float64)).sum().backward()
        outs.append(out.detach())
        grads.append((p.grad, c.grad))
    assert (outs[0] != color).any(-1).sum() > 20
    for o, g in zip(outs[1:], grads[1:]):
        assert torch.equal(o, outs[0]) or torch.allclose(o, outs[0], atol=1e-12)
        assert torch.allclose(g[0], grads[0][0], atol=1e-9) and torch.allclose(g[1], grads[0][1], atol=1e-12)


def test_gradcheck_colour_and_position():
    pos0 = torch.tensor([[px2ndc(2.3), px2ndc(2.7), 0.1, 1], [px2ndc(13.2), px2ndc(4.1), 0.1, 1.1],
                         [px2ndc(6.9), px2ndc(14.35), 0.1, 0.9]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]])
    rast = rasterize(pos0, tri, RES)
    color = torch.rand(1, RES, RES, 2, dtype=torch.float64, requires_grad=True)
    pos = pos0.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda c, p: antialias(c, rast, p, tri), (color, pos), eps=1e-6, atol=1e-7,
                                    fast_mode=True)
    assert torch.autograd.gradcheck(lambda p: antialias(color.detach(), rast, p, tri), (pos,), eps=1e-6, atol=1e-7)


def test_pos_gradient_boost_scales_only_the_gradient():
    pos, tri = quad(px2ndc(3.6), px2ndc(11.3), px2ndc(4.6), px2ndc(12.3))
    rast = rasterize(pos, tri, RES)
    mask = (rast[..., 3:] > 0).double()
    p1, p2 = pos.clone().requires_grad_(), pos.clone().requires_grad_()
    o1 = antialias(mask, rast, p1, tri)
    o2 = antialias(mask, rast, p2, tri, pos_gradient_boost=3.0)
    assert torch.equal(o1, o2)
    o1.sum().backward()
    o2.sum().backward()
    assert torch.allclose(p2.grad, 3.0 * p1.grad)


def test_batch_matches_single_images():
    pos_a, tri = quad(px2ndc(3.6), px2ndc(11.3), px2ndc(4.6), px2ndc(12.3))
    pos_b, _ = quad(px2ndc(1.2), px2ndc(9.8), px2ndc(2.9), px2ndc(14.1))
    pos = torch.stack([pos_a, pos_b])
    rast = rasterize(pos, tri, RES)
    color = torch.rand(2, RES, RES, 3, dtype=torch.float64)
    out = antialias(color, rast, pos, tri)
    for i, p in enumerate((pos_a, pos_b)):
        assert torch.allclose(out[i], antialias(color[i:i + 1], rast[i:i + 1], p, tri)[0])


def test_build_topology_edges():
    topo = build_topology(torch.tensor([[0, 1, 2], [2, 1, 3], [1, 0, 4], [1, 0, 5]]))
    assert topo.edges.shape[0] == 9
    e01 = ((topo.edges[:, 0] == 0) & (topo.edges[:, 1] == 1)).nonzero().item()
    assert bool(topo.nonmanifold[e01]) and int(topo.nonmanifold.sum()) == 1
    e12 = ((topo.edges[:, 0] == 1) & (topo.edges[:, 1] == 2)).nonzero().item()
    assert sorted(topo.edge_faces[e12].tolist()) == [0, 1] and sorted(topo.edge_opposite[e12].tolist()) == [0, 3]
    # face_edges[f, i] is the edge opposite vertex i
    for f, t in enumerate([[0, 1, 2], [2, 1, 3]]):
        for i in range(3):
            assert sorted(topo.edges[topo.face_edges[f, i]].tolist()) == sorted([t[(i + 1) % 3], t[(i + 2) % 3]])


def test_bad_input_raises():
    pos, tri = quad(-0.5, 0.5, -0.5, 0.5)
    rast = rasterize(pos, tri, RES)
    color = torch.zeros(1, RES, RES, 3, dtype=torch.float64)
    with pytest.raises(InputError):
        antialias(color[:, :-1], rast, pos, tri)
    with pytest.raises(InputError):
        antialias(color, rast[..., :3], pos, tri)
    with pytest.raises(InputError):
        antialias(color, rast, pos[:, :3], tri)
    with pytest.raises(InputError):
        antialias(color, rast, pos, tri, topology=build_topology(tri[:1]))
    with pytest.raises(InputError):
        antialias(color, rast, pos, tri + 10)
    with pytest.raises(InputError):
        antialias(color, rast, pos, tri, backend="cuda-magic")
    with pytest.raises(InputError):
        antialias(color, rast, torch.stack([pos] * 3), tri)
    with pytest.raises(InputError):
        build_topology(torch.zeros(3, 3))
