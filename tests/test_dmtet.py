import math

import numpy as np
import pytest
import torch

from unrender.errors import InputError
from unrender.geometry.dmtet import (DMTetGeometry, laplacian_loss, marching_tets, remove_small_components,
                                     sdf_sign_regularizer)
from unrender.geometry.tet_grid import TET_EDGE_PAIRS, tet_grid
from unrender.mesh import Mesh

F64 = torch.float64


def _tet_volumes(vertices, tets):
    p = vertices[tets]
    return torch.linalg.det(p[:, 1:] - p[:, :1]) / 6


def _signed_volume(vertices, faces):
    v = vertices[faces]
    return float((v[:, 0] * torch.linalg.cross(v[:, 1], v[:, 2], dim=-1)).sum() / 6)


def _check_closed_oriented(faces):
    """Every undirected edge in exactly two faces, traversed once in each direction."""
    directed = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    assert torch.unique(directed, dim=0).shape[0] == directed.shape[0]  # consistent winding
    undirected, counts = torch.unique(torch.sort(directed, 1).values, dim=0, return_counts=True)
    assert bool((counts == 2).all())


def _canonical_faces(vertices, faces):
    """Faces as rows of vertex ranks (in sorted position order), rotated to start at their smallest, sorted."""
    _, rank = torch.unique(vertices, dim=0, return_inverse=True)
    f = rank[faces]
    shift = f.argmin(1, keepdim=True)
    f = f.gather(1, (shift + torch.arange(3)) % 3)
    return torch.unique(f, dim=0)


# ---------------------------------------------------------------- grid

@pytest.mark.parametrize("lattice", ["bcc", "kuhn"])
@pytest.mark.parametrize("n, bounds", [(1, ((-1, -1, -1), (1, 1, 1))), (3, ((-1, -1, -1), (1, 1, 1))),
                                       (4, ((0.0, -0.5, 2.0), (1.0, 1.5, 2.5)))])
def test_grid_oriented_tiles_box_and_conforms(lattice, n, bounds):
    g = tet_grid(n, bounds, dtype=F64, lattice=lattice)
    lo, hi = torch.tensor(bounds, dtype=F64)
    corners, cells = (n + 1) ** 3, n ** 3
    assert g.vertices.shape[0] == (corners + cells if lattice == "bcc" else corners)
    assert g.tets.shape[0] == (12 if lattice == "bcc" else 6) * cells
    assert g.tets.dtype == torch.int64 and g.spacing == pytest.approx(float(((hi - lo) / n).min()))
    vol = _tet_volumes(g.vertices, g.tets)
    assert float(vol.min()) > 0
    assert float(vol.sum()) == pytest.approx(float((hi - lo).prod()), rel=1e-12)

    # Conforming: every triangle in one tet (box boundary) or two (interior).
    tri = torch.sort(g.tets[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3), 1).values
    tri, counts = torch.unique(tri, dim=0, return_counts=True)
    assert set(counts.tolist()) == {1, 2}
    p = g.vertices[tri]                                            # [F,3 corners,3 coords]
    on_box_plane = ((p == lo).all(1) | (p == hi).all(1)).any(-1)   # all 3 corners on one box face
    assert bool((on_box_plane == (counts == 1)).all())
    area = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=-1).norm(dim=-1) / 2
    ext = hi - lo
    box_area = 2 * float(ext[0] * ext[1] + ext[1] * ext[2] + ext[0] * ext[2])
    assert float(area[counts == 1].sum()) == pytest.approx(box_area, rel=1e-12)

    # Edges: unique, a < b, and tet_edges names each tet's edges in TET_EDGE_PAIRS order.
    assert bool((g.edges[:, 0] < g.edges[:, 1]).all())
    assert torch.unique(g.edges, dim=0).shape[0] == g.edges.shape[0]
    local = torch.sort(g.tets[:, torch.tensor(TET_EDGE_PAIRS)], -1).values  # [T,6,2]
    assert torch.equal(g.edges[g.tet_edges], local)
    assert torch.unique(local.reshape(-1, 2), dim=0).shape[0] == g.edges.shape[0]


def test_grid_rejects_bad_arguments():
    for bad in (0, 2.5, True, "8"):
        with pytest.raises(InputError, match="resolution"):
            tet_grid(bad)
    assert tet_grid(np.int64(2)).resolution == 2
    for bad in (((0, 0, 0), (1, 0, 1)), ((0, 0), (1, 1)), "box"):
        with pytest.raises(InputError, match="bounds"):
            tet_grid(2, bad)
    with pytest.raises(InputError, match="lattice"):
        tet_grid(2, lattice="cubic")


# ---------------------------------------------------------------- marching tets

def test_case_table_matches_linear_sdf_in_random_tets():
    """Every one of the 14 crossing cases, in random positive tets: the triangles lie on the zero set of
    the tet's linear SDF, face along its gradient, and tile the whole cross-section."""
    gen = torch.Generator().manual_seed(1)
    one_tet = torch.tensor([[0, 1, 2, 3]])
    for case in range(1, 15):
        for _ in range(5):
            p = torch.rand(4, 3, generator=gen, dtype=F64)
            if torch.linalg.det(p[1:] - p[0]) < 0:
                p = p[[0, 1, 3, 2]]
            inside = torch.tensor([(case >> i) & 1 for i in range(4)], dtype=torch.bool)
            sdf = (0.1 + torch.rand(4, generator=gen, dtype=F64)) * torch.where(inside, -1.0, 1.0)
            v, f = marching_tets(p, one_tet, sdf)
            assert f.shape[0] == (2 if int(inside.sum()) == 2 else 1)
            # Linear SDF in the tet: s(x) = s0 + g . (x - p0).
            grad = torch.linalg.solve(p[1:] - p[0], sdf[1:] - sdf[0])
            assert torch.allclose(sdf[0] + (v - p[0]) @ grad, torch.zeros(v.shape[0], dtype=F64), atol=1e-12)
            n = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1)
            assert bool((n @ grad > 0).all())
            # The triangles' projected area along the gradient is the full polygon's (no gap, no overlap):
            # compare with the convex hull of the crossing points in the plane.
            area = float((n @ grad).sum() / grad.norm() / 2)
            u = torch.linalg.svd((v - v.mean(0)).T)[0][:, :2]
            q = (v - v.mean(0)) @ u
            ang = torch.atan2(q[:, 1], q[:, 0]).argsort()
            q = q[ang]
            hull = 0.5 * float((q[:, 0] * q.roll(-1, 0)[:, 1] - q.roll(-1, 0)[:, 0] * q[:, 1]).sum())
            assert area == pytest.approx(abs(hull), rel=1e-9)


@pytest.mark.parametrize("lattice", ["bcc", "kuhn"])
def test_sphere_watertight_outward_and_accurate(lattice):
    n, r, c = 32, 0.6, torch.tensor([0.03, -0.02, 0.01], dtype=F64)
    g = tet_grid(n, dtype=F64, lattice=lattice)
    sdf = (g.vertices - c).norm(dim=-1) - r
    v, f = marching_tets(g.vertices, g.tets, sdf, g.edges, g.tet_edges)
    assert f.shape[0] > 1000 and f.dtype == torch.int64
    _check_closed_oriented(f)
    assert torch.unique(f).shape[0] == v.shape[0]  # no unused vertices
    # The chord of the convex |x - c| - r along an edge of length L overestimates it by at most L^2/(8 r'),
    # r' the distance from c along the edge (> 0.95 r here): each vertex is inside the ball by at most that.
    longest = g.spacing * (1.0 if lattice == "bcc" else math.sqrt(3))  # BCC edges near the sphere: h, h sqrt3/2
    dist = (v - c).norm(dim=-1) - r
    assert float(dist.max()) <= 1e-12
    assert float(dist.min()) >= -longest ** 2 / (8 * 0.95 * r)
    # Inscribed polyhedron: its volume is below the ball's (measured: -0.27% BCC, -0.54% Kuhn).
    ratio = _signed_volume(v - c, f) / (4 / 3 * math.pi * r ** 3)
    assert (0.995 if lattice == "bcc" else 0.99) < ratio < 1.0
    # The no-edges path (sort of crossing vertex pairs) gives the same surface, face for face.
    v2, f2 = marching_tets(g.vertices, g.tets, sdf)
    assert torch.equal(_canonical_faces(v2, f2), _canonical_faces(v, f))


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-12), (torch.float32, 2e-6)])
def test_plane_is_exact(dtype, tol):
    g = tet_grid(6, dtype=dtype)
    normal = torch.tensor([0.1, 0.2, 1.0], dtype=dtype)
    normal = normal / normal.norm()
    offset = 0.13
    v, f = marching_tets(g.vertices, g.tets, g.vertices @ normal - offset, g.edges, g.tet_edges)
    # Linear SDF: interpolation along every edge lands exactly on the plane.
    assert float((v @ normal - offset).abs().max()) < tol
    n = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1)
    area = n.norm(dim=-1)
    assert bool((n @ normal > 0.999 * area).all())   # every face points to +SDF
    # The plane z = 0.13/n_z - 0.1 x - 0.2 y stays inside the box over [-1,1]^2, so its area is 4 / n_z.
    assert float(area.sum() / 2) == pytest.approx(4 / float(normal[2]), rel=10 * tol)


def test_zero_sdf_counts_as_outside_and_empty_cases():
    g = tet_grid(4, dtype=F64)  # grid vertices lie on z = 0
    v, f = marching_tets(g.vertices, g.tets, g.vertices[:, 2].clone(), g.edges, g.tet_edges)
    assert torch.isfinite(v).all() and f.shape[0] > 0
    # Vertices at z = 0 are outside, so the surface sits on the layer of grid vertices z = 0.
    assert float(v[:, 2].abs().max()) == 0.0
    n = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1)
    assert bool((n[:, 2] >= 0).all()) and float(n[:, 2].sum() / 2) == pytest.approx(4.0)
    for sdf in (torch.ones(g.vertices.shape[0], dtype=F64), -torch.ones(g.vertices.shape[0], dtype=F64),
                torch.zeros(g.vertices.shape[0], dtype=F64), g.vertices[:, 2].abs()):
        v, f = marching_tets(g.vertices, g.tets, sdf, g.edges, g.tet_edges)
        assert v.shape == (0, 3) and f.shape == (0, 3)
        assert marching_tets(g.vertices, g.tets, sdf).faces.shape == (0, 3)
    # One tet, three zeros and one inside vertex: the zeros are outside, so the surface is their face.
    p = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=F64)
    v, f = marching_tets(p, torch.tensor([[0, 1, 2, 3]]), torch.tensor([-1.0, 0, 0, 0], dtype=F64))
    assert torch.equal(v[f[0]], p[[1, 2, 3]])


def test_marching_tets_rejects_bad_input():
    g = tet_grid(2)
    sdf = g.vertices.norm(dim=-1) - 0.5
    with pytest.raises(InputError, match="sdf"):
        marching_tets(g.vertices, g.tets, sdf[:-1])
    with pytest.raises(InputError, match="together"):
        marching_tets(g.vertices, g.tets, sdf, edges=g.edges)
    with pytest.raises(InputError, match="NaN"):
        marching_tets(g.vertices, g.tets, torch.full_like(sdf, float("nan")))
    with pytest.raises(InputError, match="tets"):
        marching_tets(g.vertices, g.tets + 1000, sdf)


@pytest.mark.parametrize("with_edges", [True, False])
def test_gradcheck_vertices_and_sdf(with_edges):
    g = tet_grid(2, dtype=F64)
    gen = torch.Generator().manual_seed(3)
    verts = (g.vertices + 0.1 * g.spacing * torch.randn(g.vertices.shape, generator=gen, dtype=F64))
    sdf = g.vertices.norm(dim=-1) - 0.8
    sdf = sdf + 0.05 * torch.sign(sdf)  # keep every value away from zero so the topology is fixed
    assert float(sdf.abs().min()) > 0.04
    extra = (g.edges, g.tet_edges) if with_edges else (None, None)
    fn = lambda v, s: marching_tets(v, g.tets, s, *extra).vertices  # noqa: E731
    assert fn(verts, sdf).shape[0] > 10
    assert torch.autograd.gradcheck(fn, (verts.requires_grad_(), sdf.requires_grad_()))


# ---------------------------------------------------------------- DMTetGeometry

def test_geometry_mesh_gradients_and_deform_bound():
    geo = DMTetGeometry.from_sdf_function(lambda p: p.norm(dim=-1) - 0.5, resolution=6)
    assert set(geo.state_dict()) == {"sdf", "deform"}
    mesh = geo.mesh()
    assert isinstance(mesh, Mesh) and mesh.num_faces > 0
    mesh.vertices.norm(dim=-1).sum().backward()
    assert float(geo.sdf.grad.abs().sum()) > 0 and float(geo.deform.grad.abs().sum()) > 0
    with torch.no_grad():
        geo.deform.fill_(100.0)
    moved = geo.deformed_vertices().detach() - geo.grid_vertices
    assert float(moved.abs().max()) == pytest.approx(0.25 * geo.spacing, rel=1e-5)
    with pytest.raises(InputError, match="sdf_fn"):
        DMTetGeometry.from_sdf_function(lambda p: p.norm(dim=-1, keepdim=True), resolution=2)


def test_geometry_gradcheck_through_deformation():
    geo = DMTetGeometry.from_sdf_function(lambda p: p.norm(dim=-1) - 0.75, resolution=2, dtype=F64)
    with torch.no_grad():
        geo.sdf.add_(0.05 * torch.sign(geo.sdf))
    deform = 0.5 * torch.randn(geo.deform.shape, dtype=F64)
    fn = lambda s, d: torch.func.functional_call(geo, {"sdf": s, "deform": d}, ()).vertices  # noqa: E731
    assert fn(geo.sdf.detach(), deform).shape[0] >= 6
    assert torch.autograd.gradcheck(fn, (geo.sdf.detach().clone().requires_grad_(), deform.requires_grad_()))


def test_optimisation_grows_sphere():
    geo = DMTetGeometry.from_sdf_function(lambda p: p.norm(dim=-1) - 0.4, resolution=12)
    optimiser = torch.optim.Adam([geo.sdf], lr=0.02)
    radius = lambda: float(geo.extract().vertices.detach().norm(dim=-1).mean())  # noqa: E731
    start = radius()
    for _ in range(40):
        v, _ = geo.extract()
        loss = ((v.norm(dim=-1) - 0.7) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert start == pytest.approx(0.4, abs=0.01)
    assert radius() > 0.62  # moved through several grid shells (spacing 0.17) towards 0.7
    _check_closed_oriented(geo.extract().faces)


# ---------------------------------------------------------------- helpers and regularisers

def test_remove_small_components_drops_floater():
    g = tet_grid(24, dtype=F64)
    big, small = torch.tensor([-0.2, 0.0, 0.0], dtype=F64), torch.tensor([0.6, 0.5, 0.5], dtype=F64)
    sdf_big = (g.vertices - big).norm(dim=-1) - 0.5
    sdf = torch.minimum(sdf_big, (g.vertices - small).norm(dim=-1) - 0.15)
    v, f = marching_tets(g.vertices, g.tets, sdf, g.edges, g.tet_edges)
    v_big, f_big = marching_tets(g.vertices, g.tets, sdf_big, g.edges, g.tet_edges)
    v = v.requires_grad_()
    kept_v, kept_f = remove_small_components(v, f, 0.1)
    assert kept_f.shape[0] == f_big.shape[0] < f.shape[0]
    assert torch.equal(torch.unique(kept_v.detach(), dim=0), torch.unique(v_big, dim=0))
    _check_closed_oriented(kept_f)
    assert kept_v.grad_fn is not None
    assert remove_small_components(v, f, 0.0).faces.shape == f.shape
    empty = remove_small_components(v, f[:0], 0.5)
    assert empty.vertices.shape == (0, 3) and empty.faces.shape == (0, 3)


def test_sdf_sign_regularizer_matches_formula():
    sdf = torch.tensor([-1.0, 2.0, 0.5, -0.3, 0.0], dtype=F64, requires_grad=True)
    edges = torch.tensor([[0, 1], [1, 2], [2, 3], [0, 3], [3, 4]])
    # Crossing edges (0 counts as outside): (0,1), (2,3), (3,4). BCE(x, y) = log(1 + e^x) - x y.
    bce = lambda x, y: math.log1p(math.exp(x)) - x * y  # noqa: E731
    pairs = [(-1.0, 2.0), (0.5, -0.3), (-0.3, 0.0)]
    expected = (sum(bce(a, float(b >= 0)) for a, b in pairs) / 3
                + sum(bce(b, float(a >= 0)) for a, b in pairs) / 3)
    value = sdf_sign_regularizer(sdf, edges)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    value.backward()
    assert float(sdf.grad[1]) == pytest.approx(1 / (1 + math.exp(-2.0)) / 3, rel=1e-12)
    zero = sdf_sign_regularizer(sdf.detach()[[1, 2]], torch.tensor([[0, 1]]))
    assert float(zero) == 0.0


def test_laplacian_loss_analytic():
    octahedron = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=F64)
    faces = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    # Each vertex's four neighbours average to the origin, so every offset is -v: loss = s^2.
    assert float(laplacian_loss(3 * octahedron, faces)) == pytest.approx(9.0, rel=1e-12)
    v = octahedron.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: laplacian_loss(x, faces), (v,))
    assert float(laplacian_loss(octahedron, faces[:0])) == 0.0
