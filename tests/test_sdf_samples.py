"""SDF supervision samples: analytic signs and distances, shell fractions and widths, caching."""

import numpy as np
import pytest
import torch

from unrender.errors import DataError, InputError
from unrender.geometry import sdf_samples
from unrender.geometry.primitives import box, icosphere
from unrender.geometry.sdf_samples import cached_sdf_samples, sample_sdf_points, sample_surface
from unrender.io.mesh_files import save_mesh
from unrender.mesh import Mesh


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _box_sdf(p, half):
    q = p.abs() - torch.as_tensor(half, dtype=p.dtype)
    return q.clamp_min(0).norm(dim=1) + q.amax(1).clamp_max(0)


def test_box_signs_and_distances_match_the_analytic_sdf():
    half = (0.5, 0.3, 0.2)
    m = box((1.0, 0.6, 0.4)).to(dtype=torch.float64)
    s = sample_sdf_points(m, 6000, generator=_gen(1))
    ref = _box_sdf(s.points, half)
    assert s.points.dtype == torch.float64 and s.sdf.dtype == torch.float64
    assert torch.allclose(s.sdf, ref, atol=1e-7)  # the box's corners were built in float32
    assert torch.equal(torch.sign(s.sdf[ref.abs() > 1e-7]), torch.sign(ref[ref.abs() > 1e-7]))
    assert bool((s.sdf < 0).any()) and bool((s.sdf > 0).any())


def test_sphere_distances_close_to_analytic():
    sphere = icosphere(5, radius=0.5).to(dtype=torch.float64)  # polygon error ~1e-4 at this subdivision
    s = sample_sdf_points(sphere, 5000, generator=_gen(2))
    ref = s.points.norm(dim=1) - 0.5
    assert float((s.sdf - ref).abs().max()) < 5e-4
    clear = ref.abs() > 5e-4
    assert torch.equal(torch.sign(s.sdf[clear]), torch.sign(ref[clear]))


def test_shell_fractions_and_widths():
    sigmas, fractions = (0.003, 0.01, 0.07), (0.45, 0.44, 0.10)
    sphere = icosphere(5, radius=0.5).to(dtype=torch.float64)
    n = 20_000
    s = sample_sdf_points(sphere, n, sigmas, fractions, padding=0.1, generator=_gen(3))
    counts = torch.bincount(s.group, minlength=4).tolist()
    assert counts == [9000, 8800, 2000, 200]
    for k, sigma in enumerate(sigmas):
        # Offsets normal to a sphere of radius 0.5 are close to N(0, sigma^2) for these widths.
        spread = float(s.sdf[s.group == k].std())
        assert abs(spread / sigma - 1.0) < (0.06 if sigma < 0.05 else 0.12), (sigma, spread)
    uniform = s.points[s.group == 3]
    bound = 0.5 + 0.1 * 1.0  # bounding box half side + padding * longest side
    assert float(uniform.abs().max()) <= bound + 1e-9
    assert float(uniform.abs().amax(0).min()) > 0.9 * bound  # fills the padded box, not just the shape's box


def test_tuple_input_seed_reproducibility_and_rounding():
    m = box((1.0, 1.0, 1.0))
    a = sample_sdf_points((m.vertices, m.faces), 1001, generator=_gen(5))
    b = sample_sdf_points(m, 1001, generator=_gen(5))
    assert torch.equal(a.points, b.points) and torch.equal(a.sdf, b.sdf)
    assert a.points.dtype == torch.float32 and a.points.shape == (1001, 3)
    assert int(torch.bincount(a.group, minlength=4).sum()) == 1001


def test_surface_samples_are_uniform_by_area():
    m = box((2.0, 1.0, 1.0))
    p, face = sample_surface(m.vertices, m.faces, 20_000, _gen(6))
    on_x_caps = (p[:, 0].abs() - 1.0).abs() < 1e-6  # the two 1x1 end faces: 2 / 10 of the area
    assert abs(float(on_x_caps.float().mean()) - 0.2) < 0.015
    normals = m.face_normals()[face]
    assert torch.allclose(normals[on_x_caps].abs(), torch.tensor([1.0, 0.0, 0.0]).expand(int(on_x_caps.sum()), 3),
                          atol=1e-6)


def test_cache_reloads_identical_arrays_and_recomputes_on_change(tmp_path, monkeypatch):
    mesh_path = tmp_path / "shape.obj"
    save_mesh(icosphere(3, radius=0.4), mesh_path)
    cache = tmp_path / "cache"
    first = cached_sdf_samples(mesh_path, cache, 3000, seed=1)
    files = sorted(cache.glob("*.npz"))
    assert len(files) == 1
    real = sdf_samples.sample_sdf_points

    def must_not_sample(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(sdf_samples, "sample_sdf_points", must_not_sample)
    again = cached_sdf_samples(mesh_path, cache, 3000, seed=1)
    assert torch.equal(first.points, again.points) and torch.equal(first.sdf, again.sdf)
    assert torch.equal(first.group, again.group)
    monkeypatch.setattr(sdf_samples, "sample_sdf_points", real)

    other_seed = cached_sdf_samples(mesh_path, cache, 3000, seed=2)
    assert not torch.equal(other_seed.points, first.points) and len(list(cache.glob("*.npz"))) == 2

    big = icosphere(3, radius=0.8)
    save_mesh(big, mesh_path)  # same file name, new content
    changed = cached_sdf_samples(mesh_path, cache, 3000, seed=1)
    assert len(list(cache.glob("*.npz"))) == 3
    inside_big = changed.points.norm(dim=1) < 0.7
    assert bool((changed.sdf[inside_big] < 0).all())  # distances of the new mesh, not the cached ones
    assert not torch.equal(changed.sdf, first.sdf)


def test_bad_arguments():
    m = box((1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="sum to at most 1"):
        sample_sdf_points(m, 100, fractions=(0.6, 0.5, 0.1))
    with pytest.raises(InputError, match="equally long"):
        sample_sdf_points(m, 100, sigmas=(0.01,), fractions=(0.5, 0.5))
    with pytest.raises(InputError, match="n >= 1"):
        sample_sdf_points(m, 0)
    with pytest.raises(InputError, match="Mesh or a"):
        sample_sdf_points(np.zeros((3, 3)), 10)
    with pytest.raises(InputError, match="positive area"):
        sample_surface(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), 10)
    with pytest.raises(DataError, match="does not exist"):
        cached_sdf_samples("/nonexistent/mesh.obj", "/tmp/cache_unused", 10)


def test_mesh_dataclass_with_float64_vertices_keeps_dtype():
    m = Mesh(vertices=box((1.0, 1.0, 1.0)).vertices.double(), faces=box((1.0, 1.0, 1.0)).faces)
    s = sample_sdf_points(m, 200, generator=_gen(7))
    assert s.sdf.dtype == torch.float64
    assert torch.allclose(s.sdf, _box_sdf(s.points, (0.5, 0.5, 0.5)), atol=1e-7)
