"""Stereo carving: the sweep's depths match rendered depths, it opens a bowl the visual hull closes, and it leaves
a convex object alone."""

import pytest
import torch

from unrender.data.layouts import read_dataset
from unrender.data.synth import synthesize_object
from unrender.errors import InputError
from unrender.geometry.inside import inside_mesh
from unrender.io.mesh_files import load_mesh
from unrender.recon.multiview.views import training_views
from unrender.recon.stereo_carving import StereoCarveConfig, stereo_carve, sweep_step
from unrender.recon.visual_hull import carve
from unrender.render.render_mesh import render_mesh


@pytest.fixture(scope="module")
def bowl_case(tmp_path_factory):
    root = synthesize_object(tmp_path_factory.mktemp("bowl") / "data", "bowl", views=32, resolution=96, seed=4,
                             texture_resolution=256)
    return _carve_case(root)


def _carve_case(root):
    views = training_views(read_dataset(root, "train"), 96)
    gt = load_mesh(root / "gt" / "mesh.obj")
    field = carve(views.camera, views.mask, [[-0.6] * 3, [0.6] * 3], resolution=48)
    result = stereo_carve(views.camera, views.color, views.mask, field)
    inside = inside_mesh(gt.vertices, gt.faces, field.centres().float()).reshape(field.values.shape)
    return views, gt, field, result, inside


def test_sweep_depths_match_the_rendered_depths(bowl_case):
    views, gt, field, result, _ = bowl_case
    gt.material = None
    true = render_mesh(gt, views.camera, shading="albedo").depth[..., 0]  # camera depth along the axis
    known = torch.isfinite(result.depth) & (true > 0)
    assert int(known.sum()) > 0.3 * int((views.mask > 0.5).sum())
    err = (result.depth[known] - true[known]).abs()
    delta = sweep_step(field, StereoCarveConfig())
    # the sweep is quantised to steps of delta from the hull's front, so half a step is the floor
    assert float(err.median()) < 1.5 * delta, (float(err.median()), delta)
    # the depths that carve are the trusted ones: almost all within two sweep steps of the truth
    deep = result.deep & (true > 0)
    assert int(deep.sum()) > 500
    assert float(((result.depth[deep] - true[deep]).abs() <= 2 * delta).float().mean()) > 0.9


def test_stereo_carving_opens_a_bowl(bowl_case):
    _, _, field, result, inside = bowl_case
    before, after = field.values > 0.5, result.field.values > 0.5
    excess_before, excess_after = int((before & ~inside).sum()), int((after & ~inside).sum())
    assert excess_after < 0.4 * excess_before, (excess_before, excess_after, result.removed)
    # what the object really occupies stays (the bowl's wall is one or two voxels thick here)
    assert int((before & inside & ~after).sum()) < 0.1 * int((before & inside).sum())
    assert bool((after <= before).all())  # carving only removes


def test_stereo_carving_keeps_a_convex_object(tmp_path):
    root = synthesize_object(tmp_path / "blob", "blob", views=32, resolution=96, seed=1, texture_resolution=256)
    _, _, field, result, inside = _carve_case(root)
    before, after = field.values > 0.5, result.field.values > 0.5
    assert int((before & inside & ~after).sum()) < 0.01 * int((before & inside).sum())


def test_stereo_carving_rejects_bad_input():
    from unrender.cameras import Camera, orbit_poses

    cam = Camera.from_fov(40, 8, 8, orbit_poses(3, 3.0, seed=0))
    field = carve(cam, torch.ones(3, 8, 8), [[-0.5] * 3, [0.5] * 3], resolution=4)
    with pytest.raises(InputError, match="colors"):
        stereo_carve(cam, torch.zeros(3, 8, 4, 3), torch.ones(3, 8, 8), field)
    with pytest.raises(InputError, match="patch"):
        stereo_carve(cam, torch.zeros(3, 8, 8, 3), torch.ones(3, 8, 8), field, StereoCarveConfig(patch=4))
