import pytest
import torch
import trimesh

from unrender.errors import InputError
from unrender.geometry.primitives import (assemble, box, cylinder, icosphere, lathe, torus, torus_knot,
                                          uv_sphere)
from unrender.geometry.procedural_objects import FAMILIES, procedural_object


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
