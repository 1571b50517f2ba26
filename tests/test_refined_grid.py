"""Coarse-to-fine SDF grids against the dense grid they stand in for."""

import math

import pytest
import torch

from unrender.errors import InputError
from unrender.geometry.refined_grid import grid_points, refined_sdf_grid


def _dense(field, resolution, bounds):
    return field(grid_points(resolution, bounds).reshape(-1, 3)).reshape((resolution,) * 3)


def _thin_parts(p):
    """A union of a ball, a slab thinner than the coarse spacing and a thin rod: an exact-ish SDF (min of SDFs)."""
    ball = (p - torch.tensor([0.2, 0.1, -0.1])).norm(dim=-1) - 0.22
    slab = torch.maximum((p[:, 1] + 0.3).abs() - 0.008, (p[:, [0, 2]].abs().amax(-1)) - 0.4)
    rod = torch.maximum(p[:, [0, 1]].norm(dim=-1) - 0.012, p[:, 2].abs() - 0.45)
    return torch.minimum(torch.minimum(ball, slab), rod)


@pytest.mark.parametrize("resolution,coarse", [(65, 17), (65, 9), (33, 33)])
def test_refined_grid_has_the_dense_grids_signs_with_fewer_queries(resolution, coarse):
    dense = _dense(_thin_parts, resolution, 0.6)
    grid = refined_sdf_grid(_thin_parts, resolution, 0.6, coarse_resolution=coarse, band=1.0, chunk=5000)
    assert grid.values.shape == dense.shape
    # The slab (0.016 thick) and the rod fall between the points of a 9^3 or 17^3 grid: refinement must still
    # find them, i.e. give exactly the dense grid's inside/outside pattern.
    assert torch.equal(grid.values < 0, dense < 0)
    near = dense.abs() < 2 * 1.2 / (resolution - 1)
    torch.testing.assert_close(grid.values[near], dense[near], rtol=0, atol=1e-6)
    if coarse < resolution:
        assert grid.queries < 0.5 * resolution ** 3
    else:
        assert grid.queries == resolution ** 3


def test_refined_grid_queries_scale_with_the_surface_not_the_volume():
    sphere = lambda p: p.norm(dim=-1) - 0.4  # noqa: E731
    small = refined_sdf_grid(sphere, 65, 0.6, coarse_resolution=17).queries
    large = refined_sdf_grid(sphere, 129, 0.6, coarse_resolution=17).queries
    # Doubling R multiplies a dense grid's queries by 8 and a surface band's by about 4.
    assert 3.0 < large / small < 5.5


def test_refined_grid_refuses_resolutions_it_cannot_reach():
    with pytest.raises(InputError, match="power of two"):
        refined_sdf_grid(lambda p: p[:, 0], 64, 0.5, coarse_resolution=17)
    with pytest.raises(InputError):
        refined_sdf_grid(lambda p: p[:, 0], 9, 0.5, coarse_resolution=1)
    assert math.isfinite(float(refined_sdf_grid(lambda p: p[:, 0], 9, 0.5, coarse_resolution=5).values.sum()))
