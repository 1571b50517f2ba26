import math

import numpy as np
import pytest
import torch
from skimage.measure import marching_cubes

from unrender.errors import InputError
from unrender.geometry.dmtet import sdf_sign_regularizer
from unrender.geometry.flexicubes import FlexiCubesGeometry, cube_grid, deviation_loss
from unrender.geometry.flexicubes_tables import CORNER_OFFSETS, CUBE_EDGES, CUBE_FACES, DUAL_MC

F64 = torch.float64


def _edge_counts(faces):
    directed = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    _, counts = torch.unique(torch.sort(directed, 1).values, dim=0, return_counts=True)
    return directed, counts


def _check_closed_oriented(faces):
    """Every undirected edge in exactly two faces, traversed once in each direction."""
    directed, counts = _edge_counts(faces)
    assert faces.shape[0] > 0
    assert bool((counts == 2).all()), f"edge face counts {torch.unique(counts).tolist()}"
    assert torch.unique(directed, dim=0).shape[0] == directed.shape[0]  # consistent winding


def _signed_volume(vertices, faces):
    v = vertices.detach()[faces].double()
    return float((v[:, 0] * torch.linalg.cross(v[:, 1], v[:, 2], dim=-1)).sum() / 6)


def _area(vertices, faces):
    v = vertices.detach()[faces].double()
    return float(torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1).norm(dim=-1).sum() / 2)


def _euler(vertices, faces):
    _, counts = _edge_counts(faces)
    return torch.unique(faces).numel() - counts.numel() + faces.shape[0]


def _boundary_outside(geo):
    """Force the outer layer of grid vertices outside so any surface is closed inside the grid."""
    n = geo.resolution
    idx = torch.stack(torch.meshgrid(*[torch.arange(n + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():
        geo.sdf[((idx == 0) | (idx == n)).any(-1)] = 1.0


def sphere(r, centre=(0.0, 0.0, 0.0)):
    return lambda p: (p - p.new_tensor(centre)).norm(dim=-1) - r


def torus(major, minor):
    return lambda p: torch.stack([p[:, :2].norm(dim=-1) - major, p[:, 2]], -1).norm(dim=-1) - minor


# ---------------------------------------------------------------- tables and grid

def test_tables_match_marching_cubes_counts():
    patches = DUAL_MC.num_patches[0]
    # Empty/full cases have no patch; a single inside corner, its complement and any single edge have one.
    assert patches[0] == patches[255] == 0
    for k in range(8):
        assert patches[1 << k] == 1 and patches[255 - (1 << k)] == 1
        crossed = [e for e, p in enumerate(DUAL_MC.patch_of_edge[0][1 << k]) if p >= 0]
        assert sorted(crossed) == sorted(e for e, (a, b) in enumerate(CUBE_EDGES) if k in (a, b))
    # Two opposite corners (no shared face, edge or vertex-adjacent edges): two separate patches.
    assert patches[(1 << 0) | (1 << 7)] == 2
    # A face diagonal with the inside corners separated: two patches under convention 0, one under 1.
    assert patches[(1 << 0) | (1 << 3)] == 2 and DUAL_MC.num_patches[1][(1 << 0) | (1 << 3)] == 1
    assert max(patches) == 4 and 36 == sum(m >= 0 for m in DUAL_MC.merged_face)


def test_table_faces_are_cycles_of_cube_edges():
    for cycle, edges in CUBE_FACES:
        for i, e in enumerate(edges):
            assert set(CUBE_EDGES[e]) == {cycle[i], cycle[(i + 1) % 4]}
        axis_offsets = np.array([CORNER_OFFSETS[c] for c in cycle])
        assert (axis_offsets == axis_offsets[0]).all(0).sum() == 1  # the four corners share one coordinate


def test_cube_grid_layout():
    g = cube_grid(3, bounds=((0, -1, 0), (3, 2, 6)), dtype=F64)
    assert g.vertices.shape == (64, 3) and g.edges.shape == (3 * 3 * 16, 2)
    assert g.cell == (1.0, 1.0, 2.0) and g.spacing == 1.0
    assert g.vertices[1].tolist() == [0, -1, 2] and g.vertices[4].tolist() == [0, 0, 0]
    d = g.vertices[g.edges[:, 1]] - g.vertices[g.edges[:, 0]]
    assert bool(((d > 0).sum(-1) == 1).all()) and bool((d >= 0).all())
    assert torch.unique(g.edges, dim=0).shape[0] == g.edges.shape[0]
    with pytest.raises(InputError):
        cube_grid(0)
    with pytest.raises(InputError):
        cube_grid(4, bounds=((0, 0, 0), (1, -1, 1)))


# ---------------------------------------------------------------- surfaces

# Dual vertices are means of crossings on the sphere, so they sit slightly inside it: the volume error is
# O(h^2), about twice marching cubes' on the same grid (-4.9% vs -2.6% at 16 cubes, -1.2% vs -0.6% at 32).
@pytest.mark.parametrize("resolution, volume_tolerance", [(8, 0.2), (16, 0.06), (32, 0.015)])
@pytest.mark.parametrize("quad_split", ["centroid", "diagonal"])
def test_sphere_closed_outward_accurate(resolution, volume_tolerance, quad_split):
    r = 0.6
    geo = FlexiCubesGeometry.from_sdf_function(sphere(r, (0.03, -0.02, 0.01)), resolution, quad_split=quad_split)
    v, f = geo.extract()
    _check_closed_oriented(f)
    assert _euler(v, f) == 2
    volume = _signed_volume(v, f)
    assert volume == pytest.approx(4 / 3 * math.pi * r ** 3, rel=volume_tolerance)
    dist = ((v.detach() - v.new_tensor((0.03, -0.02, 0.01))).norm(dim=-1) - r).abs()
    assert float(dist.max()) < 0.25 * geo.spacing


def test_default_weights_match_marching_cubes_area():
    r, n = 0.55, 24
    geo = FlexiCubesGeometry.from_sdf_function(sphere(r, (0.05, 0.0, -0.04)), n, dtype=F64,
                                               quad_split="diagonal")
    v, f = geo.extract()
    volume = geo.sdf.detach().view(n + 1, n + 1, n + 1).numpy()
    mv, mf, _, _ = marching_cubes(volume, level=0.0, spacing=(geo.spacing,) * 3)
    mc_area = _area(torch.from_numpy(mv), torch.from_numpy(mf.astype(np.int64)))
    assert _area(v, f) == pytest.approx(mc_area, rel=0.01)
    assert _area(v, f) == pytest.approx(4 * math.pi * r ** 2, rel=0.03)


def test_torus_genus_one():
    geo = FlexiCubesGeometry.from_sdf_function(torus(0.55, 0.22), 32)
    v, f = geo.extract()
    _check_closed_oriented(f)
    assert _euler(v, f) == 0
    assert _signed_volume(v, f) == pytest.approx(2 * math.pi ** 2 * 0.55 * 0.22 ** 2, rel=0.06)


@pytest.mark.parametrize("seed", range(6))
def test_random_sdf_closed_and_edge_manifold(seed):
    gen = torch.Generator().manual_seed(seed)
    geo = FlexiCubesGeometry.from_sdf_function(lambda p: torch.rand(p.shape[0], generator=gen) * 2 - 1, 7,
                                               quad_split="centroid" if seed % 2 else "diagonal")
    _boundary_outside(geo)
    _check_closed_oriented(geo.extract().faces)


def test_stacked_merged_cubes_stay_edge_manifold():
    # Cubes (1,1,1) and (1,1,2) share the face z=2, whose inside corners lie on a diagonal and are joined
    # around the back of *both* cubes (Dual MC's problem case): without switching one cube's table the
    # four quads of that face would meet at one edge.
    inside = [(1, 1, 2), (2, 2, 2), (1, 1, 1), (2, 1, 1), (2, 2, 1), (1, 1, 3), (2, 1, 3), (2, 2, 3)]
    geo = FlexiCubesGeometry.from_sdf_function(lambda p: torch.ones(p.shape[0]), 4,
                                               bounds=((0, 0, 0), (4, 4, 4)), quad_split="diagonal")
    with torch.no_grad():
        for i, j, k in inside:
            geo.sdf[(i * 5 + j) * 5 + k] = -1.0
    case = lambda c: sum(1 << k for k, o in enumerate(CORNER_OFFSETS)  # noqa: E731
                         if tuple(a + b for a, b in zip(c, o)) in inside)
    assert DUAL_MC.merged_face[case((1, 1, 1))] == 5 and DUAL_MC.merged_face[case((1, 1, 2))] == 4
    _check_closed_oriented(geo.extract().faces)


def test_plane_vertices_exact_and_facing_up():
    geo = FlexiCubesGeometry.from_sdf_function(lambda p: p[:, 2] - 0.1, 4, dtype=F64)
    v, f = geo.extract()
    assert torch.allclose(v[:, 2], torch.full_like(v[:, 2], 0.1))
    n = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1)
    assert bool((n[:, 2] > 0).all())


def test_crossing_formula_and_beta_weighted_dual_vertex():
    # One cube, corner 0 inside: its crossings on edges 0, 4, 8 and their beta-weighted mean.
    sdf = torch.tensor([-1.0, 2.0, 3.0, 1.0, 0.5, 1.0, 1.0, 1.0], dtype=F64)
    grid = cube_grid(1, bounds=((0, 0, 0), (1, 1, 1)), dtype=F64)
    order = [int(o[0] * 4 + o[1] * 2 + o[2]) for o in CORNER_OFFSETS]  # corner k -> grid vertex id
    full = torch.empty(8, dtype=F64)
    full[order] = sdf
    geo = FlexiCubesGeometry(grid, full)
    w = torch.randn(21, dtype=F64)
    with torch.no_grad():
        geo.weights[0] = w
    out = geo.extract_detailed()
    alpha, beta = 1 + 0.99 * torch.tanh(w[12:20]), 1 + 0.99 * torch.tanh(w[:12])
    expected, weights = [], []
    for e in (0, 4, 8):
        a, b = CUBE_EDGES[e]
        xa, xb = torch.tensor(CORNER_OFFSETS[a], dtype=F64), torch.tensor(CORNER_OFFSETS[b], dtype=F64)
        sa, sb = sdf[a] * alpha[a], sdf[b] * alpha[b]
        expected.append((sb * xa - sa * xb) / (sb - sa))
        weights.append(beta[e])
    expected, weights = torch.stack(expected), torch.stack(weights)
    assert out.num_dual == 1 and out.faces.shape[0] == 0
    assert torch.allclose(out.crossing_points, expected)
    assert torch.allclose(out.vertices[0], (weights[:, None] * expected).sum(0) / weights.sum())


# ---------------------------------------------------------------- gradients and losses

def _tiny_geometry():
    gen = torch.Generator().manual_seed(3)
    geo = FlexiCubesGeometry.from_sdf_function(sphere(0.7), 3, dtype=F64)
    with torch.no_grad():
        geo.sdf.add_(0.05 * torch.rand(geo.sdf.shape, generator=gen, dtype=F64))
        geo.deform.copy_(0.5 * torch.randn(geo.deform.shape, generator=gen, dtype=F64))
        geo.weights.copy_(0.5 * torch.randn(geo.weights.shape, generator=gen, dtype=F64))
    assert geo.sdf.abs().min().item() > 1e-3  # gradcheck must not flip a sign
    return geo


@pytest.mark.parametrize("name", ["sdf", "deform", "weights"])
@pytest.mark.parametrize("quad_split", ["centroid", "diagonal"])
def test_gradcheck_vertices(name, quad_split):
    geo = _tiny_geometry()
    geo.quad_split = quad_split
    params = {k: p.detach() for k, p in geo.named_parameters()}

    def vertices(x):
        return torch.func.functional_call(geo, {**params, name: x}, ()).vertices

    assert vertices(params[name]).shape[0] > 0
    assert torch.autograd.gradcheck(vertices, (params[name].clone().requires_grad_(),))


def test_gradients_reach_every_weight_kind():
    geo = FlexiCubesGeometry.from_sdf_function(sphere(0.5), 8)
    v, f = geo.extract()
    (v.pow(2).sum() + geo.sdf_regularizer()).backward()
    crossing = geo.weights.grad.abs().sum(0)
    assert bool((crossing[:12] > 0).all()) and bool((crossing[12:20] > 0).all()) and float(crossing[20]) > 0
    assert float(geo.sdf.grad.abs().sum()) > 0 and float(geo.deform.grad.abs().sum()) > 0


def test_deviation_loss():
    v = torch.zeros(2, 3)
    u = torch.tensor([[1.0, 0, 0], [0, 3.0, 0], [0, 0, 2.0], [0, 2.0, 0]])
    # Vertex 0: distances 1, 3 (variance 1); vertex 1: distances 2, 2 (variance 0).
    assert deviation_loss(v, u, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(0.5)
    geo = FlexiCubesGeometry.from_sdf_function(sphere(0.5), 8)
    out = geo.extract_detailed()
    loss = geo.deviation_loss(out)
    assert loss.item() > 0
    loss.backward()
    assert float(geo.weights.grad.abs().sum()) > 0


def test_sdf_regularizer_uses_grid_edges():
    geo = FlexiCubesGeometry.from_sdf_function(sphere(0.5), 6)
    assert torch.equal(geo.sdf_regularizer(), sdf_sign_regularizer(geo.sdf, geo.grid.edges))
    assert geo.sdf_regularizer().item() > 0


def test_optimisation_towards_smaller_sphere():
    geo = FlexiCubesGeometry.from_sdf_function(sphere(0.6), 16)
    opt = torch.optim.Adam([{"params": [geo.sdf], "lr": 0.01}, {"params": [geo.deform, geo.weights], "lr": 0.02}])

    def loss_fn():
        v, _ = geo.extract()
        return ((v.norm(dim=-1) - 0.42) ** 2).mean()

    start = loss_fn().item()
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    end = loss_fn().item()
    assert end < 0.05 * start
    _check_closed_oriented(geo.extract().faces)


# ---------------------------------------------------------------- module plumbing

def test_module_api_and_state():
    geo = FlexiCubesGeometry.from_sdf_function(sphere(0.5), 6, bounds=((-1, -1, -1), (1, 1, 2)))
    assert geo.sdf.shape == (343,) and geo.deform.shape == (343, 3) and geo.weights.shape == (216, 21)
    assert geo.spacing == pytest.approx(1 / 3) and geo.grid.cell[2] == pytest.approx(0.5)
    assert set(geo.state_dict()) == {"sdf", "deform", "weights"}
    with torch.no_grad():
        geo.deform.fill_(100.0)
    offset = geo.deformed_vertices() - geo.grid.vertices
    assert offset.abs().max().item() == pytest.approx(0.25 * geo.spacing, rel=1e-5)
    m = geo.mesh(min_component_fraction=0.1, quad_split="diagonal")
    assert m.num_faces > 0 and m.faces.dtype == torch.int64
    v, f = geo()
    assert f.shape[1] == 3 and v.requires_grad


def test_empty_and_bad_input():
    geo = FlexiCubesGeometry.from_sdf_function(lambda p: p.norm(dim=-1) + 1, 4)
    v, f = geo.extract()
    assert v.shape == (0, 3) and f.shape == (0, 3)
    assert geo.deviation_loss().item() == 0
    with pytest.raises(InputError):
        FlexiCubesGeometry.from_sdf_function(lambda p: p, 4)
    with pytest.raises(InputError):
        FlexiCubesGeometry.from_sdf_function(sphere(0.5), 4, quad_split="fan")
    with torch.no_grad():
        geo.sdf[0] = float("nan")
    with pytest.raises(InputError):
        geo.extract()
