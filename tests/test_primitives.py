import pytest
import torch
import trimesh

from unrender.errors import InputError
from unrender.geometry.inside import winding_number
from unrender.geometry.primitives import (assemble, box, cylinder, icosphere, lathe, signed_volume, torus,
                                          torus_knot, uv_sphere)
from unrender.geometry.procedural_objects import FAMILIES, procedural_object
from unrender.metrics.geometry import sample_surface


def _check_closed(m):
    tm = trimesh.Trimesh(m.vertices.numpy(), m.faces.numpy())
    assert tm.is_watertight and tm.is_winding_consistent
    assert tm.volume > 0  # outward-facing
    assert m.uvs is not None and m.uv_faces.shape == m.faces.shape
    assert float(m.uvs.min()) >= 0.0 and float(m.uvs.max()) <= 1.0
    t = m.uvs[m.uv_faces]
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    signed = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    assert float((signed <= 0).float().mean()) < 0.01  # uv charts are not mirrored or collapsed


@pytest.mark.parametrize("make", [
    lambda: box((1.0, 0.4, 0.2), 3), lambda: uv_sphere(0.5, 12, 24), lambda: icosphere(2),
    lambda: cylinder(0.3, 1.0, 24), lambda: torus(0.4, 0.1, 24, 8), lambda: torus_knot(samples=96, sides=8),
    lambda: lathe([[0, 0], [0.5, 0], [0.5, 1], [0.4, 1], [0.4, 0.1], [0, 0.1]], 24),
    lambda: assemble([box((1.0, 0.1, 1.0)), cylinder(0.05, 1.0, 12)]),
    lambda: assemble([box((1.0, 0.1, 1.0)), cylinder(0.05, 1.0, 12)], union=True),
])
def test_primitives_closed_with_uvs(make):
    _check_closed(make())


@pytest.mark.parametrize("family", FAMILIES)
def test_families_watertight_deterministic(family):
    a = procedural_object(family, seed=7)
    _check_closed(a)
    assert 2000 <= a.num_faces <= 20000
    ext = a.vertices.max(0).values - a.vertices.min(0).values
    assert abs(float(ext.max()) - 1.0) < 1e-5
    assert float((a.vertices.max(0).values + a.vertices.min(0).values).abs().max()) < 1e-5
    b = procedural_object(family, seed=7)
    assert torch.equal(a.vertices, b.vertices) and torch.equal(a.faces, b.faces) and torch.equal(a.uvs, b.uvs)
    c = procedural_object(family, seed=8)
    assert c.vertices.shape != a.vertices.shape or not torch.allclose(c.vertices, a.vertices)


def _internal_fraction(m, n=20000):
    """Share of surface samples lying on faces inside the solid (a point just outside them is inside)."""
    pts, normals = sample_surface(m.vertices, m.faces, n)
    return float((winding_number(m.vertices, m.faces, pts + 2e-3 * normals) > 0.5).float().mean())


def test_union_is_the_outer_surface_of_overlapping_parts():
    # A slab with a leg ending inside it: the union's volume is analytic, and no face is inside.
    slab, leg = box((1.0, 0.2, 1.0), 4), box((0.2, 1.0, 0.2), 4, center=(0.3, -0.45, 0.0))
    stacked, merged = assemble([slab, leg]), assemble([slab, leg], union=True)
    _check_closed(merged)
    volume = lambda m: signed_volume(m.vertices.double().numpy(), m.faces.numpy())
    assert volume(stacked) == pytest.approx(0.2 + 0.04, abs=1e-5)
    assert volume(merged) == pytest.approx(0.2 + 0.04 - 0.2 * 0.2 * 0.15, abs=1e-5)
    assert _internal_fraction(stacked) > 0.02 and _internal_fraction(merged) == 0.0
    # The slab's top face is untouched by the cut: its corners keep their (packed) uvs.
    top = lambda m: (m.vertices[m.faces][..., 1] > 0.0999).all(-1)
    corner_uv = lambda m: {tuple(v.tolist()): tuple(t.tolist()) for f, tf in zip(m.faces[top(m)], m.uv_faces[top(m)])
                           for v, t in zip(m.vertices[f], m.uvs[tf])}
    a, b = corner_uv(stacked), corner_uv(merged)
    assert set(a) == set(b) and all(torch.allclose(torch.tensor(a[k]), torch.tensor(b[k]), atol=1e-6) for k in a)


@pytest.mark.parametrize("family", ["mug", "table", "chair"])
def test_multi_part_families_have_no_internal_faces(family):
    assert _internal_fraction(procedural_object(family, seed=2), n=3000) == 0.0


def test_bad_arguments():
    with pytest.raises(InputError):
        procedural_object("spaceship", 0)
    with pytest.raises(InputError):
        torus(0.1, 0.4)
    with pytest.raises(InputError):
        lathe([[0.0, 0.0]])
    with pytest.raises(InputError):
        assemble([box(), Mesh_without_uv()])


def Mesh_without_uv():
    from unrender.mesh import Mesh

    return Mesh(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]))
