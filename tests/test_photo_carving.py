"""Photo-consistent carving opens a textured bowl that the visual hull closes, and leaves a convex object alone."""

import pytest
import torch

from unrender.data.layouts import read_dataset
from unrender.data.synth import synthesize_object
from unrender.errors import InputError
from unrender.geometry.inside import inside_mesh
from unrender.io.mesh_files import load_mesh
from unrender.recon.multiview.views import training_views
from unrender.recon.photo_carving import photo_carve
from unrender.recon.visual_hull import carve


def _carve_case(tmp_path, family, seed):
    root = synthesize_object(tmp_path / family, family, views=40, resolution=96, seed=seed)
    views = training_views(read_dataset(root, "train"), 96)
    gt = load_mesh(root / "gt" / "mesh.obj")
    field = carve(views.camera, views.mask, [[-0.6] * 3, [0.6] * 3], resolution=48)
    result = photo_carve(views.camera, views.color, views.mask, field)
    inside = inside_mesh(gt.vertices, gt.faces, field.centres().float()).reshape(field.values.shape)
    before, after = field.values > 0.5, result.field.values > 0.5
    return before, after, inside, result


def test_photo_carving_opens_a_bowl(tmp_path):
    before, after, inside, result = _carve_case(tmp_path, "bowl", 4)
    excess_before = int((before & ~inside).sum())
    excess_after = int((after & ~inside).sum())
    assert excess_after < 0.8 * excess_before, (excess_before, excess_after, result.removed)
    # what the object really occupies stays (the bowl's wall is one or two voxels thick here)
    assert int((before & inside & ~after).sum()) < 0.1 * int((before & inside).sum())
    assert bool((after <= before).all())  # carving only removes


def test_photo_carving_keeps_a_convex_object(tmp_path):
    before, after, inside, _ = _carve_case(tmp_path, "blob", 1)
    assert int((before & inside & ~after).sum()) < 0.02 * int((before & inside).sum())


def test_photo_carving_rejects_mismatched_colors():
    from unrender.cameras import Camera, orbit_poses

    cam = Camera.from_fov(40, 8, 8, orbit_poses(3, 3.0, seed=0))
    field = carve(cam, torch.ones(3, 8, 8), [[-0.5] * 3, [0.5] * 3], resolution=4)
    with pytest.raises(InputError, match="colors"):
        photo_carve(cam, torch.zeros(3, 8, 4, 3), torch.ones(3, 8, 8), field)
